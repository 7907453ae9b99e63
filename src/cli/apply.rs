//! `berth apply`: one reconcile pass, now. Exit 1 if any record was not applied.

use std::time::SystemTime;

use crate::apply::{self, ApplySettings};
use crate::config::Config;
use crate::engine::{DockerEngine, Engine};
use crate::plan;

pub async fn run(config: &Config) -> anyhow::Result<i32> {
    let declared = super::load_declared(config)?;
    let engine = DockerEngine::connect(&config.docker_host).await?;
    let observed = engine.observe().await?;
    let plan = plan::plan(&declared, &observed, SystemTime::now());
    for p in &plan.problems {
        eprintln!("not applied {}: {}", p.record, p.message);
    }
    if plan.is_empty() {
        println!("no changes");
        return Ok(if plan.problems.is_empty() { 0 } else { 1 });
    }
    let settings = ApplySettings {
        instance: config.instance.clone(),
        concurrency: config.apply_concurrency,
        stop_grace_seconds: config.stop_grace_seconds,
    };
    let report = apply::apply(&engine, &plan, &settings, |o| match &o.error {
        None => println!("{:<14} {}: {}", o.kind.as_str(), o.record, o.reason),
        Some(e) => eprintln!("FAILED {} {}: {e}", o.kind.as_str(), o.record),
    })
    .await;
    let failed = report.failures().count();
    println!(
        "{} action(s) done, {failed} failed, {} record(s) not applied",
        report.outcomes.len() - failed,
        plan.problems.len()
    );
    Ok(if failed == 0 && plan.problems.is_empty() {
        0
    } else {
        1
    })
}
