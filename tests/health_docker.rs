//! Health checks on the real engine: the record's `HealthCmd` and the
//! image's own HEALTHCHECK, and start order on health (a record linked to
//! one with a check starts only once that one is healthy), for a one-shot
//! `berth apply` (which waits) and for berthd (which a `health_status`
//! event brings back).

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use support::sandbox::{wait_for, Sandbox};
use support::{docker, docker_ok};

fn started_at(s: &Sandbox, name: &str) -> DateTime<Utc> {
    let v = s.inspect(name);
    let text = v["State"]["StartedAt"].as_str().unwrap_or("");
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{name} StartedAt {text:?}: {e}"))
        .with_timezone(&Utc)
}

/// The container's health verdict as the engine inspects it.
fn health(s: &Sandbox, name: &str) -> String {
    // No check: Docker has no `Health`, Podman an empty status.
    s.inspect(name)["State"]["Health"]["Status"]
        .as_str()
        .filter(|status| !status.is_empty())
        .unwrap_or("none")
        .to_string()
}

/// When the container's first passing probe ended.
fn first_healthy_at(s: &Sandbox, name: &str) -> DateTime<Utc> {
    let v = s.inspect(name);
    let log = v["State"]["Health"]["Log"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let end = log
        .iter()
        .find(|p| p["ExitCode"] == 0)
        .and_then(|p| p["End"].as_str())
        .unwrap_or_else(|| panic!("{name} never passed a probe: {log:?}"));
    DateTime::parse_from_rfc3339(end)
        .expect("probe end time")
        .with_timezone(&Utc)
}

#[test]
fn a_one_shot_apply_starts_the_dependent_only_once_its_health_cmd_passes() {
    let s = Sandbox::new(None);
    let _checks = support::HealthTimer::start(&s.prefix);
    let db = s.name("db");
    s.declare(
        "db",
        &[
            "Command",
            "sh -c 'sleep 3; touch /tmp/ready; exec sleep 3600'",
            "HealthCmd",
            "test -f /tmp/ready",
            "HealthInterval",
            "1s",
            "HealthTimeout",
            "1s",
            "HealthRetries",
            "20",
        ],
    );
    s.declare("app", &["Command", "sleep 3600", "Interlinked", &db]);
    let began = Instant::now();
    s.apply_ok();
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "apply waited for db's check"
    );
    assert_eq!(s.state("app"), "running");
    assert_eq!(health(&s, "db"), "healthy");
    assert!(
        started_at(&s, "app") >= first_healthy_at(&s, "db"),
        "app started at {} before db was healthy at {}",
        started_at(&s, "app"),
        first_healthy_at(&s, "db")
    );
    let check = &s.inspect("db")["Config"]["Healthcheck"];
    assert_eq!(check["Test"][0], "CMD-SHELL");
    assert_eq!(check["Interval"], 1_000_000_000i64);
    assert_eq!(check["Retries"], 20);
    // status shows it; a record without a check shows none.
    let (_, out, _) = s.run(&["status"]);
    let line = |n: &str| {
        out.lines()
            .find(|l| l.starts_with(&s.name(n)))
            .unwrap_or_else(|| panic!("no {n} in {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("db")[3], "healthy", "{out}");
    assert_eq!(line("app")[3], "-", "{out}");
    // Nothing changes on the next pass: the check is part of the spec hash.
    assert!(s.apply_ok().contains("no changes"));
}

#[test]
fn an_unhealthy_dependency_leaves_its_dependents_not_started_and_named() {
    let s = Sandbox::new(None);
    let _checks = support::HealthTimer::start(&s.prefix);
    let db = s.name("db");
    s.declare(
        "db",
        &[
            "Command",
            "sleep 3600",
            "HealthCmd",
            "false",
            "HealthInterval",
            "1s",
            "HealthTimeout",
            "1s",
            "HealthRetries",
            "1",
        ],
    );
    s.declare("app", &["Command", "sleep 3600", "Interlinked", &db]);
    let (code, out, err) = s.apply();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "FAILED create {}: not started: {db}, which it links to, is unhealthy",
            s.name("app")
        )),
        "{err}"
    );
    assert_eq!(s.state("app"), "missing");
    // The next plan holds it, with the reason, instead of failing again.
    let (code, out, err) = s.apply();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!(
            "held {}: waiting for {db} to be healthy (unhealthy)",
            s.name("app")
        )),
        "{err}"
    );
}

#[test]
fn berthd_starts_the_dependent_when_the_health_status_event_comes() {
    let s = Sandbox::new(None);
    let _checks = support::HealthTimer::start(&s.prefix);
    let db = s.name("db");
    s.declare(
        "db",
        &[
            "Command",
            "sleep 3600",
            "HealthCmd",
            "test -f /tmp/ready",
            "HealthInterval",
            "1s",
            "HealthRetries",
            "100",
        ],
    );
    s.declare("app", &["Command", "sleep 3600", "Interlinked", &db]);
    let d = s.start_daemon();
    wait_for("db running", Some(&d), || s.state("db") == "running");
    // db stays starting (the file is not there): app is not made, and the
    // daemon's loop is not held up by the wait (its API answers).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(health(&s, "db"), "starting");
    assert_eq!(s.state("app"), "missing", "{}", d.log());
    let (code, out, err) = s.run(&["status", &s.name("app")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("waiting for {db} to be healthy (starting)")),
        "{out}"
    );
    // resync_seconds is an hour: only the health_status event brings the pass.
    docker_ok(&["exec", &db, "touch", "/tmp/ready"]);
    wait_for("app running", Some(&d), || s.state("app") == "running");
    assert!(started_at(&s, "app") >= first_healthy_at(&s, "db"));
    let (status, _) = d.terminate();
    assert!(status.success());
}

#[test]
fn the_images_own_healthcheck_is_used_when_the_record_sets_none() {
    let s = Sandbox::new(None);
    let _checks = support::HealthTimer::start(&s.prefix);
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = format!("berth-test/{}:1", s.name("hc"));
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nHEALTHCHECK --interval=1s --timeout=1s --retries=30 CMD test -f /tmp/ready\nLABEL {}={}\n",
            s.image,
            support::TEST_LABEL,
            s.prefix.as_str()
        ),
    )
    .expect("Dockerfile");
    let dir_text = dir.path().display().to_string();
    let (code, _, err) = docker(&["build", "-q", "-t", &reference, &dir_text]);
    assert_eq!(code, 0, "docker build: {err}");
    s.prefix.tag(&reference, &reference);
    let db = s.name("db");
    s.db(&[
        "set",
        &db,
        "service",
        "Image",
        &reference,
        "Command",
        "sh -c 'sleep 2; touch /tmp/ready; exec sleep 3600'",
    ]);
    s.declare("app", &["Command", "sleep 3600", "Interlinked", &db]);
    // Another record on the same image with the check switched off.
    s.db(&[
        "set",
        &s.name("quiet"),
        "service",
        "Image",
        &reference,
        "Command",
        "sleep 3600",
        "HealthCmd",
        "none",
    ]);
    s.apply_ok();
    assert_eq!(s.state("app"), "running");
    assert_eq!(health(&s, "db"), "healthy");
    assert!(
        s.inspect("db")["Config"]["Healthcheck"]["Test"][0] == "CMD-SHELL",
        "the image's own check, inherited"
    );
    assert!(started_at(&s, "app") >= first_healthy_at(&s, "db"));
    assert_eq!(health(&s, "quiet"), "none");
    assert_eq!(
        s.inspect("quiet")["Config"]["Healthcheck"]["Test"][0],
        "NONE"
    );
    let (_, out, _) = s.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("json");
    let row = |n: String| {
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == n.as_str()).cloned())
            .unwrap_or_default()
    };
    assert_eq!(row(db.clone())["health"], "healthy");
    assert!(row(s.name("quiet")).get("health").is_none());
}
