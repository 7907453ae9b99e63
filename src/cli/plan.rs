//! `berth plan`: what a pass would do now, and why; from the daemon when it
//! runs, else computed directly.

use crate::config::Config;
use crate::engine::DockerEngine;
use crate::plan::Plan;

/// `at`: evaluate schedules and stored events at that time instead of now
/// (computed here, not by the daemon, whose plan is always for now).
pub async fn run(config: &Config, json: bool, at: Option<&str>) -> anyhow::Result<i32> {
    let at = match at {
        None => None,
        Some(text) => {
            let now = chrono::Local::now();
            let t =
                crate::schedule::parse_at(text, &now).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
            Some(std::time::SystemTime::from(t))
        }
    };
    let from_daemon = match at {
        None => crate::api::client::request(&config.api_socket, "GET", "/v1/plan").await?,
        Some(_) => None,
    };
    let plan: Plan = match from_daemon {
        Some(answer) => serde_json::from_value(answer)?,
        None => {
            let engine = DockerEngine::connect(&config.docker_host).await?;
            let remembered = crate::reconcile::Remembered::read_dir(&config.state_dir);
            let when = at.unwrap_or_else(std::time::SystemTime::now);
            let crate::reconcile::Planned { plan, warnings, .. } = {
                let snapshot = crate::db::Snapshot::read(&config.db_dir);
                crate::reconcile::plan_now(config, &engine, &snapshot, remembered, when, false)
                    .await?
            };
            for w in warnings {
                eprintln!("warning: {w}");
            }
            plan
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
pub fn render(plan: &Plan) -> String {
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
