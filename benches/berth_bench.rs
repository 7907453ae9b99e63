//! berth against docker-compose and the engine's own floor, in one run on
//! one machine. Run it with `scripts/bench.sh` (not part of the tests).
//!
//!   berth_bench [--quick] [--n N] [--runs R] [--rest S] [--edits E]
//!               [--json FILE] [--workdir DIR] [--pure]
//!               [--scale N,N] [--scale-runs R] [--scale-only]
//!               [--engine unix:///PATH]
//!
//! Each figure is the median of R runs with its min–max spread; ratios are
//! taken pair by pair (run i of berth over run i of the peer), and the
//! order of berth, compose and the floor rotates from run to run so drift
//! in the engine does not favour one. Everything made is removed at the end,
//! also on error, panic, SIGINT or SIGTERM.
//!
//! This file only wires the parts: [`args`], the timed [`rounds`] per tool,
//! the API-call [`calls`], the [`daemon_round`], the [`pure`] code, the
//! rounds at [`scale`], and the
//! [`report`] (the table, from one table of measures) and its [`json`].

#[path = "berth_bench/args.rs"]
mod args;
#[path = "berth_bench/calls.rs"]
mod calls;
#[path = "berth_bench/ctx.rs"]
mod ctx;
#[path = "berth_bench/daemon.rs"]
mod daemon;
#[path = "berth_bench/daemon_round.rs"]
mod daemon_round;
#[path = "berth_bench/host.rs"]
mod host;
#[path = "berth_bench/json.rs"]
mod json;
#[path = "berth_bench/machine.rs"]
mod machine;
#[path = "berth_bench/proxy.rs"]
mod proxy;
#[path = "berth_bench/pure.rs"]
mod pure;
#[path = "berth_bench/report.rs"]
mod report;
#[path = "berth_bench/rounds.rs"]
mod rounds;
#[path = "berth_bench/scale.rs"]
mod scale;
#[path = "berth_bench/stats.rs"]
mod stats;

use std::process::ExitCode;

use berth::config::Config;
use berth::engine::DockerEngine;

use args::Args;
use ctx::Ctx;
use host::{write_sandbox, World};
use report::Results;

fn run(a: &Args, world: &World, rt: &tokio::runtime::Runtime) -> anyhow::Result<Results> {
    let dir = world.dir.as_path();
    let image = host::make_image()?;
    write_sandbox(dir, a.n, None)?;
    let config = Config::load(&dir.join("berth.toml"))?;
    let engine = rt.block_on(DockerEngine::connect(&config.docker_host))?;
    let docker = host::engine_client(rt, 120)?;
    let ctx = Ctx {
        dir,
        n: a.n,
        rt,
        engine,
        docker,
        config,
    };
    let machine = machine::describe();
    eprintln!(
        "berth bench: N={} containers, {} runs, {} cores, docker {}, docker-compose {}; sandbox {}",
        a.n,
        a.runs,
        machine.cores,
        machine.docker,
        machine.docker_compose,
        dir.display()
    );

    let timed = if a.scale_only {
        rounds::Runs::default()
    } else {
        rounds::measure(&ctx, a.runs)?
    };

    let calls = if a.scale_only {
        None
    } else {
        eprintln!("counting API calls (through a proxy, untimed)");
        match calls::count(&ctx, 7 % a.n) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("counting API calls failed: {e:#}");
                host::remove_all();
                None
            }
        }
    };

    let daemon = if a.scale_only {
        daemon_round::DaemonFigures::default()
    } else {
        eprintln!(
            "berthd: start, {} edits, a burst, {} s at rest",
            a.edits, a.rest_seconds
        );
        let daemon = daemon_round::run(&ctx, a)?;
        if let Some(why) = &daemon.not_ready {
            eprintln!("berthd rows: n/a (daemon not ready: {why})");
        }
        daemon
    };

    let scale = if a.scale.is_empty() {
        Vec::new()
    } else {
        let rest = a.rest_seconds.min(30);
        scale::run(dir, rt, a.n, &a.scale, a.scale_runs, rest)?
    };

    eprintln!("pure code at 10,000 records");
    let pure = pure::run(if a.quick || a.scale_only { 3 } else { 11 })?;
    Ok(Results {
        n: a.n,
        runs: a.runs,
        quick: a.quick,
        machine,
        image,
        timed,
        calls,
        daemon,
        scale,
        pure,
    })
}

/// The report on stdout, the JSON to `a.json`.
fn write_out(a: &Args, results: &Results) {
    println!("\n{}", report::table(results));
    // Through a Value, whose keys are sorted, so the file's key order stays
    // that of earlier runs and two runs diff line by line.
    match serde_json::to_value(json::of(results))
        .and_then(|v| serde_json::to_vec_pretty(&v))
        .map_err(anyhow::Error::from)
        .and_then(|b| std::fs::write(&a.json, b).map_err(Into::into))
    {
        Ok(()) => println!("written: {}", a.json.display()),
        Err(e) => eprintln!("cannot write {}: {e}", a.json.display()),
    }
}

fn main() -> ExitCode {
    let a = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth_bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    if a.pure {
        return match pure::run(15) {
            Ok(p) => {
                println!("{}", report::pure_table(&p));
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
    if let Some(socket) = &a.engine {
        host::set_engine(socket.clone());
    }
    host::on_signal_clean_up(&rt);
    let result = match World::new(a.workdir.clone()) {
        // The world is dropped (everything removed) before the report.
        Ok(world) => run(&a, &world, &rt),
        Err(e) => Err(e),
    };
    match result {
        Ok(results) => {
            write_out(&a, &results);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth_bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
