//! `berth history [NAME]`: the journal of actions, newest first.

use crate::api::Backend;
use crate::config::Config;
use crate::state::{EventRun, JournalEntry};

pub async fn run(
    config: &Config,
    name: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<i32> {
    let entries: Vec<JournalEntry> = super::backend::backend(config)
        .await
        .history(name.map(str::to_string), limit)
        .await?;
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
    let runs: Vec<EventRun> = super::backend::backend(config).await.events(limit).await?;
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
