//! Confinement on the real engine, seen from inside the container: what a
//! `confined` record (and, for no-new-privileges, every record) gets.
//!
//! Each property is checked twice: on a container `DockerEngine` makes from
//! a `ContainerConfig` whose `security` is set by hand (the engine's part),
//! and on one `berth apply` makes from a record with `Profile confined`
//! (the whole way: the record, `policy::enforce`, the engine).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth::engine::{
    ContainerConfig, DockerEngine, Engine, NetworkAttachment, LABEL_MANAGED, LABEL_RECORD,
};
use berth::model::Security;
use support::sandbox::Sandbox;
use support::{connect_engine, docker, docker_inspect, docker_ok, Prefix, TEST_LABEL};

const MIB: i64 = 1 << 20;
/// What the confined records and configs here ask for.
const MEMORY: i64 = 32 * MIB;
const HALF_A_CORE: i64 = 500_000_000;
/// The built-in confined profile's pids limit (the policy's default).
const CONFINED_PIDS: i64 = 128;

// ---- looking from inside -------------------------------------------------

/// `docker exec NAME sh -c SCRIPT` → (exit code, stdout + stderr).
fn exec(name: &str, script: &str) -> (i32, String) {
    let (code, stdout, stderr) = docker(&["exec", name, "sh", "-c", script]);
    (code, format!("{stdout}{stderr}"))
}

fn exec_ok(name: &str, script: &str) -> String {
    let (code, out) = exec(name, script);
    assert_eq!(code, 0, "in {name}: {script}: {out}");
    out.trim().to_string()
}

/// A field of the container's main process's `/proc/1/status`.
fn status_field(name: &str, field: &str) -> String {
    let status = exec_ok(name, "cat /proc/1/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/1/status of {name}:\n{status}"))
        .trim()
        .to_string()
}

/// Everything the confined profile promises, but the limits: only `lo`,
/// a root filesystem it cannot write and a `/tmp` it can, user `uid`, no
/// capability at all, no new privileges.
fn assert_confined_inside(name: &str, uid: &str) {
    assert_eq!(exec_ok(name, "ls /sys/class/net"), "lo", "only loopback");
    // Mounted read-only, not merely owned by root (which stops a non-root
    // user as well).
    let root = exec_ok(name, "awk '$2 == \"/\" { print $4 }' /proc/mounts");
    assert!(root.starts_with("ro,"), "root mounted {root}");
    let (code, out) = exec(name, "touch /x");
    assert_ne!(code, 0, "the root filesystem is writable: {out}");
    let tmp = exec_ok(name, "awk '$2 == \"/tmp\" { print $1, $4 }' /proc/mounts");
    assert!(tmp.starts_with("tmpfs rw,"), "/tmp mounted {tmp:?}");
    for option in ["nosuid", "nodev", "noexec"] {
        assert!(tmp.split(',').any(|o| o == option), "/tmp mounted {tmp}");
    }
    exec_ok(name, "touch /tmp/x && rm /tmp/x");
    assert_eq!(exec_ok(name, "id -u"), uid);
    assert_eq!(
        status_field(name, "Uid").split_whitespace().next(),
        Some(uid)
    );
    for caps in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(name, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(status_field(name, "NoNewPrivs"), "1");
}

/// A process allocating far past the memory limit (8 times it: past a
/// swap of twice the limit too) is killed by the OOM killer, inside the
/// container's cgroup; the container's main process lives on.
fn assert_oom_kills_past_the_limit(name: &str, neighbour: &str) {
    let (code, out) = exec(name, "head -c 256m /dev/zero | tail >/dev/null");
    assert_eq!(code, 137, "the allocation was not killed: {out}");
    let kills = exec_ok(
        name,
        "cat /sys/fs/cgroup/memory.events 2>/dev/null || cat /sys/fs/cgroup/memory/memory.oom_control",
    );
    let oom_kills: u64 = kills
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no oom_kill count in {name}'s cgroup:\n{kills}"));
    assert!(oom_kills > 0, "killed, but not by the OOM killer:\n{kills}");
    for survivor in [name, neighbour] {
        assert_eq!(state_of(survivor), "running", "{survivor}");
        exec_ok(survivor, "true");
    }
}

/// Starts many more processes than `limit` in the container: no more than
/// `limit` exist at once, the container keeps running, and a restart
/// clears them (nothing inside reaps the orphans: PID 1 is `sleep`).
fn assert_fork_bomb_stops_at(name: &str, limit: i64) {
    assert_eq!(
        docker_inspect(name)["HostConfig"]["PidsLimit"].as_i64(),
        Some(limit)
    );
    let tries = limit * 3;
    docker_ok(&[
        "exec",
        "-d",
        name,
        "sh",
        "-c",
        &format!("i=0; while [ $i -lt {tries} ]; do sleep 120 & i=$((i+1)); done; wait"),
    ]);
    // Counted from the host: at the limit, nothing new starts inside
    // (not with `docker top`, which Podman runs inside the container).
    let count = || pids_in_cgroup(name);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = count();
    while seen < limit - 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        seen = count();
    }
    assert!(
        seen >= limit - 2,
        "the bomb never reached the limit: {seen}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let seen = count();
    assert!(seen <= limit, "{seen} processes, limit {limit}");
    assert_eq!(state_of(name), "running");
    docker_ok(&["info", "--format", "{{.ServerVersion}}"]);
    docker_ok(&["restart", "-t", "1", name]);
    exec_ok(name, "true");
    assert!(count() < 4, "the restart cleared the bomb");
}

/// How many processes the container's pids cgroup holds, read on the
/// host (cgroup v1's `pids` hierarchy, or v2's unified one).
fn pids_in_cgroup(name: &str) -> i64 {
    let pid = docker_inspect(name)["State"]["Pid"].as_i64().unwrap_or(0);
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("{name}'s cgroups (pid {pid}): {e}"));
    let file = cgroups
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            if controllers.split(',').any(|c| c == "pids") {
                Some(format!("/sys/fs/cgroup/pids{path}/pids.current"))
            } else if controllers.is_empty() && cgroups.lines().count() == 1 {
                Some(format!("/sys/fs/cgroup{path}/pids.current"))
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no pids cgroup for {name}:\n{cgroups}"));
    let count = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    count
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{file}: {count:?}: {e}"))
}

/// The CPU quota the container's cgroup has, in nanocores (cgroup v2's
/// `cpu.max`, or v1's `cpu.cfs_quota_us` over `cpu.cfs_period_us`).
fn assert_cpu_quota(name: &str, nano_cpus: i64) {
    assert_eq!(
        docker_inspect(name)["HostConfig"]["NanoCpus"].as_i64(),
        Some(nano_cpus)
    );
    let raw = exec_ok(
        name,
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || \
         echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us)",
    );
    let parts: Vec<i64> = raw
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [quota, period] = parts[..] else {
        panic!("no CPU quota in {name}'s cgroup: {raw:?}");
    };
    assert_eq!(quota * 1_000_000_000 / period, nano_cpus, "{raw}");
}

fn state_of(name: &str) -> String {
    docker_inspect(name)["State"]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The busybox test image `base` with `USER user`, tagged under the
/// prefix (removed with it).
fn image_with_user(p: &Prefix, base: &str, user: &str) -> String {
    let reference = format!(
        "berth-test/busybox:{}-u{}",
        p.as_str(),
        user.replace(':', "-")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {base}\nUSER {user}\n"),
    )
    .expect("Dockerfile");
    let label = format!("{TEST_LABEL}={}", p.as_str());
    let context = dir.path().to_string_lossy().into_owned();
    docker_ok(&["build", "-q", "--label", &label, "-t", &reference, &context]);
    let id = docker_ok(&["image", "inspect", "--format", "{{.Id}}", &reference]);
    p.tag(id.trim(), &reference);
    reference
}

// ---- the engine's part: DockerEngine with `security` set by hand ---------

fn confined_security() -> Security {
    Security {
        profile: Some("confined".to_string()),
        read_only_root: true,
        tmp_size: Some(16 * MIB),
        drop_all_caps: true,
        cap_add: vec![],
        non_root: true,
        pids_limit: Some(64),
        ..Default::default()
    }
}

/// A confined `sleep 3600`, as `policy::enforce` makes one.
fn confined(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.to_string(),
        image: image.to_string(),
        command: Some(vec!["sleep".to_string(), "3600".to_string()]),
        env: vec![],
        ports: vec![],
        network: NetworkAttachment::None,
        memory: Some(MEMORY),
        nano_cpus: Some(HALF_A_CORE),
        restart: "no".to_string(),
        restart_max_retries: None,
        health: None,
        security: confined_security(),
        mounts: vec![],
    }
}

async fn run(engine: &DockerEngine, config: &ContainerConfig) -> String {
    let labels = BTreeMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_RECORD.to_string(), config.name.clone()),
    ]);
    let id = engine
        .create_container(&config.name, config, &labels)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", config.name));
    engine
        .start_container(&id)
        .await
        .unwrap_or_else(|e| panic!("start {}: {e}", config.name));
    id
}

#[tokio::test]
async fn engine_a_confined_container_has_no_network_no_writes_no_caps_and_no_root() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let name = p.name("conf");
    run(&engine, &confined(&name, &p.busybox())).await;
    assert_confined_inside(&name, "65534");
    assert_eq!(exec_ok(&name, "id -g"), "65534");
    assert_cpu_quota(&name, HALF_A_CORE);
}

#[tokio::test]
async fn engine_a_non_root_image_user_is_kept_and_a_root_one_is_not() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let base = p.busybox();
    let with_user = image_with_user(&p, &base, "1000");
    let name = p.name("user");
    run(&engine, &confined(&name, &with_user)).await;
    assert_confined_inside(&name, "1000");
    // An image that says root outright is no way around it.
    let root = p.name("root");
    let root_image = image_with_user(&p, &base, "0:0");
    run(&engine, &confined(&root, &root_image)).await;
    assert_eq!(exec_ok(&root, "id -u"), "65534");
}

#[tokio::test]
async fn engine_a_non_root_container_of_a_missing_image_is_an_error_and_nothing_is_made() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let name = p.name("gone");
    let image = format!("berth-test/busybox:{}-missing", p.as_str());
    let err = engine
        .create_container(&name, &confined(&name, &image), &BTreeMap::new())
        .await
        .expect_err("no image, no create");
    assert!(err.to_string().contains(&image), "{err}");
    assert_eq!(docker(&["inspect", &name]).0, 1, "nothing made");
}

#[tokio::test]
async fn engine_every_container_gets_no_new_privileges_and_a_plain_one_stays_as_it_was() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let name = p.name("plain");
    let mut plain = confined(&name, &p.busybox());
    plain.security = Security::default();
    plain.memory = None;
    plain.nano_cpus = None;
    run(&engine, &plain).await;
    assert_eq!(status_field(&name, "NoNewPrivs"), "1");
    assert_eq!(exec_ok(&name, "id -u"), "0", "the image's user");
    assert_ne!(status_field(&name, "CapEff"), "0000000000000000");
    exec_ok(&name, "touch /x");
    let host = &docker_inspect(&name)["HostConfig"];
    assert_eq!(host["PidsLimit"].as_i64().unwrap_or(0), 0, "{host}");
    assert_eq!(host["ReadonlyRootfs"].as_bool(), Some(false));
}

#[tokio::test]
async fn engine_granted_capabilities_are_the_only_ones() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let name = p.name("caps");
    let mut config = confined(&name, &p.busybox());
    config.security.cap_add = vec!["KILL".to_string()];
    run(&engine, &config).await;
    // CAP_KILL is bit 5, and no other. Docker leaves a non-root user
    // only the bounding set; Podman also makes a granted capability the
    // non-root user's (ambient, so effective).
    assert_eq!(status_field(&name, "CapBnd"), "0000000000000020");
    let effective = if support::engine_is_podman() {
        "0000000000000020"
    } else {
        "0000000000000000"
    };
    assert_eq!(status_field(&name, "CapEff"), effective);
}

#[tokio::test]
async fn engine_granted_host_namespaces_are_the_hosts() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let host_ns = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_else(|e| panic!("/proc/self/ns/{ns}: {e}"))
    };
    let ns_inside = |name: &str, ns: &str| exec_ok(name, &format!("readlink /proc/self/ns/{ns}"));
    let image = p.busybox();
    let (shared, own) = (p.name("shared"), p.name("own"));
    let mut config = confined(&shared, &image);
    config.security = Security {
        host_pid: true,
        host_ipc: true,
        ..Default::default()
    };
    run(&engine, &config).await;
    let mut config = confined(&own, &image);
    config.security = Security::default();
    run(&engine, &config).await;
    for ns in ["pid", "ipc"] {
        assert_eq!(ns_inside(&shared, ns), host_ns(ns), "{ns}");
        assert_ne!(ns_inside(&own, ns), host_ns(ns), "{ns}");
    }
}

#[tokio::test]
async fn engine_past_its_memory_a_confined_process_is_oom_killed_and_its_neighbour_lives() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let image = p.busybox();
    let (name, neighbour) = (p.name("hog"), p.name("next"));
    run(&engine, &confined(&name, &image)).await;
    run(&engine, &confined(&neighbour, &image)).await;
    assert_oom_kills_past_the_limit(&name, &neighbour);
}

#[tokio::test]
async fn engine_a_fork_bomb_stops_at_the_pids_limit() {
    let p = Prefix::new();
    let engine = connect_engine().await;
    let name = p.name("bomb");
    run(&engine, &confined(&name, &p.busybox())).await;
    assert_fork_bomb_stops_at(&name, 64);
}

// ---- the whole way: a `Profile confined` record and `berth apply` --------

/// A sandbox with a confined record `key` (32 MiB, half a core) applied.
fn apply_confined(s: &Sandbox, key: &str, extra: &[&str]) -> String {
    let mut props = vec![
        "Profile",
        "confined",
        "MaxMemory",
        "32M",
        "MaxCpu",
        "0.5",
        "Command",
        "sleep 3600",
    ];
    props.extend_from_slice(extra);
    s.declare(key, &props);
    s.apply_ok();
    let name = s.name(key);
    assert_eq!(state_of(&name), "running");
    // What the engine was asked for is what the spec says: nothing to redo.
    let (_, plan, _) = s.run(&["plan"]);
    assert!(plan.contains("no changes"), "{plan}");
    name
}

#[test]
fn apply_a_confined_record_has_no_network_no_writes_no_caps_and_no_root() {
    let s = Sandbox::new(None);
    let name = apply_confined(&s, "conf", &[]);
    assert_confined_inside(&name, "65534");
    assert_cpu_quota(&name, HALF_A_CORE);
    assert_eq!(
        docker_inspect(&name)["HostConfig"]["Memory"].as_i64(),
        Some(MEMORY)
    );
}

#[test]
fn apply_a_confined_record_keeps_its_images_non_root_user() {
    let s = Sandbox::new(None);
    let image = image_with_user(&s.prefix, &s.image, "1000");
    let name = apply_confined(&s, "user", &["Image", &image]);
    assert_confined_inside(&name, "1000");
}

#[test]
fn apply_a_default_record_gets_no_new_privileges() {
    let s = Sandbox::new(None);
    s.declare("plain", &["Command", "sleep 3600"]);
    s.apply_ok();
    let name = s.name("plain");
    assert_eq!(status_field(&name, "NoNewPrivs"), "1");
    assert_eq!(exec_ok(&name, "id -u"), "0");
}

#[test]
fn apply_past_its_memory_a_confined_process_is_oom_killed_and_its_neighbour_lives() {
    let s = Sandbox::new(None);
    let name = apply_confined(&s, "hog", &[]);
    let neighbour = apply_confined(&s, "next", &[]);
    assert_oom_kills_past_the_limit(&name, &neighbour);
}

#[test]
fn apply_a_fork_bomb_stops_at_the_confined_pids_limit() {
    let s = Sandbox::new(None);
    let name = apply_confined(&s, "bomb", &[]);
    assert_fork_bomb_stops_at(&name, CONFINED_PIDS);
}
