//! `--scale`: the same timed rounds with more containers (fewer runs), the
//! observe cost at each N (API calls and time, so how it grows with N can
//! be read off), and berthd's RSS at rest with the largest N.

use std::time::{Duration, Instant};

use anyhow::ensure;
use berth::config::Config;
use berth::engine::{DockerEngine, Engine};

use crate::ctx::{all_running, Ctx};
use crate::daemon;
use crate::host::{self, berth, ok, timed, write_sandbox};
use crate::rounds::{self, Runs};
use crate::stats::Figure;

/// One N.
pub struct Scale {
    pub n: usize,
    /// The timed rounds; None for an N only observed (the main run's).
    pub timed: Option<Runs>,
    /// One `observe` (the pass's three list calls) with N running.
    pub observe: Figure,
    pub observe_calls: u64,
    /// berthd at rest with the N running (the largest N only).
    pub rest: Option<daemon::Rest>,
}

/// Times `observe` with `ctx.n` of berth's containers running.
fn observe(ctx: &Ctx, runs: usize) -> anyhow::Result<(Figure, u64)> {
    let mut f = Figure::default();
    let mut calls = 0;
    for _ in 0..runs {
        let before = ctx.engine.api_calls();
        let t = Instant::now();
        let seen = ctx.rt.block_on(ctx.engine.observe())?;
        f.push(t.elapsed().as_secs_f64());
        calls = calls.max(ctx.engine.api_calls() - before);
        ensure!(
            seen.containers.len() >= ctx.n,
            "observe saw {} containers, {} expected",
            seen.containers.len(),
            ctx.n
        );
    }
    Ok((f, calls))
}

/// Every N of `ns` (the main run's `main_n` is only observed), in one
/// sandbox rewritten for each; the largest also left at rest under berthd
/// for `rest_seconds`.
pub fn run(
    dir: &std::path::Path,
    rt: &tokio::runtime::Runtime,
    main_n: usize,
    ns: &[usize],
    runs: usize,
    rest_seconds: u64,
) -> anyhow::Result<Vec<Scale>> {
    let mut all: Vec<usize> = ns.iter().copied().chain([main_n]).collect();
    all.sort_unstable();
    all.dedup();
    let largest = all.iter().copied().max().unwrap_or(main_n);
    let mut out = Vec::new();
    for n in all {
        write_sandbox(dir, n, None)?;
        let config = Config::load(&dir.join("berth.toml"))?;
        let engine = rt.block_on(DockerEngine::connect(&config.docker_host))?;
        let docker = host::engine_client(rt, 300)?;
        let ctx = Ctx {
            dir,
            n,
            rt,
            engine,
            docker,
            config,
        };
        let rounds = if ns.contains(&n) && n != main_n {
            eprintln!("scale: N={n}, {runs} runs");
            Some(rounds::measure(&ctx, runs)?)
        } else {
            None
        };
        host::remove_all();
        let (t, o) = timed(&mut berth(dir, "berth.toml", &["apply"]));
        ok("berth apply (scale, from nothing)", o)?;
        all_running(&ctx.berths()?, n, "scale: after berth apply")?;
        let (observe, observe_calls) = observe(&ctx, 7)?;
        eprintln!(
            "scale: N={n}: converged in {t:.1} s, observe {} ({observe_calls} calls)",
            observe.show()
        );
        let rest = if n == largest && rest_seconds > 0 {
            let mut d = daemon::Daemon::spawn(dir)?;
            // Its first pass (nothing to do) and the events it reads go by.
            std::thread::sleep(Duration::from_secs(5));
            let r = daemon::rest(d.pid, rest_seconds);
            d.stop();
            r
        } else {
            None
        };
        host::remove_all();
        out.push(Scale {
            n,
            timed: rounds,
            observe,
            observe_calls,
            rest,
        });
    }
    write_sandbox(dir, main_n, None)?;
    Ok(out)
}

/// How observe's median time grows with N: the least-squares slope per
/// container and the intercept, and the ratio of the largest N's time to
/// the smallest's next to the ratio of the Ns.
pub fn growth(s: &[Scale]) -> Option<(f64, f64, f64, f64)> {
    let pts: Vec<(f64, f64)> = s
        .iter()
        .filter(|x| !x.observe.is_empty())
        .map(|x| (x.n as f64, x.observe.median()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let k = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (sx / k, sy / k);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let (lo, hi) = (pts[0], pts[pts.len() - 1]);
    Some((slope, my - slope * mx, hi.1 / lo.1, hi.0 / lo.0))
}
