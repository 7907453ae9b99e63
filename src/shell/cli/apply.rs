//! `berth apply`: one reconcile pass, now (berthd's when it runs, so passes
//! never overlap). Exit 1 if any record was not applied.

use super::outcome;
use crate::api::Backend;
use crate::config::Config;
use crate::reconcile::PassReport;

/// `allow_mass_removal`: the admin confirms removals a pass would hold
/// back (every container, or more than `mass_removal_share` of them).
pub async fn run(config: &Config, allow_mass_removal: bool) -> anyhow::Result<i32> {
    let backend = super::backend::backend(config).await;
    let report = backend.apply(allow_mass_removal).await?;
    if !backend.printed_outcomes() {
        outcome::print(&report.outcomes);
    }
    Ok(print_summary(&report))
}

/// Warnings, records not applied, the closing line; the exit code.
pub fn print_summary(report: &PassReport) -> i32 {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for p in &report.plan.problems {
        eprintln!("{}", outcome::not_applied(p));
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
