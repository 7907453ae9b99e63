//! `berth apply`: one reconcile pass, now. Exit 1 if any record was not applied.

use std::sync::atomic::AtomicBool;

use crate::config::Config;
use crate::engine::DockerEngine;
use crate::reconcile::{self, PassReport};
use crate::state::State;

/// `allow_mass_removal`: the admin confirms removals a pass would hold
/// back (every container, or more than `mass_removal_share` of them).
pub async fn run(config: &Config, allow_mass_removal: bool) -> anyhow::Result<i32> {
    // With a daemon running, the pass is its (passes never overlap).
    let uri = if allow_mass_removal {
        "/v1/apply?allow_mass_removal=true"
    } else {
        "/v1/apply"
    };
    if let Some(answer) = crate::api::client::request(&config.api_socket, "POST", uri).await? {
        let report: PassReport = serde_json::from_value(answer)?;
        for o in &report.outcomes {
            match &o.error {
                None => println!("{:<14} {}: {}", o.kind.as_str(), o.record, o.reason),
                Some(e) => eprintln!("FAILED {} {}: {e}", o.kind.as_str(), o.record),
            }
        }
        return Ok(print_summary(&report));
    }
    let engine = DockerEngine::connect(&config.docker_host).await?;
    // The journal is best effort here: an admin without a writable state_dir
    // can still apply.
    let state = State::open(&config.state_dir)
        .map_err(|e| eprintln!("warning: no journal: {e}"))
        .ok();
    let stop = AtomicBool::new(false);
    let snapshot = crate::db::Snapshot::read(&config.db_dir);
    let input = reconcile::PassInput {
        snapshot: &snapshot,
        trigger: "berth apply",
        at: std::time::SystemTime::now(),
        allow_mass_removal,
    };
    let report = reconcile::run_pass(
        config,
        &engine,
        state.as_ref(),
        input,
        &stop,
        |o: &crate::apply::Outcome| match &o.error {
            None => println!("{:<14} {}: {}", o.kind.as_str(), o.record, o.reason),
            Some(e) => eprintln!("FAILED {} {}: {e}", o.kind.as_str(), o.record),
        },
    )
    .await?;
    Ok(print_summary(&report))
}

/// Warnings, records not applied, the closing line; the exit code.
pub fn print_summary(report: &PassReport) -> i32 {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for p in &report.plan.problems {
        eprintln!("not applied {}: {}", p.record, p.message);
    }
    for p in &report.plan.held {
        eprintln!("held {}: {}", p.record, p.message);
    }
    let failed = report.failed_actions();
    if report.outcomes.is_empty() {
        println!("no changes");
    } else {
        println!(
            "{} action(s) done, {failed} failed, {} record(s) not applied",
            report.outcomes.len() - failed,
            report.records_not_applied()
        );
    }
    if report.is_clean() {
        0
    } else {
        1
    }
}
