//! `berth history [NAME]`: the journal of actions, newest first.

use crate::config::Config;
use crate::state::{EventRun, JournalEntry, State};

pub async fn run(
    config: &Config,
    name: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<i32> {
    let mut uri = format!("/v1/history?limit={limit}");
    if let Some(name) = name {
        uri.push_str(&format!("&record={name}"));
    }
    let entries: Vec<JournalEntry> =
        match crate::api::client::request(&config.api_socket, "GET", &uri).await? {
            Some(answer) => serde_json::from_value(answer)?,
            None => State::open(&config.state_dir)?.history(name, limit)?,
        };
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(0);
    }
    if entries.is_empty() {
        println!("no actions journalled");
    }
    for e in entries {
        let error = e.error.map(|e| format!(": {e}")).unwrap_or_default();
        println!(
            "{}  {:<11} {:<14} {}: {}{error}",
            e.at, e.result, e.action, e.record, e.reason
        );
    }
    Ok(0)
}

/// `berth history --events`: signalled events with their result and output.
pub async fn run_events(config: &Config, limit: usize, json: bool) -> anyhow::Result<i32> {
    let uri = format!("/v1/events?limit={limit}");
    let runs: Vec<EventRun> =
        match crate::api::client::request(&config.api_socket, "GET", &uri).await? {
            Some(answer) => serde_json::from_value(answer)?,
            None => State::open(&config.state_dir)?.event_history(limit)?,
        };
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(0);
    }
    if runs.is_empty() {
        println!("no events signalled");
    }
    for r in runs {
        println!(
            "{}  {:<7} {} {} ({})",
            r.at,
            r.result,
            r.name,
            r.args.join(" "),
            r.trigger
        );
        for line in r.output.lines() {
            println!("    {line}");
        }
    }
    Ok(0)
}
