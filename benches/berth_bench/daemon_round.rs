//! berthd on the sandbox: from start to N running; edit-to-effect for a
//! memory change (a db write until the engine shows the new limit on the
//! same container, updated in place) and for a Command change (until the
//! new container runs: a recreate); a burst of 100 edits 10 ms apart (the
//! passes it cost, from the journal, and the last edit to its effect); then
//! left at rest.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::args::Args;
use crate::ctx::Ctx;
use crate::daemon;
use crate::host::{self, berth, name, ok, timed};
use crate::stats::Figure;

/// A journalled pass: (second of the rest window, trigger, actions).
pub type Pass = (f64, String, i64);

#[derive(Default)]
pub struct DaemonFigures {
    /// Why the daemon rows are n/a.
    pub not_ready: Option<String>,
    pub start_to_converged: Option<f64>,
    /// Memory edits, db write → the engine shows the new limit.
    pub edits: Figure,
    /// Memory edits whose container was another or restarted (ID or
    /// StartedAt changed): an in-place update must have none.
    pub edit_restarts: usize,
    /// Command edits, db write → the new container runs (a recreate).
    pub recreate_edits: Figure,
    pub recreate_timeouts: usize,
    pub burst: Option<Burst>,
    /// Wall-clock start of each edit, to find its pass in the journal.
    edit_starts: Vec<SystemTime>,
    /// Per edit: from the edit to the start of the pass it caused, and
    /// that pass's own time (observe, plan, the recreate), from the journal.
    pub edit_to_pass: Figure,
    pub edit_pass: Figure,
    pub edit_timeouts: usize,
    pub rest: Option<daemon::Rest>,
    /// Passes journalled during the rest window and the 30 s before it.
    pub rest_passes: Vec<Pass>,
}

/// 100 edits 10 ms apart with berthd running.
pub struct Burst {
    pub edits: usize,
    /// Seconds from the first edit's start to the last one's.
    pub spread: f64,
    /// Passes journalled from the first edit until 1 s after the effect.
    pub passes: usize,
    /// From the last edit to the engine showing it.
    pub last_to_effect: Option<f64>,
}

/// A container as inspect shows it: (ID, StartedAt, running, memory).
async fn inspect(docker: &bollard::Docker, name: &str) -> Option<(String, String, bool, i64)> {
    let c = docker.inspect_container(name, None).await.ok()?;
    let state = c.state.as_ref();
    Some((
        c.id.clone().unwrap_or_default(),
        state.and_then(|s| s.started_at.clone()).unwrap_or_default(),
        state.and_then(|s| s.running).unwrap_or(false),
        c.host_config.as_ref().and_then(|h| h.memory).unwrap_or(0),
    ))
}

/// Polls the engine (one inspect every 3 ms, as a check on its own takes
/// about a millisecond) until `done` holds for `name`; seconds since
/// `since` and what inspect showed, or None after `timeout`.
async fn poll_until(
    docker: &bollard::Docker,
    name: &str,
    since: Instant,
    timeout: Duration,
    done: impl Fn(&(String, String, bool, i64)) -> bool,
) -> Option<(f64, (String, String, bool, i64))> {
    loop {
        if let Some(c) = inspect(docker, name).await {
            if done(&c) {
                return Some((since.elapsed().as_secs_f64(), c));
            }
        }
        if since.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

fn setprop(ctx: &Ctx, i: usize, prop: &str, value: &str) -> anyhow::Result<()> {
    let (_, out) = timed(&mut berth(
        ctx.dir,
        "berth.toml",
        &["db", "docker_containers", "setprop", &name(i), prop, value],
    ));
    ok("berth db setprop", out).map(drop)
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("berthd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

pub fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<DaemonFigures> {
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
        let Some(before) = ctx.rt.block_on(inspect(&ctx.docker, &name(i))) else {
            anyhow::bail!("{} is not there before its edit", name(i));
        };
        f.edit_starts.push(SystemTime::now());
        let t = Instant::now();
        setprop(ctx, i, "MaxMemory", &format!("{mib}M"))?;
        let took = ctx.rt.block_on(poll_until(
            &ctx.docker,
            &name(i),
            t,
            Duration::from_secs(10),
            |c| c.2 && c.3 == mib << 20,
        ));
        match took {
            Some((s, after)) => {
                f.edits.push(s);
                if (after.0, after.1) != (before.0, before.1) {
                    f.edit_restarts += 1;
                }
            }
            None if k == 0 => {
                f.not_ready = Some(format!(
                    "no effect within 10 s of an edit{}",
                    if d.alive() { "" } else { "; berthd exited" }
                ));
                return Ok(f);
            }
            None => f.edit_timeouts += 1,
        }
        std::thread::sleep(Duration::from_millis(1000));
    }

    // A Command change (another sleep) cannot be updated: a recreate.
    for k in 0..a.edits {
        let i = (k * 7 + 5) % ctx.n;
        let Some(before) = ctx.rt.block_on(inspect(&ctx.docker, &name(i))) else {
            anyhow::bail!("{} is not there before its edit", name(i));
        };
        let command = host::COMMAND.replace("3600", &(3601 + k).to_string());
        let t = Instant::now();
        setprop(ctx, i, "Command", &command)?;
        let old = before.0.clone();
        match ctx.rt.block_on(poll_until(
            &ctx.docker,
            &name(i),
            t,
            Duration::from_secs(10),
            move |c| c.2 && c.0 != old,
        )) {
            Some((s, _)) => f.recreate_edits.push(s),
            None => f.recreate_timeouts += 1,
        }
        std::thread::sleep(Duration::from_millis(1000));
    }

    f.burst = Some(burst(ctx)?);

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

/// 100 memory edits 10 ms apart (each a `berth db` process, started on a
/// 10 ms beat), spread over the containers; the last one's effect is
/// waited for, then the passes since the first are counted.
fn burst(ctx: &Ctx) -> anyhow::Result<Burst> {
    const EDITS: usize = 100;
    let first = SystemTime::now();
    let t = Instant::now();
    let mut last = (0, 0, t);
    for k in 0..EDITS {
        let due = Duration::from_millis(10 * k as u64);
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
        let i = (k * 13 + 1) % ctx.n;
        let mib = host::CHANGED_MIB + 20 + k as i64;
        last = (i, mib, Instant::now());
        setprop(ctx, i, "MaxMemory", &format!("{mib}M"))?;
    }
    let spread = last.2.duration_since(t).as_secs_f64();
    let (i, mib, at) = last;
    let effect = ctx
        .rt
        .block_on(poll_until(
            &ctx.docker,
            &name(i),
            at,
            Duration::from_secs(30),
            |c| c.2 && c.3 == mib << 20,
        ))
        .map(|(s, _)| s);
    std::thread::sleep(Duration::from_secs(1));
    let state = berth::state::State::open(&ctx.config.state_dir)?;
    let from = berth::state::timestamp(first);
    let passes = state
        .passes(1000)?
        .iter()
        .filter(|p| p.started_at >= from)
        .count();
    Ok(Burst {
        edits: EDITS,
        spread,
        passes,
        last_to_effect: effect,
    })
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

impl DaemonFigures {
    /// The passes journalled inside the rest window.
    pub fn passes_in_rest(&self) -> Vec<&Pass> {
        let seconds = self.rest.as_ref().map_or(0, |r| r.seconds) as f64;
        self.rest_passes
            .iter()
            .filter(|(at, _, _)| *at >= 0.0 && *at <= seconds + 1.0)
            .collect()
    }

    /// Seconds of the rest window in which berthd did something no
    /// journalled pass explains: a thread running outside [pass − 5 s,
    /// pass + 2 s] (tokio's timer wheel wakes a 60 s sleep in its last
    /// seconds too: at the start of its last 4 s slot, of its last 64 ms
    /// slot, then at the deadline), or a thread ending more than 15 s after
    /// any pass (tokio lets an idle blocking thread go 10 s after its last
    /// job).
    pub fn unexplained_wakeups(&self) -> Vec<(u64, String)> {
        let Some(rest) = &self.rest else {
            return vec![];
        };
        let near = |s: u64, before: i64, after: i64| {
            self.rest_passes.iter().any(|(at, _, _)| {
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
}
