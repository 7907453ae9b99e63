//! `berth plan`: what a pass would do now, and why; from the daemon when it
//! runs, else computed directly.

use anyhow::Context;

use super::backend::{backend, LocalBackend};
use crate::api::Backend;
use crate::config::Config;
use crate::plan::PlanView;
use crate::reconcile::Planned;

/// `at`: evaluate schedules and stored events at that time instead of now
/// (computed here, not by the daemon, whose plan is always for now).
pub async fn run(config: &Config, json: bool, at: Option<&str>) -> anyhow::Result<i32> {
    let plan: PlanView = match at {
        None => backend(config).await.plan().await?,
        Some(text) => {
            let now = chrono::Local::now();
            let at = crate::schedule::parse_at(text, &now).context("--at")?;
            let Planned { plan, warnings, .. } =
                LocalBackend::new(config).plan_at(at.into()).await?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            plan.view()
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render(&plan));
    }
    Ok(0)
}

/// One line per action (`kind record: reason`), then the records left alone.
pub fn render(plan: &PlanView) -> String {
    let mut out = String::new();
    if plan.actions.is_empty() {
        out.push_str("no changes\n");
    }
    for a in &plan.actions {
        out.push_str(&format!(
            "{:<14} {}: {}\n",
            a.kind.as_str(),
            a.record,
            a.reason
        ));
    }
    for p in &plan.problems {
        out.push_str(&format!(
            "{:<14} {}: {}\n",
            "not applied", p.record, p.message
        ));
    }
    for p in &plan.held {
        out.push_str(&format!("{:<14} {}: {}\n", "held", p.record, p.message));
    }
    out
}
