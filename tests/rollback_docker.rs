//! Updates that roll back by themselves, on the real engine with berthd
//! running: a record serving HTTP is changed to an image that exits at
//! once, then to one whose HEALTHCHECK never passes; each time the old
//! container serves again (asked over HTTP, not only by inspect), the
//! record says `rolled back`, the journal has it, and the bad image is not
//! tried again. The kept container waits under restart `no` and gets its
//! own policy back. A good image then rolls out and the old container goes.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::sandbox::{wait_for, Sandbox};
use support::{docker, docker_inspect_opt, Prefix, TestImages, TEST_LABEL};

/// Builds `berth-test/<prefix>-app:<tag>` from the busybox test image
/// with `lines` after its FROM, through the engine (the classic builder:
/// BuildKit would ask a registry about the local base). Removed with the
/// prefix.
fn build(prefix: &Prefix, tag: &str, lines: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let dockerfile = format!("FROM {}\n{lines}", TestImages::busybox().reference);
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
    let reference = format!("berth-test/{}-app:{tag}", prefix.as_str());
    let label = format!("{TEST_LABEL}={}", prefix.as_str());
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "--label", &label, "-t", &reference])
        .arg(dir.path())
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reference
}

/// The body `GET /` on 127.0.0.1:`port` answers, or None.
fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.split(' ')
        .nth(1)
        .is_some_and(|code| code == "200")
        .then(|| body.trim().to_string())
}

const SERVE: &str = "CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n";

fn page(version: &str) -> String {
    format!("RUN mkdir -p /www && echo {version} > /www/index.html\n")
}

#[test]
fn a_bad_update_is_rolled_back_and_not_retried_and_a_good_one_rolls_out() {
    let s = Sandbox::new(None);
    let _checks = support::HealthTimer::start(&s.prefix);
    // A short probation keeps the test short; the rule is the same.
    let mut config = std::fs::read_to_string(s.config()).expect("config");
    config.push_str("rollout_probation_seconds = 3\n");
    std::fs::write(s.config(), config).expect("config");

    let v1 = build(&s.prefix, "v1", &format!("{}{SERVE}", page("v1")));
    let v2 = build(&s.prefix, "v2", "CMD [\"sh\", \"-c\", \"exit 3\"]\n");
    let v3 = build(
        &s.prefix,
        "v3",
        &format!(
            "{}HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD false\n{SERVE}",
            page("v3")
        ),
    );
    let v4 = build(
        &s.prefix,
        "v4",
        &format!(
            "{}HEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD wget -q -O /dev/null http://127.0.0.1/\n{SERVE}",
            page("v4")
        ),
    );
    let port = support::free_tcp_port();
    let app = s.name("app");
    let kept = format!("{app}_berth-old");
    let mapping = format!("{port}:80");
    s.db(&[
        "set",
        &app,
        "service",
        "Image",
        &v1,
        "TCPPort",
        "80",
        "PortMapping",
        "custom",
        "PortMappingPorts",
        &mapping,
        "Restart",
        "always",
    ]);
    let d = s.start_daemon();
    wait_for("v1 serving", Some(&d), || {
        http_get(port).as_deref() == Some("v1")
    });
    let v1_container = s.id("app").expect("app");

    let rolled_back = |reason: &str| {
        let (_, out, _) = s.run(&["status", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        rows.iter().any(|r| {
            r["name"] == app.as_str()
                && r["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("rolled back: ") && e.contains(reason))
        })
    };
    let history = || s.run(&["history", &app]).1;
    // The restart policy the engine holds for a container, if it exists.
    let policy = |name: &str| {
        let (code, out, _) = docker(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", name]);
        (code == 0).then(|| out.trim().to_string())
    };
    let rollbacks = || {
        history()
            .lines()
            .filter(|l| l.contains(" rollback ") && l.contains(" ok "))
            .count()
    };

    // v2 exits at once: rolled back to the v1 container, which serves.
    let clock = Instant::now();
    s.setprop("app", "Image", &v2);
    wait_for("v2 rolled back", Some(&d), || {
        rolled_back("the new container") && rollbacks() == 1
    });
    wait_for("v1 serving again", Some(&d), || {
        http_get(port).as_deref() == Some("v1")
    });
    eprintln!("v2 (exits) to v1 serving again: {:?}", clock.elapsed());
    assert_eq!(
        s.id("app"),
        Some(v1_container.clone()),
        "the same container"
    );
    assert!(docker_inspect_opt(&kept).is_none(), "nothing kept after");
    assert_eq!(
        policy(&app).as_deref(),
        Some("always"),
        "its own policy given back"
    );
    let told = history();
    assert!(
        told.contains("rolled back: the new container exited with code 3")
            || told.contains("rolled back: the new container restarts in a loop")
            || told.contains("rolled back: the new container restarted during its probation"),
        "{told}"
    );

    // Not tried again: a pass (through berthd) leaves it, and says why.
    let (code, out, err) = s.run(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("rolled back: "), "{out}{err}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(s.id("app"), Some(v1_container.clone()));
    assert_eq!(rollbacks(), 1, "{}", history());
    let (_, plan, plan_err) = s.run(&["plan"]);
    assert!(
        format!("{plan}{plan_err}").contains("rolled back: "),
        "{plan}{plan_err}"
    );

    // v3 serves but its health check never passes: rolled back too.
    let clock = Instant::now();
    s.setprop("app", "Image", &v3);
    // While kept beside v3, the v1 container is under `no`: a dockerd
    // restart would not start it beside v3. (Between the renames, and while
    // a rollback gives its policy back, no other container has the name.)
    let mut kept_policies = std::collections::BTreeSet::new();
    wait_for("v3 rolled back", Some(&d), || {
        let beside = s.id("app").filter(|id| *id != v1_container);
        if beside.is_some() {
            let seen = policy(&kept);
            if s.id("app") == beside {
                kept_policies.extend(seen);
            }
        }
        rolled_back("unhealthy") && rollbacks() == 2
    });
    // Podman before 5 cannot change a policy in place (and restarts no
    // container when its service restarts): the kept one keeps its own.
    let kept_policy = if support::engine_is_podman() {
        "always"
    } else {
        "no"
    };
    assert_eq!(
        kept_policies.into_iter().collect::<Vec<_>>(),
        [kept_policy],
        "the kept container's policy while kept"
    );
    wait_for("v1 serving after v3", Some(&d), || {
        http_get(port).as_deref() == Some("v1")
    });
    eprintln!(
        "v3 (never healthy) to v1 serving again: {:?}",
        clock.elapsed()
    );
    assert_eq!(s.id("app"), Some(v1_container.clone()));
    assert_eq!(policy(&app).as_deref(), Some("always"));

    // v4 is healthy: it stays, and the v1 container goes.
    let clock = Instant::now();
    s.setprop("app", "Image", &v4);
    wait_for("v4 rolled out", Some(&d), || {
        http_get(port).as_deref() == Some("v4")
            && docker_inspect_opt(&kept).is_none()
            && history().contains("rollout-done")
    });
    eprintln!(
        "v4 (healthy) serving, old container removed: {:?}",
        clock.elapsed()
    );
    assert!(
        docker_inspect_opt(&v1_container).is_none(),
        "old one removed"
    );
    assert_eq!(rollbacks(), 2);
    let names = s.container_names();
    assert_eq!(names, std::slice::from_ref(&app), "{names:?}");
    assert!(
        !rolled_back(""),
        "the rollback is forgotten once the record changed"
    );
    let (status, _) = d.terminate();
    assert!(status.success());
    docker(&["rm", "-f", &app]);
}
