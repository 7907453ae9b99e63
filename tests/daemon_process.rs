//! berthd as a real process against the real engine: converge at start,
//! react to a db edit, to `docker rm -f`, to SIGHUP, survive kill -9, stop
//! on SIGTERM, ride out the engine going away.

mod support;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::sandbox::{wait_for, Sandbox};
use support::{docker, docker_inspect_opt};

#[test]
fn converges_at_start_and_reacts_to_edits_removals_and_sighup() {
    let s = Sandbox::new(None);
    s.declare("web", &["Command", "sleep 3600", "MaxMemory", "64M"]);
    s.declare("db", &["Command", "sleep 3600"]);
    let d = s.start_daemon();
    wait_for("both containers running", Some(&d), || {
        s.memory("web") == Some(64 << 20) && s.memory("db").is_some()
    });

    // An edit through the db command: the container is updated in place.
    s.setprop("web", "MaxMemory", "96M");
    wait_for("web updated to 96M", Some(&d), || {
        s.memory("web") == Some(96 << 20)
    });

    // Removed behind berth's back: the engine's event brings it back.
    let old = s.id("db");
    docker(&["rm", "-f", &s.name("db")]);
    wait_for("db recreated", Some(&d), || {
        s.id("db").is_some() && s.id("db") != old && s.memory("db").is_some()
    });

    // SIGHUP: a new config (another db folder) is read and applied.
    let db2 = s.dir.path().join("db2");
    std::fs::create_dir(&db2).expect("db2");
    std::fs::copy(
        s.dir.path().join("db/docker_containers"),
        db2.join("docker_containers"),
    )
    .expect("copy");
    s.write_config("db2", None);
    s.declare("extra", &["Command", "sleep 3600"]);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("extra created after SIGHUP", Some(&d), || {
        s.memory("extra").is_some()
    });

    // With the daemon running, the CLI goes through its API.
    let apply = s.berth(&["apply"]);
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&apply.stdout), "no changes\n");
    let status = s.berth(&["status", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(rows.len(), 3, "{rows:?}");
    let mode = std::fs::metadata(s.dir.path().join("state/api.sock")).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.ok(), Some(0o660));

    // The journal tells the story.
    let history =
        String::from_utf8_lossy(&s.berth(&["history", &s.name("web")]).stdout).into_owned();
    assert!(history.contains("MaxMemory 64M → 96M"), "{history}");

    // SIGTERM: clean exit, containers keep running.
    let (status, _took) = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        s.memory("web").is_some() && s.memory("extra").is_some(),
        "stopping berthd never stops a container"
    );
    assert!(
        !s.dir.path().join("state/api.sock").exists(),
        "socket removed"
    );
}

#[test]
fn a_burst_of_edits_costs_a_handful_of_passes() {
    let s = Sandbox::new(None);
    s.declare("a", &["Command", "sleep 3600", "MaxMemory", "64M"]);
    let d = s.start_daemon();
    wait_for("a running", Some(&d), || s.memory("a").is_some());
    let before = s.passes();
    for i in 0..100 {
        s.setprop("a", "Note", &format!("edit {i}"));
    }
    s.setprop("a", "MaxMemory", "80M");
    wait_for("the last edit applied", Some(&d), || {
        s.memory("a") == Some(80 << 20)
    });
    std::thread::sleep(Duration::from_millis(500));
    let passes = s.passes() - before;
    assert!((1..=20).contains(&passes), "{passes} passes for 101 edits");
}

#[test]
fn kill_9_at_any_point_then_restart_converges_without_duplicates() {
    let s = Sandbox::new(None);
    for n in ["a", "b", "c", "d"] {
        s.declare(
            n,
            &[
                "Command",
                "sleep 3600",
                "MaxMemory",
                "32M",
                "MountPath",
                "/data",
            ],
        );
    }
    let mut memory = 32;
    for delay_ms in [0u64, 30, 150, 600, 1500] {
        let d = s.start_daemon();
        memory += 8;
        for n in ["a", "b", "c", "d"] {
            s.setprop(n, "MaxMemory", &format!("{memory}M"));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        d.kill9();
    }
    let d = s.start_daemon();
    let expected: Vec<String> = ["a", "b", "c", "d"].iter().map(|n| s.name(n)).collect();
    // A container a recreate kept for a rollback goes once its
    // replacement has run for the probation period.
    wait_for("all four converged", Some(&d), || {
        ["a", "b", "c", "d"]
            .iter()
            .all(|n| s.memory(n) == Some(memory << 20))
            && s.container_names() == expected
    });
    assert_eq!(
        s.container_names(),
        expected,
        "exactly one container per record, no leftovers"
    );
    let history = s.berth(&["history", "--json", "--limit", "1000"]);
    assert!(history.status.success(), "journal readable");
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout).expect("json");
    assert!(!entries.is_empty());
    for n in ["a", "b", "c", "d"] {
        assert!(
            docker_inspect_opt(&format!("{}_data", s.name(n))).is_some(),
            "volume of {n} kept"
        );
    }
    drop(d);
}

/// A unix-socket forwarder in front of the real engine that can be cut and
/// restored, to play an engine that stops and comes back.
struct EngineProxy {
    path: PathBuf,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl EngineProxy {
    fn start(path: &Path) -> EngineProxy {
        let mut p = EngineProxy {
            path: path.to_path_buf(),
            up: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            accept: None,
        };
        p.restore();
        p
    }

    fn restore(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        self.up.store(true, Ordering::SeqCst);
        let (up, conns) = (self.up.clone(), self.conns.clone());
        let host = support::docker_host();
        let socket = host
            .strip_prefix("unix://")
            .unwrap_or("/var/run/docker.sock")
            .to_string();
        self.accept = Some(std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(engine) = UnixStream::connect(&socket) else {
                            continue;
                        };
                        if let (Ok(c2), Ok(e2)) = (client.try_clone(), engine.try_clone()) {
                            if let Ok(mut all) = conns.lock() {
                                all.push(c2);
                                all.push(e2);
                            }
                        }
                        pipe(client, engine);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }

    /// The engine "stops": no new connections, open ones cut.
    fn cut(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        if let Ok(mut all) = self.conns.lock() {
            for c in all.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn pipe(a: UnixStream, b: UnixStream) {
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    let copy = |mut from: UnixStream, mut to: UnixStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    copy(a, b2);
    copy(b, a2);
}

#[test]
fn engine_loss_is_logged_once_and_the_daemon_converges_when_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("engine.sock");
    let mut proxy = EngineProxy::start(&sock);
    let s = Sandbox::new(Some(&format!("unix://{}", sock.display())));
    s.declare("a", &["Command", "sleep 3600"]);
    let d = s.start_daemon();
    wait_for("a running", Some(&d), || s.memory("a").is_some());

    proxy.cut();
    // While the engine is away: an edit (the pass fails, is retried with backoff).
    s.declare("b", &["Command", "sleep 3600"]);
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        s.memory("b").is_none(),
        "nothing can be created without the engine"
    );
    proxy.restore();
    wait_for("b created once the engine is back", Some(&d), || {
        s.memory("b").is_some()
    });
    let log = d.log();
    assert_eq!(
        log.matches("engine unreachable").count(),
        1,
        "logged once:\n{log}"
    );
    assert!(log.contains("engine reachable again"), "{log}");
    let (status, _) = d.terminate();
    assert!(status.success());
}

#[test]
fn the_tcp_api_is_off_unless_configured_and_then_needs_the_token() {
    let s = Sandbox::new(None);
    s.declare("a", &["Command", "sleep 3600"]);
    let port = support::free_tcp_port();
    let config = s.config();
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!("api_listen = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&config, text).expect("config");
    let creds = s.dir.path().join("credentials.toml");
    std::fs::write(&creds, "api_token = \"t0ken-for-tests\"\n").expect("credentials");
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let d = s.start_daemon();
    wait_for("a running", Some(&d), || s.memory("a").is_some());
    wait_for("the TCP API", Some(&d), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let get = |auth: Option<&str>, path: &str, method: &str| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method]);
        if let Some(a) = auth {
            cmd.args(["-H", &format!("Authorization: Bearer {a}")]);
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get(None, "/v1/status", "GET"), "401");
    assert_eq!(get(Some("wrong"), "/v1/status", "GET"), "401");
    assert_eq!(get(Some("t0ken-for-tests"), "/v1/status", "GET"), "200");
    // Webhooks carry their own per-image token instead.
    assert_eq!(get(None, "/v1/hooks/images/nothing?token=x", "POST"), "403");
    let (status, _) = d.terminate();
    assert!(status.success());
}

#[test]
fn idle_tcp_connections_cannot_exhaust_berthd_and_sighup_reloads_the_token() {
    use std::io::Read;
    let s = Sandbox::new(None);
    s.declare("a", &["Command", "sleep 3600"]);
    let port = support::free_tcp_port();
    let config = s.config();
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!("api_listen = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&config, text).expect("config");
    let creds = s.dir.path().join("credentials.toml");
    let write_token = |token: &str| {
        std::fs::write(&creds, format!("api_token = \"{token}\"\n")).expect("credentials");
        std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    };
    write_token("first-t0ken");
    // Few descriptors, so that a flood would exhaust them quickly.
    let d = s.start_daemon_with_file_limit(160);
    wait_for("a running", Some(&d), || s.memory("a").is_some());
    wait_for("the TCP API", Some(&d), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // This test holds many sockets itself.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(4096),
            hard,
        );
    }
    let mut idle = Vec::new();
    for _ in 0..400 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            idle.push(c);
        }
    }
    assert!(idle.len() >= 200, "only {} connections made", idle.len());
    // The unix socket still answers, and a pass still runs.
    let status = std::process::Command::new("timeout")
        .args(["20"])
        .arg(assert_cmd::cargo::cargo_bin("berth"))
        .arg("--config")
        .arg(s.config())
        .args(["status", "--json"])
        .output()
        .expect("berth status");
    assert!(
        status.status.success(),
        "status: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    s.declare("b", &["Command", "sleep 3600"]);
    wait_for("b created during the flood", Some(&d), || {
        s.memory("b").is_some()
    });
    // Idle connections are closed once their headers are overdue.
    let mut first = idle.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    assert!(
        matches!(first.read(&mut buf), Ok(0)),
        "an idle connection is closed by berthd"
    );
    drop(idle);
    let log = d.log();
    assert!(
        !log.contains("Too many open files") || !log.contains("pass not run"),
        "{log}"
    );

    let curl = |auth: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("Authorization: {auth}"))
            .arg(format!("http://127.0.0.1:{port}/v1/status"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("the TCP API answers again", Some(&d), || {
        curl("Bearer first-t0ken") == "200"
    });
    assert_eq!(
        curl("bearer first-t0ken"),
        "200",
        "the scheme is case-insensitive"
    );
    write_token("second-t0ken");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the new token after SIGHUP", Some(&d), || {
        curl("Bearer second-t0ken") == "200"
    });
    assert_eq!(curl("Bearer first-t0ken"), "401");
    let (status, _) = d.terminate();
    assert!(status.success());
}

#[test]
fn a_container_that_exits_by_itself_is_not_restarted_against_its_restart_policy() {
    let s = Sandbox::new(None);
    s.declare(
        "flaky",
        &["Command", "sh -c 'sleep 1; exit 3'", "Restart", "no"],
    );
    let d = s.start_daemon();
    wait_for("flaky ran and exited", Some(&d), || {
        docker_inspect_opt(&s.name("flaky"))
            .is_some_and(|v| v["State"]["Status"] == "exited" && v["State"]["ExitCode"] == 3)
    });
    // Before: started again every ~1.35 s, forever.
    std::thread::sleep(Duration::from_secs(6));
    let history =
        String::from_utf8_lossy(&s.berth(&["history", &s.name("flaky")]).stdout).into_owned();
    let starts = history
        .lines()
        .filter(|l| l.contains(" start ") || l.contains(" create "))
        .count();
    assert_eq!(starts, 1, "only the first start:\n{history}");
    let status =
        String::from_utf8_lossy(&s.berth(&["status", &s.name("flaky")]).stdout).into_owned();
    assert!(status.contains("Restart no"), "{status}");
    // A console start is a new start event: it runs again.
    let out = s.berth(&["start", &s.name("flaky")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history =
        String::from_utf8_lossy(&s.berth(&["history", &s.name("flaky")]).stdout).into_owned();
    assert!(
        history.lines().filter(|l| l.contains(" start ")).count() >= 1,
        "{history}"
    );
    let (status, _) = d.terminate();
    assert!(status.success());
}
