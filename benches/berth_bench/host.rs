//! The bench's world: the sandbox folder (berth.toml, the db, an equivalent
//! docker-compose.yml), the tools run as processes, and the removal of
//! everything the bench made, on success, error, panic or signal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The engine's socket, for the counting proxy and the direct client,
/// unless `--engine` names another.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The socket given with `--engine` (e.g. Podman's service); set once,
/// before anything talks to an engine.
static ENGINE: OnceLock<PathBuf> = OnceLock::new();

/// Points every part of the bench (berth's config, compose, the docker
/// CLI, the direct client, the counting proxy) at `socket`.
pub fn set_engine(socket: PathBuf) {
    let _ = ENGINE.set(socket);
}

/// The socket the bench measures against.
pub fn socket() -> PathBuf {
    ENGINE
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// A bollard client straight to the engine's socket (the floor's and the
/// bench's own calls), `timeout_seconds` per call, the API version agreed.
pub fn engine_client(
    rt: &tokio::runtime::Runtime,
    timeout_seconds: u64,
) -> Result<bollard::Docker, bollard::errors::Error> {
    rt.block_on(async {
        bollard::Docker::connect_with_unix(
            &socket().to_string_lossy(),
            timeout_seconds,
            bollard::API_DEFAULT_VERSION,
        )?
        .negotiate_version()
        .await
    })
}

/// Gives a child process the engine chosen with `--engine`; without it
/// the child's own default stays, exactly as before the option existed.
fn with_engine(c: &mut Command) -> &mut Command {
    match ENGINE.get() {
        Some(s) => c.env("DOCKER_HOST", format!("unix://{}", s.display())),
        None => c.env_remove("DOCKER_HOST"),
    }
}
/// berth's `instance` (label `org.berth.instance`) in the sandbox.
pub const INSTANCE: &str = "bench";
/// berth's bridge network in the sandbox.
pub const NETWORK: &str = "berth-bench";
/// The compose project; its network is `berthbench_default`.
pub const PROJECT: &str = "berthbench";
/// Made locally by `scripts/test-image.sh`, removed at the end.
pub const IMAGE: &str = "berth-bench/busybox:1";
/// The floor's containers: `benchfloor-bench-cNN`.
pub const FLOOR_PREFIX: &str = "benchfloor-";
/// A process that stops at once on SIGTERM. A bare `sleep` as PID 1 ignores
/// SIGTERM, so every stop (berth's and compose's alike) would wait out the
/// grace period and the figures would show a timeout, not the tools.
pub const COMMAND: &str = "sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'";
/// Memory limit of every container (MiB) unless changed.
pub const MEMORY_MIB: i64 = 32;
/// Memory limit of the one changed container (MiB).
pub const CHANGED_MIB: i64 = 40;

pub fn name(i: usize) -> String {
    format!("bench-c{i:02}")
}

/// berth's containers publish 127.0.0.1:20000+i; compose's the next N ports
/// (both are never up at once, but docker-proxy may linger).
pub fn berth_port(i: usize) -> u16 {
    20000 + i as u16
}

pub fn compose_port(n: usize, i: usize) -> u16 {
    20000 + (n + i) as u16
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn berth_bin() -> PathBuf {
    root().join("target/release/berth")
}

pub fn berthd_bin() -> PathBuf {
    root().join("target/release/berthd")
}

/// The proxy socket that counts API calls (see `proxy`).
pub fn count_socket(dir: &Path) -> PathBuf {
    dir.join("docker-count.sock")
}

/// Writes berth.toml, berth-count.toml (the same sandbox, its engine behind
/// the counting proxy), the db and the compose file; `changed` gets
/// CHANGED_MIB instead of MEMORY_MIB.
pub fn write_sandbox(dir: &Path, n: usize, changed: Option<usize>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("db"))?;
    let config = format!(
        "db_dir = \"db\"\nstate_dir = \"state\"\napi_socket = \"state/api.sock\"\n\
         templates_dir = \"templates\"\ntemplates_custom_dir = \"templates-custom\"\n\
         output_root = \"output\"\nevents_dir = \"events\"\n\
         instance = \"{INSTANCE}\"\nbridge_network = \"{NETWORK}\"\n\
         stop_grace_seconds = 1\napply_concurrency = 8\n"
    );
    // Without --engine berth finds the engine itself, as it did before.
    let config = match ENGINE.get() {
        Some(s) => format!("{config}docker_host = \"unix://{}\"\n", s.display()),
        None => config,
    };
    let base = config.clone();
    std::fs::write(dir.join("berth.toml"), &config)?;
    std::fs::write(
        dir.join("berth-count.toml"),
        // A second docker_host would be a duplicate key: the counted
        // config is the base without it.
        format!(
            "{}docker_host = \"unix://{}\"\n",
            base.lines()
                .filter(|l| !l.starts_with("docker_host"))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
            count_socket(dir).display()
        ),
    )?;
    let mut db = String::new();
    let mut compose = String::from("version: \"2.4\"\nservices:\n");
    for i in 0..n {
        let mem = if changed == Some(i) {
            CHANGED_MIB
        } else {
            MEMORY_MIB
        };
        db.push_str(&format!(
            "{}=service|Command|{COMMAND}|Image|{IMAGE}|MaxMemory|{mem}M|PortMapping|custom|PortMappingPorts|{}:80|Restart|unless-stopped|TCPPort|80|access|private\n",
            name(i),
            berth_port(i)
        ));
        compose.push_str(&format!(
            "  c{i:02}:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n    mem_limit: {mem}m\n    ports: [\"127.0.0.1:{}:80\"]\n    restart: unless-stopped\n    stop_grace_period: 1s\n",
            compose_port(n, i)
        ));
    }
    // Written whole and renamed, as `berth db` does, so a watcher never
    // sees half a file.
    let tmp = dir.join("db/.docker_containers.tmp");
    std::fs::write(&tmp, db)?;
    std::fs::rename(&tmp, dir.join("db/docker_containers"))?;
    std::fs::write(dir.join("docker-compose.yml"), compose)
}

/// Seconds a process took, and its output.
pub fn timed(cmd: &mut Command) -> (f64, std::io::Result<Output>) {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return (0.0, Err(std::io::Error::other("interrupted")));
    }
    cmd.stdin(Stdio::null());
    let t = Instant::now();
    let out = cmd.output();
    (t.elapsed().as_secs_f64(), out)
}

/// Like [`timed`], but the process is killed once it has run `limit`;
/// then the output is None (docker-compose 1.x can stall for good with
/// a few hundred services: docker/compose#8161, #7486).
pub fn timed_within(cmd: &mut Command, limit: Duration) -> (f64, Option<std::io::Result<Output>>) {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return (0.0, Some(Err(std::io::Error::other("interrupted"))));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (0.0, Some(Err(e))),
    };
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return (t.elapsed().as_secs_f64(), Some(child.wait_with_output())),
            Ok(None)
                if t.elapsed() < limit
                    && !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return (t.elapsed().as_secs_f64(), None);
            }
            Err(e) => return (t.elapsed().as_secs_f64(), Some(Err(e))),
        }
    }
}

/// The output of a successful process, or why it failed.
pub fn ok(what: &str, out: std::io::Result<Output>) -> anyhow::Result<String> {
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => anyhow::bail!(
            "{what}: {}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => anyhow::bail!("{what}: {e}"),
    }
}

/// `berth --config DIR/CONFIG ARGS…`
pub fn berth(dir: &Path, config: &str, args: &[&str]) -> Command {
    let mut c = Command::new(berth_bin());
    c.arg("--config").arg(dir.join(config)).args(args);
    c.env_remove("BERTH_CONFIG");
    c
}

/// `docker-compose -p berthbench -f DIR/docker-compose.yml ARGS…`, through
/// the counting proxy when `counted`.
pub fn compose(dir: &Path, args: &[&str], counted: bool) -> Command {
    let mut c = Command::new("docker-compose");
    c.args(["-p", PROJECT, "-f"])
        .arg(dir.join("docker-compose.yml"))
        .args(args);
    if counted {
        c.env(
            "DOCKER_HOST",
            format!("unix://{}", count_socket(dir).display()),
        );
    } else {
        with_engine(&mut c);
    }
    c
}

/// A docker CLI call whose output is wanted; failures give "".
pub fn docker(args: &[&str]) -> String {
    with_engine(&mut Command::new("docker"))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn quiet(args: &[&str]) {
    let _ = with_engine(&mut Command::new("docker"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn ids(kind: &str, filters: &[String]) -> Vec<String> {
    let mut all = Vec::new();
    for f in filters {
        let out = docker(&[kind, "ls", "-q", "--filter", f]);
        all.extend(out.lines().map(str::to_string));
    }
    all.sort();
    all.dedup();
    all
}

/// Every container, network and volume the bench (berth, compose, the
/// floor) made. The image and the sandbox folder stay (see [`World`]).
pub fn remove_all() {
    let containers = {
        let mut all = Vec::new();
        for f in [
            format!("label=org.berth.instance={INSTANCE}"),
            format!("label=com.docker.compose.project={PROJECT}"),
            "name=^/?bench-c[0-9]+(_berth-new)?$".to_string(),
            format!("name=^/?{FLOOR_PREFIX}"),
        ] {
            let out = docker(&["ps", "-aq", "--filter", &f]);
            all.extend(out.lines().map(str::to_string));
        }
        all.sort();
        all.dedup();
        all
    };
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(containers.iter().map(String::as_str));
        quiet(&args);
    }
    let mut networks = ids(
        "network",
        &[
            format!("label=org.berth.instance={INSTANCE}"),
            format!("label=com.docker.compose.project={PROJECT}"),
        ],
    );
    for name in [NETWORK.to_string(), format!("{PROJECT}_default")] {
        if !docker(&["network", "ls", "-q", "--filter", &format!("name=^{name}$")])
            .trim()
            .is_empty()
        {
            networks.push(name);
        }
    }
    for net in networks {
        quiet(&["network", "rm", &net]);
    }
    let volumes = ids(
        "volume",
        &[
            format!("label=org.berth.instance={INSTANCE}"),
            format!("label=com.docker.compose.project={PROJECT}"),
        ],
    );
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        quiet(&args);
    }
}

pub fn image_id() -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", IMAGE])
        .trim()
        .to_string()
}

/// Makes the bench's image from the host's busybox (a leftover of an
/// earlier run is replaced).
pub fn make_image() -> anyhow::Result<String> {
    if !image_id().is_empty() {
        quiet(&["rmi", IMAGE]);
    }
    let out = with_engine(&mut Command::new(root().join("scripts/test-image.sh")))
        .arg(IMAGE)
        .stdin(Stdio::null())
        .output();
    let id = ok("scripts/test-image.sh", out)?;
    Ok(id.trim().to_string())
}

pub fn remove_image() {
    quiet(&["rmi", IMAGE]);
}

/// The sandbox folder: for the signal handler, which cannot reach [`World`].
static SANDBOX: OnceLock<(PathBuf, bool)> = OnceLock::new();

/// Set once SIGINT/SIGTERM arrived: nothing new (berthd) is started.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Owns the sandbox and removes everything at the end, however the bench
/// ends: on return and on panic through Drop, on SIGINT/SIGTERM through
/// [`on_signal_clean_up`].
pub struct World {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl World {
    /// A fresh sandbox: in `workdir` if given (its creator removes it), else
    /// a temporary folder removed on drop.
    pub fn new(workdir: Option<PathBuf>) -> anyhow::Result<World> {
        let (dir, tmp) = match workdir {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                (d, None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("berth-bench.").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let _ = SANDBOX.set((dir.clone(), tmp.is_some()));
        remove_all();
        Ok(World { dir, _tmp: tmp })
    }
}

impl Drop for World {
    fn drop(&mut self) {
        crate::daemon::stop_recorded();
        remove_all();
        remove_image();
    }
}

/// Installs the SIGINT/SIGTERM handler on the runtime: stop berthd, remove
/// everything, exit 130. (Children get default handlers back at exec.)
pub fn on_signal_clean_up(rt: &tokio::runtime::Runtime) {
    rt.spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        eprintln!("bench: interrupted, cleaning up");
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(|| {
            crate::daemon::stop_recorded();
            remove_all();
            // What the main thread was in the middle of (it starts nothing
            // new once INTERRUPTED is set) may have made more: once again.
            std::thread::sleep(std::time::Duration::from_secs(1));
            crate::daemon::stop_recorded();
            remove_all();
            remove_image();
            if let Some((dir, owned)) = SANDBOX.get() {
                if *owned {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            std::process::exit(130);
        })
        .await;
    });
}
