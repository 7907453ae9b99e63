//! Enforcing the policy on declared records: each rule refuses with its reason, profiles fill `Security`, capacity sums and refuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::declared::{from_text, Declared};
use crate::policy::{Policy, PolicyError};

fn paths() -> HostPaths {
    let mut denied = always_denied();
    denied.push(Denied {
        path: PathBuf::from("/var/lib/berth"),
        what: "berth's state folder /var/lib/berth".into(),
        contents: true,
    });
    denied.push(Denied {
        path: PathBuf::from("/home/e-smith/db"),
        what: "the db folder /home/e-smith/db".into(),
        contents: true,
    });
    HostPaths {
        data_root: PathBuf::from("/var/lib/berth/data"),
        denied,
    }
}

/// Links on this pretend host: `/srv/link` → `/etc`, `/srv/data` →
/// `/mnt/big/data`.
fn resolve(p: &Path) -> PathBuf {
    let links = [("/srv/link", "/etc"), ("/srv/data", "/mnt/big/data")];
    for (from, to) in links {
        if let Ok(rest) = p.strip_prefix(from) {
            return Path::new(to).join(rest);
        }
    }
    p.to_path_buf()
}

fn policy(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(Path::new("/etc/berth/policy.toml"), text)
}

fn enforced_with(
    db: &str,
    policy: &Result<Policy, PolicyError>,
    host: Option<Host>,
    built: &[(&str, &str)],
) -> Declared {
    let mut d = from_text(db);
    let images: BTreeMap<String, String> = built
        .iter()
        .map(|(t, k)| (t.to_string(), k.to_string()))
        .collect();
    enforce(&mut d, policy, &images, &paths(), host, &resolve);
    d
}

fn enforced(db: &str, text: &str) -> Declared {
    enforced_with(db, &policy(text), None, &[])
}

fn errors(d: &Declared, name: &str) -> String {
    d.failed
        .get(name)
        .map(|e| {
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn the_default_profile_changes_nothing_a_spec_hashes() {
    let db = "web=service|Image|web:1|MaxMemory|64M\n";
    let before = from_text(db).specs["web"].spec_hash.clone();
    let d = enforced(db, "");
    assert_eq!(d.specs["web"].spec_hash, before);
    assert!(d.specs["web"].config.security.is_plain());
}

#[test]
fn a_confined_record_gets_every_confinement_and_needs_limits() {
    let d = enforced(
        "job=service|Image|job:1|Profile|confined|MaxMemory|64M|MaxCpu|0.5\n\
         bare=service|Image|job:1|Profile|confined\n",
        "",
    );
    let s = &d.specs["job"];
    let sec = &s.config.security;
    assert_eq!(sec.profile.as_deref(), Some("confined"));
    assert!(sec.read_only_root && sec.drop_all_caps && sec.non_root);
    assert_eq!(sec.tmp_size, Some(16 << 20));
    assert_eq!(sec.pids_limit, Some(128));
    assert!(sec.cap_add.is_empty() && !sec.privileged);
    assert_eq!(s.config.network, NetworkAttachment::None);
    assert_ne!(
        s.spec_hash,
        from_text("job=service|Image|job:1|Profile|confined|MaxMemory|64M|MaxCpu|0.5\n").specs
            ["job"]
            .spec_hash
    );
    let e = errors(&d, "bare");
    assert!(e.contains("property MaxMemory: profile confined confines the container: a confined record needs MaxMemory"), "{e}");
    assert!(e.contains("property MaxCpu"), "{e}");
    assert!(e.contains("/db/docker_containers:2: record bare"), "{e}");
}

#[test]
fn a_confined_record_has_no_network_ports_links_or_privileges() {
    let d = enforced(
        "a=service|Image|a:1|Profile|confined|MaxMemory|64M|MaxCpu|1|network|bridge\n\
         b=service|Image|a:1|Profile|confined|MaxMemory|64M|MaxCpu|1|TCPPort|8080\n\
         c=service|Image|a:1|Profile|confined|MaxMemory|64M|MaxCpu|1|CapAdd|NET_ADMIN\n\
         d=service|Image|a:1|Profile|confined|MaxMemory|64M|MaxCpu|1|network|none\n\
         e=service|Image|a:1|Interlinked|d\n",
        "cap_add = [\"NET_ADMIN\"]\n",
    );
    assert!(errors(&d, "a").contains(
        "property network: profile confined confines the container: it has no network device"
    ));
    assert!(errors(&d, "b").contains("property TCPPort"));
    assert!(errors(&d, "c").contains("property CapAdd: profile confined confines the container: it cannot have added capabilities"));
    assert!(
        d.specs.contains_key("d"),
        "network none is what confined means"
    );
    let e = errors(&d, "e");
    assert!(
        e.contains("property Interlinked = \"d\": d is confined"),
        "{e}"
    );
}

#[test]
fn a_unknown_profile_is_refused_naming_the_profiles() {
    let d = enforced("a=service|Image|a:1|Profile|tight\n", "");
    let e = errors(&d, "a");
    assert!(e.contains("property Profile = \"tight\": no profile \"tight\" in the policy (profiles: confined, default; policy /etc/berth/policy.toml)"), "{e}");
}

#[test]
fn the_policy_can_make_confined_the_default_and_cap_a_profile() {
    let text = "default_profile = \"confined\"\n[profiles.default]\nmax_memory = \"1G\"\n\
                [records.b]\nprofiles = [\"default\"]\n[records.c]\nprofiles = [\"default\"]\n";
    let d = enforced(
        "a=service|Image|a:1|MaxMemory|64M|MaxCpu|1\n\
         b=service|Image|a:1|Profile|default|MaxMemory|2G\n\
         c=service|Image|a:1|Profile|default\n\
         escape=service|Image|a:1|Profile|default|MaxMemory|64M\n",
        text,
    );
    assert!(d.specs["a"].config.security.drop_all_caps);
    // The db cannot lift the default: only a grant lets a record out.
    let e = errors(&d, "escape");
    assert!(e.contains("property Profile = \"default\": a record may name only the default profile \"confined\" or a confining one (the policy /etc/berth/policy.toml); allow \"default\" for this record with [records.escape] profiles = [\"default\"]"), "{e}");
    assert!(errors(&d, "b").contains("2.0G is over profile default's max_memory 1.0G"));
    assert!(errors(&d, "c").contains("profile default has max_memory 1.0G: set MaxMemory"));
}

#[test]
fn host_network_privileges_and_capabilities_need_the_policy() {
    let db = "net=service|Image|a:1|network|host\n\
              priv=service|Image|a:1|Privileged|yes|HostPid|yes|HostIpc|yes\n\
              caps=service|Image|a:1|CapAdd|net_admin,SYS_TIME\n";
    let d = enforced(db, "");
    let e = errors(&d, "net");
    assert!(e.contains("property network = \"host\": network host is refused by the policy /etc/berth/policy.toml (network_host = false)"), "{e}");
    let e = errors(&d, "priv");
    assert!(e.contains("property Privileged = \"yes\": privileged is refused by the policy /etc/berth/policy.toml: allow it for this record with [records.priv] privileged = true"), "{e}");
    assert!(
        e.contains("property HostPid") && e.contains("property HostIpc"),
        "{e}"
    );
    let e = errors(&d, "caps");
    assert!(
        e.contains(
            "property CapAdd = \"NET_ADMIN,SYS_TIME\": capability NET_ADMIN, SYS_TIME is refused"
        ),
        "{e}"
    );

    let d = enforced(
        db,
        "cap_add = [\"SYS_TIME\"]\n[records.net]\nnetwork_host = true\n[records.priv]\nprivileged = true\nhost_pid = true\nhost_ipc = true\n[records.caps]\ncap_add = [\"NET_ADMIN\"]\n",
    );
    assert!(d.failed.is_empty(), "{:?}", d.failed);
    let sec = &d.specs["priv"].config.security;
    assert!(sec.privileged && sec.host_pid && sec.host_ipc);
    assert_eq!(
        d.specs["caps"].config.security.cap_add,
        vec!["NET_ADMIN", "SYS_TIME"]
    );
    assert_eq!(d.specs["net"].config.network, NetworkAttachment::Host);
    // A grant is by name: another record still may not.
    let d = enforced(
        "other=service|Image|a:1|Privileged|yes\n",
        "[records.priv]\nprivileged = true\n",
    );
    assert!(errors(&d, "other").contains("Privileged"));
}

#[test]
fn host_folders_only_inside_bind_roots_and_never_near_a_denied_path() {
    let rec = |name: &str, root: &str| {
        format!("{name}=service|Image|a:1|DataMount|host|DataMountPath|{root}|MountPath|/data\n")
    };
    let db = [
        rec("etc", "/etc/app"),
        rec("run", "/run"),
        rec("srv", "/srv/app"),
        rec("own", "/var/lib/berth/data/own"),
        rec("state", "/var/lib/berth/other"),
        "dbdir=service|Image|a:1|DataMount|host|DataMountPath|/home|MountPath|/e-smith\n"
            .to_string(),
        rec("linked", "/srv/link/x"),
        rec("big", "/srv/data/app"),
    ]
    .concat();
    let d = enforced(&db, "");
    let e = errors(&d, "etc");
    assert!(
        e.contains("property DataMountPath: host folder /etc/app/data: /etc is never mounted"),
        "{e}"
    );
    assert!(errors(&d, "run").contains("/run/data"));
    let e = errors(&d, "srv");
    assert!(e.contains("host folder /srv/app/data: outside every folder the policy /etc/berth/policy.toml lets records mount (/var/lib/berth/data; add one to bind_roots)"), "{e}");
    assert!(
        d.specs.contains_key("own"),
        "berth's own data folder: {}",
        errors(&d, "own")
    );
    assert!(errors(&d, "state").contains("berth's state folder /var/lib/berth is never mounted"));
    assert!(
        errors(&d, "dbdir").contains("it holds /home/e-smith/db (the db folder /home/e-smith/db)")
    );

    let d = enforced(&db, "bind_roots = [\"/srv\", \"/var\"]\n");
    assert!(d.specs.contains_key("srv"), "{}", errors(&d, "srv"));
    // A bind root is no way around the denied paths.
    let var = "var=service|Image|a:1|DataMount|host|DataMountPath|/|MountPath|/var\n";
    for text in ["", "bind_roots = [\"/var\"]\n"] {
        let e = errors(&enforced(var, text), "var");
        assert!(e.contains("host folder /var: it holds /var/run/docker.sock (/var/run/docker.sock), which is never mounted"), "{e}");
    }
    let e = errors(&d, "state");
    assert!(e.contains("host folder /var/lib/berth/other/data: berth's state folder /var/lib/berth is never mounted"), "{e}");
    assert!(d.specs.contains_key("own"));
    // Links are followed as the kernel will: into /etc through /srv/link.
    let e = errors(&d, "linked");
    assert!(e.contains("host folder /srv/link/x/data: /etc is never mounted (it resolves to /etc/x/data: a link on the way)"), "{e}");
    // A link out of the bind roots is refused; into one, allowed.
    let e = errors(&d, "big");
    assert!(
        e.contains("outside every folder") && e.contains("it resolves to /mnt/big/data/app/data"),
        "{e}"
    );
    let d = enforced(&db, "bind_roots = [\"/srv/data\"]\n");
    assert!(d.specs.contains_key("big"), "{}", errors(&d, "big"));
    // A record's own grant.
    let d = enforced(&db, "[records.srv]\nbind_roots = [\"/srv/app\"]\n");
    assert!(d.specs.contains_key("srv"));
    assert!(!d.specs.contains_key("big"));
}

#[test]
fn image_sources_judge_references_and_builds() {
    let db = "hub=service|Image|busybox:1\n\
              mine=service|Image|berth/app:1\n\
              reg=service|Image|reg.example:5000/team/x:2\n";
    let built = [("berth/app:1", "tar")];
    let d = enforced_with(
        db,
        &policy("[images]\nsources = [\"local\"]\n"),
        None,
        &built,
    );
    assert!(d.specs.contains_key("mine"));
    let e = errors(&d, "hub");
    assert!(e.contains("property Image = \"busybox:1\": not a source the policy /etc/berth/policy.toml allows ([images] sources = local)"), "{e}");
    assert!(errors(&d, "reg").contains("not a source"));
    let d = enforced_with(
        db,
        &policy("[images]\nsources = [\"git\", \"reg.example:5000\"]\n"),
        None,
        &built,
    );
    assert!(d.specs.contains_key("reg"));
    assert!(errors(&d, "mine").contains("built here from Source tar, which the policy /etc/berth/policy.toml does not allow ([images] sources = git, reg.example:5000)"));
}

#[test]
fn an_unusable_policy_refuses_every_change_but_stops_still_happen() {
    use crate::model::{
        ObservedContainer, ObservedState, LABEL_INSTANCE, LABEL_MANAGED, LABEL_RECORD,
        LABEL_SPEC_HASH,
    };
    let broken: Result<Policy, PolicyError> = Err(PolicyError::Invalid {
        path: "/etc/berth/policy.toml".into(),
        why: crate::policy::RuleError::Toml("unknown field `bogus`".into()),
    });
    let d = enforced_with(
        "new=service|Image|a:1\nold=service|Image|a:1|status|disabled\nnet=service|Image|a:1|network|host\n",
        &broken,
        None,
        &[],
    );
    // No rule is judged without the policy: every record stays valid.
    assert!(d.failed.is_empty());
    let container = |name: &str, hash: &str| ObservedContainer {
        id: format!("id-{name}"),
        name: name.into(),
        labels: [
            (LABEL_MANAGED, "true"),
            (LABEL_INSTANCE, "test"),
            (LABEL_RECORD, name),
            (LABEL_SPEC_HASH, hash),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        image: "a:1".into(),
        image_id: "sha256:a".into(),
        state: "running".into(),
        exit_code: None,
        health: None,
        up_seconds: None,
    };
    let observed = ObservedState {
        containers: vec![
            container("old", &d.specs["old"].spec_hash),
            container("net", "stale-hash"),
        ],
        images: [("a:1".to_string(), "sha256:a".to_string())]
            .into_iter()
            .collect(),
        networks: vec!["berth".into()],
    };
    let plan = crate::plan::plan(&d, &observed, std::time::SystemTime::UNIX_EPOCH);
    let kinds: Vec<(String, &str)> = plan
        .actions
        .iter()
        .map(|a| (a.record.clone(), a.kind().as_str()))
        .collect();
    assert_eq!(kinds, vec![("old".to_string(), "stop")], "{plan:?}");
    let refused: Vec<&str> = plan.problems.iter().map(|p| p.record.as_str()).collect();
    assert_eq!(refused, vec!["net", "new"], "{plan:?}");
    assert!(plan.problems[1].message.contains("not done (create: no container yet; status enabled): /etc/berth/policy.toml: unknown field `bogus`; no container is created, recreated or changed until the policy file is fixed"), "{}", plan.problems[1].message);
}

#[test]
fn capacity_sums_enabled_limits_and_refuses_the_last_in_start_order() {
    let db = "a=service|Image|a:1|MaxMemory|1G|MaxCpu|1\n\
              b=service|Image|a:1|MaxMemory|1G|MaxCpu|1|Interlinked|a\n\
              c=service|Image|a:1|MaxMemory|1G\n\
              off=service|Image|a:1|MaxMemory|8G|status|disabled\n\
              z=service|Image|a:1\n";
    let host = Host {
        memory: 2 << 30,
        nano_cpus: 4_000_000_000,
    };
    let d = enforced_with(db, &policy(""), Some(host), &[]);
    let c = d.capacity.clone().expect("capacity");
    assert_eq!(c.memory, 3 << 30);
    assert_eq!(c.nano_cpus, 2_000_000_000);
    assert!(c.memory_over() && !c.cpu_over());
    assert_eq!(c.no_memory_limit, vec!["z"]);
    assert_eq!(c.no_cpu_limit, vec!["c", "z"]);
    assert!(
        c.refused.is_empty() && d.failed.is_empty(),
        "warn refuses nothing"
    );

    let refuse = policy("[capacity]\nover_commit = \"refuse\"\n");
    // Under refuse, a record without limits would escape the sums.
    let d = enforced_with(db, &refuse, Some(host), &[]);
    let c = d.capacity.clone().expect("capacity");
    assert_eq!(c.refused, vec!["c", "z"]);
    let e = errors(&d, "z");
    assert!(e.contains("property MaxMemory: the policy /etc/berth/policy.toml refuses over-commit ([capacity] over_commit = refuse), so every enabled record needs MaxMemory and MaxCpu to be counted"), "{e}");
    assert!(errors(&d, "c").contains("property MaxCpu"));

    let db = "a=service|Image|a:1|MaxMemory|1G|MaxCpu|1\n\
              b=service|Image|a:1|MaxMemory|1G|MaxCpu|1|Interlinked|a\n\
              c=service|Image|a:1|MaxMemory|1G|MaxCpu|1\n\
              off=service|Image|a:1|MaxMemory|8G|status|disabled\n";
    let d = enforced_with(db, &refuse, Some(host), &[]);
    let c = d.capacity.clone().expect("capacity");
    // Start order: a, c (depth 0), then b (links to a): b goes first.
    assert_eq!(c.refused, vec!["b"]);
    assert_eq!(c.memory, 2 << 30);
    let e = errors(&d, "b");
    assert!(e.contains("property MaxMemory: the memory limits of enabled records add up to 3.0G with this one, over the host's 2.0G (policy /etc/berth/policy.toml: [capacity] over_commit = refuse"), "{e}");
    assert!(d.specs.contains_key("a") && d.specs.contains_key("c"));
}

#[test]
fn a_grant_pinned_to_an_image_is_lost_when_the_image_changes() {
    let text = "[records.mon]\nhost_pid = true\nimage = \"mon:1\"\n";
    let d = enforced("mon=service|Image|mon:1|HostPid|yes\n", text);
    assert!(d.specs["mon"].config.security.host_pid);
    let d = enforced("mon=service|Image|evil:1|HostPid|yes\n", text);
    let e = errors(&d, "mon");
    assert!(
        e.contains("property HostPid = \"yes\": host_pid is refused"),
        "{e}"
    );
    assert!(
        e.contains("([records.mon] holds only for image mon:1, and this record's Image is evil:1)"),
        "{e}"
    );
    // A pin on an image the db builds holds nothing: the build could be anything.
    let d = enforced_with(
        "mon=service|Image|mon:1|HostPid|yes\n",
        &policy(text),
        None,
        &[("mon:1", "git")],
    );
    let e = errors(&d, "mon");
    assert!(
        e.contains("which a docker_images record builds here"),
        "{e}"
    );
}

#[test]
fn an_image_built_here_is_never_pulled_from_a_registry_the_policy_does_not_allow() {
    let db = "app=service|Image|docker.io/evil/miner:1|Pull|missing\n";
    let built = [("docker.io/evil/miner:1", "git")];
    let d = enforced_with(
        db,
        &policy("[images]\nsources = [\"local\"]\n"),
        None,
        &built,
    );
    assert_eq!(d.specs["app"].pull, crate::declared::PullPolicy::Never);
    let d = enforced_with(db, &policy(""), None, &built);
    assert_eq!(
        d.specs["app"].pull,
        crate::declared::PullPolicy::Missing,
        "any source: as written"
    );
}

#[test]
fn without_a_usable_policy_a_container_keeps_the_profile_it_runs_with() {
    use crate::model::{
        ObservedContainer, ObservedState, LABEL_INSTANCE, LABEL_MANAGED, LABEL_RECORD, LABEL_SPEC,
        LABEL_SPEC_HASH,
    };
    let db = "web=service|Image|a:1|MaxMemory|64M|MaxCpu|1\n";
    // Made under a policy whose confined default had another pids limit.
    let good = policy("default_profile = \"confined\"\n[profiles.confined]\npids_limit = 200\n");
    let made = enforced_with(db, &good, None, &[]).specs["web"].clone();
    assert_eq!(made.config.security.pids_limit, Some(200));
    let container = |state: &str| ObservedContainer {
        id: "id-web".into(),
        name: "web".into(),
        labels: [
            (LABEL_MANAGED, "true".to_string()),
            (LABEL_INSTANCE, "test".to_string()),
            (LABEL_RECORD, "web".to_string()),
            (LABEL_SPEC_HASH, made.spec_hash.clone()),
            (
                LABEL_SPEC,
                serde_json::to_string(&made.config).expect("json"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        image: "a:1".into(),
        image_id: "sha256:a".into(),
        state: state.into(),
        exit_code: (state == "exited").then_some(0),
        health: None,
        up_seconds: None,
    };
    let broken: Result<Policy, PolicyError> = Err(PolicyError::Unusable {
        path: "/etc/berth/policy.toml".into(),
        why: "is a symbolic link".into(),
    });
    for (state, wanted) in [("running", vec![]), ("exited", vec!["start"])] {
        let mut d = enforced_with(db, &broken, None, &[]);
        let observed = ObservedState {
            containers: vec![container(state)],
            images: [("a:1".to_string(), "sha256:a".to_string())]
                .into_iter()
                .collect(),
            networks: vec!["berth".into()],
        };
        // Without it, the built-in profiles would make the record look
        // changed: a recreate held, and no start after cron's stop.
        keep_running_security(&mut d, &observed);
        assert_eq!(d.specs["web"].spec_hash, made.spec_hash);
        let plan = crate::plan::plan(&d, &observed, std::time::SystemTime::UNIX_EPOCH);
        let kinds: Vec<&str> = plan.actions.iter().map(|a| a.kind().as_str()).collect();
        assert_eq!(kinds, wanted, "{state}: {plan:?}");
        assert!(plan.problems.is_empty(), "{plan:?}");
    }
}
