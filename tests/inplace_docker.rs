//! In-place updates against the real engine (Docker 20.10, API 1.41): a
//! memory change keeps the container and its uptime, a change mixed with
//! a recreate-only property recreates, a limit the engine refuses is made
//! by a recreate in the same pass, and an update the engine took before
//! berth could record it (kill -9) converges without a recreate.

mod support;

use serde_json::Value;
use support::docker_ok;
use support::sandbox::Sandbox;

fn id_of(s: &Sandbox, name: &str) -> String {
    s.id(name)
        .unwrap_or_else(|| panic!("no container {}", s.name(name)))
}

fn started_at(s: &Sandbox, name: &str) -> String {
    s.inspect(name)["State"]["StartedAt"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn plan(s: &Sandbox) -> String {
    support::plan_actions(&String::from_utf8_lossy(&s.berth(&["plan"]).stdout))
}

#[test]
fn a_memory_change_is_made_in_place_keeping_id_and_uptime() {
    let s = Sandbox::new(None);
    s.declare(
        "a",
        &["Command", "sleep 3600", "MaxMemory", "64M", "MaxCpu", "0.5"],
    );
    s.apply_ok();
    let (id, started) = (id_of(&s, "a"), started_at(&s, "a"));

    s.setprop("a", "MaxMemory", "128M");
    s.setprop("a", "MaxCpu", "1");
    s.setprop("a", "Restart", "on-failure:3");
    assert_eq!(
        plan(&s),
        format!(
            "update         {}: MaxMemory 64M → 128M; MaxCpu 0.5 → 1; Restart unless-stopped → on-failure:3, in place\n",
            s.name("a")
        )
    );
    let json: Value =
        serde_json::from_slice(&s.berth(&["plan", "--json"]).stdout).expect("plan json");
    assert_eq!(json["actions"][0]["kind"], "update", "{json}");
    let out = s.apply_ok();
    assert!(out.starts_with("update "), "{out}");
    if support::engine_is_podman() {
        // Podman's Docker API (before Podman 5) has no update: the same
        // change, made by a recreate in the same pass, and said so.
        assert!(
            out.contains(
                "update refused by the engine: this engine cannot change a container in place"
            ) && out.contains("; recreated"),
            "{out}"
        );
        assert_ne!(id_of(&s, "a"), id, "recreated");
        let host = &s.inspect("a")["HostConfig"];
        assert_eq!(host["Memory"], 128 << 20);
        assert_eq!(host["NanoCpus"], 1_000_000_000i64);
        assert_eq!(host["RestartPolicy"]["Name"], "on-failure");
        assert_eq!(s.state("a"), "running");
        assert_eq!(plan(&s), "no changes\n");
        return;
    }
    assert_eq!(id_of(&s, "a"), id, "same container");
    assert_eq!(started_at(&s, "a"), started, "not restarted");
    let host = &s.inspect("a")["HostConfig"];
    assert_eq!(host["Memory"], 128 << 20);
    assert_eq!(host["NanoCpus"], 1_000_000_000i64);
    assert_eq!(host["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(host["RestartPolicy"]["MaximumRetryCount"], 3);
    assert_eq!(s.state("a"), "running");

    // The labels still say 64M; state.db says what runs: nothing to do.
    assert_eq!(plan(&s), "no changes\n");
    assert_eq!(s.apply_ok(), "no changes\n");

    // Memory with a Command change: one recreate, not an update.
    s.setprop("a", "MaxMemory", "96M");
    s.setprop("a", "Command", "sleep 3601");
    let p = plan(&s);
    assert!(
        p.starts_with(&format!(
            "recreate       {}: Command changed (not shown); MaxMemory 128M → 96M",
            s.name("a")
        )),
        "{p}"
    );
    s.apply_ok();
    assert_ne!(id_of(&s, "a"), id, "recreated");
    assert_eq!(s.inspect("a")["HostConfig"]["Memory"], 96 << 20);
    assert_eq!(plan(&s), "no changes\n");
}

#[test]
fn an_update_the_engine_took_before_berth_recorded_it_converges_without_a_recreate() {
    if support::skip_on_podman(
        "an_update_the_engine_took_before_berth_recorded_it_converges_without_a_recreate",
        "Podman's Docker API before Podman 5 has no update for the engine to take",
    ) {
        return;
    }
    let s = Sandbox::new(None);
    s.declare("a", &["Command", "sleep 3600", "MaxMemory", "64M"]);
    s.apply_ok();
    let (id, started) = (id_of(&s, "a"), started_at(&s, "a"));
    s.setprop("a", "MaxMemory", "80M");
    // What the pass that was killed did: the engine took the update, and
    // state.db never heard of it.
    docker_ok(&[
        "update",
        "--memory",
        "80m",
        "--memory-swap",
        "160m",
        &s.name("a"),
    ]);
    assert_eq!(
        plan(&s),
        format!(
            "update         {}: MaxMemory 64M → 80M, in place\n",
            s.name("a")
        )
    );
    s.apply_ok();
    assert_eq!(id_of(&s, "a"), id);
    assert_eq!(started_at(&s, "a"), started);
    assert_eq!(s.inspect("a")["HostConfig"]["Memory"], 80 << 20);
    assert_eq!(plan(&s), "no changes\n");
}

/// On cgroup v1 (this host), runc cannot set a limit below memory the
/// container holds in tmpfs (no swap to reclaim it to): the engine
/// refuses with "unable to set memory limit … (current usage …)".
#[test]
fn a_limit_below_what_the_container_uses_is_refused_and_recreated() {
    if support::skip_on_podman(
        "a_limit_below_what_the_container_uses_is_refused_and_recreated",
        "Podman's Docker API before Podman 5 has no update to refuse; every change is a recreate (a_memory_change_is_made_in_place_keeping_id_and_uptime checks that)",
    ) {
        return;
    }
    let s = Sandbox::new(None);
    s.declare(
        "a",
        &[
            "Command",
            "sh -c 'dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 2>/dev/null; touch /tmp/filled; exec sleep 3600'",
            "MaxMemory",
            "128M",
        ],
    );
    s.apply_ok();
    let id = id_of(&s, "a");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while support::docker(&["exec", &s.name("a"), "test", "-e", "/tmp/filled"]).0 != 0 {
        assert!(std::time::Instant::now() < deadline, "the fill never ended");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    s.setprop("a", "MaxMemory", "16M");
    let out = s.apply_ok();
    let prefix = format!(
        "update         {}: MaxMemory 128M → 16M, in place; update refused by the engine: ",
        s.name("a")
    );
    let line = out.lines().next().unwrap_or("");
    assert!(
        line.starts_with(&prefix)
            && line.contains("unable to set memory limit")
            && line.ends_with("; recreated"),
        "{out}"
    );
    assert_ne!(id_of(&s, "a"), id, "recreated");
    assert_eq!(s.inspect("a")["HostConfig"]["Memory"], 16 << 20);
    let history = String::from_utf8_lossy(&s.berth(&["history", &s.name("a")]).stdout).into_owned();
    assert!(history.contains("update"), "{history}");
}
