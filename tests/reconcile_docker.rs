//! `berth plan` / `apply` / `status` against the real engine: every property
//! checked with `docker inspect`, change detection, data kept, failures
//! isolated, unmanaged containers left alone.

mod support;

use serde_json::Value;
use support::sandbox::Sandbox;
use support::{docker, docker_inspect, docker_inspect_opt, docker_ok, free_tcp_port};

/// The container's ID, which must exist.
fn id_of(s: &Sandbox, name: &str) -> String {
    s.id(name)
        .unwrap_or_else(|| panic!("no container {}", s.name(name)))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[test]
fn every_property_lands_on_the_engine() {
    let s = Sandbox::new(None);
    s.allow_sandbox_binds_and_host_network();
    let (p1, p2, p3) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let host_data = s.dir.path().join("hostdata");
    let mapping = format!("{p1}:80,{p2}:81");
    s.declare(
        "full",
        &[
            "Command",
            "sh -c 'echo started; exec sleep 3600'",
            "Env",
            "GREETING=hello world,MODE=test",
            "TCPPort",
            "80,81",
            "UDPPort",
            "81",
            "PortMapping",
            "custom",
            "PortMappingPorts",
            &mapping,
            "access",
            "private",
            "MaxMemory",
            "64M",
            "MaxCpu",
            "0.5",
            "Restart",
            "on-failure:3",
            "MountPath",
            "/data",
        ],
    );
    let port_text = p3.to_string();
    s.declare(
        "public",
        &[
            "Command",
            "sleep 3600",
            "TCPPort",
            &port_text,
            "access",
            "public",
            "MaxMemory",
            "1G",
        ],
    );
    let host_text = host_data.display().to_string();
    s.declare(
        "hostmount",
        &[
            "Command",
            "sleep 3600",
            "MountPath",
            "/srv/in",
            "DataMount",
            "host",
            "DataMountPath",
            &host_text,
            "DataMountWrite",
            "no",
        ],
    );
    s.declare("nonet", &["Command", "sleep 3600", "network", "none"]);
    s.declare("hostnet", &["Command", "sleep 3600", "network", "host"]);

    let out = s.apply_ok();
    assert!(
        out.contains(&format!(
            "create         {}: no container yet",
            s.name("full")
        )),
        "{out}"
    );

    let full = s.inspect("full");
    assert_eq!(text(&full["State"]["Status"]), "running");
    assert_eq!(
        full["Config"]["Cmd"],
        serde_json::json!(["sh", "-c", "echo started; exec sleep 3600"])
    );
    let env: Vec<&str> = full["Config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .map(text)
        .collect();
    assert!(
        env.contains(&"GREETING=hello world") && env.contains(&"MODE=test"),
        "{env:?}"
    );
    let hc = &full["HostConfig"];
    assert_eq!(hc["Memory"], 64 << 20);
    assert_eq!(hc["NanoCpus"], 500_000_000);
    assert_eq!(text(&hc["RestartPolicy"]["Name"]), "on-failure");
    assert_eq!(hc["RestartPolicy"]["MaximumRetryCount"], 3);
    let binding = |key: &str| hc["PortBindings"][key][0].clone();
    assert_eq!(text(&binding("80/tcp")["HostIp"]), "127.0.0.1");
    assert_eq!(text(&binding("80/tcp")["HostPort"]), p1.to_string());
    assert_eq!(text(&binding("81/tcp")["HostPort"]), p2.to_string());
    assert_eq!(text(&binding("81/udp")["HostPort"]), p2.to_string());
    let labels = &full["Config"]["Labels"];
    assert_eq!(text(&labels["org.berth.managed"]), "true");
    assert_eq!(text(&labels["org.berth.record"]), s.name("full"));
    assert_eq!(text(&labels["org.berth.spec-hash"]).len(), 32);
    let mounts = full["Mounts"].as_array().expect("mounts");
    assert_eq!(mounts.len(), 1);
    assert_eq!(text(&mounts[0]["Type"]), "volume");
    assert_eq!(text(&mounts[0]["Name"]), format!("{}_data", s.name("full")));
    assert_eq!(mounts[0]["RW"], true);
    let volume = docker_inspect(&format!("{}_data", s.name("full")));
    assert_eq!(text(&volume["Labels"]["org.berth.managed"]), "true");
    assert!(
        full["NetworkSettings"]["Networks"][s.name("net")].is_object(),
        "on berth's bridge network"
    );

    let public = s.inspect("public");
    let b = &public["HostConfig"]["PortBindings"][format!("{p3}/tcp")][0];
    assert!(
        matches!(text(&b["HostIp"]), "" | "0.0.0.0"),
        "public binds all addresses: {b}"
    );
    assert_eq!(public["HostConfig"]["Memory"], 1 << 30);
    assert_eq!(
        text(&public["HostConfig"]["RestartPolicy"]["Name"]),
        "unless-stopped",
        "the default"
    );

    let hostmount = s.inspect("hostmount");
    let m = &hostmount["Mounts"][0];
    assert_eq!(text(&m["Type"]), "bind");
    assert_eq!(
        text(&m["Source"]),
        host_data.join("srv/in").display().to_string()
    );
    assert_eq!(m["RW"], false, "DataMountWrite no");
    assert!(host_data.join("srv/in").is_dir(), "host folder created");

    assert_eq!(
        text(&s.inspect("nonet")["HostConfig"]["NetworkMode"]),
        "none"
    );
    assert_eq!(
        text(&s.inspect("hostnet")["HostConfig"]["NetworkMode"]),
        "host"
    );

    // A second pass right after changes nothing and says so.
    let again = s.apply_ok();
    assert!(again.contains("no changes"), "{again}");
    let plan = s.berth(&["plan"]);
    assert_eq!(
        support::plan_actions(&String::from_utf8_lossy(&plan.stdout)),
        "no changes\n"
    );
}

#[test]
fn linked_containers_start_in_order_and_reach_each_other_by_name() {
    let s = Sandbox::new(None);
    let db = s.name("db");
    s.declare(
        "db",
        &["Command", "sh -c 'mkdir -p /www && echo from-db > /www/index.html && exec httpd -f -p 8080 -h /www'"],
    );
    s.declare("app", &["Command", "sleep 3600", "Interlinked", &db]);
    let plan = String::from_utf8_lossy(&s.berth(&["plan"]).stdout).into_owned();
    let db_at = plan
        .find(&format!("create         {db}:"))
        .expect("db planned");
    let app_at = plan
        .find(&format!("create         {}:", s.name("app")))
        .expect("app planned");
    assert!(db_at < app_at, "the dependency is created first:\n{plan}");
    s.apply_ok();
    let started = |n: &str| text(&s.inspect(n)["State"]["StartedAt"]).to_string();
    assert!(started("db") <= started("app"), "db started before app");
    let mut body = String::new();
    for _ in 0..20 {
        let (code, out, _) = docker(&[
            "exec",
            &s.name("app"),
            "wget",
            "-q",
            "-O-",
            &format!("http://{db}:8080/"),
        ]);
        if code == 0 {
            body = out;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(body.trim(), "from-db");
}

#[test]
fn a_change_recreates_only_the_changed_container_and_keeps_its_data() {
    let s = Sandbox::new(None);
    s.declare(
        "a",
        &[
            "Command",
            "sleep 3600",
            "MaxMemory",
            "64M",
            "MountPath",
            "/data",
        ],
    );
    s.declare("b", &["Command", "sleep 3600", "MaxMemory", "64M"]);
    s.apply_ok();
    let (a1, b1) = (id_of(&s, "a"), id_of(&s, "b"));
    docker_ok(&[
        "exec",
        &s.name("a"),
        "sh",
        "-c",
        "echo precious > /data/file",
    ]);

    // A Command change needs a new container (a memory change alone is
    // made in place: tests/inplace_docker.rs).
    s.db(&["setprop", &s.name("a"), "Command", "sleep 3601"]);
    let plan = support::plan_actions(&String::from_utf8_lossy(&s.berth(&["plan"]).stdout));
    assert_eq!(
        plan,
        format!(
            "recreate       {}: Command changed (not shown)\n",
            s.name("a")
        )
    );
    s.apply_ok();
    let (a2, b2) = (id_of(&s, "a"), id_of(&s, "b"));
    assert_ne!(a1, a2, "a recreated");
    assert_eq!(b1, b2, "b untouched");
    assert_eq!(s.inspect("a")["Config"]["Cmd"][1], "3601");
    assert_eq!(text(&s.inspect("a")["State"]["Status"]), "running");
    let data = docker_ok(&["exec", &s.name("a"), "cat", "/data/file"]);
    assert_eq!(data.trim(), "precious", "the volume survived the recreate");

    // Record deleted: container removed, volume kept; back again: data is there.
    s.db(&["delete", &s.name("a")]);
    let out = s.apply_ok();
    assert!(
        out.contains(&format!("remove         {}: record deleted", s.name("a"))),
        "{out}"
    );
    assert!(docker_inspect_opt(&s.name("a")).is_none());
    assert!(
        docker_inspect_opt(&format!("{}_data", s.name("a"))).is_some(),
        "volume kept"
    );
    s.declare("a", &["Command", "sleep 3600", "MountPath", "/data"]);
    s.apply_ok();
    assert_eq!(
        docker_ok(&["exec", &s.name("a"), "cat", "/data/file"]).trim(),
        "precious"
    );
}

#[test]
fn an_image_rebuilt_under_the_same_tag_recreates_its_containers() {
    let s = Sandbox::new(None);
    s.declare("a", &["Command", "sleep 3600"]);
    s.apply_ok();
    let before = id_of(&s, "a");
    s.prefix
        .tag(&support::TestImages::busybox_variant().id, &s.image);
    let plan = String::from_utf8_lossy(&s.berth(&["plan"]).stdout).into_owned();
    assert!(
        plan.starts_with(&format!(
            "recreate       {}: image {} now is",
            s.name("a"),
            s.image
        )),
        "{plan}"
    );
    s.apply_ok();
    assert_ne!(before, id_of(&s, "a"));
    assert_eq!(
        text(&s.inspect("a")["Image"]),
        support::TestImages::busybox_variant().id
    );
}

#[test]
fn disabled_stops_and_keeps_enabled_starts_again() {
    let s = Sandbox::new(None);
    s.declare("a", &["Command", "sleep 3600"]);
    s.apply_ok();
    let id = id_of(&s, "a");
    s.db(&["setprop", &s.name("a"), "status", "disabled"]);
    let out = s.apply_ok();
    assert!(out.contains("status disabled"), "{out}");
    assert_eq!(text(&s.inspect("a")["State"]["Status"]), "exited");
    assert_eq!(id_of(&s, "a"), id, "kept, not removed");
    s.db(&["setprop", &s.name("a"), "status", "enabled"]);
    s.apply_ok();
    assert_eq!(text(&s.inspect("a")["State"]["Status"]), "running");
    assert_eq!(id_of(&s, "a"), id);
}

#[test]
fn a_broken_record_keeps_its_container_and_the_others_still_apply() {
    let s = Sandbox::new(None);
    s.declare("keep", &["Command", "sleep 3600", "MaxMemory", "64M"]);
    s.declare("other", &["Command", "sleep 3600"]);
    s.apply_ok();
    let keep_id = id_of(&s, "keep");
    s.db(&["setprop", &s.name("keep"), "MaxMemory", "lots"]);
    s.db(&["setprop", &s.name("other"), "MaxMemory", "96M"]);
    s.declare(
        "badimage",
        &[
            "Image",
            &format!("{}/missing:1", s.prefix.as_str()),
            "Pull",
            "never",
        ],
    );
    s.declare("new", &["Command", "sleep 3600"]);
    let (code, stdout, stderr) = s.apply();
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "record {}, property MaxMemory = \"lots\"",
            s.name("keep")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("docker_containers:"),
        "names the file and line: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}/missing:1:latest is not in the engine",
            s.prefix.as_str()
        )) || stderr.contains("missing:1 is not in the engine"),
        "{stderr}"
    );
    assert_eq!(
        id_of(&s, "keep"),
        keep_id,
        "the broken record's container is untouched"
    );
    assert_eq!(text(&s.inspect("keep")["State"]["Status"]), "running");
    assert_eq!(s.inspect("other")["HostConfig"]["Memory"], 96 << 20);
    assert_eq!(text(&s.inspect("new")["State"]["Status"]), "running");
    assert!(docker_inspect_opt(&s.name("badimage")).is_none());
}

#[test]
fn a_port_already_taken_fails_that_record_only() {
    let s = Sandbox::new(None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = listener.local_addr().expect("addr").port().to_string();
    s.declare("clash", &["Command", "sleep 3600", "TCPPort", &taken]);
    s.declare("fine", &["Command", "sleep 3600"]);
    let (code, stdout, stderr) = s.apply();
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("FAILED create {}", s.name("clash"))),
        "{stderr}"
    );
    assert_eq!(text(&s.inspect("fine")["State"]["Status"]), "running");
    drop(listener);
}

#[test]
fn an_unmanaged_container_with_a_record_name_is_left_alone() {
    let s = Sandbox::new(None);
    let name = s.name("squatter");
    docker_ok(&["run", "-d", "--name", &name, &s.image, "sleep", "3600"]);
    let id = id_of(&s, "squatter");
    s.declare("squatter", &["Command", "sleep 3600", "MaxMemory", "64M"]);
    let (code, _, stderr) = s.apply();
    assert_eq!(code, 1);
    assert!(stderr.contains("not made by berth"), "{stderr}");
    assert_eq!(id_of(&s, "squatter"), id);
    assert_eq!(s.inspect("squatter")["HostConfig"]["Memory"], 0);
    // Deleting the record never removes what berth did not make.
    s.db(&["delete", &name]);
    s.apply_ok();
    assert_eq!(id_of(&s, "squatter"), id);
}

#[test]
fn status_shows_declared_actual_and_errors() {
    let s = Sandbox::new(None);
    s.declare("up", &["Command", "sleep 3600"]);
    s.declare("off", &["Command", "sleep 3600", "status", "disabled"]);
    s.declare("bad", &["Command", "sleep 3600", "MaxCpu", "many"]);
    let _ = s.apply();
    let out = s.berth(&["status", "--json"]);
    assert!(out.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let row = |n: &str| {
        rows.iter()
            .find(|r| r["name"] == s.name(n))
            .cloned()
            .expect("row")
    };
    assert_eq!(
        (text(&row("up")["declared"]), text(&row("up")["actual"])),
        ("running", "running")
    );
    assert_eq!(
        (text(&row("off")["declared"]), text(&row("off")["actual"])),
        ("stopped", "missing")
    );
    assert_eq!(text(&row("bad")["declared"]), "invalid");
    assert!(text(&row("bad")["error"]).contains("MaxCpu"));
    let one = s.berth(&["status", &s.name("up")]);
    let table = String::from_utf8_lossy(&one.stdout);
    assert!(
        table.lines().count() == 2 && table.contains(&s.name("up")),
        "{table}"
    );
}

#[test]
fn a_container_cannot_get_a_host_folder_mounted_through_a_link() {
    let s = Sandbox::new(None);
    s.allow_sandbox_binds_and_host_network();
    let data = s.dir.path().join("data");
    let secret = s.dir.path().join("secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    std::fs::write(secret.join("key"), "host secret\n").expect("write");
    let data_text = data.display().to_string();
    s.declare(
        "evil",
        &[
            "Command",
            "sleep 3600",
            "DataMount",
            "host",
            "DataMountPath",
            &data_text,
            "MountPath",
            "/data",
        ],
    );
    s.apply_ok();
    // The container plants a link in its own data folder...
    let link = format!("ln -s {} /data/sub", secret.display());
    docker_ok(&["exec", &s.name("evil"), "sh", "-c", &link]);
    assert!(std::fs::symlink_metadata(data.join("data/sub"))
        .expect("planted")
        .file_type()
        .is_symlink());
    let before = id_of(&s, "evil");
    // ...and asks for a mount inside it: refused, its container untouched.
    s.db(&["setprop", &s.name("evil"), "MountPath", "/data,/data/sub"]);
    let (code, out, err) = s.apply();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("MountPath") && err.contains("/data/sub lies inside /data"),
        "{err}"
    );
    assert_eq!(id_of(&s, "evil"), before);

    // A record whose host folder lies in another record's: refused too.
    let inner = data.join("data/other").display().to_string();
    s.declare(
        "nested",
        &[
            "Command",
            "sleep 3600",
            "DataMount",
            "host",
            "DataMountPath",
            &inner,
            "MountPath",
            "/srv",
        ],
    );
    let (_, _, err) = s.apply();
    assert!(
        err.contains(&s.name("nested")) && err.contains("data folder of record"),
        "{err}"
    );
    assert!(docker_inspect_opt(&s.name("nested")).is_none());

    // A link already on the way to a host folder is never followed.
    s.db(&["setprop", &s.name("evil"), "MountPath", "/data"]);
    s.db(&["delete", &s.name("nested")]);
    let other = s.dir.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::os::unix::fs::symlink(&secret, other.join("srv")).expect("link");
    let other_text = other.display().to_string();
    s.declare(
        "linked",
        &[
            "Command",
            "sleep 3600",
            "DataMount",
            "host",
            "DataMountPath",
            &other_text,
            "MountPath",
            "/srv",
        ],
    );
    let (code, _, err) = s.apply();
    assert_eq!(code, 1);
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(
        docker_inspect_opt(&s.name("linked")).is_none_or(|v| v["State"]["Status"] != "running"),
        "never started with the host folder behind the link"
    );
}

#[test]
fn volumes_never_collide_and_a_volume_someone_else_made_is_not_adopted() {
    let s = Sandbox::new(None);
    // Under the old naming both were <prefix>-a_b_c.
    let a = s.name("a");
    s.declare("a", &["Command", "sleep 3600", "MountPath", "/b/c"]);
    s.declare("a_b", &["Command", "sleep 3600", "MountPath", "/c"]);
    s.apply_ok();
    let volume_of = |name: &str| {
        let v = docker_inspect(&s.name(name));
        text(&v["Mounts"][0]["Name"]).to_string()
    };
    assert_eq!(volume_of("a"), format!("{a}_b_c"));
    assert_ne!(volume_of("a"), volume_of("a_b"));
    docker_ok(&["exec", &s.name("a"), "sh", "-c", "echo mine > /b/c/f"]);
    let (_, other, _) = docker(&["exec", &s.name("a_b"), "sh", "-c", "cat /c/f || true"]);
    assert!(!other.contains("mine"), "a_b sees a's data: {other}");

    // A volume an admin made by hand under the name berth would use.
    let theirs = s.name("c_data");
    docker_ok(&["volume", "create", &theirs]);
    s.declare("c", &["Command", "sleep 3600", "MountPath", "/data"]);
    let (code, _, err) = s.apply();
    assert_eq!(code, 1);
    assert!(err.contains("does not adopt"), "{err}");
    assert!(docker_inspect_opt(&s.name("c")).is_none());
    docker(&["volume", "rm", &theirs]);
}

#[test]
fn an_emptied_docker_containers_removes_nothing_without_confirmation() {
    let s = Sandbox::new(None);
    for n in ["a", "b"] {
        s.declare(n, &["Command", "sleep 3600"]);
    }
    s.apply_ok();
    let (a, b) = (id_of(&s, "a"), id_of(&s, "b"));
    // A truncated file: every record seems deleted.
    std::fs::write(s.dir.path().join("db/docker_containers"), "").expect("truncate");
    let (code, out, err) = s.apply();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("would remove 2 of the 2") && err.contains("--allow-mass-removal"),
        "{err}"
    );
    assert_eq!((id_of(&s, "a"), id_of(&s, "b")), (a, b), "nothing removed");
    let (code, out, err) = s.run(&["apply", "--allow-mass-removal"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        docker_inspect_opt(&s.name("a")).is_none() && docker_inspect_opt(&s.name("b")).is_none()
    );
}
