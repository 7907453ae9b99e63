//! Parsing the policy file: every rule read, every mistake named by its key.

use std::path::{Path, PathBuf};

use super::*;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(Path::new("/etc/berth/policy.toml"), text)
}

#[test]
fn the_built_in_policy_allows_no_host_folder_nor_host_network_and_any_image() {
    let p = Policy::default();
    assert!(p.bind_roots.is_empty());
    assert!(!p.network_host);
    assert_eq!(p.default_profile, "default");
    assert!(!p.profiles["default"].confined);
    assert!(p.profiles["confined"].confined);
    assert_eq!(p.profiles["confined"].pids_limit, Some(128));
    assert!(p.allows_reference("busybox:1"));
    assert!(p.allows_build("tar"));
    assert_eq!(p.capacity.over_commit, OverCommit::Warn);
}

#[test]
fn an_empty_file_is_the_built_in_policy() {
    let p = parse("").expect("empty");
    assert_eq!(Policy { source: None, ..p }, Policy::default());
}

#[test]
fn a_full_file_reads_every_rule() {
    let p = parse(
        r#"
bind_roots = ["/srv/data/", "/home/e-smith/files/docker"]
network_host = true
cap_add = ["net_bind_service", "CAP_CHOWN"]
default_profile = "tenant"
[profiles.tenant]
confined = true
pids_limit = 64
tmp_size = "8M"
max_memory = "256M"
max_cpu = 0.5
[profiles.confined]
pids_limit = 32
[records.monitor]
host_pid = true
privileged = true
cap_add = ["SYS_PTRACE"]
bind_roots = ["/var/log"]
[images]
sources = ["local", "registry.example.com:5000", "docker.io/library/"]
refuse_entrypoint = false
[capacity]
over_commit = "refuse"
"#,
    )
    .expect("valid");
    assert_eq!(
        p.bind_roots,
        vec![
            PathBuf::from("/srv/data"),
            PathBuf::from("/home/e-smith/files/docker")
        ]
    );
    assert!(p.network_host);
    assert_eq!(p.cap_add, vec!["NET_BIND_SERVICE", "CHOWN"]);
    assert_eq!(p.default_profile, "tenant");
    let t = &p.profiles["tenant"];
    assert!(t.confined);
    assert_eq!(t.pids_limit, Some(64));
    assert_eq!(t.tmp_size, 8 << 20);
    assert_eq!(t.max_memory, Some(256 << 20));
    assert_eq!(t.max_nano_cpus, Some(500_000_000));
    // Tuning the built-in keeps what is not said.
    assert!(p.profiles["confined"].confined);
    assert_eq!(p.profiles["confined"].pids_limit, Some(32));
    let g = p.grant("monitor");
    assert!(g.host_pid && g.privileged && !g.host_ipc && !g.network_host);
    assert_eq!(g.cap_add, vec!["SYS_PTRACE"]);
    assert_eq!(g.bind_roots, vec![PathBuf::from("/var/log")]);
    assert_eq!(p.grant("other"), Grant::default());
    assert!(!p.images.refuse_entrypoint);
    assert_eq!(p.capacity.over_commit, OverCommit::Refuse);
    assert!(p.allows_build("git"));
    assert!(p.allows_reference("registry.example.com:5000/team/app:1"));
    assert!(!p.allows_reference("registry.example.com/team/app:1"));
    assert!(p.allows_reference("nginx:1"));
    assert!(p.allows_reference("docker.io/library/nginx"));
    assert!(!p.allows_reference("evil/nginx:1"));
}

#[test]
fn a_name_prefix_matches_whole_path_components() {
    let p = parse("[images]\nsources = [\"reg.example/team\", \"tar\"]\n").expect("valid");
    assert!(p.allows_reference("reg.example/team/app:1"));
    assert!(p.allows_reference("reg.example/team:1"));
    assert!(!p.allows_reference("reg.example/teamevil/app:1"));
    assert!(p.allows_build("tar"));
    assert!(!p.allows_build("git"));
}

#[test]
fn every_mistake_names_its_key() {
    let cases = [
        ("bogus = 1\n", "unknown field `bogus`"),
        (
            "bind_roots = [\"srv\"]\n",
            "bind_roots: \"srv\" is not an absolute path",
        ),
        ("bind_roots = [\"/srv/../etc\"]\n", "must not contain .."),
        (
            "cap_add = [\"NET ADMIN\"]\n",
            "cap_add: \"NET ADMIN\" is not a capability name",
        ),
        (
            "default_profile = \"tight\"\n",
            "default_profile: no profile \"tight\"",
        ),
        (
            "[profiles.x]\npids_limit = 1\n",
            "[profiles.x] pids_limit: 1",
        ),
        (
            "[profiles.x]\nmax_memory = \"lots\"\n",
            "[profiles.x] max_memory:",
        ),
        ("[profiles.x]\nmax_cpu = -1.0\n", "[profiles.x] max_cpu:"),
        (
            "[images]\nsources = [\"a b\"]\n",
            "[images] sources: \"a b\" is not a source",
        ),
        (
            "[capacity]\nover_commit = \"maybe\"\n",
            "[capacity] over_commit: \"maybe\"",
        ),
        ("[records.web]\nrootful = true\n", "unknown field `rootful`"),
    ];
    for (text, wanted) in cases {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.starts_with("/etc/berth/policy.toml: "), "{e}");
        assert!(e.contains(wanted), "{text}: {e}");
    }
}

#[test]
fn lists_are_bounded() {
    let roots: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("\"/srv/{i}\"")).collect();
    let e = parse(&format!("bind_roots = [{}]\n", roots.join(",")))
        .expect_err("too many")
        .to_string();
    assert!(e.contains("more than 1000 entries"), "{e}");
}

#[test]
fn the_shipped_policy_file_is_the_built_in_policy_and_its_examples_parse() {
    let text = include_str!("../../../conf/policy.toml");
    let shipped = parse(text).expect("shipped");
    assert_eq!(
        Policy {
            source: None,
            ..shipped
        },
        Policy::default()
    );
    // Every commented line, uncommented, is a valid policy too.
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .map(|l| format!("{}\n", l.split("  #").next().unwrap_or(l)))
        .collect();
    let all = parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert!(all.profiles["tenant"].confined);
    assert_eq!(all.grant("monitor").cap_add, vec!["SYS_PTRACE"]);
}
