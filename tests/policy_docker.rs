//! The host policy on the real engine, through the berth CLI as an admin
//! runs it: each deny rule refuses the record with its reason printed
//! (file, line, record, property, rule) and leaves the record's running
//! container exactly as it was; an unusable policy file refuses every
//! create and stops nothing.

mod support;

use support::sandbox::Sandbox;

/// A running container for record `victim`, its ID.
fn running_victim(s: &Sandbox) -> String {
    s.declare("victim", &["Command", "sleep 3600", "MaxMemory", "64M"]);
    s.apply_ok();
    assert_eq!(s.state("victim"), "running");
    s.id("victim").expect("victim's container")
}

/// `berth apply` fails, says `wanted` about the record, and the victim's
/// container is the same one, still running.
fn refused_untouched(s: &Sandbox, id: &str, wanted: &[&str]) -> String {
    let (code, out, err) = s.apply();
    assert_eq!(code, 1, "refused, so apply fails:\n{out}\n{err}");
    let all = format!("{out}{err}");
    let record = format!("record {}", s.name("victim"));
    assert!(all.contains(&record), "the record is named:\n{all}");
    assert!(
        all.contains("docker_containers:"),
        "the file is named:\n{all}"
    );
    for w in wanted {
        assert!(all.contains(w), "wanted {w:?} in:\n{all}");
    }
    assert_eq!(s.id("victim").as_deref(), Some(id), "same container");
    assert_eq!(s.state("victim"), "running", "still running");
    all
}

fn delprop(s: &Sandbox, prop: &str) {
    s.db(&["delprop", &s.name("victim"), prop]);
}

#[test]
fn host_folders_outside_the_bind_roots_or_near_a_denied_path_are_refused() {
    let s = Sandbox::new(None);
    let id = running_victim(&s);
    let set_root = |root: &str| {
        s.setprop("victim", "DataMount", "host");
        s.setprop("victim", "MountPath", "/data");
        s.setprop("victim", "DataMountPath", root);
    };
    set_root("/etc/berth-test");
    refused_untouched(
        &s,
        &id,
        &["property DataMountPath: host folder /etc/berth-test/data: /etc is never mounted"],
    );
    // A folder that holds the engine's socket.
    set_root("/");
    s.setprop("victim", "MountPath", "/var");
    refused_untouched(
        &s,
        &id,
        &["host folder /var: it holds /var/run/docker.sock"],
    );
    s.setprop("victim", "MountPath", "/data");
    // A folder of the sandbox, not listed in bind_roots.
    let outside = s.dir.path().join("outside");
    set_root(&outside.display().to_string());
    refused_untouched(
        &s,
        &id,
        &[
            "outside every folder the built-in policy (there is no ",
            "add one to bind_roots",
        ],
    );
    // Listed: allowed, and the container is recreated with it.
    s.write_policy(&format!(
        "bind_roots = [{:?}]\n",
        outside.display().to_string()
    ));
    s.apply_ok();
    assert_ne!(s.id("victim").as_deref(), Some(id.as_str()));
    assert_eq!(s.state("victim"), "running");
}

#[test]
fn a_link_into_etc_is_refused_even_inside_a_bind_root() {
    let s = Sandbox::new(None);
    let roots = s.dir.path().join("roots");
    std::fs::create_dir_all(&roots).expect("mkdir");
    std::os::unix::fs::symlink("/etc", roots.join("link")).expect("link");
    s.write_policy(&format!(
        "bind_roots = [{:?}]\n",
        roots.display().to_string()
    ));
    let id = running_victim(&s);
    s.setprop("victim", "DataMount", "host");
    s.setprop("victim", "MountPath", "/data");
    s.setprop(
        "victim",
        "DataMountPath",
        &roots.join("link/app").display().to_string(),
    );
    refused_untouched(
        &s,
        &id,
        &["/etc is never mounted (it resolves to /etc/app/data: a link on the way)"],
    );
    assert!(
        !std::path::Path::new("/etc/app").exists(),
        "nothing was made in /etc"
    );
}

#[test]
fn host_network_privileges_capabilities_and_host_namespaces_need_a_grant() {
    let s = Sandbox::new(None);
    let id = running_victim(&s);
    let name = s.name("victim");
    s.setprop("victim", "network", "host");
    refused_untouched(
        &s,
        &id,
        &["property network = \"host\": network host is refused by the built-in policy"],
    );
    delprop(&s, "network");
    s.setprop("victim", "Privileged", "yes");
    refused_untouched(
        &s,
        &id,
        &[&format!("property Privileged = \"yes\": privileged is refused by the built-in policy (there is no {}): allow it for this record with [records.{name}] privileged = true", s.dir.path().join("policy.toml").display())],
    );
    delprop(&s, "Privileged");
    s.setprop("victim", "HostPid", "yes");
    refused_untouched(
        &s,
        &id,
        &["property HostPid = \"yes\": host_pid is refused"],
    );
    delprop(&s, "HostPid");
    s.setprop("victim", "HostIpc", "yes");
    refused_untouched(
        &s,
        &id,
        &["property HostIpc = \"yes\": host_ipc is refused"],
    );
    delprop(&s, "HostIpc");
    s.setprop("victim", "CapAdd", "NET_ADMIN");
    refused_untouched(
        &s,
        &id,
        &["property CapAdd = \"NET_ADMIN\": capability NET_ADMIN is refused"],
    );
    // Granted by name: applied.
    s.write_policy(&format!("[records.{name}]\ncap_add = [\"NET_ADMIN\"]\n"));
    s.apply_ok();
    let c = s.inspect("victim");
    assert_eq!(c["HostConfig"]["CapAdd"], serde_json::json!(["NET_ADMIN"]));
}

#[test]
fn an_image_from_a_source_the_policy_does_not_allow_is_refused() {
    let s = Sandbox::new(None);
    let id = running_victim(&s);
    s.write_policy("[images]\nsources = [\"local\", \"registry.example.com\"]\n");
    refused_untouched(
        &s,
        &id,
        &[
            &format!("property Image = \"{}\": not a source the policy", s.image),
            "([images] sources = local, registry.example.com)",
        ],
    );
}

#[test]
fn a_confined_record_needs_its_limits_and_a_profile_the_policy_has() {
    let s = Sandbox::new(None);
    let id = running_victim(&s);
    s.setprop("victim", "Profile", "confined");
    refused_untouched(
        &s,
        &id,
        &["property MaxCpu: profile confined confines the container: a confined record needs MaxCpu"],
    );
    s.setprop("victim", "Profile", "tenant");
    refused_untouched(
        &s,
        &id,
        &["property Profile = \"tenant\": no profile \"tenant\" in the policy (profiles: confined, default"],
    );
}

#[test]
fn over_commit_is_shown_and_refused_when_the_policy_says() {
    let s = Sandbox::new(None);
    let id = running_victim(&s);
    s.setprop("victim", "MaxMemory", "4096G");
    // Warn (the default): applied in place, and the sums are shown.
    s.apply_ok();
    let (_, plan, _) = s.run(&["plan"]);
    assert!(
        plan.contains("capacity       memory 4096.0G of the host's"),
        "{plan}"
    );
    assert!(
        plan.contains("OVER-COMMITTED (the policy warns only)"),
        "{plan}"
    );
    let (_, status, _) = s.run(&["status"]);
    assert!(status.contains("capacity       memory 4096.0G"), "{status}");
    s.setprop("victim", "MaxMemory", "64M");
    s.apply_ok();
    let id = s.id("victim").unwrap_or(id);
    // Refuse: every record must declare its limits to be counted...
    s.write_policy("[capacity]\nover_commit = \"refuse\"\n");
    refused_untouched(
        &s,
        &id,
        &["property MaxCpu: the policy", "refuses over-commit ([capacity] over_commit = refuse), so every enabled record needs MaxMemory and MaxCpu to be counted"],
    );
    s.setprop("victim", "MaxCpu", "0.5");
    s.apply_ok();
    let id = s.id("victim").unwrap_or(id);
    // ...and the record that pushes the sum over is refused, untouched.
    s.setprop("victim", "MaxMemory", "4096G");
    let all = refused_untouched(
        &s,
        &id,
        &["property MaxMemory: the memory limits of enabled records add up to 4096.0G with this one, over the host's"],
    );
    assert!(all.contains("[capacity] over_commit = refuse"), "{all}");
    assert_eq!(s.memory("victim"), Some(64 << 20), "the limit it had");
}

#[test]
fn an_unusable_policy_file_refuses_creates_and_stops_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new(None);
    let id = running_victim(&s);
    s.declare("other", &["Command", "sleep 3600"]);
    let policy = s.dir.path().join("policy.toml");
    type Break<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(Break, &str)> = vec![
        (
            Box::new(|| s.write_policy("bogus = 1\n")),
            "unknown field `bogus`",
        ),
        (
            Box::new(|| {
                s.write_policy("");
                std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o664))
                    .expect("chmod");
            }),
            "may be written by its group or others",
        ),
        (
            Box::new(|| {
                let real = s.dir.path().join("real-policy.toml");
                std::fs::write(&real, "").expect("write");
                let _ = std::fs::remove_file(&policy);
                std::os::unix::fs::symlink(&real, &policy).expect("link");
            }),
            "is a symbolic link",
        ),
    ];
    for (make, why) in cases {
        make();
        let (code, out, err) = s.apply();
        let all = format!("{out}{err}");
        assert_eq!(code, 1, "{all}");
        assert!(all.contains(why), "{why}: {all}");
        assert!(
            all.contains(
                "no container is created, recreated or changed until the policy file is fixed"
            ),
            "{all}"
        );
        assert_eq!(s.state("other"), "missing", "not created: {all}");
        assert_eq!(s.id("victim").as_deref(), Some(id.as_str()));
        assert_eq!(s.state("victim"), "running");
        let _ = std::fs::remove_file(&policy);
    }
    // Stops still happen (cron's stop before a backup).
    s.write_policy("bogus = 1\n");
    s.setprop("victim", "status", "disabled");
    let (_, out, _) = s.apply();
    assert!(
        out.contains(&format!("stop           {}", s.name("victim"))),
        "{out}"
    );
    assert_eq!(s.state("victim"), "exited");
    // Fixed: the create goes ahead.
    std::fs::remove_file(&policy).expect("rm");
    s.apply_ok();
    assert_eq!(s.state("other"), "running");
}

#[test]
fn a_named_policy_file_that_is_missing_or_in_an_open_folder_is_unusable() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new(None);
    let id = running_victim(&s);
    s.declare("other", &["Command", "sleep 3600"]);
    // A typo in berth.toml must not lift the policy.
    let config = s.config();
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}policy_file = \"polcy.toml\"\n")).expect("config");
    let (code, out, err) = s.apply();
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("polcy.toml: cannot be used: does not exist, and berth.toml names it"),
        "{all}"
    );
    assert_eq!(s.state("other"), "missing");
    assert_eq!(s.id("victim").as_deref(), Some(id.as_str()));
    // A folder others may write: they could remove or replace the file.
    let open = s.dir.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::write(open.join("policy.toml"), "").expect("policy");
    std::fs::write(
        &config,
        format!("{text}policy_file = \"open/policy.toml\"\n"),
    )
    .expect("config");
    let (code, out, err) = s.apply();
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("may be written by someone other than root"),
        "{all}"
    );
    assert_eq!(s.state("other"), "missing");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    s.apply_ok();
    assert_eq!(s.state("other"), "running");
    assert_eq!(s.state("victim"), "running");
}

#[test]
fn a_registry_check_says_the_policy_is_unusable() {
    let s = Sandbox::new(None);
    s.declare("watched", &["Command", "sleep 3600", "Update", "notify"]);
    s.write_policy("bogus = 1\n");
    let (code, out, err) = s.run(&["image", "check"]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(all.contains("unknown field `bogus`"), "{all}");
    assert!(
        all.contains("; no registry is asked while it cannot be used"),
        "{all}"
    );
    let (code, out, err) = s.run(&["image", "check", &s.name("watched")]);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(all.contains("no registry is asked"), "{all}");
}
