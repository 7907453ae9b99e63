//! `berth status`: each record, declared against actual; from the daemon
//! when it runs, else read directly.

use crate::config::Config;
use crate::engine::DockerEngine;
use crate::state::State;
use crate::status::{self, RecordStatus};

pub async fn run(config: &Config, name: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let mut rows: Vec<RecordStatus> =
        match crate::api::client::request(&config.api_socket, "GET", "/v1/status").await? {
            Some(answer) => serde_json::from_value(answer)?,
            None => {
                let engine = DockerEngine::connect(&config.docker_host).await?;
                let state = State::open(&config.state_dir).ok();
                let remembered = crate::reconcile::Remembered::read(state.as_ref());
                let mut rows = status::current(config, &engine, remembered).await?;
                if let Some(state) = &state {
                    status::add_last_errors(&mut rows, state);
                }
                rows
            }
        };
    if let Some(name) = name {
        rows.retain(|r| r.name == name);
        if rows.is_empty() {
            eprintln!("berth: no record or container named {name}");
            return Ok(1);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<24} {:<10} {:<10} CONTAINER",
        "NAME", "DECLARED", "ACTUAL"
    );
    for r in rows {
        println!(
            "{:<24} {:<10} {:<10} {}",
            r.name,
            r.declared,
            r.actual,
            r.container_id.as_deref().unwrap_or("-")
        );
        if !r.why.is_empty() && !r.why.starts_with("status ") {
            println!("    why: {}", r.why);
        }
        if let Some(next) = &r.next_event {
            println!("    next: {next}");
        }
        if let Some(error) = &r.error {
            println!("    error: {error}");
        }
    }
    Ok(0)
}
