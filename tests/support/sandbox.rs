//! A berth sandbox for integration tests: config, db folder and state in a
//! temp dir, names under a test prefix, the berth and berthd binaries run as
//! an admin would run them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

use super::{docker, docker_inspect, docker_inspect_opt, Prefix};

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub prefix: Prefix,
    pub image: String,
}

impl Sandbox {
    pub fn new(docker_host: Option<&str>) -> Sandbox {
        let prefix = Prefix::new();
        let image = prefix.busybox();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("db")).expect("db dir");
        std::fs::write(dir.path().join("db/docker_containers"), "").expect("db");
        let s = Sandbox { dir, prefix, image };
        s.write_config("db", docker_host);
        s
    }

    pub fn write_config(&self, db_dir: &str, docker_host: Option<&str>) {
        let mut toml = format!(
            "db_dir = \"{db_dir}\"\nstate_dir = \"state\"\nevents_dir = \"events\"\ntemplates_dir = \"templates\"\ntemplates_custom_dir = \"templates-custom\"\noutput_root = \"output\"\napi_socket = \"state/api.sock\"\ninstance = \"{}\"\nbridge_network = \"{}\"\nstop_grace_seconds = 1\nresync_seconds = 3600\n",
            self.prefix.as_str(),
            self.prefix.name("net"),
        );
        // The engine under test ($DOCKER_HOST: Docker, or Podman's service
        // in the test script's second group) unless the test names another.
        let host = docker_host.map_or_else(super::docker_host, str::to_string);
        toml.push_str(&format!("docker_host = \"{host}\"\n"));
        std::fs::write(self.dir.path().join("berth.toml"), toml).expect("config");
    }

    /// Writes the sandbox's host policy (`policy.toml` beside its config,
    /// mode 0644 as root would keep it).
    pub fn write_policy(&self, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("policy.toml");
        std::fs::write(&path, text).expect("policy");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// A policy that lets records mount host folders anywhere in the
    /// sandbox and use `network host`: for tests about something else.
    pub fn allow_sandbox_binds_and_host_network(&self) {
        self.write_policy(&format!(
            "bind_roots = [{:?}]\nnetwork_host = true\n",
            self.dir.path().display().to_string()
        ));
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("berth.toml")
    }

    pub fn name(&self, n: &str) -> String {
        self.prefix.name(n)
    }

    pub fn berth(&self, args: &[&str]) -> std::process::Output {
        Command::new(cargo_bin("berth"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .expect("berth")
    }

    pub fn declare(&self, name: &str, props: &[&str]) {
        let full = self.name(name);
        let mut args = vec![
            "db",
            "docker_containers",
            "set",
            &full,
            "service",
            "Image",
            &self.image,
        ];
        args.extend_from_slice(props);
        let out = self.berth(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn setprop(&self, name: &str, prop: &str, value: &str) {
        let out = self.berth(&[
            "db",
            "docker_containers",
            "setprop",
            &self.name(name),
            prop,
            value,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with(|_| {})
    }

    /// berthd with at most `files` open file descriptors (soft and hard).
    pub fn start_daemon_with_file_limit(&self, files: u64) -> Daemon {
        self.start_daemon_with(|cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        files,
                        files,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        })
    }

    pub fn start_daemon_with(&self, adjust: impl FnOnce(&mut Command)) -> Daemon {
        let log = self.dir.path().join(format!("berthd-{}.log", now_ms()));
        let mut cmd = Command::new(cargo_bin("berthd"));
        adjust(&mut cmd);
        let child = cmd
            .arg("--config")
            .arg(self.config())
            // TEST_BERTH_LOG=debug (or a filter) to see more of berthd.
            .env(
                "BERTH_LOG",
                std::env::var("TEST_BERTH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn berthd");
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn memory(&self, name: &str) -> Option<i64> {
        let v = docker_inspect_opt(&self.name(name))?;
        (v["State"]["Status"] == "running").then(|| v["HostConfig"]["Memory"].as_i64().unwrap_or(0))
    }

    pub fn id(&self, name: &str) -> Option<String> {
        docker_inspect_opt(&self.name(name)).and_then(|v| v["Id"].as_str().map(str::to_string))
    }

    /// Containers of this sandbox, by name.
    pub fn container_names(&self) -> Vec<String> {
        let (_, out, _) = docker(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=org.berth.instance={}", self.prefix.as_str()),
        ]);
        let mut names: Vec<String> = out.lines().map(str::to_string).collect();
        names.sort();
        names
    }

    pub fn passes(&self) -> i64 {
        let out = Command::new("sqlite3")
            .arg(self.dir.path().join("state/state.db"))
            .arg("SELECT count(*) FROM passes")
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(-1),
            _ => {
                // No sqlite3 CLI: count through the library.
                let s = berth::state::State::open(&self.dir.path().join("state")).expect("state");
                s.passes(100_000).expect("passes").len() as i64
            }
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal");
    }

    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status and how long it took.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        let mut child = self.child.take().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("berthd did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `check` until it holds; panics with `what` after 60 s (a bound,
/// not a performance assertion).
pub fn wait_for(what: &str, daemon: Option<&Daemon>, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out waiting for {what}\n{}",
        daemon.map(Daemon::log).unwrap_or_default()
    );
}

impl Sandbox {
    /// `berth db docker_containers ARGS…`, which must succeed.
    pub fn db(&self, args: &[&str]) {
        let mut all = vec!["db", "docker_containers"];
        all.extend_from_slice(args);
        let out = self.berth(&all);
        assert!(
            out.status.success(),
            "berth {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `berth ARGS…` → (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.berth(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn apply(&self) -> (i32, String, String) {
        self.run(&["apply"])
    }

    pub fn apply_ok(&self) -> String {
        let (code, stdout, stderr) = self.apply();
        if code != 0 {
            // What the engine lists of this test's images, for a failure
            // that says an image is missing.
            let (_, images, _) =
                docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
            let ours: Vec<&str> = images
                .lines()
                .filter(|l| l.contains(self.prefix.as_str()))
                .collect();
            panic!(
                "berth apply failed ({code}):\n{stdout}\n{stderr}\nthe engine's images of this test: {ours:?}"
            );
        }
        stdout
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        docker_inspect(&self.name(name))
    }

    /// The container's state word, or "missing".
    pub fn state(&self, name: &str) -> String {
        docker_inspect_opt(&self.name(name))
            .and_then(|v| v["State"]["Status"].as_str().map(str::to_string))
            .unwrap_or_else(|| "missing".into())
    }
}
