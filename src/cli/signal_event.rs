//! `berth signal-event EVENT [ARGS…]`: stops what StopOn lists, runs the
//! event's action folder, starts what StartOn lists. Exit 1 if anything failed.

use std::sync::atomic::AtomicBool;

use crate::config::Config;
use crate::engine::DockerEngine;
use crate::state::{EventRun, State};

pub async fn run(config: &Config, event: &str, args: &[String]) -> anyhow::Result<i32> {
    let uri = format!("/v1/events/{event}");
    let body = serde_json::json!({ "args": args });
    let run: EventRun = match crate::api::client::request_with(
        &config.api_socket,
        "POST",
        &uri,
        Some(&body),
        crate::api::client::EVENT,
    )
    .await
    {
        Ok(Some(answer)) => serde_json::from_value(answer)?,
        Ok(None) => {
            let engine = DockerEngine::connect(&config.docker_host).await?;
            let state = State::open(&config.state_dir)?;
            let stop = AtomicBool::new(false);
            match crate::events::signal(
                config,
                &engine,
                &state,
                event,
                args,
                "berth signal-event",
                &stop,
            )
            .await
            {
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
