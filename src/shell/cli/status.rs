//! `berth status`: each record, declared against actual; from the daemon
//! when it runs, else read directly (see `backend`).

use crate::api::Backend;
use crate::config::Config;
use crate::status::RecordStatus;

pub async fn run(config: &Config, name: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let backend = super::backend::backend(config).await;
    let mut rows: Vec<RecordStatus> = backend.status().await?;
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
        "{:<24} {:<10} {:<10} {:<10} CONTAINER",
        "NAME", "DECLARED", "ACTUAL", "HEALTH"
    );
    for r in rows {
        println!(
            "{:<24} {:<10} {:<10} {:<10} {}",
            r.name,
            r.declared,
            r.actual,
            r.health.map_or("-", |h| h.as_str()),
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
        if let Some(update) = &r.update {
            println!("    {update}");
        }
    }
    // The sums against the host are the plan's (`berth plan --json` has
    // them as JSON; `status --json` stays a list of records).
    if name.is_none() {
        if let Ok(plan) = backend.plan().await {
            if let Some(c) = &plan.capacity {
                print!("{}", super::plan::render_capacity(c));
            }
        }
    }
    Ok(0)
}
