//! The timed rounds, one per tool: berth, docker-compose and the engine's
//! own floor each converge N containers from nothing, do nothing, then
//! recreate the one container whose record changed. Every run's seconds
//! are kept under (tool, job).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context};
use berth::engine::{DockerEngine, Engine};
use futures_util::StreamExt;
use serde::{Serialize, Serializer};

use crate::ctx::{all_running, changed, Ctx};
use crate::host::{self, berth, compose, name, ok, timed};
use crate::stats::{dur, Figure};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    Berth,
    Compose,
    Floor,
}

impl Tool {
    /// The name the JSON and the log use.
    pub fn key(self) -> &'static str {
        match self {
            Tool::Berth => "berth",
            Tool::Compose => "compose",
            Tool::Floor => "floor",
        }
    }
}

impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Job {
    /// N containers from nothing.
    Converge,
    /// Nothing to do, as a process (`berth apply`, `docker-compose up -d`).
    Noop,
    /// Nothing to do, one pass inside this process as berthd runs it.
    NoopInProcess,
    /// One record changed: only its container recreated.
    OneChange,
    /// The part of berth's one-change `apply` between the journal's begin
    /// and end of the pass: the recreate's engine calls and their journal
    /// lines (the rest is start-up, connect, observe, plan).
    OneChangeActing,
}

impl Job {
    /// The name the JSON and the API-call table use.
    pub fn key(self) -> &'static str {
        match self {
            Job::Converge => "converge",
            Job::Noop => "noop",
            Job::NoopInProcess => "noop_in_process",
            Job::OneChange => "one_changed",
            Job::OneChangeActing => "one_changed_acting",
        }
    }
}

impl Serialize for Job {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

#[derive(Default)]
pub struct Runs {
    /// Seconds of every run, in run order, so two tools' runs pair up.
    pub figures: BTreeMap<(Tool, Job), Figure>,
    /// Docker API calls of each in-process no-op pass.
    pub noop_calls: Vec<u64>,
    /// Where a no-op `berth apply` spends its time, phase by phase.
    pub phases: BTreeMap<&'static str, Figure>,
    /// The five engine calls of the floor's recreate, one by one.
    pub recreate_steps: BTreeMap<&'static str, Figure>,
    /// Set when docker-compose's converge ran past its limit and was
    /// killed: what it had done by then. Its later rounds are skipped.
    pub compose_stalled: Option<String>,
}

static EMPTY: Figure = Figure(Vec::new());

impl Runs {
    /// The runs of `job` by `tool`; none if it never ran.
    pub fn get(&self, tool: Tool, job: Job) -> &Figure {
        self.figures.get(&(tool, job)).unwrap_or(&EMPTY)
    }
    fn push(&mut self, tool: Tool, job: Job, seconds: f64) {
        self.figures.entry((tool, job)).or_default().push(seconds);
    }
    /// The last run's seconds, for the progress line.
    fn last(&self, tool: Tool, job: Job) -> String {
        dur(*self.get(tool, job).0.last().unwrap_or(&f64::NAN))
    }
}

/// `runs` runs of the three rounds, who goes first rotating.
pub fn measure(ctx: &Ctx, runs: usize) -> anyhow::Result<Runs> {
    use {Job::*, Tool::*};
    let mut r = Runs::default();
    for run in 0..runs {
        let changed_at = (run * 11 + 7) % ctx.n;
        // Rotate who goes first, so a slow engine moment or drift across
        // the run does not always fall on the same tool.
        for k in 0..3 {
            match (run + k) % 3 {
                0 => berth_round(ctx, changed_at, &mut r)?,
                1 if r.compose_stalled.is_some() => {}
                1 => compose_round(ctx, changed_at, &mut r)?,
                _ => floor_round(ctx, changed_at, &mut r)?,
            }
        }
        eprintln!(
            "run {}/{}: converge berth {} compose {} floor {}; no-op berth {} compose {}; one change berth {} compose {} floor {}",
            run + 1,
            runs,
            r.last(Berth, Converge),
            r.last(Compose, Converge),
            r.last(Floor, Converge),
            r.last(Berth, Noop),
            r.last(Compose, Noop),
            r.last(Berth, OneChange),
            r.last(Compose, OneChange),
            r.last(Floor, OneChange),
        );
    }
    Ok(r)
}

/// berth: converge with `berth apply`, a no-op `berth apply`, a no-op pass
/// in this process (its API calls counted), then one record changed.
fn berth_round(ctx: &Ctx, changed_at: usize, r: &mut Runs) -> anyhow::Result<()> {
    host::remove_all();
    let (t, out) = timed(&mut berth(ctx.dir, "berth.toml", &["apply"]));
    ok("berth apply (from nothing)", out)?;
    let before = ctx.berths()?;
    all_running(&before, ctx.n, "after berth apply")?;
    r.push(Tool::Berth, Job::Converge, t);

    let (t, out) = timed(&mut berth(ctx.dir, "berth.toml", &["apply"]));
    let said = ok("berth apply (nothing to do)", out)?;
    ensure!(
        said.trim() == "no changes",
        "a second berth apply did something: {said}"
    );
    r.push(Tool::Berth, Job::Noop, t);

    let (t, calls) = ctx.rt.block_on(noop_pass(ctx))?;
    r.push(Tool::Berth, Job::NoopInProcess, t);
    r.noop_calls.push(calls);
    for (phase, t) in noop_phases(ctx)? {
        r.phases.entry(phase).or_default().push(t);
    }

    ctx.sandbox(Some(changed_at))?;
    let (t, out) = timed(&mut berth(ctx.dir, "berth.toml", &["apply"]));
    ok("berth apply (one change)", out)?;
    // Podman's Docker API (before Podman 5) has no update: the change is a
    // recreate, and the old container is kept, stopped, for a rollback.
    let podman = ctx
        .rt
        .block_on(ctx.engine.identify())
        .is_ok_and(|i| i.kind == berth::engine::docker::podman::EngineKind::Podman);
    let mut after = ctx.berths()?;
    after.retain(|name, (_, running)| !(podman && name.ends_with("_berth-old") && !*running));
    all_running(&after, ctx.n, "after the change")?;
    // A memory change is an in-place update on Docker: no container is another.
    let recreated = changed(&before, &after);
    let expected: Vec<String> = if podman {
        vec![name(changed_at)]
    } else {
        Vec::new()
    };
    ensure!(
        recreated == expected,
        "berth recreated {recreated:?} for a memory change (expected {expected:?})"
    );
    r.push(Tool::Berth, Job::OneChange, t);
    if let Some(acting) = last_pass_seconds(ctx)? {
        r.push(Tool::Berth, Job::OneChangeActing, acting);
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
    // The pass reads the dbs once, as berthd's does: inside the timing.
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
/// How long docker-compose may take to converge N before it counts as
/// stalled: about six times its rate at 50 on this machine (0.17 s each).
fn compose_limit(n: usize) -> Duration {
    Duration::from_secs(30 + n as u64)
}

fn compose_round(ctx: &Ctx, changed_at: usize, r: &mut Runs) -> anyhow::Result<()> {
    host::remove_all();
    let limit = compose_limit(ctx.n);
    let (t, out) = host::timed_within(&mut compose(ctx.dir, &["up", "-d"], false), limit);
    let Some(out) = out else {
        let running = ctx.composes()?.values().filter(|(_, up)| *up).count();
        let said = format!(
            "docker-compose up -d stalled: {running} of {} running when it was stopped after {:.0} s",
            ctx.n, t
        );
        eprintln!("{said}");
        r.compose_stalled = Some(said);
        let _ = host::timed_within(&mut compose(ctx.dir, &["down", "-t", "1"], false), limit);
        host::remove_all();
        return Ok(());
    };
    ok("docker-compose up -d (from nothing)", out)?;
    let before = ctx.composes()?;
    all_running(&before, ctx.n, "after docker-compose up")?;
    r.push(Tool::Compose, Job::Converge, t);

    let (t, out) = timed(&mut compose(ctx.dir, &["up", "-d"], false));
    ok("docker-compose up -d (nothing to do)", out)?;
    let again = ctx.composes()?;
    ensure!(
        changed(&before, &again).is_empty(),
        "a second docker-compose up recreated {:?}",
        changed(&before, &again)
    );
    r.push(Tool::Compose, Job::Noop, t);

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
    r.push(Tool::Compose, Job::OneChange, t);
    ctx.sandbox(None)?;
    let _ = timed(&mut compose(ctx.dir, &["down", "-t", "1"], false));
    host::remove_all();
    Ok(())
}

/// The floor: the creates and starts berth issues, straight to the engine
/// through the same client, 8 at a time; then the five calls of one
/// recreate (create the replacement, stop, remove, rename, start).
fn floor_round(ctx: &Ctx, changed_at: usize, r: &mut Runs) -> anyhow::Result<()> {
    ensure!(!host::INTERRUPTED.load(Ordering::SeqCst), "interrupted");
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
    r.push(Tool::Floor, Job::Converge, t);

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
    r.push(Tool::Floor, Job::OneChange, t);
    host::remove_all();
    Ok(())
}
