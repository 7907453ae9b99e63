//! Shared helpers for integration tests against the real Docker engine:
//! the `docker` CLI, busybox test images, and per-test name prefixes whose
//! drop removes everything the test made, and nothing else.
//!
//! Use it from a test file with `mod support;`. Tests are meant to run where
//! an engine runs (the test script installs and starts dockerd); without one
//! they fail loudly instead of passing by skipping.
#![allow(dead_code)]

pub mod packages;
pub mod registry;
pub mod sandbox;
pub mod systemd;
pub mod tls;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use berth::engine::DockerEngine;
use sha2::{Digest, Sha256};

/// `berth plan`'s text without its capacity lines (the sums against the
/// host, which depend on the machine): the actions and problems only.
pub fn plan_actions(plan: &str) -> String {
    plan.lines()
        .filter(|l| !l.starts_with("capacity "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs `docker ARGS…`; returns (exit status, stdout, stderr). Never panics:
/// a missing CLI is status -1 with the reason in stderr.
pub fn docker(args: &[&str]) -> (i32, String, String) {
    match Command::new("docker").args(args).output() {
        Ok(out) => (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => (-1, String::new(), format!("cannot run docker: {e}")),
    }
}

/// Runs `docker ARGS…` and returns its stdout; panics with its stderr if it fails.
pub fn docker_ok(args: &[&str]) -> String {
    let (status, stdout, stderr) = docker(args);
    assert_eq!(status, 0, "docker {} failed: {stderr}", args.join(" "));
    stdout
}

/// `docker inspect NAME` (a container, network, volume or image), the one
/// object it prints. Panics if there is none.
pub fn docker_inspect(name: &str) -> serde_json::Value {
    docker_inspect_opt(name).unwrap_or_else(|| panic!("docker inspect {name}: no such object"))
}

/// `docker inspect NAME`, or None if the engine knows no such object.
pub fn docker_inspect_opt(name: &str) -> Option<serde_json::Value> {
    let (status, stdout, _) = docker(&["inspect", name]);
    if status != 0 {
        return None;
    }
    let mut all: Vec<serde_json::Value> = serde_json::from_str(&stdout).ok()?;
    (!all.is_empty()).then(|| all.remove(0))
}

/// The engine the tests use: `$DOCKER_HOST`, as the `docker` CLI does.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// Whether the engine answers `docker info` (asked once per process).
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| docker(&["info", "--format", "{{.ServerVersion}}"]).0 == 0)
}

/// Whether the engine under test is Podman's Docker-compatible service
/// (its `/version` names a Podman component), asked once per process.
pub fn engine_is_podman() -> bool {
    static PODMAN: OnceLock<bool> = OnceLock::new();
    *PODMAN.get_or_init(|| {
        let (_, out, _) = docker(&[
            "version",
            "--format",
            "{{range .Server.Components}}{{.Name}} {{end}}",
        ]);
        out.contains("Podman")
    })
}

/// On Podman, says that `test` is skipped and why (on stderr and in the
/// file `$TEST_SKIPS_FILE`, which the test script prints in its
/// summary) and returns true: the test then returns. On Docker, false.
pub fn skip_on_podman(test: &str, reason: &str) -> bool {
    if !engine_is_podman() {
        return false;
    }
    eprintln!("SKIPPED on Podman: {test}: {reason}");
    if let Some(path) = std::env::var_os("TEST_SKIPS_FILE") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
    true
}

/// An image name as Docker lists it: Podman qualifies the names made
/// through its Docker API (`docker.io/berth-test/busybox:x`).
pub fn short_image_name(name: &str) -> &str {
    name.strip_prefix("docker.io/")
        .map(|n| n.strip_prefix("library/").unwrap_or(n))
        .unwrap_or(name)
}

/// What systemd's timers do for Podman on a real host: Podman runs no
/// health check by itself (`podman healthcheck run`, from a transient
/// timer per container), and this machine has no systemd. While it lives,
/// on Podman, every running container of the prefix has its check run
/// each second; on Docker (whose daemon runs checks) it does nothing.
pub struct HealthTimer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthTimer {
    pub fn start(prefix: &Prefix) -> HealthTimer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = engine_is_podman().then(|| {
            let (stop, prefix) = (stop.clone(), prefix.as_str().to_string());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (_, names, _) = docker(&["ps", "--format", "{{.Names}}"]);
                    for name in names.lines().filter(|n| n.starts_with(&prefix)) {
                        // One without a check says so and is left alone.
                        let _ = Command::new("podman")
                            .args(["healthcheck", "run", name])
                            .output();
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            })
        });
        HealthTimer { stop, thread }
    }
}

impl Drop for HealthTimer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Panics with what to do if the engine does not answer.
pub fn ensure_docker() {
    if !docker_available() {
        let (_, _, stderr) = docker(&["info"]);
        panic!(
            "these tests need a running Docker engine at {}; start one with \
             `nohup dockerd >/var/log/dockerd.log 2>&1 &` (docker info said: {})",
            docker_host(),
            stderr.trim()
        );
    }
}

/// A [`DockerEngine`] connected to the test engine (after [`ensure_docker`]).
pub async fn connect_engine() -> DockerEngine {
    ensure_docker();
    let host = docker_host();
    DockerEngine::connect(&host)
        .await
        .unwrap_or_else(|e| panic!("DockerEngine::connect({host}): {e}"))
}

/// A TCP port nothing listens on right now (the OS picked it for port 0).
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A UDP port nothing is bound to right now.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.local_addr().expect("local addr").port()
}

/// The repository's `scripts/` folder.
pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// A locally made image: its reference and the ID it had when made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImage {
    pub reference: String,
    pub id: String,
}

/// The busybox images of the tests, made by `scripts/test-image.sh`.
///
/// Each is made at most once per process, and kept between runs under a
/// tag holding the script's hash (`berth-test/busybox:base-<hash>`), so a
/// changed script makes new ones. Tests do not use these tags directly: they
/// tag them per prefix with [`Prefix::busybox`], so moving a tag in one test
/// is invisible to the others.
pub struct TestImages;

impl TestImages {
    /// Busybox with a link per applet, `/etc/passwd`; no default command.
    pub fn busybox() -> &'static TestImage {
        static BASE: OnceLock<TestImage> = OnceLock::new();
        BASE.get_or_init(|| build_cached("base", None))
    }

    /// The same with `/etc/berth-variant` added: another image ID, for
    /// "same tag, new image" tests.
    pub fn busybox_variant() -> &'static TestImage {
        static VARIANT: OnceLock<TestImage> = OnceLock::new();
        VARIANT.get_or_init(|| build_cached("variant", Some("variant")))
    }
}

fn image_id(reference: &str) -> Option<String> {
    let (status, stdout, _) = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
    (status == 0).then(|| stdout.trim().to_string())
}

fn build_cached(kind: &str, variant: Option<&str>) -> TestImage {
    ensure_docker();
    let script = scripts_dir().join("test-image.sh");
    let text =
        std::fs::read(&script).unwrap_or_else(|e| panic!("cannot read {}: {e}", script.display()));
    let hash = format!("{:x}", Sha256::digest(&text));
    let reference = format!("berth-test/busybox:{kind}-{}", &hash[..12]);
    if let Some(id) = image_id(&reference) {
        return TestImage { reference, id };
    }
    let mut command = Command::new(&script);
    command.arg(&reference).args(variant);
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {reference} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test process may have tagged its own build since: use what
    // the tag names now, so every process agrees.
    let id = image_id(&reference).unwrap_or_else(|| panic!("{reference} missing after build"));
    TestImage { reference, id }
}

/// Images a test builds carry `TEST_LABEL=<prefix>`, so cleanup also
/// finds those a rebuild left untagged.
pub const TEST_LABEL: &str = "org.berth.test";

/// A unique name prefix for one test, `bt<pid>x<nnnn>`: every container,
/// network, volume and image tag the test makes should start with it.
/// Dropping it (also when the test panics) removes all of those, and only
/// those. The counter has a fixed width so no prefix is the start of another.
pub struct Prefix {
    prefix: String,
    /// Image references this prefix tagged, removed on drop.
    tagged: Mutex<Vec<String>>,
}

impl Prefix {
    pub fn new() -> Prefix {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        ensure_docker();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = Prefix {
            prefix: format!("bt{}x{n:04}", std::process::id()),
            tagged: Mutex::new(Vec::new()),
        };
        // Left over by an earlier process that had the same PID and was killed.
        prefix.cleanup();
        prefix
    }

    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>-<suffix>`: a name for a container, network or volume.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// Tags `image_id` as `reference`, moving the tag if it exists; the
    /// reference is untagged on drop. `reference` should hold the prefix.
    pub fn tag(&self, image_id: &str, reference: &str) {
        docker_ok(&["tag", image_id, reference]);
        let mut tagged = self.tagged.lock().unwrap_or_else(|p| p.into_inner());
        if !tagged.iter().any(|r| r == reference) {
            tagged.push(reference.to_string());
        }
    }

    /// `berth-test/busybox:<prefix>`, tagged to [`TestImages::busybox`].
    pub fn busybox(&self) -> String {
        let reference = format!("berth-test/busybox:{}", self.prefix);
        self.tag(&TestImages::busybox().id, &reference);
        reference
    }

    fn owns(&self, name: &str) -> bool {
        name.starts_with(&self.prefix)
    }

    /// Removes what this prefix owns: containers (forced), networks,
    /// volumes, then image tags. Errors are ignored: cleanup runs from drop,
    /// possibly while a failed test unwinds.
    pub fn cleanup(&self) {
        let lines = |args: &[&str]| -> Vec<String> {
            let (_, stdout, _) = docker(args);
            stdout.lines().map(str::to_string).collect()
        };
        let containers: Vec<String> = lines(&["ps", "-a", "--format", "{{.ID}} {{.Names}}"])
            .into_iter()
            .filter_map(|l| {
                let (id, name) = l.split_once(' ')?;
                self.owns(name).then(|| id.to_string())
            })
            .collect();
        // One at a time: `docker rm -f` of many runs them concurrently, and
        // Docker 20.10 then can leave the network counting endpoints that
        // no longer exist, so the network can never be removed.
        for id in &containers {
            docker(&["rm", "-f", id]);
        }
        // By ID: an old engine may hold two networks of the same name.
        for line in lines(&["network", "ls", "--format", "{{.ID}} {{.Name}}"]) {
            if let Some((id, name)) = line.split_once(' ') {
                if self.owns(name) {
                    docker(&["network", "rm", id]);
                }
            }
        }
        for name in lines(&["volume", "ls", "--format", "{{.Name}}"]) {
            if self.owns(&name) {
                docker(&["volume", "rm", &name]);
            }
        }
        let mut references = self
            .tagged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for reference in lines(&["images", "--format", "{{.Repository}}:{{.Tag}}"]) {
            let (repository, tag) = reference.rsplit_once(':').unwrap_or((&reference, ""));
            let last_part = repository.rsplit('/').next().unwrap_or(repository);
            if (self.owns(tag) || self.owns(last_part)) && !references.contains(&reference) {
                references.push(reference);
            }
        }
        for reference in references {
            docker(&["rmi", &reference]);
        }
        // Untagged images of this test's builds (a rebuild's old image and
        // its layers): children first, so a few rounds clear a chain.
        let label = format!("label={TEST_LABEL}={}", self.prefix);
        for _ in 0..4 {
            let ids = lines(&["images", "-a", "-q", "--filter", &label]);
            if ids.is_empty() {
                break;
            }
            let mut args = vec!["rmi"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix::new()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `git -C dir args…` with a fixed author, for the tests' repositories;
/// fails the test with git's words.
pub fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
