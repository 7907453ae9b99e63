//! Each record's declared state against what the engine runs: what
//! `berth status` and `GET /v1/status` show, with an update on probation
//! or rolled back.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::declared::Declared;
use crate::engine::ObservedState;
use crate::plan::{self, short};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordStatus {
    pub name: String,
    /// running / stopped (what the record asks for now), invalid, or undeclared.
    pub declared: String,
    /// The container's state word, or `missing`.
    pub actual: String,
    /// Its health check's verdict, when it has one (the record's or the
    /// image's own) and the engine lists it (running containers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::model::Health>,
    pub container_id: Option<String>,
    /// Why it is declared so: `status enabled`, `stop by console at …`.
    #[serde(default)]
    pub why: String,
    /// The next scheduled start or stop, local time.
    #[serde(default)]
    pub next_event: Option<String>,
    /// What keeps it from converging: a validation error or a plan problem.
    pub error: Option<String>,
    /// `Update notify`/`auto`: the registry's tag moved away from the image
    /// here (at the last check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
}

pub fn statuses(
    declared: &Declared,
    observed: &ObservedState,
    now: SystemTime,
) -> Vec<RecordStatus> {
    let plan = plan::plan(declared, observed, now);
    let intents = plan::intents(declared, &chrono::DateTime::<chrono::Local>::from(now));
    let mut problems: BTreeMap<&str, String> = BTreeMap::new();
    for p in plan.problems.iter().chain(&plan.held) {
        problems
            .entry(p.record.as_str())
            .or_insert_with(|| p.message.clone());
    }
    let by_name: BTreeMap<&str, &crate::engine::ObservedContainer> = observed
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let container = |name: &str| by_name.get(name).copied();
    let mut rows = Vec::new();
    for spec in declared.specs.values() {
        let c = container(&spec.name);
        let local = chrono::DateTime::<chrono::Local>::from(now);
        let intent = intents
            .get(&spec.name)
            .cloned()
            .unwrap_or_else(crate::schedule::disabled);
        let schedules = crate::schedule::Schedules {
            enabled: spec.enabled,
            start: spec.start_schedule.as_deref(),
            stop: spec.stop_schedule.as_deref(),
        };
        let next_event = crate::schedule::next_event(&schedules, &local).map(|e| {
            let verb = if e.run { "start" } else { "stop" };
            let when =
                e.at.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S");
            format!("{verb} at {when} ({})", e.source)
        });
        let at = chrono::DateTime::<chrono::Utc>::from(now);
        let why =
            match plan::rollout::probation_note(declared, &spec.name, intent.run, observed, at) {
                Some(note) => format!("{}; {note}", intent.why),
                None => intent.why,
            };
        rows.push(RecordStatus {
            name: spec.name.clone(),
            declared: if intent.run { "running" } else { "stopped" }.into(),
            why,
            next_event: spec.enabled.then_some(next_event).flatten(),
            actual: c
                .map(|c| c.state.clone())
                .unwrap_or_else(|| "missing".into()),
            health: c.and_then(|c| c.health),
            container_id: c.map(|c| short(&c.id).to_string()),
            error: problems.get(spec.name.as_str()).cloned(),
            update: None,
        });
    }
    for (name, errors) in &declared.failed {
        let c = container(name);
        rows.push(RecordStatus {
            name: name.clone(),
            declared: "invalid".into(),
            why: "fails validation; its container is left as it is".into(),
            next_event: None,
            actual: c
                .map(|c| c.state.clone())
                .unwrap_or_else(|| "missing".into()),
            health: c.and_then(|c| c.health),
            container_id: c.map(|c| short(&c.id).to_string()),
            error: errors.first().map(|e| e.to_string()),
            update: None,
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
                why: "no record (see berth plan)".into(),
                next_event: None,
                actual: c.state.clone(),
                health: c.health,
                container_id: Some(short(&c.id).to_string()),
                error: None,
                update: None,
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// Reads the dbs (with what state.db remembers) and observes the engine.
pub async fn current<E: crate::engine::Engine>(
    config: &crate::config::Config,
    engine: &E,
    remembered: crate::reconcile::Remembered,
) -> Result<Vec<RecordStatus>, crate::reconcile::PassError> {
    let mut declared = crate::declared::load(config)?;
    crate::policy_file::apply_reading_images(config, &mut declared);
    declared.overrides = remembered.overrides;
    declared.starts = remembered.starts;
    declared.updates = remembered.updates;
    declared.pulls = remembered.pulls;
    declared.booted_at = crate::reconcile::booted_at();
    crate::reconcile::remember_rollouts(
        &mut declared,
        config,
        remembered.probations,
        remembered.rollbacks,
    );
    let observed = engine.observe().await?;
    crate::policy::enforce::keep_running_security(&mut declared, &observed);
    Ok(statuses(&declared, &observed, SystemTime::now()))
}

/// Adds the journal's last error to each record that has no current problem.
pub fn add_last_errors(rows: &mut [RecordStatus], state: &crate::state::State) {
    for row in rows.iter_mut().filter(|r| r.error.is_none()) {
        row.error = state
            .last_error(&row.name)
            .ok()
            .flatten()
            .map(|e| format!("last action failed: {e}"));
    }
}

/// Marks each record whose image's tag moved in its registry (the last
/// check of a watched reference said so, and it was not pulled since).
pub fn add_updates(rows: &mut [RecordStatus], state: &crate::state::State) {
    let Ok(checks) = state.registry_checks() else {
        return;
    };
    for check in checks.values().filter(|c| c.update_available) {
        let digest = check.remote_digest.as_deref().unwrap_or("?");
        for row in rows.iter_mut().filter(|r| check.records.contains(&r.name)) {
            row.update = Some(format!(
                "update available: {} now names {} (checked {})",
                check.reference, digest, check.checked_at
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ObservedContainer;
    use crate::model::{Health, LABEL_INSTANCE, LABEL_MANAGED, LABEL_RECORD};

    #[test]
    fn health_is_shown_when_the_engine_lists_a_verdict() {
        let declared = crate::declared::from_text(
            "db=service|Image|app:1|HealthCmd|true\nweb=service|Image|app:1\n",
        );
        let container = |name: &str, health| ObservedContainer {
            id: format!("id-{name}"),
            name: name.into(),
            labels: [
                (LABEL_MANAGED, "true"),
                (LABEL_INSTANCE, "test"),
                (LABEL_RECORD, name),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            image: "app:1".into(),
            image_id: "sha256:1".into(),
            state: "running".into(),
            exit_code: None,
            health,
            up_seconds: None,
        };
        let observed = ObservedState {
            containers: vec![
                container("db", Some(Health::Unhealthy)),
                container("web", None),
            ],
            ..Default::default()
        };
        let rows = statuses(&declared, &observed, SystemTime::UNIX_EPOCH);
        let health: Vec<(&str, Option<Health>)> =
            rows.iter().map(|r| (r.name.as_str(), r.health)).collect();
        assert_eq!(health, vec![("db", Some(Health::Unhealthy)), ("web", None)]);
        let json = serde_json::to_value(&rows).expect("json");
        assert_eq!(json[0]["health"], "unhealthy");
        assert!(json[1].get("health").is_none(), "no check, no field");
    }
}
