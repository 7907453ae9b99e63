//! The pure planner: (declared specs, observed engine state, now) → ordered
//! actions, each with the reason an admin reads. No I/O, no engine, no clock.

mod diff;
mod health;
mod intent;
pub mod pulls;
pub mod restarts;
pub mod rollout;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use chrono::{DateTime, Local, TimeZone};

use serde::{Deserialize, Serialize};

use crate::declared::{links, ContainerSpec, Declared};
use crate::model::{
    AppliedUpdate, ContainerConfig, ContainerUpdate, Mount, MountKind, NetworkAttachment,
    ObservedContainer, ObservedState, LABEL_SPEC, LABEL_SPEC_HASH,
};

/// Suffix of the name a replacement container is created under while the
/// old one still runs; a container left with it by a crash is removed.
pub const REPLACEMENT_SUFFIX: &str = "_berth-new";

pub use rollout::OLD_SUFFIX;

/// The reason of a removal whose record is gone from the db.
const RECORD_DELETED: &str = "record deleted";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    CreateNetwork,
    Create,
    Recreate,
    Update,
    Start,
    Stop,
    Remove,
    Rollback,
    RolloutDone,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CreateNetwork => "create-network",
            ActionKind::Create => "create",
            ActionKind::Recreate => "recreate",
            ActionKind::Update => "update",
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::Remove => "remove",
            ActionKind::Rollback => "rollback",
            ActionKind::RolloutDone => "rollout-done",
        }
    }
}

/// What an action does, with exactly the data it needs: a plan cannot
/// ask to start nothing or to create without a spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// A bridge network named `name`, labelled as ours.
    CreateNetwork {
        name: String,
    },
    /// A new container from `config`, labelled with `spec_hash`; started
    /// when `start`.
    Create {
        config: ContainerConfig,
        spec_hash: String,
        start: bool,
    },
    /// A replacement for `container_id`, created before the old one is
    /// removed. `stop_first`: stop the old container before creating the
    /// new one (not after), because a host folder of the new one lies
    /// inside one the old one can write: nothing may run there while it
    /// is checked. A started replacement is on probation, and the old
    /// container is kept (stopped) for a rollback; `discard_old`: the old
    /// one is itself on probation (a change came before it proved
    /// itself), so it is removed and the one kept before it stays.
    Recreate {
        container_id: String,
        config: ContainerConfig,
        spec_hash: String,
        start: bool,
        stop_first: bool,
        discard_old: bool,
    },
    /// `update` applied to `container_id` in place (same container, no
    /// restart): what differs from the spec it runs is only what the
    /// engine can update. Its labels keep the old spec (`label_hash`), so
    /// the shell records `spec_hash` against the container once the engine
    /// accepted. `config`, `start` and `stop_first` are for the fallback:
    /// an update the engine refuses becomes a recreate in the same action.
    Update {
        container_id: String,
        label_hash: String,
        update: ContainerUpdate,
        config: ContainerConfig,
        spec_hash: String,
        start: bool,
        stop_first: bool,
        discard_old: bool,
    },
    Start {
        container_id: String,
    },
    Stop {
        container_id: String,
    },
    /// Stop, then remove (never the volumes).
    Remove {
        container_id: String,
    },
    /// Puts the container a recreate kept (`old_id`, named `_berth-old`)
    /// back as `name`: the new container (`new_id`, if there is one) is
    /// stopped and removed first (never its volumes); the old one is
    /// started when `start`. `bad`: the rollout that failed, which the
    /// shell remembers so it is not tried again; None when a crash cut an
    /// update off (the next pass tries it again).
    Rollback {
        name: String,
        /// The record's image reference, for the notification command.
        image: String,
        new_id: Option<String>,
        old_id: String,
        /// The restart policy the old container is given back before it
        /// takes the name (it waited under `no`).
        restore: ContainerUpdate,
        start: bool,
        bad: Option<rollout::RolledBack>,
    },
    /// The new container proved itself: the one kept for a rollback
    /// (`old_id`) is removed (never its volumes).
    RolloutDone {
        old_id: String,
    },
}

impl Operation {
    pub fn kind(&self) -> ActionKind {
        match self {
            Operation::CreateNetwork { .. } => ActionKind::CreateNetwork,
            Operation::Create { .. } => ActionKind::Create,
            Operation::Recreate { .. } => ActionKind::Recreate,
            Operation::Update { .. } => ActionKind::Update,
            Operation::Start { .. } => ActionKind::Start,
            Operation::Stop { .. } => ActionKind::Stop,
            Operation::Remove { .. } => ActionKind::Remove,
            Operation::Rollback { .. } => ActionKind::Rollback,
            Operation::RolloutDone { .. } => ActionKind::RolloutDone,
        }
    }
}

/// One thing a pass does, for one record, in one wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Actions of one wave are independent and may run concurrently; waves
    /// run in order.
    pub wave: usize,
    /// The record (or, for CreateNetwork, the network) acted for.
    pub record: String,
    pub reason: String,
    /// Records this one links to: if one of them fails in the same pass,
    /// this action is not started (as compose does with depends_on).
    pub needs: Vec<String>,
    pub operation: Operation,
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        self.operation.kind()
    }

    /// The existing container acted on (Start, Stop, Remove, Recreate).
    pub fn container_id(&self) -> Option<&str> {
        match &self.operation {
            Operation::Recreate { container_id, .. }
            | Operation::Update { container_id, .. }
            | Operation::Start { container_id }
            | Operation::Stop { container_id }
            | Operation::Remove { container_id } => Some(container_id),
            // The container that runs (or goes) afterwards.
            Operation::Rollback { old_id, .. } | Operation::RolloutDone { old_id } => Some(old_id),
            Operation::CreateNetwork { .. } | Operation::Create { .. } => None,
        }
    }

    /// What Create and Recreate make (and Update's fallback).
    pub fn config(&self) -> Option<&ContainerConfig> {
        match &self.operation {
            Operation::Create { config, .. }
            | Operation::Recreate { config, .. }
            | Operation::Update { config, .. } => Some(config),
            _ => None,
        }
    }

    pub fn spec_hash(&self) -> Option<&str> {
        match &self.operation {
            Operation::Create { spec_hash, .. }
            | Operation::Recreate { spec_hash, .. }
            | Operation::Update { spec_hash, .. } => Some(spec_hash),
            _ => None,
        }
    }

    /// Whether the action leaves a container started. An update starts
    /// nothing (only its fallback recreate may), so it waits for no link.
    pub fn starts(&self) -> bool {
        match &self.operation {
            Operation::Create { start, .. }
            | Operation::Recreate { start, .. }
            | Operation::Rollback { start, .. } => *start,
            Operation::Start { .. } => true,
            _ => false,
        }
    }

    pub fn stops_first(&self) -> bool {
        matches!(
            self.operation,
            Operation::Recreate {
                stop_first: true,
                ..
            } | Operation::Update {
                stop_first: true,
                ..
            }
        )
    }

    /// The action as `berth plan --json` and the API show it.
    pub fn view(&self) -> ActionView {
        ActionView {
            wave: self.wave,
            kind: self.kind(),
            record: self.record.clone(),
            reason: self.reason.clone(),
            container_id: self.container_id().map(str::to_string),
            spec_hash: self.spec_hash().map(str::to_string),
            start: self.starts(),
            needs: self.needs.clone(),
            stop_first: self.stops_first(),
        }
    }
}

/// An action as JSON shows it (`berth plan --json`, `/v1/plan`, pass
/// reports): an outside contract, so flat and unchanged. Never the
/// container's config, whose Env values are secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionView {
    pub wave: usize,
    pub kind: ActionKind,
    pub record: String,
    pub reason: String,
    pub container_id: Option<String>,
    pub spec_hash: Option<String>,
    pub start: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_first: bool,
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(serializer)
    }
}

/// A record the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub record: String,
    pub message: String,
}

/// What a pass would do. `Plan` (of [`Action`]s) is what the planner
/// makes and `apply` carries out; [`PlanView`] is the same as JSON shows
/// it, which is what a client reads back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan<A = Action> {
    pub actions: Vec<A>,
    pub problems: Vec<Problem>,
    /// Records left as they are on purpose: a container that stopped on
    /// its own under its restart policy, a crash loop backing off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Problem>,
    /// When a crash loop's back-off ends: the next pass is due then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<chrono::DateTime<chrono::Utc>>,
    /// Image references to pull, off the loop, for the records `held`
    /// waiting for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulls: Vec<pulls::PullWant>,
    /// The sums of the limits of enabled records against the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::policy::enforce::Capacity>,
}

/// A plan as JSON shows it: actions without their configs.
pub type PlanView = Plan<ActionView>;

impl<A> Default for Plan<A> {
    fn default() -> Self {
        Plan {
            actions: Vec::new(),
            problems: Vec::new(),
            held: Vec::new(),
            next_retry: None,
            pulls: Vec::new(),
            capacity: None,
        }
    }
}

impl<A> Plan<A> {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

impl Plan {
    pub fn view(&self) -> PlanView {
        Plan {
            actions: self.actions.iter().map(Action::view).collect(),
            problems: self.problems.clone(),
            held: self.held.clone(),
            next_retry: self.next_retry,
            pulls: self.pulls.clone(),
            capacity: self.capacity.clone(),
        }
    }
}

pub use crate::schedule::Intent;

pub use intent::intents;

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
    let start_index: BTreeMap<(usize, i64), usize> = start_keys
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, i))
        .collect();
    let start_wave = |spec: &ContainerSpec| {
        let key = (
            depths.get(&spec.name).copied().unwrap_or(0),
            spec.link_priority,
        );
        start_base + start_index.get(&key).copied().unwrap_or(0)
    };

    let intents = intents(declared, at);
    let at_utc = at.with_timezone(&chrono::Utc);
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
            let whose = match c.labels.get(crate::model::LABEL_INSTANCE) {
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
        let want = intents
            .get(name)
            .cloned()
            .unwrap_or_else(crate::schedule::disabled);
        let image_id = observed.image_id(&spec.config.image);
        // What to run: the spec, with the volume names the container has
        // from an older berth where they differ only in name.
        let kept = current.and_then(|c| keep_legacy_volumes(spec, c));
        let (config, spec_hash) = match &kept {
            Some((config, hash)) => (config, hash),
            None => (&spec.config, &spec.spec_hash),
        };
        let action = |reason: String, operation: Operation| {
            let mut action = Action {
                wave: match operation {
                    Operation::Stop { .. } => stop_wave(name),
                    _ => start_wave(spec),
                },
                record: name.into(),
                reason,
                needs: Vec::new(),
                operation,
            };
            // A container started waits for what it links to.
            if action.starts() {
                action.needs = spec.links.clone();
            }
            action
        };
        // A recreate's kept container: its rule comes first.
        let kept = by_name
            .get(format!("{name}{OLD_SUFFIX}").as_str())
            .copied()
            .filter(|c| c.is_ours(&declared.instance) && c.record() == Some(name));
        let mut on_probation = false;
        match rollout::step(declared, spec, want.run, current, kept, at_utc) {
            rollout::Step::None => {}
            rollout::Step::Act { reason, operation } => {
                let action = action(reason, *operation);
                if action.starts() {
                    note_network(&mut networks_needed, spec);
                }
                out.actions.push(action);
                continue;
            }
            rollout::Step::Hold { at } => {
                if let Some(at) = at {
                    out.next_retry = Some(out.next_retry.map_or(at, |t| t.min(at)));
                }
                on_probation = true;
            }
        }
        // A create or recreate needs the image, pulled first if its Pull says so.
        let needs_image = |out: &mut Plan, container: Option<&str>| {
            let gate = pulls::gate(
                spec,
                container,
                image_id.is_some(),
                &declared.pulls,
                at_utc,
                &mut out.pulls,
            );
            let (problems, message) = match gate {
                pulls::Gate::Go => return true,
                pulls::Gate::Wait(why) => (&mut out.held, why),
                pulls::Gate::Missing(why) => (&mut out.problems, why),
                pulls::Gate::Failed { message, retry_at } => {
                    out.next_retry = Some(out.next_retry.map_or(retry_at, |t| t.min(retry_at)));
                    (&mut out.problems, message)
                }
            };
            problems.push(Problem {
                record: name.into(),
                message,
            });
            false
        };
        match current {
            None if want.run && needs_image(&mut out, None) => {
                out.actions.push(action(
                    format!("no container yet; {}", want.why),
                    Operation::Create {
                        config: config.clone(),
                        spec_hash: spec_hash.clone(),
                        start: true,
                    },
                ));
                note_network(&mut networks_needed, spec);
            }
            None => {}
            Some(c) => {
                let label_hash = c.labels.get(LABEL_SPEC_HASH);
                // An update berth applied in place counts only for the
                // container it was applied to, while its labels are the
                // ones it was applied over.
                let applied: Option<&AppliedUpdate> = declared
                    .updates
                    .get(&c.id)
                    .filter(|u| Some(&u.label_hash) == label_hash);
                let running_hash = applied.map(|u| &u.spec_hash).or(label_hash);
                let mut changes = Vec::new();
                let mut in_place = None;
                if running_hash != Some(spec_hash) {
                    let old = running_spec(c, applied);
                    changes.extend(diff::describe_configs(old.as_ref(), config));
                    // In place only while the container is doing what it
                    // should (running, or stopped on purpose): one that
                    // must be started or stopped as well is recreated,
                    // as before, so a record has one action per pass and
                    // nothing runs in a stopped container anyway. A
                    // stopped one that stays stopped is updated: cheaper,
                    // and it keeps its identity.
                    in_place = old
                        .as_ref()
                        .filter(|_| want.run == c.is_running())
                        .and_then(|old| ContainerUpdate::between(old, config))
                        .zip(label_hash);
                }
                let image_moved = image_id.filter(|id| **id != c.image_id);
                if let Some(id) = image_moved {
                    // A moved image tag needs a new container: an update
                    // that comes with one is a recreate.
                    if changes.is_empty() || in_place.is_some() {
                        changes.push(format!(
                            "image {} now is {} (container runs {})",
                            spec.config.image,
                            short(id),
                            short(&c.image_id)
                        ));
                    }
                    in_place = None;
                }
                if let Some(rolled_back) = (!changes.is_empty())
                    .then(|| rollout::blocked(declared, name, spec_hash, image_id))
                    .flatten()
                {
                    // The change is the one that was rolled back: the old
                    // container stays, started and stopped as usual.
                    out.held.push(Problem {
                        record: name.into(),
                        message: rolled_back.describe(),
                    });
                    changes.clear();
                    in_place = None;
                }
                if let Some((update, label_hash)) = in_place {
                    out.actions.push(action(
                        format!("{}, in place", changes.join("; ")),
                        Operation::Update {
                            container_id: c.id.clone(),
                            label_hash: label_hash.clone(),
                            update,
                            config: config.clone(),
                            spec_hash: spec_hash.clone(),
                            start: want.run,
                            stop_first: false,
                            discard_old: on_probation,
                        },
                    ));
                } else if !changes.is_empty() {
                    if needs_image(&mut out, Some(&c.id)) {
                        let reason = changes.join("; ");
                        out.actions.push(action(
                            reason,
                            Operation::Recreate {
                                container_id: c.id.clone(),
                                config: config.clone(),
                                spec_hash: spec_hash.clone(),
                                start: want.run,
                                stop_first: false,
                                discard_old: on_probation,
                            },
                        ));
                        note_network(&mut networks_needed, spec);
                    }
                } else if want.run && !c.is_running() {
                    let started = declared.starts.get(name);
                    match restarts::decide(spec, c, &want, started, declared.booted_at, at_utc) {
                        restarts::Restart::Start(reason) => {
                            note_network(&mut networks_needed, spec);
                            out.actions.push(action(
                                reason,
                                Operation::Start {
                                    container_id: c.id.clone(),
                                },
                            ));
                        }
                        restarts::Restart::Hold(why) => out.held.push(Problem {
                            record: name.into(),
                            message: why,
                        }),
                        restarts::Restart::Wait { at, why } => {
                            out.next_retry = Some(out.next_retry.map_or(at, |t| t.min(at)));
                            out.held.push(Problem {
                                record: name.into(),
                                message: why,
                            });
                        }
                    }
                } else if !want.run && c.is_running() {
                    out.actions.push(action(
                        want.why.clone(),
                        Operation::Stop {
                            container_id: c.id.clone(),
                        },
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
        let kept = c.name == format!("{record}{OLD_SUFFIX}");
        // A kept container is the record's rollout rule's while the record
        // is declared; of a deleted record it goes after the record's own
        // container, under the same doubts.
        if kept && (declared.specs.contains_key(record) || by_name.contains_key(record)) {
            continue;
        }
        let reason = if kept {
            if let Some(first) = declared.unparsed.first() {
                out.problems.push(Problem {
                    record: record.into(),
                    message: format!(
                        "container {} has no record, but not removing it while {first} (the record may be on that line)",
                        c.name
                    ),
                });
                continue;
            }
            format!(
                "{RECORD_DELETED}: removing {}, kept from its last update",
                c.name
            )
        } else if leftover {
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
            RECORD_DELETED.to_string()
        };
        out.actions.push(Action {
            wave: WAVE_REMOVE,
            record: record.into(),
            reason,
            needs: Vec::new(),
            operation: Operation::Remove {
                container_id: c.id.clone(),
            },
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
                record: network.clone(),
                reason: why,
                needs: Vec::new(),
                operation: Operation::CreateNetwork { name: network },
            });
        }
    }
    guard_mass_removal(declared, observed, &mut out);
    guard_host_folders(declared, observed, &mut out);
    guard_policy(declared, &mut out);
    out.capacity = declared.capacity.clone();
    out.actions
        .sort_by(|a, b| (a.wave, &a.record).cmp(&(b.wave, &b.record)));
    health::hold_for_health(declared, observed, &mut out);
    out
}

/// Fail closed: while the host policy cannot be used, nothing is pulled,
/// created, recreated or changed in place (what the policy would refuse cannot be
/// told apart). Stops, starts of existing containers, removals and
/// rollbacks go on: nothing running is stopped because of the policy, and
/// cron's stops for a backup still happen (and the starts after them:
/// `policy::enforce::keep_running_security` keeps what a container runs
/// from looking changed).
fn guard_policy(declared: &Declared, out: &mut Plan) {
    let Some(why) = &declared.policy_refusal else {
        return;
    };
    // Nor is anything fetched: the policy may not allow its source.
    out.pulls.clear();
    let changes = |a: &Action| {
        matches!(
            a.kind(),
            ActionKind::Create | ActionKind::Recreate | ActionKind::Update
        )
    };
    let (held, kept): (Vec<Action>, Vec<Action>) = std::mem::take(&mut out.actions)
        .into_iter()
        .partition(changes);
    out.actions = kept;
    for action in held {
        let kind = action.kind().as_str();
        out.problems.push(Problem {
            record: action.record,
            message: format!("not done ({kind}: {}): {why}", action.reason),
        });
    }
}

/// An emptied or truncated `docker_containers` reads as "every record
/// deleted". So a pass that would remove all of this berth's containers,
/// or (with more than 4) more than the configured share of them, removes
/// none of them and says why, until the records come back or an admin
/// confirms with `berth apply --allow-mass-removal`. Leftovers of an
/// interrupted recreate are not counted and still go.
fn guard_mass_removal(declared: &Declared, observed: &ObservedState, out: &mut Plan) {
    let guard = declared.removal;
    if guard.allow {
        return;
    }
    let deleted = |a: &Action| a.kind() == ActionKind::Remove && a.reason == RECORD_DELETED;
    let removing = out.actions.iter().filter(|a| deleted(a)).count();
    if removing == 0 {
        return;
    }
    let running = observed
        .containers
        .iter()
        .filter(|c| c.is_ours(&declared.instance) && c.record().is_none_or(|r| r == c.name))
        .count();
    let too_many =
        removing >= running || (running > 4 && removing as f64 > guard.share * running as f64);
    if !too_many {
        return;
    }
    let how_many = if removing >= running {
        "all of them".to_string()
    } else {
        format!("more than {:.0}%", guard.share * 100.0)
    };
    let (held, kept): (Vec<Action>, Vec<Action>) = std::mem::take(&mut out.actions)
        .into_iter()
        .partition(deleted);
    out.actions = kept;
    for action in held {
        out.problems.push(Problem {
            record: action.record,
            message: format!(
                "record deleted, but not removed: this pass would remove {removing} of the {running} containers of this berth ({how_many}), which is what an emptied or truncated docker_containers looks like; nothing is removed until the records come back or `berth apply --allow-mass-removal`"
            ),
        });
    }
}

/// A create or recreate whose host data folder lies inside a folder that
/// a container of another record has mounted (read from the containers'
/// spec labels, so this holds for records that are invalid or deleted now)
/// is not done: that container could plant a link on the way. Inside the
/// record's own old container's folder, the old container is stopped
/// before the new one is made and its folders checked.
fn guard_host_folders(declared: &Declared, observed: &ObservedState, out: &mut Plan) {
    let folders = |config: Option<&ContainerConfig>| -> Vec<std::path::PathBuf> {
        config
            .map(|c| {
                c.mounts
                    .iter()
                    .filter(|m| m.kind == MountKind::Bind)
                    .map(|m| std::path::PathBuf::from(&m.source))
                    .collect()
            })
            .unwrap_or_default()
    };
    if !out.actions.iter().any(|a| !folders(a.config()).is_empty()) {
        return;
    }
    // Only labels that mention a host folder are parsed.
    let mounted: Vec<(&str, std::path::PathBuf)> = observed
        .containers
        .iter()
        .filter(|c| c.is_ours(&declared.instance))
        .filter_map(|c| {
            let label = c
                .labels
                .get(LABEL_SPEC)
                .filter(|l| l.contains("\"bind\""))?;
            let config: ContainerConfig = serde_json::from_str(label).ok()?;
            Some((c.record().unwrap_or(&c.name), folders(Some(&config))))
        })
        .flat_map(|(record, fs)| fs.into_iter().map(move |f| (record, f)))
        .collect();
    let mut refused: Vec<(usize, String)> = Vec::new();
    for (i, action) in out.actions.iter_mut().enumerate() {
        for folder in folders(action.config()) {
            for (record, outer) in &mounted {
                if folder == *outer || !folder.starts_with(outer) {
                    continue;
                }
                if *record == action.record {
                    // Only a recreate has an old container of its own.
                    if let Operation::Recreate { stop_first, .. }
                    | Operation::Update { stop_first, .. } = &mut action.operation
                    {
                        *stop_first = true;
                    }
                } else {
                    refused.push((
                        i,
                        format!(
                            "host data folder {} lies inside {}, which the container of record {record} has mounted and could turn a folder on the way into a link to anywhere on the host; use a folder outside it",
                            folder.display(),
                            outer.display()
                        ),
                    ));
                }
            }
        }
    }
    refused.dedup_by_key(|(i, _)| *i);
    for (i, why) in refused.into_iter().rev() {
        let action = out.actions.remove(i);
        out.problems.push(Problem {
            record: action.record,
            message: why,
        });
    }
}

/// Volumes were once named so that two records could share one (see
/// `spec::legacy_volume_name`). A container made then keeps its volume
/// under the old name for as long as it is recreated from the same
/// record: the config (and hash) it is compared with uses that name where
/// its own spec label says it used it for the same path. None when nothing
/// is kept. The volume's labels are checked before it is used again.
pub(crate) fn keep_legacy_volumes(
    spec: &ContainerSpec,
    c: &ObservedContainer,
) -> Option<(ContainerConfig, String)> {
    let legacy = |m: &Mount| crate::declared::legacy_volume_name(&spec.name, &m.target);
    let renamed = |m: &Mount| m.kind == MountKind::Volume && m.source != legacy(m);
    if !spec.config.mounts.iter().any(renamed) {
        return None;
    }
    let old: ContainerConfig = serde_json::from_str(c.labels.get(LABEL_SPEC)?).ok()?;
    let mut config = spec.config.clone();
    let mut kept = false;
    for m in config.mounts.iter_mut().filter(|m| renamed(m)) {
        let name = legacy(m);
        if old
            .mounts
            .iter()
            .any(|o| o.kind == MountKind::Volume && o.target == m.target && o.source == name)
        {
            m.source = name;
            kept = true;
        }
    }
    if !kept {
        return None;
    }
    config.mounts.sort();
    let hash = crate::declared::spec_hash(&config);
    Some((config, hash))
}

/// The spec `c` runs: its spec label, with the update berth applied in
/// place since, if any. None when the label cannot be read (a container
/// from an older berth): such a container is only ever recreated.
fn running_spec(c: &ObservedContainer, applied: Option<&AppliedUpdate>) -> Option<ContainerConfig> {
    let mut config: ContainerConfig = serde_json::from_str(c.labels.get(LABEL_SPEC)?).ok()?;
    if let Some(applied) = applied {
        applied.update.apply_to(&mut config);
    }
    Some(config)
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
