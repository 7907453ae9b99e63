//! `berth status`: each record's declared state against what the engine runs.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::Config;
use crate::engine::{DockerEngine, Engine, ObservedState};
use crate::plan::{self, short};
use crate::spec::Declared;

#[derive(Debug, Serialize)]
pub struct RecordStatus {
    pub name: String,
    /// running / stopped (what the record asks for now), invalid, or undeclared.
    pub declared: String,
    /// The container's state word, or `missing`.
    pub actual: String,
    pub container_id: Option<String>,
    /// What keeps it from converging: a validation error or a plan problem.
    pub error: Option<String>,
}

pub async fn run(config: &Config, name: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let declared = super::load_declared(config)?;
    let engine = DockerEngine::connect(&config.docker_host).await?;
    let observed = engine.observe().await?;
    let mut rows = statuses(&declared, &observed, SystemTime::now());
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
        "{:<20} {:<10} {:<10} {:<12} ERROR",
        "NAME", "DECLARED", "ACTUAL", "CONTAINER"
    );
    for r in rows {
        println!(
            "{:<20} {:<10} {:<10} {:<12} {}",
            r.name,
            r.declared,
            r.actual,
            r.container_id.as_deref().unwrap_or("-"),
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}

pub fn statuses(
    declared: &Declared,
    observed: &ObservedState,
    now: SystemTime,
) -> Vec<RecordStatus> {
    let plan = plan::plan(declared, observed, now);
    let mut problems: BTreeMap<&str, String> = BTreeMap::new();
    for p in &plan.problems {
        problems
            .entry(p.record.as_str())
            .or_insert_with(|| p.message.clone());
    }
    let container = |name: &str| observed.containers.iter().find(|c| c.name == name);
    let mut rows = Vec::new();
    for spec in declared.specs.values() {
        let c = container(&spec.name);
        rows.push(RecordStatus {
            name: spec.name.clone(),
            declared: if plan::intent(spec, now).run {
                "running"
            } else {
                "stopped"
            }
            .into(),
            actual: c
                .map(|c| c.state.clone())
                .unwrap_or_else(|| "missing".into()),
            container_id: c.map(|c| short(&c.id).to_string()),
            error: problems.get(spec.name.as_str()).cloned(),
        });
    }
    for (name, errors) in &declared.failed {
        let c = container(name);
        rows.push(RecordStatus {
            name: name.clone(),
            declared: "invalid".into(),
            actual: c
                .map(|c| c.state.clone())
                .unwrap_or_else(|| "missing".into()),
            container_id: c.map(|c| short(&c.id).to_string()),
            error: errors.first().map(|e| e.to_string()),
        });
    }
    for c in observed
        .containers
        .iter()
        .filter(|c| c.is_ours(&declared.instance))
    {
        let record = c.record().unwrap_or(&c.name);
        if !declared.is_declared(record) {
            rows.push(RecordStatus {
                name: c.name.clone(),
                declared: "undeclared".into(),
                actual: c.state.clone(),
                container_id: Some(short(&c.id).to_string()),
                error: None,
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}
