//! `berth start NAME` / `berth stop NAME`: a console event. Lasts until the
//! next start/stop event of any kind for that container.

use super::outcome;
use crate::api::{Backend, BackendError};
use crate::config::Config;

pub async fn run(config: &Config, name: &str, start: bool) -> anyhow::Result<i32> {
    let verb = if start { "start" } else { "stop" };
    let backend = super::backend::backend(config).await;
    let report = match backend.container(name.to_string(), start).await {
        Ok(report) => report,
        // The event's own failures, and berthd's, are the verb's; not
        // reaching the engine here is said like any other command's.
        Err(e @ (BackendError::Event(_) | BackendError::Client(_))) => {
            eprintln!("berth {verb}: {e}");
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    let mut failed = outcome::print(&report.outcomes) > 0;
    if let Some(p) = report.plan.problems.iter().find(|p| p.record == name) {
        eprintln!("{}", outcome::not_applied(p));
        failed = true;
    }
    if report.outcomes.is_empty() && !failed {
        println!(
            "{name}: already {}",
            if start { "running" } else { "stopped" }
        );
    }
    Ok(i32::from(failed))
}
