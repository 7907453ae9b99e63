//! `berth plan`: what a pass would do now, and why; from the daemon when it
//! runs, else computed directly.

use crate::config::Config;
use crate::engine::DockerEngine;
use crate::plan::Plan;

pub async fn run(config: &Config, json: bool) -> anyhow::Result<i32> {
    let plan: Plan = match crate::api::client::request(&config.api_socket, "GET", "/v1/plan").await? {
        Some(answer) => serde_json::from_value(answer)?,
        None => {
            let engine = DockerEngine::connect(&config.docker_host).await?;
            let (plan, warnings) = crate::reconcile::plan_now(config, &engine).await?;
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
        out.push_str(&format!("{:<14} {}: {}\n", a.kind.as_str(), a.record, a.reason));
    }
    for p in &plan.problems {
        out.push_str(&format!("{:<14} {}: {}\n", "not applied", p.record, p.message));
    }
    out
}
