//! `berth start NAME` / `berth stop NAME`: a console event. Lasts until the
//! next start/stop event of any kind for that container.

use crate::config::Config;
use crate::engine::DockerEngine;
use crate::reconcile::PassReport;

pub async fn run(config: &Config, name: &str, start: bool) -> anyhow::Result<i32> {
    let verb = if start { "start" } else { "stop" };
    let uri = format!("/v1/containers/{name}/{verb}");
    let report: PassReport =
        match crate::api::client::request(&config.api_socket, "POST", &uri).await {
            Ok(Some(answer)) => serde_json::from_value(answer)?,
            Ok(None) => {
                let engine = DockerEngine::connect(&config.docker_host).await?;
                let pass = |trigger| crate::events::direct_pass(config, &engine, trigger);
                match crate::events::console(config, name, start, pass).await {
                    Ok(report) => report,
                    Err(e) => {
                        eprintln!("berth {verb}: {e}");
                        return Ok(1);
                    }
                }
            }
            Err(e) => {
                eprintln!("berth {verb}: {e}");
                return Ok(1);
            }
        };
    let mut failed = false;
    for o in &report.outcomes {
        match &o.error {
            None => println!("{:<14} {}: {}", o.kind.as_str(), o.record, o.reason),
            Some(e) => {
                failed = true;
                eprintln!("FAILED {} {}: {e}", o.kind.as_str(), o.record);
            }
        }
    }
    if let Some(p) = report.plan.problems.iter().find(|p| p.record == name) {
        eprintln!("not applied {}: {}", p.record, p.message);
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
