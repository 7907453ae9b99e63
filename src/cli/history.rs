//! `berth history [NAME]`: the journal of actions, newest first.

use crate::config::Config;
use crate::state::{JournalEntry, State};

pub async fn run(config: &Config, name: Option<&str>, limit: usize, json: bool) -> anyhow::Result<i32> {
    let mut uri = format!("/v1/history?limit={limit}");
    if let Some(name) = name {
        uri.push_str(&format!("&record={name}"));
    }
    let entries: Vec<JournalEntry> = match crate::api::client::request(&config.api_socket, "GET", &uri).await? {
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
        println!("{}  {:<11} {:<14} {}: {}{error}", e.at, e.result, e.action, e.record, e.reason);
    }
    Ok(0)
}
