//! The pure planner: (declared specs, observed engine state, now) → ordered
//! actions, each with the reason an admin reads. No I/O, no engine, no clock.

mod diff;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use chrono::{DateTime, Local, TimeZone};

use serde::{Deserialize, Serialize};

use crate::engine::{
    ContainerConfig, NetworkAttachment, ObservedContainer, ObservedState, LABEL_SPEC,
};
use crate::schedule;
use crate::spec::{links, ContainerSpec, Declared};

/// Suffix of the name a replacement container is created under while the
/// old one still runs; a container left with it by a crash is removed.
pub const REPLACEMENT_SUFFIX: &str = "_berth-new";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    CreateNetwork,
    Create,
    Recreate,
    Start,
    Stop,
    Remove,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CreateNetwork => "create-network",
            ActionKind::Create => "create",
            ActionKind::Recreate => "recreate",
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::Remove => "remove",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Actions of one wave are independent and may run concurrently; waves
    /// run in order.
    pub wave: usize,
    pub kind: ActionKind,
    /// The record (or, for CreateNetwork, the network) acted for.
    pub record: String,
    pub reason: String,
    /// The existing container acted on (Start, Stop, Remove, Recreate).
    pub container_id: Option<String>,
    /// Create and Recreate: what to create, and whether to start it.
    #[serde(skip)]
    pub config: Option<ContainerConfig>,
    pub spec_hash: Option<String>,
    pub start: bool,
    /// Records this one links to: if one of them fails in the same pass,
    /// this action is not started (as compose does with depends_on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

/// A record the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub record: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub problems: Vec<Problem>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

pub use crate::schedule::Intent;

/// The state a spec asks for at `at`: `status`, the record's latest console
/// or signalled event (`declared.overrides`) and its schedules.
pub fn intent<Tz: TimeZone>(
    spec: &ContainerSpec,
    declared: &Declared,
    at: &DateTime<Tz>,
) -> Intent {
    let schedules = schedule::Schedules {
        enabled: spec.enabled,
        start: spec.start_schedule.as_deref(),
        stop: spec.stop_schedule.as_deref(),
    };
    schedule::intent_at(&schedules, declared.overrides.get(&spec.name), at)
}

/// Wave layout: removals of deleted records first, then stops from the
/// deepest dependents down, then creates/starts from the deepest dependency
/// up, peers ordered by InterLinkPriority.
const WAVE_REMOVE: usize = 0;
const WAVE_NETWORK: usize = 1;
const WAVE_STOP_BASE: usize = 2;

/// The plan at `now`, schedules evaluated in the server's local time zone.
pub fn plan(declared: &Declared, observed: &ObservedState, now: SystemTime) -> Plan {
    plan_at(declared, observed, &DateTime::<Local>::from(now))
}

/// The plan at `at`, in `at`'s time zone (tests use fixed zones).
pub fn plan_at<Tz: TimeZone>(
    declared: &Declared,
    observed: &ObservedState,
    at: &DateTime<Tz>,
) -> Plan {
    let mut out = Plan::default();
    for (name, errors) in &declared.failed {
        for e in errors {
            out.problems.push(Problem {
                record: name.clone(),
                message: e.to_string(),
            });
        }
    }

    let depths = links::depths(&declared.specs);
    let max_depth = depths.values().copied().max().unwrap_or(0);
    let stop_wave =
        |name: &str| WAVE_STOP_BASE + max_depth - depths.get(name).copied().unwrap_or(0);
    let start_base = WAVE_STOP_BASE + max_depth + 1;
    // Start waves: one per distinct (depth, priority), in order.
    let start_keys: BTreeSet<(usize, i64)> = declared
        .specs
        .values()
        .map(|s| (depths.get(&s.name).copied().unwrap_or(0), s.link_priority))
        .collect();
    let start_wave = |spec: &ContainerSpec| {
        let key = (
            depths.get(&spec.name).copied().unwrap_or(0),
            spec.link_priority,
        );
        start_base + start_keys.iter().position(|k| *k == key).unwrap_or(0)
    };

    let by_name: BTreeMap<&str, &ObservedContainer> = observed
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let mut networks_needed: BTreeMap<String, Vec<String>> = BTreeMap::new();

    for spec in declared.specs.values() {
        let name = spec.name.as_str();
        let current = by_name.get(name).copied();
        if let Some(c) = current.filter(|c| !c.is_ours(&declared.instance)) {
            let whose = match c.labels.get(crate::engine::LABEL_INSTANCE) {
                Some(other) if c.is_managed() => format!("belongs to berth instance {other:?}"),
                _ => "was not made by berth (no org.berth.managed label)".to_string(),
            };
            out.problems.push(Problem {
                record: name.into(),
                message: format!(
                    "a container named {name} ({}) exists but {whose}; berth leaves it alone: remove or rename it to let berth manage {name}",
                    short(&c.id)
                ),
            });
            continue;
        }
        let want = intent(spec, declared, at);
        let image_id = observed.images.get(&spec.config.image);
        let action =
            |kind, reason: String, id: Option<&str>, start: bool, with_config: bool| Action {
                wave: match kind {
                    ActionKind::Stop => stop_wave(name),
                    _ => start_wave(spec),
                },
                kind,
                record: name.into(),
                reason,
                container_id: id.map(str::to_string),
                config: with_config.then(|| spec.config.clone()),
                spec_hash: with_config.then(|| spec.spec_hash.clone()),
                start,
                needs: if start {
                    spec.links.clone()
                } else {
                    Vec::new()
                },
            };
        let needs_image = |out: &mut Plan| {
            if image_id.is_none() {
                out.problems.push(Problem {
                    record: name.into(),
                    message: format!(
                        "image {} is not in the engine; berth never pulls: build, import or load it (berth image …)",
                        spec.config.image
                    ),
                });
                return false;
            }
            true
        };
        match current {
            None if want.run && needs_image(&mut out) => {
                out.actions.push(action(
                    ActionKind::Create,
                    format!("no container yet; {}", want.why),
                    None,
                    true,
                    true,
                ));
                note_network(&mut networks_needed, spec);
            }
            None => {}
            Some(c) => {
                let mut changes = Vec::new();
                if c.labels.get(crate::engine::LABEL_SPEC_HASH) != Some(&spec.spec_hash) {
                    changes.extend(diff::describe(
                        c.labels.get(LABEL_SPEC).map(String::as_str),
                        &spec.config,
                    ));
                }
                if let Some(id) = image_id {
                    if changes.is_empty() && &c.image_id != id {
                        changes.push(format!(
                            "image {} now is {} (container runs {})",
                            spec.config.image,
                            short(id),
                            short(&c.image_id)
                        ));
                    }
                }
                if !changes.is_empty() {
                    if needs_image(&mut out) {
                        let reason = changes.join("; ");
                        out.actions.push(action(
                            ActionKind::Recreate,
                            reason,
                            Some(&c.id),
                            want.run,
                            true,
                        ));
                        note_network(&mut networks_needed, spec);
                    }
                } else if want.run && !c.is_running() {
                    note_network(&mut networks_needed, spec);
                    let reason = format!("{}, but the container is {}", want.why, c.state);
                    out.actions
                        .push(action(ActionKind::Start, reason, Some(&c.id), true, false));
                } else if !want.run && c.is_running() {
                    out.actions.push(action(
                        ActionKind::Stop,
                        want.why.clone(),
                        Some(&c.id),
                        false,
                        false,
                    ));
                }
            }
        }
    }

    for c in observed
        .containers
        .iter()
        .filter(|c| c.is_ours(&declared.instance))
    {
        let record = c.record().unwrap_or(c.name.as_str());
        let leftover = c.name != record;
        // A broken record's containers stay exactly as they are, leftovers too.
        if declared.failed.contains_key(record)
            || (!leftover && declared.specs.contains_key(record))
        {
            continue;
        }
        let reason = if leftover {
            format!("leftover {} of an interrupted change to {record}", c.name)
        } else if let Some(first) = declared.unparsed.first() {
            out.problems.push(Problem {
                record: record.into(),
                message: format!(
                    "container {} has no record, but not removing it while {first} (the record may be on that line)",
                    c.name
                ),
            });
            continue;
        } else {
            "record deleted".to_string()
        };
        out.actions.push(Action {
            wave: WAVE_REMOVE,
            kind: ActionKind::Remove,
            record: record.into(),
            reason,
            container_id: Some(c.id.clone()),
            config: None,
            spec_hash: None,
            start: false,
            needs: Vec::new(),
        });
    }

    for (network, users) in networks_needed {
        let found = observed.networks.iter().filter(|n| **n == network).count();
        if found != 1 {
            // Two networks of one name (a crash mid-create) make every start
            // on it fail as "ambiguous"; ensure_network keeps the oldest.
            let why = if found == 0 {
                format!("needed by {}", users.join(", "))
            } else {
                format!(
                    "{found} networks share this name; keeping one, needed by {}",
                    users.join(", ")
                )
            };
            out.actions.push(Action {
                wave: WAVE_NETWORK,
                kind: ActionKind::CreateNetwork,
                record: network,
                reason: why,
                container_id: None,
                config: None,
                spec_hash: None,
                start: false,
                needs: Vec::new(),
            });
        }
    }
    out.actions
        .sort_by(|a, b| (a.wave, &a.record).cmp(&(b.wave, &b.record)));
    out
}

fn note_network(needed: &mut BTreeMap<String, Vec<String>>, spec: &ContainerSpec) {
    if let NetworkAttachment::Bridge(net) = &spec.config.network {
        needed
            .entry(net.clone())
            .or_default()
            .push(spec.name.clone());
    }
}

/// The 12 hex digits Docker shows for IDs.
pub fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
