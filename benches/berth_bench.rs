//! berth against docker-compose and the engine's own floor, in one run on
//! one machine. Run it with `scripts/bench.sh` (not part of the tests).
//!
//!   berth_bench [--quick] [--n N] [--runs R] [--rest S] [--edits E]
//!               [--json FILE] [--workdir DIR] [--pure]
//!
//! Each figure is the median of R runs with its min–max spread; ratios are
//! taken pair by pair (run i of berth over run i of the peer), and the
//! order of berth, compose and the floor rotates from run to run so drift
//! in the engine does not favour one. Everything made is removed at the end,
//! also on error, panic, SIGINT or SIGTERM.

#[path = "berth_bench/daemon.rs"]
mod daemon;
#[path = "berth_bench/host.rs"]
mod host;
#[path = "berth_bench/proxy.rs"]
mod proxy;
#[path = "berth_bench/pure.rs"]
mod pure;
#[path = "berth_bench/stats.rs"]
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context};
use berth::config::Config;
use berth::engine::{DockerEngine, Engine, ObservedContainer};
use futures_util::StreamExt;
use serde_json::{json, Value};

use host::{berth, compose, name, ok, timed, write_sandbox, World};
use stats::{dur, Figure, Ratio};

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

struct Args {
    n: usize,
    runs: usize,
    quick: bool,
    pure: bool,
    rest_seconds: u64,
    edits: usize,
    json: PathBuf,
    workdir: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut quick = false;
    let mut pure = false;
    let (mut n, mut runs, mut rest, mut edits) = (None, None, None, None);
    let mut json = PathBuf::from("bench-results.json");
    let mut workdir = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--n" => n = Some(value("--n")?.parse::<usize>()?),
            "--runs" => runs = Some(value("--runs")?.parse::<usize>()?),
            "--rest" => rest = Some(value("--rest")?.parse::<u64>()?),
            "--edits" => edits = Some(value("--edits")?.parse::<usize>()?),
            "--json" => json = PathBuf::from(value("--json")?),
            "--workdir" => workdir = Some(PathBuf::from(value("--workdir")?)),
            "--quick" => quick = true,
            "--pure" => pure = true,
            "--bench" => {} // added by `cargo bench`
            other => bail!(
                "unknown argument {other}\nusage: berth_bench [--quick] [--n N] [--runs R] [--rest S] [--edits E] [--json FILE] [--workdir DIR] [--pure]"
            ),
        }
    }
    let a = Args {
        n: n.unwrap_or(if quick { 10 } else { 50 }),
        runs: runs.unwrap_or(if quick { 3 } else { 5 }),
        rest_seconds: rest.unwrap_or(if quick { 10 } else { 60 }),
        edits: edits.unwrap_or(if quick { 3 } else { 7 }),
        quick,
        pure,
        json,
        workdir,
    };
    ensure!((1..=5000).contains(&a.n), "--n must be between 1 and 5000");
    ensure!(
        a.runs >= 1 && a.edits >= 1,
        "--runs and --edits must be at least 1"
    );
    Ok(a)
}

/// What the runs share.
struct Ctx<'a> {
    dir: &'a Path,
    n: usize,
    rt: &'a tokio::runtime::Runtime,
    engine: DockerEngine,
    docker: bollard::Docker,
    config: Config,
}

/// Name → (ID, running) of the containers `pick` selects.
type Snapshot = BTreeMap<String, (String, bool)>;

impl Ctx<'_> {
    fn snapshot(&self, pick: impl Fn(&ObservedContainer) -> bool) -> anyhow::Result<Snapshot> {
        let observed = self.rt.block_on(self.engine.observe())?;
        Ok(observed
            .containers
            .iter()
            .filter(|c| pick(c))
            .map(|c| (c.name.clone(), (c.id.clone(), c.is_running())))
            .collect())
    }
    fn berths(&self) -> anyhow::Result<Snapshot> {
        self.snapshot(|c| c.is_ours(host::INSTANCE))
    }
    fn composes(&self) -> anyhow::Result<Snapshot> {
        self.snapshot(|c| {
            c.labels
                .get("com.docker.compose.project")
                .map(String::as_str)
                == Some(host::PROJECT)
        })
    }
    fn floors(&self) -> anyhow::Result<Snapshot> {
        self.snapshot(|c| c.name.starts_with(host::FLOOR_PREFIX))
    }
    fn sandbox(&self, changed: Option<usize>) -> anyhow::Result<()> {
        write_sandbox(self.dir, self.n, changed).context("writing the sandbox")
    }
}

fn all_running(s: &Snapshot, n: usize, what: &str) -> anyhow::Result<()> {
    let running = s.values().filter(|(_, r)| *r).count();
    ensure!(
        s.len() == n && running == n,
        "{what}: {running} of {} containers running, {n} expected",
        s.len()
    );
    Ok(())
}

/// Names whose container is new, gone or another.
fn changed(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut names: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k).map(|v| &v.0) != after.get(*k).map(|v| &v.0))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

#[derive(Default)]
struct Runs {
    b_conv: Figure,
    c_conv: Figure,
    f_conv: Figure,
    b_noop: Figure,
    b_noop_pass: Figure,
    noop_calls: Vec<u64>,
    c_noop: Figure,
    b_one: Figure,
    c_one: Figure,
    f_one: Figure,
    /// Where a no-op `berth apply` spends its time, phase by phase.
    phases: BTreeMap<&'static str, Figure>,
    /// The part of berth's one-change `apply` between the journal's
    /// begin and end of the pass: the recreate's engine calls and their
    /// journal lines (the rest is start-up, connect, observe, plan).
    b_one_acting: Figure,
    /// The five engine calls of the floor's recreate, one by one.
    recreate_steps: BTreeMap<&'static str, Figure>,
}

/// berth: converge with `berth apply`, a no-op `berth apply`, a no-op pass
/// in this process (its API calls counted), then one record changed.
fn berth_round(ctx: &Ctx, changed_at: usize, r: &mut Runs) -> anyhow::Result<()> {
    host::remove_all();
    let (t, out) = timed(&mut berth(ctx.dir, "berth.toml", &["apply"]));
    ok("berth apply (from nothing)", out)?;
    let before = ctx.berths()?;
    all_running(&before, ctx.n, "after berth apply")?;
    r.b_conv.push(t);

    let (t, out) = timed(&mut berth(ctx.dir, "berth.toml", &["apply"]));
    let said = ok("berth apply (nothing to do)", out)?;
    ensure!(
        said.trim() == "no changes",
        "a second berth apply did something: {said}"
    );
    r.b_noop.push(t);

    let (t, calls) = ctx.rt.block_on(noop_pass(ctx))?;
    r.b_noop_pass.push(t);
    r.noop_calls.push(calls);
    for (phase, t) in noop_phases(ctx)? {
        r.phases.entry(phase).or_default().push(t);
    }

    ctx.sandbox(Some(changed_at))?;
    let (t, out) = timed(&mut berth(ctx.dir, "berth.toml", &["apply"]));
    ok("berth apply (one change)", out)?;
    let after = ctx.berths()?;
    all_running(&after, ctx.n, "after the change")?;
    let recreated = changed(&before, &after);
    ensure!(
        recreated == [name(changed_at)],
        "berth recreated {recreated:?}, expected only {}",
        name(changed_at)
    );
    r.b_one.push(t);
    if let Some(acting) = last_pass_seconds(ctx)? {
        r.b_one_acting.push(acting);
    }
    ctx.sandbox(None)?;
    host::remove_all();
    Ok(())
}

/// Seconds between the begin and the end of the last journalled pass.
fn last_pass_seconds(ctx: &Ctx) -> anyhow::Result<Option<f64>> {
    let state = berth::state::State::open(&ctx.config.state_dir)?;
    let at = |stamp: &str| -> Option<SystemTime> {
        chrono::DateTime::parse_from_rfc3339(stamp)
            .ok()
            .map(Into::into)
    };
    Ok(state.passes(1)?.first().and_then(|p| {
        let began = at(&p.started_at)?;
        let ended = at(p.finished_at.as_deref()?)?;
        ended.duration_since(began).ok().map(|d| d.as_secs_f64())
    }))
}

/// One pass as berthd runs it (journal already open), nothing to do:
/// seconds and Docker API calls.
async fn noop_pass(ctx: &Ctx<'_>) -> anyhow::Result<(f64, u64)> {
    let state = berth::state::State::open(&ctx.config.state_dir)?;
    let stop = AtomicBool::new(false);
    let before = ctx.engine.api_calls();
    let t = Instant::now();
    let snapshot = berth::db::Snapshot::read(&ctx.config.db_dir);
    let input = berth::reconcile::PassInput {
        snapshot: &snapshot,
        trigger: "bench",
        at: std::time::SystemTime::now(),
        allow_mass_removal: false,
    };
    let report = berth::reconcile::run_pass(
        &ctx.config,
        &ctx.engine,
        Some(&state),
        input,
        &stop,
        |_: &berth::apply::Outcome| {},
    )
    .await?;
    let seconds = t.elapsed().as_secs_f64();
    ensure!(
        report.outcomes.is_empty() && report.plan.problems.is_empty(),
        "the in-process pass was not a no-op: {} actions",
        report.outcomes.len()
    );
    Ok((seconds, ctx.engine.api_calls() - before))
}

/// The phases of a no-op `berth apply`, each timed on its own: starting a
/// berth process, connecting (one `/_ping`), opening state.db, reading the db into specs,
/// observing (3 list calls), planning, journalling the pass.
fn noop_phases(ctx: &Ctx) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let mut out = Vec::new();
    let (t, o) = timed(std::process::Command::new(host::berth_bin()).arg("--version"));
    ok("berth --version", o)?;
    out.push(("1 process start (berth --version)", t));
    let t = Instant::now();
    let engine = ctx
        .rt
        .block_on(DockerEngine::connect(&ctx.config.docker_host))?;
    out.push(("2 connect (GET /_ping)", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let state = berth::state::State::open(&ctx.config.state_dir)?;
    out.push(("3 open state.db", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let declared = berth::declared::load(&ctx.config)?;
    out.push(("4 read db → specs", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let observed = ctx.rt.block_on(engine.observe())?;
    out.push(("5 observe (3 list calls)", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let p = berth::plan::plan(&declared, &observed, SystemTime::now());
    out.push(("6 plan", t.elapsed().as_secs_f64()));
    ensure!(p.actions.is_empty(), "not converged");
    let t = Instant::now();
    let id = state.begin_pass("bench phases")?;
    state.finish_pass(id, 0, 0, 0)?;
    out.push(("7 journal the pass", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    drop(state);
    out.push(("8 close state.db", t.elapsed().as_secs_f64()));
    Ok(out)
}

/// docker-compose: `up -d` from nothing, again, then with one service changed.
fn compose_round(ctx: &Ctx, changed_at: usize, r: &mut Runs) -> anyhow::Result<()> {
    host::remove_all();
    let (t, out) = timed(&mut compose(ctx.dir, &["up", "-d"], false));
    ok("docker-compose up -d (from nothing)", out)?;
    let before = ctx.composes()?;
    all_running(&before, ctx.n, "after docker-compose up")?;
    r.c_conv.push(t);

    let (t, out) = timed(&mut compose(ctx.dir, &["up", "-d"], false));
    ok("docker-compose up -d (nothing to do)", out)?;
    let again = ctx.composes()?;
    ensure!(
        changed(&before, &again).is_empty(),
        "a second docker-compose up recreated {:?}",
        changed(&before, &again)
    );
    r.c_noop.push(t);

    ctx.sandbox(Some(changed_at))?;
    let (t, out) = timed(&mut compose(ctx.dir, &["up", "-d"], false));
    ok("docker-compose up -d (one change)", out)?;
    let after = ctx.composes()?;
    all_running(&after, ctx.n, "after the compose change")?;
    let recreated = changed(&before, &after);
    ensure!(
        recreated.len() == 1 && recreated[0].contains(&format!("_c{changed_at:02}_")),
        "docker-compose recreated {recreated:?}"
    );
    r.c_one.push(t);
    ctx.sandbox(None)?;
    let _ = timed(&mut compose(ctx.dir, &["down", "-t", "1"], false));
    host::remove_all();
    Ok(())
}

/// The floor: the creates and starts berth issues, straight to the engine
/// through the same client, 8 at a time; then the five calls of one
/// recreate (create the replacement, stop, remove, rename, start).
fn floor_round(ctx: &Ctx, changed_at: usize, r: &mut Runs) -> anyhow::Result<()> {
    ensure!(
        !host::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst),
        "interrupted"
    );
    host::remove_all();
    let declared = berth::declared::load(&ctx.config)?;
    ensure!(
        declared.specs.len() == ctx.n,
        "the sandbox declares {} specs",
        declared.specs.len()
    );
    let items: Vec<_> = declared
        .specs
        .values()
        .map(|s| {
            let labels = berth::apply::labels_for("benchfloor", &s.name, &s.config, &s.spec_hash);
            (format!("{}{}", host::FLOOR_PREFIX, s.name), s, labels)
        })
        .collect();
    let engine = &ctx.engine;
    let concurrency = ctx.config.apply_concurrency;
    ctx.rt
        .block_on(engine.ensure_network(host::NETWORK, "bench"))?;
    let (t, results) = ctx.rt.block_on(async {
        let t = Instant::now();
        let results: Vec<Result<(), berth::engine::EngineError>> =
            futures_util::stream::iter(items.iter())
                .map(|(name, spec, labels)| async move {
                    let id = engine.create_container(name, &spec.config, labels).await?;
                    engine.start_container(&id).await
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        (t.elapsed().as_secs_f64(), results)
    });
    if let Some(e) = results.into_iter().find_map(Result::err) {
        bail!("floor create/start: {e}");
    }
    let before = ctx.floors()?;
    all_running(&before, ctx.n, "after the floor")?;
    r.f_conv.push(t);

    let target = format!("{}{}", host::FLOOR_PREFIX, name(changed_at));
    let (_, spec, _) = items
        .iter()
        .find(|(n, _, _)| *n == target)
        .context("floor container")?;
    let old = before.get(&target).context("floor container id")?.0.clone();
    let mut config = spec.config.clone();
    config.memory = Some(host::CHANGED_MIB << 20);
    let labels = berth::apply::labels_for("benchfloor", &spec.name, &config, "changed");
    let grace = ctx.config.stop_grace_seconds;
    let (t, steps) = ctx.rt.block_on(async {
        let t = Instant::now();
        let mut steps = Vec::new();
        let mut lap = Instant::now();
        let mut step = |name: &'static str| {
            steps.push((name, lap.elapsed().as_secs_f64()));
            lap = Instant::now();
        };
        let new = engine
            .create_container(&format!("{target}_berth-new"), &config, &labels)
            .await?;
        step("1 create the replacement");
        engine.stop_container(&old, grace).await?;
        step("2 stop the old one");
        engine.remove_container(&old).await?;
        step("3 remove the old one");
        engine.rename_container(&new, &target).await?;
        step("4 rename");
        engine.start_container(&new).await?;
        step("5 start");
        Ok::<_, berth::engine::EngineError>((t.elapsed().as_secs_f64(), steps))
    })?;
    for (name, t) in steps {
        r.recreate_steps.entry(name).or_default().push(t);
    }
    let after = ctx.floors()?;
    all_running(&after, ctx.n, "after the floor recreate")?;
    r.f_one.push(t);
    host::remove_all();
    Ok(())
}

/// The API calls each tool makes for the same three jobs, through the
/// counting proxy (untimed).
struct Calls {
    by_tool: BTreeMap<&'static str, BTreeMap<&'static str, Vec<String>>>,
}

fn counting_round(ctx: &Ctx, changed_at: usize) -> anyhow::Result<Calls> {
    let socket = host::count_socket(ctx.dir);
    let proxy = proxy::start(ctx.rt, &socket, PathBuf::from(DEFAULT_SOCKET))?;
    let mut by_tool = BTreeMap::new();

    host::remove_all();
    let apply = || timed(&mut berth(ctx.dir, "berth-count.toml", &["apply"])).1;
    let berth_jobs = count_jobs(ctx, &proxy, "berth apply", changed_at, apply)?;
    by_tool.insert("berth", berth_jobs);
    host::remove_all();

    let up = || timed(&mut compose(ctx.dir, &["up", "-d"], true)).1;
    let compose_jobs = count_jobs(ctx, &proxy, "docker-compose up", changed_at, up)?;
    by_tool.insert("compose", compose_jobs);
    let _ = timed(&mut compose(ctx.dir, &["down", "-t", "1"], false));
    host::remove_all();
    drop(proxy);
    let _ = std::fs::remove_file(&socket);
    Ok(Calls { by_tool })
}

/// One tool through the three jobs (from nothing, nothing to do, one
/// change), each job's requests as the proxy saw them.
fn count_jobs(
    ctx: &Ctx,
    proxy: &proxy::Proxy,
    tool: &str,
    changed_at: usize,
    run: impl Fn() -> std::io::Result<std::process::Output>,
) -> anyhow::Result<BTreeMap<&'static str, Vec<String>>> {
    let mut jobs = BTreeMap::new();
    proxy.log.take();
    for (job, what, changed) in [
        ("converge", "from nothing", None),
        ("noop", "nothing to do", None),
        ("one_changed", "one change", Some(changed_at)),
    ] {
        if changed.is_some() {
            ctx.sandbox(changed)?;
        }
        ok(&format!("counted {tool} ({what})"), run())?;
        jobs.insert(job, proxy.log.take());
    }
    ctx.sandbox(None)?;
    Ok(jobs)
}

/// berthd on the sandbox: from start to N running, edit-to-effect, at rest.
#[derive(Default)]
struct DaemonFigures {
    /// Why the daemon rows are n/a.
    not_ready: Option<String>,
    start_to_converged: Option<f64>,
    edits: Figure,
    /// Wall-clock start of each edit, to find its pass in the journal.
    edit_starts: Vec<SystemTime>,
    /// Per edit: from the edit to the start of the pass it caused, and
    /// that pass's own time (observe, plan, the recreate), from the journal.
    edit_to_pass: Figure,
    edit_pass: Figure,
    edit_timeouts: usize,
    rest: Option<daemon::Rest>,
    /// Passes journalled during the rest window: (second of the window, trigger, actions).
    rest_passes: Vec<(f64, String, i64)>,
}

/// Polls the engine (one inspect every 10 ms) until `name` runs with `bytes`
/// of memory; seconds since `since`, or None after `timeout`.
async fn running_with_memory(
    docker: &bollard::Docker,
    name: &str,
    bytes: i64,
    since: Instant,
    timeout: Duration,
) -> Option<f64> {
    loop {
        if let Ok(c) = docker.inspect_container(name, None).await {
            let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            let memory = c.host_config.as_ref().and_then(|h| h.memory).unwrap_or(0);
            if running && memory == bytes {
                return Some(since.elapsed().as_secs_f64());
            }
        }
        if since.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("berthd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn daemon_round(ctx: &Ctx, a: &Args) -> anyhow::Result<DaemonFigures> {
    let mut f = DaemonFigures::default();
    host::remove_all();
    ctx.sandbox(None)?;
    let mut d = daemon::Daemon::spawn(ctx.dir)?;
    let t0 = Instant::now();
    loop {
        if !d.alive() {
            f.not_ready = Some(format!("berthd exited: {}", log_tail(ctx.dir)));
            return Ok(f);
        }
        let s = ctx.berths()?;
        if s.len() == ctx.n && s.values().all(|(_, r)| *r) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            f.not_ready = Some(format!("{} of {} containers after 120 s", s.len(), ctx.n));
            return Ok(f);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f.start_to_converged = Some(t0.elapsed().as_secs_f64());
    // Let the passes the engine's own events trigger go by.
    std::thread::sleep(Duration::from_millis(1500));

    for k in 0..a.edits {
        let i = (k * 7 + 3) % ctx.n;
        let mib = host::CHANGED_MIB + k as i64;
        f.edit_starts.push(SystemTime::now());
        let t = Instant::now();
        let (_, out) = timed(&mut berth(
            ctx.dir,
            "berth.toml",
            &[
                "db",
                "docker_containers",
                "setprop",
                &name(i),
                "MaxMemory",
                &format!("{mib}M"),
            ],
        ));
        ok("berth db setprop", out)?;
        let took = ctx.rt.block_on(running_with_memory(
            &ctx.docker,
            &name(i),
            mib << 20,
            t,
            Duration::from_secs(10),
        ));
        match took {
            Some(s) => f.edits.push(s),
            None if k == 0 => {
                f.not_ready = Some(format!(
                    "no recreate within 10 s of an edit{}",
                    if d.alive() { "" } else { "; berthd exited" }
                ));
                return Ok(f);
            }
            None => f.edit_timeouts += 1,
        }
        std::thread::sleep(Duration::from_millis(1000));
    }

    // At rest: nothing changes for `rest_seconds`, the N containers run.
    std::thread::sleep(Duration::from_secs(3));
    if a.rest_seconds > 0 {
        f.rest = daemon::rest(d.pid, a.rest_seconds);
        if !d.alive() {
            f.not_ready = Some(format!(
                "berthd exited while at rest: {}",
                log_tail(ctx.dir)
            ));
        }
    }
    d.stop();
    edit_passes(ctx, &mut f)?;
    if let Some(rest) = &f.rest {
        // The passes of the window, and those of the 30 s before it (their
        // aftermath may fall in the window).
        let state = berth::state::State::open(&ctx.config.state_dir)?;
        let since = rest.from - Duration::from_secs(30);
        let offset = |stamp: &str| {
            chrono::DateTime::parse_from_rfc3339(stamp)
                .map(|t| {
                    let t: SystemTime = t.into();
                    match t.duration_since(rest.from) {
                        Ok(d) => d.as_secs_f64(),
                        Err(e) => -e.duration().as_secs_f64(),
                    }
                })
                .unwrap_or(f64::NAN)
        };
        let (from, to) = (
            berth::state::timestamp(since),
            berth::state::timestamp(rest.to),
        );
        for p in state.passes(1000)? {
            if p.started_at >= from && p.started_at <= to {
                f.rest_passes
                    .push((offset(&p.started_at), p.trigger, p.actions));
            }
        }
        f.rest_passes.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    host::remove_all();
    Ok(f)
}

/// For each edit, the first pass a file change started after it: how long
/// until it started, how long it took.
fn edit_passes(ctx: &Ctx, f: &mut DaemonFigures) -> anyhow::Result<()> {
    let state = berth::state::State::open(&ctx.config.state_dir)?;
    let mut passes = state.passes(1000)?;
    passes.reverse();
    let at = |stamp: &str| -> Option<SystemTime> {
        chrono::DateTime::parse_from_rfc3339(stamp)
            .ok()
            .map(Into::into)
    };
    for start in &f.edit_starts {
        let from = berth::state::timestamp(*start);
        let Some(p) = passes
            .iter()
            .find(|p| p.started_at >= from && p.trigger.starts_with("file changed"))
        else {
            continue;
        };
        let (Some(began), Some(ended)) = (at(&p.started_at), p.finished_at.as_deref().and_then(at))
        else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (began.duration_since(*start), ended.duration_since(began)) {
            f.edit_to_pass.push(a.as_secs_f64());
            f.edit_pass.push(b.as_secs_f64());
        }
    }
    Ok(())
}

/// The passes journalled inside the rest window.
fn passes_in_rest(f: &DaemonFigures) -> Vec<&(f64, String, i64)> {
    let seconds = f.rest.as_ref().map_or(0, |r| r.seconds) as f64;
    f.rest_passes
        .iter()
        .filter(|(at, _, _)| *at >= 0.0 && *at <= seconds + 1.0)
        .collect()
}

/// Seconds of the rest window in which berthd did something no journalled
/// pass explains: a thread running outside [pass − 5 s, pass + 2 s] (tokio's
/// timer wheel wakes a 60 s sleep in its last seconds too: at the start of
/// its last 4 s slot, of its last 64 ms slot, then at the deadline), or a
/// thread ending more than 15 s after any pass (tokio lets an idle blocking
/// thread go 10 s after its last job).
fn unexplained_wakeups(f: &DaemonFigures) -> Vec<(u64, String)> {
    let Some(rest) = &f.rest else { return vec![] };
    let near = |s: u64, before: i64, after: i64| {
        f.rest_passes.iter().any(|(at, _, _)| {
            let p = at.floor() as i64;
            (p - before..=p + after).contains(&(s as i64))
        })
    };
    let mut out = Vec::new();
    for (s, d) in &rest.active {
        if d.switches > 0 && !near(*s, 5, 2) {
            out.push((
                *s,
                format!("{} context switches: {}", d.switches, d.woke.join(", ")),
            ));
        }
        if !d.exited.is_empty() && !near(*s, 0, 15) {
            out.push((*s, format!("thread exit: {}", d.exited.join(", "))));
        }
    }
    out
}

fn machine() -> Value {
    let first = |cmd: &mut std::process::Command| {
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "kernel": first(std::process::Command::new("uname").arg("-r")),
        "docker": host::docker(&["version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"]).trim(),
        "docker_compose": first(std::process::Command::new("docker-compose").args(["version", "--short"])),
        "berth": first(std::process::Command::new(host::berth_bin()).arg("--version")),
        "date": chrono::Local::now().to_rfc3339(),
    })
}

struct Results {
    a_n: usize,
    runs: Runs,
    calls: Option<Calls>,
    daemon: DaemonFigures,
    pure: pure::Pure,
    machine: Value,
    image: String,
}

fn run(a: &Args, world: &World, rt: &tokio::runtime::Runtime) -> anyhow::Result<Results> {
    let dir = world.dir.as_path();
    let image = host::make_image()?;
    write_sandbox(dir, a.n, None)?;
    let config = Config::load(&dir.join("berth.toml"))?;
    let engine = rt.block_on(DockerEngine::connect(&config.docker_host))?;
    let docker = rt.block_on(async {
        bollard::Docker::connect_with_unix(DEFAULT_SOCKET, 120, bollard::API_DEFAULT_VERSION)?
            .negotiate_version()
            .await
    })?;
    let ctx = Ctx {
        dir,
        n: a.n,
        rt,
        engine,
        docker,
        config,
    };
    let machine = machine();
    eprintln!(
        "berth bench: N={} containers, {} runs, {} cores, docker {}, docker-compose {}; sandbox {}",
        a.n,
        a.runs,
        machine["cores"],
        machine["docker"].as_str().unwrap_or("?"),
        machine["docker_compose"].as_str().unwrap_or("?"),
        dir.display()
    );

    let mut runs = Runs::default();
    for run in 0..a.runs {
        let changed_at = (run * 11 + 7) % a.n;
        // Rotate who goes first, so a slow engine moment or drift across
        // the run does not always fall on the same tool.
        for k in 0..3 {
            match (run + k) % 3 {
                0 => berth_round(&ctx, changed_at, &mut runs)?,
                1 => compose_round(&ctx, changed_at, &mut runs)?,
                _ => floor_round(&ctx, changed_at, &mut runs)?,
            }
        }
        eprintln!(
            "run {}/{}: converge berth {} compose {} floor {}; no-op berth {} compose {}; one change berth {} compose {} floor {}",
            run + 1,
            a.runs,
            dur(*runs.b_conv.0.last().unwrap_or(&f64::NAN)),
            dur(*runs.c_conv.0.last().unwrap_or(&f64::NAN)),
            dur(*runs.f_conv.0.last().unwrap_or(&f64::NAN)),
            dur(*runs.b_noop.0.last().unwrap_or(&f64::NAN)),
            dur(*runs.c_noop.0.last().unwrap_or(&f64::NAN)),
            dur(*runs.b_one.0.last().unwrap_or(&f64::NAN)),
            dur(*runs.c_one.0.last().unwrap_or(&f64::NAN)),
            dur(*runs.f_one.0.last().unwrap_or(&f64::NAN)),
        );
    }

    eprintln!("counting API calls (through a proxy, untimed)");
    let calls = match counting_round(&ctx, 7 % a.n) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("counting API calls failed: {e:#}");
            host::remove_all();
            None
        }
    };

    eprintln!(
        "berthd: start, {} edits, {} s at rest",
        a.edits, a.rest_seconds
    );
    let daemon = daemon_round(&ctx, a)?;
    if let Some(why) = &daemon.not_ready {
        eprintln!("berthd rows: n/a (daemon not ready: {why})");
    }

    eprintln!("pure code at 10,000 records");
    let pure = pure::run(if a.quick { 5 } else { 11 })?;
    Ok(Results {
        a_n: a.n,
        runs,
        calls,
        daemon,
        pure,
        machine,
        image,
    })
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// The table (markdown) and the JSON of a run.
fn report(a: &Args, r: &Results) -> (String, Value) {
    let n = r.a_n;
    let rr = &r.runs;
    let mut t = String::new();
    let mut row = |cells: [&str; 7]| {
        t.push_str(&format!("| {} |\n", cells.join(" | ")));
    };
    row([
        "measure",
        "berth",
        "docker-compose",
        "floor",
        "berth/compose",
        "berth/floor",
        "target",
    ]);
    row(["---", "---", "---", "---", "---", "---", "---"]);

    let conv_cf = Ratio::of(&rr.b_conv, &rr.c_conv);
    let conv_ff = Ratio::of(&rr.b_conv, &rr.f_conv);
    let conv_met = conv_ff.is_some_and(|r| r.median <= 1.10);
    row([
        &format!("converge {n} from nothing"),
        &rr.b_conv.show(),
        &rr.c_conv.show(),
        &rr.f_conv.show(),
        &Ratio::show(conv_cf),
        &Ratio::show(conv_ff),
        &format!("≤ 1.10× floor: {}", met(conv_met)),
    ]);

    let max_calls = rr.noop_calls.iter().copied().max().unwrap_or(0);
    let noop_cf = Ratio::of(&rr.b_noop, &rr.c_noop);
    let noop_met = rr.b_noop.median() <= 0.030 && max_calls <= 3;
    row([
        "no-op pass, `berth apply` process",
        &rr.b_noop.show(),
        &rr.c_noop.show(),
        "–",
        &Ratio::show(noop_cf),
        "–",
        &format!("≤ 30 ms, ≤ 3 calls: {}", met(noop_met)),
    ]);
    row([
        "no-op pass, in berthd's way (in-process)",
        &format!("{}, {max_calls} API calls", rr.b_noop_pass.show()),
        "–",
        "–",
        "–",
        "–",
        "",
    ]);

    let one_cf = Ratio::of(&rr.b_one, &rr.c_one);
    let one_ff = Ratio::of(&rr.b_one, &rr.f_one);
    row([
        "one container changed (only it recreated)",
        &rr.b_one.show(),
        &rr.c_one.show(),
        &rr.f_one.show(),
        &Ratio::show(one_cf),
        &Ratio::show(one_ff),
        "–",
    ]);

    let d = &r.daemon;
    let na = d
        .not_ready
        .as_ref()
        .map(|why| format!("n/a (daemon not ready: {why})"));
    let edit_met = !d.edits.is_empty() && d.edits.max() <= 1.0 && d.edit_timeouts == 0;
    match (&na, d.edits.is_empty()) {
        (Some(na), true) => row([
            "edit-to-effect with berthd",
            na,
            "–",
            "–",
            "–",
            "–",
            "≤ 1 s: n/a",
        ]),
        _ => row([
            "edit-to-effect with berthd (db write → new container running)",
            &format!(
                "median {}, max {} ({} edits{}); edit → pass start {}, the pass {}",
                dur(d.edits.median()),
                dur(d.edits.max()),
                d.edits.0.len(),
                if d.edit_timeouts > 0 {
                    format!(", {} over 10 s", d.edit_timeouts)
                } else {
                    String::new()
                },
                d.edit_to_pass.show(),
                d.edit_pass.show()
            ),
            "–",
            "–",
            "–",
            "–",
            &format!("≤ 1 s: {}", met(edit_met)),
        ]),
    }
    let unexplained = unexplained_wakeups(d);
    let rest_met = d
        .rest
        .as_ref()
        .is_some_and(|s| s.rss_kb <= 20 * 1024 && unexplained.is_empty());
    match (&d.rest, &na) {
        (Some(s), _) => row([
            &format!("berthd at rest {} s with the {n} containers", s.seconds),
            &format!(
                "{:.1} MB RSS (peak {:.1}), {} CPU, {} context switches and {} thread exit(s), active in {} of {} s; passes: {}",
                s.rss_kb as f64 / 1024.0,
                s.hwm_kb as f64 / 1024.0,
                dur(s.cpu_ns as f64 / 1e9),
                s.switches,
                s.exited.len(),
                s.active.len(),
                s.seconds,
                if passes_in_rest(d).is_empty() {
                    "none".to_string()
                } else {
                    passes_in_rest(d)
                        .into_iter()
                        .map(|(at, trig, _)| format!("{trig} at {at:.0} s"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            "–",
            "–",
            "–",
            "–",
            &format!(
                "≤ 20 MB, no wakeups beyond the resync: {}{}",
                met(rest_met),
                if unexplained.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (other wakeups: {})",
                        unexplained
                            .iter()
                            .map(|(sec, what)| format!("{what} at {sec} s"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                }
            ),
        ]),
        (None, Some(na)) => row(["berthd at rest", na, "–", "–", "–", "–", "n/a"]),
        (None, None) => row(["berthd at rest", "not measured (--rest 0)", "–", "–", "–", "–", ""]),
    }
    if let Some(s) = d.start_to_converged {
        row([
            &format!("berthd start → {n} running (from nothing)"),
            &dur(s),
            "–",
            "–",
            "–",
            "–",
            "",
        ]);
    }
    let p = &r.pure;
    let parse_met = p.parse.median() <= 0.020;
    let plan_met = p.plan.median() <= 0.050;
    row([
        "parse a 10,000-record db",
        &p.parse.show(),
        "–",
        "–",
        "–",
        "–",
        &format!("≤ 20 ms: {}", met(parse_met)),
    ]);
    row([
        "10,000 records → validated specs",
        &p.declare.show(),
        "–",
        "–",
        "–",
        "–",
        "",
    ]);
    row([
        "plan 10,000 specs against 10,000 containers",
        &p.plan.show(),
        "–",
        "–",
        "–",
        "–",
        &format!("≤ 50 ms: {}", met(plan_met)),
    ]);

    if let Some(calls) = &r.calls {
        t.push_str("\nDocker API calls (one counted round, through a proxy):\n\n");
        t.push_str("| job | berth | docker-compose |\n|---|---|---|\n");
        for job in ["converge", "noop", "one_changed"] {
            let cell = |tool: &str| {
                let reqs = &calls.by_tool[tool][job];
                let top: Vec<String> = proxy::summary(reqs)
                    .into_iter()
                    .take(4)
                    .map(|(k, c)| format!("{c}× {k}"))
                    .collect();
                format!("{}: {}", reqs.len(), top.join(", "))
            };
            t.push_str(&format!(
                "| {job} | {} | {} |\n",
                cell("berth"),
                cell("compose")
            ));
        }
    }

    if !rr.phases.is_empty() {
        t.push_str("\nA no-op `berth apply`, phase by phase (each timed on its own, median of the runs):\n\n");
        t.push_str("| phase | time |\n|---|---|\n");
        for (phase, f) in &rr.phases {
            t.push_str(&format!("| {} | {} |\n", &phase[2..], f.show()));
        }
    }
    if !rr.b_one_acting.is_empty() {
        t.push_str(&format!(
            "\nOne container changed, berth: {} in all, of which {} between the journal's begin and end of the pass (the recreate's five engine calls and their journal lines; the floor's five calls took {}).\n",
            rr.b_one.show(),
            rr.b_one_acting.show(),
            rr.f_one.show()
        ));
    }
    if !rr.recreate_steps.is_empty() {
        t.push_str("\nOne recreate straight to the engine (the floor), call by call:\n\n");
        t.push_str("| call | time |\n|---|---|\n");
        for (step, f) in &rr.recreate_steps {
            t.push_str(&format!("| {} | {} |\n", &step[2..], f.show()));
        }
    }

    let calls_json = r.calls.as_ref().map(|c| {
        let mut v = serde_json::Map::new();
        for (tool, jobs) in &c.by_tool {
            let mut j = serde_json::Map::new();
            for (job, reqs) in jobs {
                j.insert(
                    job.to_string(),
                    json!({
                        "total": reqs.len(),
                        "by_request": proxy::summary(reqs).into_iter().collect::<BTreeMap<_, _>>(),
                    }),
                );
            }
            v.insert(tool.to_string(), Value::Object(j));
        }
        Value::Object(v)
    });
    let results = json!({
        "machine": r.machine,
        "image": { "ref": host::IMAGE, "id": r.image },
        "n": n,
        "runs": a.runs,
        "quick": a.quick,
        "converge": {
            "berth": rr.b_conv.json(), "compose": rr.c_conv.json(), "floor": rr.f_conv.json(),
            "ratio_compose": Ratio::json(conv_cf), "ratio_floor": Ratio::json(conv_ff),
        },
        "noop": {
            "berth_apply_process": rr.b_noop.json(),
            "berth_pass_in_process": rr.b_noop_pass.json(),
            "berth_pass_api_calls": rr.noop_calls,
            "compose": rr.c_noop.json(),
            "ratio_compose": Ratio::json(noop_cf),
            "berth_apply_phases": rr.phases.iter().map(|(k, f)| (k[2..].to_string(), f.json())).collect::<serde_json::Map<_, _>>(),
        },
        "one_changed": {
            "berth": rr.b_one.json(), "compose": rr.c_one.json(), "floor": rr.f_one.json(),
            "ratio_compose": Ratio::json(one_cf), "ratio_floor": Ratio::json(one_ff),
            "berth_pass_acting": rr.b_one_acting.json(),
            "floor_steps": rr.recreate_steps.iter().map(|(k, f)| (k[2..].to_string(), f.json())).collect::<serde_json::Map<_, _>>(),
        },
        "api_calls": calls_json,
        "daemon": {
            "not_ready": d.not_ready,
            "start_to_converged_s": d.start_to_converged,
            "edit_to_effect": d.edits.json(),
            "edit_timeouts": d.edit_timeouts,
            "edit_to_pass_start": d.edit_to_pass.json(),
            "edit_pass": d.edit_pass.json(),
            "at_rest": d.rest.as_ref().map(|s| json!({
                "seconds": s.seconds,
                "rss_kb": s.rss_kb,
                "rss_peak_kb": s.hwm_kb,
                "cpu_s": s.cpu_ns as f64 / 1e9,
                "cpu_ticks": s.cpu_ticks,
                "context_switches": s.switches,
                "active_seconds": s.active.iter().map(|(sec, d)| json!({"second": sec, "context_switches": d.switches, "cpu_s": d.cpu_ns as f64 / 1e9, "threads": d.woke, "exited_threads": d.exited})).collect::<Vec<_>>(),
                "threads": [s.threads.0, s.threads.1],
                "passes": d.rest_passes.iter().map(|(at, trig, actions)| json!({"at_s": at, "trigger": trig, "actions": actions})).collect::<Vec<_>>(),
                "exited_threads": s.exited,
                "unexplained_wakeups": unexplained.iter().map(|(sec, what)| json!({"second": sec, "what": what})).collect::<Vec<_>>(),
            })),
        },
        "pure": {
            "records": pure::RECORDS,
            "db_bytes": p.bytes,
            "parse": p.parse.json(),
            "declare": p.declare.json(),
            "plan": p.plan.json(),
        },
        "targets": {
            "converge_le_1_1_floor": conv_met,
            "noop_le_30ms_3_calls": noop_met,
            "edit_to_effect_le_1s": if d.edits.is_empty() { Value::Null } else { json!(edit_met) },
            "daemon_rest_le_20mb_no_wakeups": if d.rest.is_none() { Value::Null } else { json!(rest_met) },
            "parse_le_20ms": parse_met,
            "plan_le_50ms": plan_met,
        },
    });
    (t, results)
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth_bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    if a.pure {
        return match pure::run(15) {
            Ok(p) => {
                println!(
                    "| parse 10,000 records | {} |\n| declare 10,000 specs | {} |\n| plan 10,000 × 10,000 | {} |",
                    p.parse.show(),
                    p.declare.show(),
                    p.plan.show()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth_bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth_bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    host::on_signal_clean_up(&rt);
    let result = match World::new(a.workdir.clone()) {
        // The world is dropped (everything removed) before the report.
        Ok(world) => run(&a, &world, &rt),
        Err(e) => Err(e),
    };
    match result {
        Ok(results) => {
            let (table, value) = report(&a, &results);
            println!("\n{table}");
            match serde_json::to_vec_pretty(&value)
                .map_err(anyhow::Error::from)
                .and_then(|b| std::fs::write(&a.json, b).map_err(Into::into))
            {
                Ok(()) => println!("written: {}", a.json.display()),
                Err(e) => eprintln!("cannot write {}: {e}", a.json.display()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth_bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
