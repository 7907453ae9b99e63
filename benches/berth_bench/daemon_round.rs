//! berthd on the sandbox: from start to N running, edit-to-effect (a db
//! write until the new container runs), then left at rest.

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
    pub edits: Figure,
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
