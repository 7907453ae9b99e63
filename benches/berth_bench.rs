//! berth against docker-compose and the engine's own floor, in one run on
//! one machine. Run with `scripts/bench.sh` (not part of the tests).
//!
//!   berth_bench [--n N] [--runs R] [--quick] [--pure] [--json FILE]
//!
//! Each figure is the median of R runs with its min–max spread; ratios are
//! taken pair by pair (run i of berth against run i of the peer).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use berth::apply::{apply, ApplySettings, Outcome};
use berth::config::Config;
use berth::db::Db;
use berth::engine::{DockerEngine, Engine, ObservedContainer, ObservedState};
use berth::plan::{plan, ActionKind};
use berth::spec::{declare, SpecSettings};
use serde_json::json;

const INSTANCE: &str = "bench";
const IMAGE: &str = "berth-bench/busybox:1";
/// A process that stops at once on SIGTERM (a bare `sleep` as PID 1 ignores
/// it, so every stop would wait out the grace period and hide berth's own time).
const COMMAND: &str = "sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'";

struct Args {
    /// Only the pure-code figures (no engine): a quick check of parse/plan work.
    pure: bool,
    n: usize,
    runs: usize,
    quick: bool,
    json: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        pure: false,
        n: 50,
        runs: 5,
        quick: false,
        json: PathBuf::from("bench-results.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--n" => a.n = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.n),
            "--runs" => a.runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.runs),
            "--json" => a.json = it.next().map(PathBuf::from).unwrap_or(a.json),
            "--pure" => a.pure = true,
            "--quick" => {
                a.quick = true;
                a.n = 10;
                a.runs = 3;
            }
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// Median and spread of a set of seconds.
#[derive(Clone)]
struct Figure(Vec<f64>);

impl Figure {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return f64::NAN;
        }
        let m = v.len() / 2;
        if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        }
    }
    fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
    fn show(&self) -> String {
        if self.0.is_empty() {
            return "n/a".into();
        }
        format!(
            "{} ({}–{})",
            ms(self.median()),
            ms(self.min()),
            ms(self.max())
        )
    }
    fn json(&self) -> serde_json::Value {
        json!({ "median_s": self.median(), "min_s": self.min(), "max_s": self.max(), "runs_s": self.0 })
    }
}

fn ms(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// Median of the pairwise ratios a[i]/b[i].
fn ratio(a: &Figure, b: &Figure) -> f64 {
    Figure(a.0.iter().zip(&b.0).map(|(x, y)| x / y).collect()).median()
}

fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed().as_secs_f64(), v)
}

fn sh(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Everything the bench made goes, whatever happened.
struct Cleanup {
    dir: PathBuf,
}

impl Cleanup {
    fn all(&self) {
        remove_containers();
        let _ = Command::new("docker-compose")
            .args(["-p", "berthbench", "-f"])
            .arg(self.dir.join("docker-compose.yml"))
            .args(["down", "-t", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for net in ["berth-bench", "berthbench_default"] {
            sh(Command::new("docker").args(["network", "rm", net]));
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.all();
        sh(Command::new("docker").args(["rmi", IMAGE]));
    }
}

fn remove_containers() {
    let ids = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.berth.instance={INSTANCE}"),
    ]);
    let floor = docker(&["ps", "-aq", "--filter", "name=^benchfloor-"]);
    let compose = docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=com.docker.compose.project=berthbench",
    ]);
    let all: Vec<&str> = ids
        .lines()
        .chain(floor.lines())
        .chain(compose.lines())
        .collect();
    if !all.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(all);
        sh(Command::new("docker").args(&args));
    }
}

fn ports(n: usize) -> Vec<u16> {
    (0..n).map(|i| 21000 + i as u16).collect()
}

fn write_sandbox(dir: &Path, n: usize, changed: Option<usize>) {
    let _ = std::fs::create_dir_all(dir.join("db"));
    let config = "db_dir = \"db\"\nstate_dir = \"state\"\napi_socket = \"state/api.sock\"\ntemplates_dir = \"templates\"\ntemplates_custom_dir = \"templates-custom\"\noutput_root = \"output\"\ninstance = \"bench\"\nbridge_network = \"berth-bench\"\nstop_grace_seconds = 1\n";
    let _ = std::fs::write(dir.join("berth.toml"), config);
    let mut db = String::new();
    let mut compose = String::from("version: \"2.4\"\nservices:\n");
    for (i, port) in ports(n).into_iter().enumerate() {
        let mem = if changed == Some(i) { 40 } else { 32 };
        db.push_str(&format!(
            "bench-c{i:02}=service|Command|{COMMAND}|Image|{IMAGE}|MaxMemory|{mem}M|PortMapping|custom|PortMappingPorts|{port}:80|TCPPort|80|access|private\n"
        ));
        let cport = port + 2000;
        compose.push_str(&format!(
            "  c{i:02}:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n    mem_limit: {mem}m\n    ports: [\"127.0.0.1:{cport}:80\"]\n    restart: unless-stopped\n    stop_grace_period: 1s\n"
        ));
    }
    let _ = std::fs::write(dir.join("db/docker_containers"), db);
    let _ = std::fs::write(dir.join("docker-compose.yml"), compose);
}

fn berth(dir: &Path, args: &[&str]) -> bool {
    sh(Command::new(root().join("target/release/berth"))
        .arg("--config")
        .arg(dir.join("berth.toml"))
        .args(args))
}

fn compose_up(dir: &Path) -> bool {
    sh(Command::new("docker-compose")
        .args(["-p", "berthbench", "-f"])
        .arg(dir.join("docker-compose.yml"))
        .args(["up", "-d"]))
}

fn compose_down(dir: &Path) {
    sh(Command::new("docker-compose")
        .args(["-p", "berthbench", "-f"])
        .arg(dir.join("docker-compose.yml"))
        .args(["down", "-t", "1"]));
}

/// The same creates and starts berth issues, straight to the engine, with
/// the same concurrency: the floor.
async fn floor(engine: &DockerEngine, dir: &Path) -> f64 {
    let config = Config::load(&dir.join("berth.toml")).expect("config");
    let declared = berth::spec::load(&config).expect("specs");
    let configs: Vec<_> = declared
        .specs
        .values()
        .map(|s| {
            let mut c = s.config.clone();
            c.name = format!("benchfloor-{}", s.name);
            c.network = berth::engine::NetworkAttachment::Bridge("berth-bench".into());
            c
        })
        .collect();
    engine.ensure_network("berth-bench").await.expect("network");
    let labels = BTreeMap::new();
    let t = Instant::now();
    use futures_util::StreamExt;
    futures_util::stream::iter(configs.iter())
        .map(|c| {
            let labels = &labels;
            async move {
                if let Ok(id) = engine.create_container(&c.name, c, labels).await {
                    let _ = engine.start_container(&id).await;
                }
            }
        })
        .buffer_unordered(config.apply_concurrency)
        .collect::<Vec<_>>()
        .await;
    t.elapsed().as_secs_f64()
}

/// One in-process no-op pass: seconds and API calls.
async fn noop_pass(engine: &DockerEngine, config: &Config) -> (f64, u64) {
    let before = engine.api_calls();
    let t = Instant::now();
    let declared = berth::spec::load(config).expect("specs");
    let observed = engine.observe().await.expect("observe");
    let p = plan(&declared, &observed, SystemTime::now());
    let settings = ApplySettings {
        instance: INSTANCE.into(),
        concurrency: 8,
        stop_grace_seconds: 1,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let report = apply(engine, &p, &settings, &stop, |_: &Outcome| {}).await;
    assert!(
        report.outcomes.is_empty(),
        "not converged: {:?}",
        p.actions.len()
    );
    (t.elapsed().as_secs_f64(), engine.api_calls() - before)
}

fn pure_code(runs: usize) -> (Figure, Figure) {
    let n = 10_000;
    let text: String = (0..n)
        .map(|i| format!("c{i:05}=service|Image|app:1|MaxMemory|256M|TCPPort|{}|Env|A=1,B=2|MountPath|/data|access|private\n", 10000 + (i % 50000)))
        .collect();
    let path = Path::new("/bench/docker_containers");
    let mut parse = Vec::new();
    let mut planning = Vec::new();
    let settings = SpecSettings {
        instance: INSTANCE.into(),
        bridge_network: "berth".into(),
        data_root: "/data".into(),
    };
    for _ in 0..runs {
        let (t, db) = time(|| Db::parse(path, &text));
        parse.push(t);
        let images = Db::parse(Path::new("/bench/docker_images"), "");
        let declared = declare(&db, &images, &settings);
        let observed = ObservedState {
            containers: declared
                .specs
                .values()
                .map(|s| ObservedContainer {
                    id: format!("id{}", s.name),
                    name: s.name.clone(),
                    labels: berth::apply::labels_for(INSTANCE, &s.name, &s.config, &s.spec_hash),
                    image: "app:1".into(),
                    image_id: "sha256:1".into(),
                    state: "running".into(),
                })
                .collect(),
            images: [("app:1".to_string(), "sha256:1".to_string())]
                .into_iter()
                .collect(),
            networks: vec!["berth".into()],
        };
        let (t, p) = time(|| plan(&declared, &observed, SystemTime::now()));
        assert!(p.actions.is_empty() || p.actions.iter().all(|a| a.kind != ActionKind::Recreate));
        planning.push(t);
    }
    (Figure(parse), Figure(planning))
}

/// Memory and CPU of a process from /proc.
fn proc_stats(pid: u32) -> Option<(u64, f64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let rss_kb = field("VmRSS:")?;
    let switches = field("voluntary_ctxt_switches:").unwrap_or(0)
        + field("nonvoluntary_ctxt_switches:").unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = 100.0;
    // Threads' switches count too: sum over /proc/PID/task.
    let mut all_switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(Result::ok) {
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                for l in s.lines().filter(|l| l.contains("ctxt_switches:")) {
                    all_switches += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    Some((rss_kb, ticks / hz, all_switches.max(switches)))
}

fn running_with_memory(name: &str, bytes: i64) -> bool {
    let out = docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.HostConfig.Memory}}",
        name,
    ]);
    out.trim() == format!("true {bytes}")
}

fn main() {
    let a = args();
    if a.pure {
        let (parse, planning) = pure_code(15);
        println!(
            "| parse 10,000 records | {} |\n| plan 10,000 × 10,000 | {} |",
            parse.show(),
            planning.show()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path().to_path_buf();
    write_sandbox(&dir, a.n, None);
    let cleanup = Cleanup { dir: dir.clone() };
    if docker(&["image", "inspect", "-f", "{{.Id}}", IMAGE])
        .trim()
        .is_empty()
    {
        let ok = sh(Command::new(root().join("scripts/test-image.sh")).arg(IMAGE));
        assert!(ok, "cannot make {IMAGE}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = rt
        .block_on(DockerEngine::connect("unix:///var/run/docker.sock"))
        .expect("engine");
    let config = Config::load(&dir.join("berth.toml")).expect("config");
    let n = a.n;
    println!(
        "berth bench: N={n} containers, {} runs each, on {} cores",
        a.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    let (mut b_conv, mut c_conv, mut f_conv) = (vec![], vec![], vec![]);
    let (mut b_noop, mut c_noop, mut b_noop_inproc, mut calls) = (vec![], vec![], vec![], vec![]);
    let (mut b_one, mut c_one) = (vec![], vec![]);
    for run in 0..a.runs {
        cleanup.all();
        let (t, ok) = time(|| berth(&dir, &["apply"]));
        assert!(ok, "berth apply failed");
        b_conv.push(t);
        let (t, ok) = time(|| berth(&dir, &["apply"]));
        assert!(ok);
        b_noop.push(t);
        let (t, c) = rt.block_on(noop_pass(&engine, &config));
        b_noop_inproc.push(t);
        calls.push(c);
        write_sandbox(&dir, n, Some(run % n));
        let (t, ok) = time(|| berth(&dir, &["apply"]));
        assert!(ok);
        b_one.push(t);
        write_sandbox(&dir, n, None);
        cleanup.all();

        let (t, ok) = time(|| compose_up(&dir));
        assert!(ok, "docker-compose up failed");
        c_conv.push(t);
        let (t, _) = time(|| compose_up(&dir));
        c_noop.push(t);
        write_sandbox(&dir, n, Some(run % n));
        let (t, _) = time(|| compose_up(&dir));
        c_one.push(t);
        write_sandbox(&dir, n, None);
        compose_down(&dir);

        cleanup.all();
        f_conv.push(rt.block_on(floor(&engine, &dir)));
        cleanup.all();
        eprintln!("run {} of {} done", run + 1, a.runs);
    }
    let (b_conv, c_conv, f_conv) = (Figure(b_conv), Figure(c_conv), Figure(f_conv));
    let (b_noop, c_noop, b_noop_inproc) = (Figure(b_noop), Figure(c_noop), Figure(b_noop_inproc));
    let (b_one, c_one) = (Figure(b_one), Figure(c_one));
    let max_calls = calls.iter().copied().max().unwrap_or(0);

    // The daemon: edit-to-effect, then at rest.
    let mut edits = vec![];
    let mut rest = None;
    let mut daemon: Option<Child> = Command::new(root().join("target/release/berthd"))
        .arg("--config")
        .arg(dir.join("berth.toml"))
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok();
    if let Some(child) = &daemon {
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline
            && !(0..n).all(|i| running_with_memory(&format!("bench-c{i:02}"), 32 << 20))
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(1));
        let edits_n = if a.quick { 3 } else { 7 };
        for k in 0..edits_n {
            let name = format!("bench-c{:02}", k % n);
            let mem = 40 + k as i64;
            let t = Instant::now();
            let ok = berth(
                &dir,
                &[
                    "db",
                    "docker_containers",
                    "setprop",
                    &name,
                    "MaxMemory",
                    &format!("{mem}M"),
                ],
            );
            assert!(ok);
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && !running_with_memory(&name, mem << 20) {
                std::thread::sleep(Duration::from_millis(5));
            }
            edits.push(t.elapsed().as_secs_f64());
            std::thread::sleep(Duration::from_millis(500));
        }
        let rest_seconds = if a.quick { 10 } else { 60 };
        std::thread::sleep(Duration::from_secs(2));
        let before = proc_stats(pid);
        std::thread::sleep(Duration::from_secs(rest_seconds));
        let after = proc_stats(pid);
        if let (Some(b), Some(a2)) = (before, after) {
            rest = Some((rest_seconds, a2.0, a2.1 - b.1, a2.2.saturating_sub(b.2)));
        }
    }
    if let Some(mut child) = daemon.take() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = child.wait();
    }
    let edits = Figure(edits);
    let (parse, planning) = pure_code(if a.quick { 3 } else { 7 });
    drop(cleanup);

    println!();
    println!("| measure | berth | docker-compose | floor | berth/peer |");
    println!("|---|---|---|---|---|");
    println!(
        "| converge {n} from nothing | {} | {} | {} | {:.2}× compose, {:.2}× floor |",
        b_conv.show(),
        c_conv.show(),
        f_conv.show(),
        ratio(&b_conv, &c_conv),
        ratio(&b_conv, &f_conv)
    );
    println!(
        "| pass with nothing to do (CLI process) | {} | {} | – | {:.2}× |",
        b_noop.show(),
        c_noop.show(),
        ratio(&b_noop, &c_noop)
    );
    println!(
        "| pass with nothing to do (in-process) | {} , {max_calls} API calls | – | – | – |",
        b_noop_inproc.show()
    );
    println!(
        "| one container changed | {} | {} | – | {:.2}× |",
        b_one.show(),
        c_one.show(),
        ratio(&b_one, &c_one)
    );
    println!(
        "| edit-to-effect (daemon) | median {}, max {} | – | – | – |",
        ms(edits.median()),
        ms(edits.max())
    );
    match rest {
        Some((s, rss, cpu, sw)) => println!("| daemon at rest {s} s | {:.1} MB RSS, {:.0} ms CPU, {sw} context switches | – | – | – |", rss as f64 / 1024.0, cpu * 1000.0),
        None => println!("| daemon at rest | n/a | – | – | – |"),
    }
    println!("| parse 10,000 records | {} | – | – | – |", parse.show());
    println!("| plan 10,000 × 10,000 | {} | – | – | – |", planning.show());

    let results = json!({
        "n": n, "runs": a.runs,
        "converge": { "berth": b_conv.json(), "compose": c_conv.json(), "floor": f_conv.json(),
                      "ratio_compose": ratio(&b_conv, &c_conv), "ratio_floor": ratio(&b_conv, &f_conv) },
        "noop": { "berth_cli": b_noop.json(), "compose": c_noop.json(), "berth_in_process": b_noop_inproc.json(),
                  "api_calls_max": max_calls, "ratio_compose": ratio(&b_noop, &c_noop) },
        "one_changed": { "berth": b_one.json(), "compose": c_one.json(), "ratio_compose": ratio(&b_one, &c_one) },
        "edit_to_effect": edits.json(),
        "daemon_at_rest": rest.map(|(s, rss, cpu, sw)| json!({ "seconds": s, "rss_kb": rss, "cpu_s": cpu, "context_switches": sw })),
        "parse_10k": parse.json(),
        "plan_10k": planning.json(),
    });
    if let Err(e) = std::fs::write(
        &a.json,
        serde_json::to_vec_pretty(&results).unwrap_or_default(),
    ) {
        eprintln!("cannot write {}: {e}", a.json.display());
    } else {
        println!("\nwritten: {}", a.json.display());
    }
}
