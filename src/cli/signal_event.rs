//! `berth signal-event EVENT [ARGS…]`: stops what StopOn lists, runs the
//! event's action folder, starts what StartOn lists. Exit 1 if anything failed.

use crate::config::Config;
use crate::engine::DockerEngine;
use crate::state::EventRun;

pub async fn run(config: &Config, event: &str, args: &[String]) -> anyhow::Result<i32> {
    let uri = format!("/v1/events/{event}");
    let body = serde_json::json!({ "args": args });
    let answer = crate::api::client::request_with(
        &config.api_socket,
        "POST",
        &uri,
        Some(&body),
        crate::api::client::EVENT,
    )
    .await;
    let run: EventRun = match answer {
        Ok(Some(answer)) => serde_json::from_value(answer)?,
        Ok(None) => {
            let engine = DockerEngine::connect(&config.docker_host).await?;
            let pass = |trigger| crate::events::direct_pass(config, &engine, trigger);
            match crate::events::signal(config, event, args, "berth signal-event", pass).await {
                Ok(run) => run,
                Err(e) => {
                    eprintln!("berth signal-event: {e}");
                    return Ok(1);
                }
            }
        }
        Err(e) => {
            eprintln!("berth signal-event: {e}");
            return Ok(1);
        }
    };
    print!("{}", run.output);
    println!("event {}: {}", run.name, run.result);
    Ok(i32::from(run.result != "ok"))
}
