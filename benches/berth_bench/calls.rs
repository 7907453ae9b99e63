//! The Docker API calls berth and docker-compose each make for the same
//! three jobs, counted through the proxy in one untimed round.

use std::collections::BTreeMap;

use crate::ctx::Ctx;
use crate::host::{self, berth, compose, ok, timed};
use crate::proxy;
use crate::rounds::{Job, Tool};

/// The jobs counted, in the order they run and are shown.
pub const JOBS: [Job; 3] = [Job::Converge, Job::Noop, Job::OneChange];

/// Each tool's requests for each job, as `METHOD /shape`.
pub type Calls = BTreeMap<(Tool, Job), Vec<String>>;

pub fn count(ctx: &Ctx, changed_at: usize) -> anyhow::Result<Calls> {
    let socket = host::count_socket(ctx.dir);
    let proxy = proxy::start(ctx.rt, &socket, host::socket())?;
    let mut calls = Calls::new();

    host::remove_all();
    let apply = || timed(&mut berth(ctx.dir, "berth-count.toml", &["apply"])).1;
    count_jobs(ctx, &proxy, Tool::Berth, changed_at, apply, &mut calls)?;
    host::remove_all();

    let up = || timed(&mut compose(ctx.dir, &["up", "-d"], true)).1;
    count_jobs(ctx, &proxy, Tool::Compose, changed_at, up, &mut calls)?;
    let _ = timed(&mut compose(ctx.dir, &["down", "-t", "1"], false));
    host::remove_all();
    drop(proxy);
    let _ = std::fs::remove_file(&socket);
    Ok(calls)
}

/// One tool through the three jobs (from nothing, nothing to do, one
/// change), each job's requests as the proxy saw them.
fn count_jobs(
    ctx: &Ctx,
    proxy: &proxy::Proxy,
    tool: Tool,
    changed_at: usize,
    run: impl Fn() -> std::io::Result<std::process::Output>,
    calls: &mut Calls,
) -> anyhow::Result<()> {
    let what = match tool {
        Tool::Berth => "berth apply",
        _ => "docker-compose up",
    };
    proxy.log.take();
    for job in JOBS {
        let (doing, changed) = match job {
            Job::Converge => ("from nothing", None),
            Job::Noop => ("nothing to do", None),
            _ => ("one change", Some(changed_at)),
        };
        if changed.is_some() {
            ctx.sandbox(changed)?;
        }
        ok(&format!("counted {what} ({doing})"), run())?;
        calls.insert((tool, job), proxy.log.take());
    }
    ctx.sandbox(None)?;
    Ok(())
}
