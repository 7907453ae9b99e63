//! The command line: how many containers, runs, edits and seconds at rest,
//! where the JSON goes.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context};

const USAGE: &str = "usage: berth_bench [--quick] [--n N] [--runs R] [--rest S] [--edits E] [--json FILE] [--workdir DIR] [--pure] [--scale N,N] [--scale-runs R] [--scale-only] [--engine unix:///PATH]";

pub struct Args {
    /// Containers per tool.
    pub n: usize,
    pub runs: usize,
    /// Fewer containers, runs, edits and seconds at rest (a few minutes).
    pub quick: bool,
    /// Only the pure code, no engine.
    pub pure: bool,
    pub rest_seconds: u64,
    pub edits: usize,
    pub json: PathBuf,
    pub workdir: Option<PathBuf>,
    /// Container counts the converge, no-op and one-change rounds run at
    /// too (with `scale_runs` runs), the observe cost and, at the largest,
    /// berthd at rest.
    pub scale: Vec<usize>,
    pub scale_runs: usize,
    /// Only the scale rounds: no main rounds, API-call count, daemon
    /// round or pure code.
    pub scale_only: bool,
    /// Another engine's socket (e.g. Podman's Docker-compatible service)
    /// instead of /var/run/docker.sock.
    pub engine: Option<PathBuf>,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Args> {
    let mut quick = false;
    let mut pure = false;
    let (mut n, mut runs, mut rest, mut edits) = (None, None, None, None);
    let mut json = PathBuf::from("bench-results.json");
    let mut workdir = None;
    let mut scale = Vec::new();
    let mut scale_runs = 3;
    let mut scale_only = false;
    let mut engine = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{what} needs a value"));
        match arg.as_str() {
            "--n" => n = Some(value("--n")?.parse::<usize>()?),
            "--runs" => runs = Some(value("--runs")?.parse::<usize>()?),
            "--rest" => rest = Some(value("--rest")?.parse::<u64>()?),
            "--edits" => edits = Some(value("--edits")?.parse::<usize>()?),
            "--json" => json = PathBuf::from(value("--json")?),
            "--workdir" => workdir = Some(PathBuf::from(value("--workdir")?)),
            "--scale" => {
                for v in value("--scale")?.split(',') {
                    scale.push(v.trim().parse::<usize>()?);
                }
            }
            "--scale-runs" => scale_runs = value("--scale-runs")?.parse::<usize>()?,
            "--scale-only" => scale_only = true,
            "--engine" => {
                let v = value("--engine")?;
                // Only a unix socket: the counting proxy listens on one and
                // forwards to the engine's.
                let path = v.strip_prefix("unix://").unwrap_or(&v);
                ensure!(
                    path.starts_with('/'),
                    "--engine takes unix:///PATH, not {v}"
                );
                engine = Some(PathBuf::from(path));
            }
            "--quick" => quick = true,
            "--pure" => pure = true,
            "--bench" => {} // added by `cargo bench`
            other => bail!("unknown argument {other}\n{USAGE}"),
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
        scale,
        scale_runs,
        scale_only,
        engine,
    };
    ensure!(
        a.scale.iter().all(|n| (1..=5000).contains(n)) && a.scale_runs >= 1,
        "--scale takes counts between 1 and 5000, --scale-runs at least 1"
    );
    ensure!((1..=5000).contains(&a.n), "--n must be between 1 and 5000");
    ensure!(
        a.runs >= 1 && a.edits >= 1,
        "--runs and --edits must be at least 1"
    );
    Ok(a)
}
