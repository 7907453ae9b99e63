//! The shell that carries out a plan on an engine: waves in order, the
//! actions of a wave concurrently (bounded), every outcome reported. One
//! failed action never stops the others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::engine::{
    ContainerConfig, Engine, EngineError, MountKind, LABEL_INSTANCE, LABEL_MANAGED, LABEL_RECORD,
    LABEL_SPEC, LABEL_SPEC_HASH,
};
use crate::plan::{Action, ActionKind, Operation, Plan, OLD_SUFFIX, REPLACEMENT_SUFFIX};

pub mod health;
pub use health::HealthGate;

#[derive(Debug, Clone)]
pub struct ApplySettings {
    /// Written into `org.berth.instance` of everything created.
    pub instance: String,
    pub concurrency: usize,
    pub stop_grace_seconds: u32,
}

/// What happened to one action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub record: String,
    pub kind: ActionKind,
    pub reason: String,
    /// None: done. Some: why it failed.
    pub error: Option<String>,
    /// The container berth asked the engine to start, if it did (even when
    /// the start failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// An update the engine refused, and so made by a recreate instead:
    /// the refusal. (The reason says it too.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// A recreate that kept the old container (as `_berth-old`) and
    /// started the new one: the new container's ID, now on probation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// Actions berthd's look between waves held back, not failed: a
    /// dependency started in this pass whose health check has no verdict
    /// yet (its `health_status` event brings the pass that starts them).
    pub held: Vec<crate::plan::Problem>,
}

impl Report {
    pub fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.error.is_some())
    }
}

/// Sees each action of a pass: `starting` before its wave runs (so a
/// journal shows what was cut off by a crash), `done` when it finished.
/// `index` is the action's place in `plan.actions`: the same action has
/// the same index in both calls.
pub trait Observer {
    fn starting(&mut self, _index: usize, _action: &Action) {}
    fn done(&mut self, index: usize, action: &Action, outcome: &Outcome);
}

impl<F: FnMut(&Outcome)> Observer for F {
    fn done(&mut self, _index: usize, _action: &Action, outcome: &Outcome) {
        self(outcome)
    }
}

/// Why an action was never started.
pub const NOT_STARTED: &str = "not started: berth is shutting down";

/// Why one action did not happen; worded into its [`Outcome`].
#[derive(Debug, thiserror::Error)]
enum ActionError {
    #[error("{NOT_STARTED}")]
    ShuttingDown,
    #[error("not started: {0}, which it links to, failed in this pass")]
    NeedFailed(String),
    /// A record it links to has a health check and is not healthy.
    #[error("not started: {0}")]
    NeedNotHealthy(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Runs `plan` wave by wave, the actions of a wave concurrently. Once `stop`
/// is set, actions in flight finish and no new one starts. A dependency
/// started in a wave is looked at once before what links to it
/// ([`HealthGate::Look`]): berthd's way, which never waits on a check.
pub async fn apply<E: Engine>(
    engine: &E,
    plan: &Plan,
    settings: &ApplySettings,
    stop: &AtomicBool,
    observer: impl Observer,
) -> Report {
    apply_gated(engine, plan, settings, HealthGate::Look, stop, observer).await
}

/// [`apply`], with `gate` saying what to do about a dependency started in
/// this pass whose health check has no verdict yet.
pub async fn apply_gated<E: Engine>(
    engine: &E,
    plan: &Plan,
    settings: &ApplySettings,
    gate: HealthGate,
    stop: &AtomicBool,
    mut observer: impl Observer,
) -> Report {
    let mut report = Report::default();
    // The last wave that links to each record: after its own wave, a
    // record some later action needs is checked for health.
    let mut needed_until: BTreeMap<&str, usize> = BTreeMap::new();
    for action in &plan.actions {
        for need in &action.needs {
            let wave = needed_until.entry(need.as_str()).or_insert(action.wave);
            *wave = (*wave).max(action.wave);
        }
    }
    // Records with a health check that is not healthy: what links to them waits.
    let mut unhealthy: BTreeMap<String, String> = BTreeMap::new();
    let mut waves: BTreeMap<usize, Vec<(usize, &Action)>> = BTreeMap::new();
    for (index, action) in plan.actions.iter().enumerate() {
        waves.entry(action.wave).or_default().push((index, action));
    }
    // Records whose action failed in this pass: what links to them waits.
    // A set: with thousands of records failing at once (the engine gone
    // mid-pass), each action's look-up stays cheap.
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for (wave, mut actions) in waves {
        if gate == HealthGate::Look {
            // berthd never waits on a check: what would start before its
            // dependency's verdict is held for the pass the verdict brings,
            // and carries the hold to what links to it in turn.
            actions.retain(|(_, action)| {
                let why = match action.needs.iter().find_map(|n| unhealthy.get(n)) {
                    Some(why)
                        if action.starts() && !action.needs.iter().any(|n| failed.contains(n)) =>
                    {
                        why.clone()
                    }
                    _ => return true,
                };
                report.held.push(crate::plan::Problem {
                    record: action.record.clone(),
                    message: format!("not started: {why}"),
                });
                unhealthy.insert(action.record.clone(), why);
                false
            });
        }
        for (index, action) in &actions {
            observer.starting(*index, action);
        }
        // Futures of a named async fn, collected, not a closure mapped over
        // the stream: the closure's borrow of each action is not general
        // enough for rustc to see the pass as `Send`, and the CLI's backend
        // (the API's `Backend`) needs it to be.
        let pending: Vec<_> = actions
            .into_iter()
            .map(|(index, action)| {
                let blocked = Blocked {
                    failed: &failed,
                    unhealthy: &unhealthy,
                };
                carry_out(engine, settings, stop, blocked, index, action)
            })
            .collect();
        let mut results = stream::iter(pending).buffer_unordered(settings.concurrency.max(1));
        let mut newly_failed = Vec::new();
        let mut dependencies = Vec::new();
        while let Some((index, action, outcome)) = results.next().await {
            observer.done(index, action, &outcome);
            if outcome.error.is_some() {
                newly_failed.push(action.record.clone());
            } else if outcome.started.is_some()
                && needed_until.get(action.record.as_str()) > Some(&wave)
            {
                // From the plan itself: `action` borrows what `failed` does.
                let started = &plan.actions[index];
                dependencies.push(health::Dependency {
                    record: &started.record,
                    check: started.config().and_then(|c| c.health.as_ref()),
                });
            }
            report.outcomes.push(outcome);
        }
        drop(results);
        failed.extend(newly_failed);
        unhealthy.extend(health::gate(engine, &dependencies, gate, stop).await);
    }
    report
}

/// What keeps an action from starting: records that failed in this pass,
/// and records whose health check is not healthy.
#[derive(Clone, Copy)]
struct Blocked<'a> {
    failed: &'a BTreeSet<String>,
    unhealthy: &'a BTreeMap<String, String>,
}

/// The labels that make a container ours and let the next plan compare it.
pub fn labels_for(
    instance: &str,
    record: &str,
    config: &ContainerConfig,
    spec_hash: &str,
) -> BTreeMap<String, String> {
    let spec_json = serde_json::to_string(config).unwrap_or_default();
    [
        (LABEL_MANAGED, "true".to_string()),
        (LABEL_INSTANCE, instance.to_string()),
        (LABEL_RECORD, record.to_string()),
        (LABEL_SPEC_HASH, spec_hash.to_string()),
        (LABEL_SPEC, spec_json),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One action of a wave: not started once `stop` is set or an action it
/// needs failed in this pass; its outcome worded for the admin.
async fn carry_out<'a, E: Engine>(
    engine: &'a E,
    settings: &'a ApplySettings,
    stop: &'a AtomicBool,
    blocked: Blocked<'a>,
    index: usize,
    action: &'a Action,
) -> (usize, &'a Action, Outcome) {
    let broken_need = action.needs.iter().find(|n| blocked.failed.contains(*n));
    let unhealthy_need = action
        .needs
        .iter()
        .find_map(|n| blocked.unhealthy.get(n))
        .filter(|_| action.starts());
    let mut done = Done::default();
    let result = if stop.load(Ordering::SeqCst) {
        Err(ActionError::ShuttingDown)
    } else if let Some(need) = broken_need {
        Err(ActionError::NeedFailed(need.clone()))
    } else if let Some(why) = unhealthy_need {
        Err(ActionError::NeedNotHealthy(why.clone()))
    } else {
        run(engine, action, settings, &mut done)
            .await
            .map_err(ActionError::from)
    };

    let reason = match &done.refused {
        Some(why) => format!(
            "{}; update refused by the engine: {why}; {}",
            action.reason,
            if result.is_ok() {
                "recreated"
            } else {
                "recreate failed"
            }
        ),
        None => action.reason.clone(),
    };
    let Done {
        started,
        refused,
        rollout,
    } = done;
    let outcome = Outcome {
        record: action.record.clone(),
        kind: action.kind(),
        reason,
        error: result.err().map(|e| e.to_string()),
        started,
        refused,
        rollout,
    };
    (index, action, outcome)
}

/// What an action did besides succeeding or failing; see [`Outcome`]'s
/// fields of the same names.
#[derive(Debug, Default)]
struct Done {
    started: Option<String>,
    refused: Option<String>,
    rollout: Option<String>,
}

/// Carries out one action. `started` gets the ID of the container berth
/// asked the engine to start, whether or not the start worked: crash-loop
/// back-off counts attempts. `refused` gets the engine's refusal of an
/// update, which was then made by a recreate in the same action (not left
/// to the next pass: the plan already said why, and the change is due now).
async fn run<E: Engine>(
    engine: &E,
    action: &Action,
    settings: &ApplySettings,
    done: &mut Done,
) -> Result<(), EngineError> {
    let grace = settings.stop_grace_seconds;
    let started = &mut done.started;
    match &action.operation {
        Operation::CreateNetwork { name } => engine.ensure_network(name, &settings.instance).await,
        Operation::Start { container_id } => {
            *started = Some(container_id.clone());
            engine.start_container(container_id).await
        }
        Operation::Stop { container_id } => engine.stop_container(container_id, grace).await,
        Operation::Remove { container_id } => {
            engine.stop_container(container_id, grace).await?;
            engine.remove_container(container_id).await
        }
        Operation::Create {
            config,
            spec_hash,
            start,
        } => {
            let labels = labels_for(&settings.instance, &action.record, config, spec_hash);
            prepare_mounts(engine, &labels, config).await?;
            let new_id = engine
                .create_container(&config.name, config, &labels)
                .await?;
            if *start {
                *started = Some(new_id.clone());
                engine.start_container(&new_id).await?;
            }
            Ok(())
        }
        // An update the engine refuses is made by a recreate: both carry
        // what replaces the old container.
        Operation::Recreate {
            container_id,
            config,
            spec_hash,
            start,
            stop_first,
            discard_old,
        }
        | Operation::Update {
            container_id,
            config,
            spec_hash,
            start,
            stop_first,
            discard_old,
            ..
        } => {
            if let Operation::Update { update, .. } = &action.operation {
                match engine.update_container(container_id, update).await {
                    Err(EngineError::UpdateRefused(why)) => done.refused = Some(why),
                    Err(e @ EngineError::NoUpdate(_)) => done.refused = Some(e.to_string()),
                    result => return result,
                }
            }
            let replacement = Replacement {
                old_id: container_id,
                config,
                spec_hash,
                start: *start,
                stop_first: *stop_first,
                keep_old: *start && !*discard_old,
            };
            recreate(engine, action, settings, &replacement, done).await
        }
        Operation::Rollback {
            name,
            new_id,
            old_id,
            restore,
            start,
            ..
        } => {
            // The new container gives the name and ports back; its volumes
            // stay (never `v`), and the old container mounts them again.
            if let Some(new_id) = new_id {
                engine.stop_container(new_id, grace).await?;
                engine.remove_container(new_id).await?;
            }
            // Its own restart policy back while it is still `_berth-old`:
            // a crash after the rename would leave it under `no` with
            // nothing in its name to say so; before it, the next pass puts
            // it back (and restores) again.
            keep_policy_if_engine_cannot_update(
                engine.update_container(old_id, restore).await,
                name,
            )?;
            engine.rename_container(old_id, name).await?;
            if *start {
                *started = Some(old_id.clone());
                engine.start_container(old_id).await?;
            }
            Ok(())
        }
        Operation::RolloutDone { old_id } => {
            engine.stop_container(old_id, grace).await?;
            engine.remove_container(old_id).await
        }
    }
}

/// What a recreate replaces and with what.
struct Replacement<'a> {
    old_id: &'a str,
    config: &'a ContainerConfig,
    spec_hash: &'a str,
    start: bool,
    stop_first: bool,
    /// Keep the old container as `_berth-old` rather than remove it.
    keep_old: bool,
}

/// Creates the replacement under `_berth-new`, stops the old container
/// and, when the new one is to be started, keeps the old one as
/// `_berth-old` (stopped, so the ports are free) for a rollback; a
/// replacement that stays stopped has nothing to prove, and an old
/// container that is itself on probation is not the one to go back to:
/// both are removed as before. The rename order keeps every moment
/// readable from the names alone: see `plan::rollout`.
async fn recreate<E: Engine>(
    engine: &E,
    action: &Action,
    settings: &ApplySettings,
    replacement: &Replacement<'_>,
    done: &mut Done,
) -> Result<(), EngineError> {
    let Replacement {
        old_id,
        config,
        spec_hash,
        start,
        stop_first,
        keep_old,
    } = *replacement;
    let grace = settings.stop_grace_seconds;
    // Create the replacement first: if that fails, the old container
    // is untouched and keeps running.
    let labels = labels_for(&settings.instance, &action.record, config, spec_hash);
    if stop_first {
        engine.stop_container(old_id, grace).await?;
    }
    prepare_mounts(engine, &labels, config).await?;
    let temp_name = format!("{}{REPLACEMENT_SUFFIX}", config.name);
    let new_id = engine.create_container(&temp_name, config, &labels).await?;
    if !stop_first {
        engine.stop_container(old_id, grace).await?;
    }
    if keep_old {
        let kept_name = format!("{}{OLD_SUFFIX}", config.name);
        engine.rename_container(old_id, &kept_name).await?;
        // Under `no` while kept, so a dockerd restart never starts it
        // beside the new one (same volumes, same alias). Once renamed and
        // before the new one takes the name: a crash before this leaves a
        // `_berth-old` alone, which the next pass puts back with its
        // policy restored, and a `_berth-old` beside a container of the
        // name has always been through it. (Before the rename, a crash
        // would leave the old container under its own name with its policy
        // lost, which no name and no list shows.)
        keep_policy_if_engine_cannot_update(
            engine
                .update_container(old_id, &crate::plan::rollout::no_restart())
                .await,
            &kept_name,
        )?;
    } else {
        engine.remove_container(old_id).await?;
    }
    engine.rename_container(&new_id, &config.name).await?;
    if start {
        done.started = Some(new_id.clone());
        // On probation whether it kept its own old container or inherits
        // the one kept before.
        done.rollout = Some(new_id.clone());
        engine.start_container(&new_id).await?;
    }
    Ok(())
}

/// An engine with no in-place update (Podman before 5) leaves a kept
/// container its own restart policy. Podman restarts no container when
/// its service restarts, only `always` ones at boot (podman-restart.service),
/// so the kept one stays stopped but for a reboot during a probation,
/// after which the next pass sees it running beside the new one.
fn keep_policy_if_engine_cannot_update(
    result: Result<(), EngineError>,
    container: &str,
) -> Result<(), EngineError> {
    match result {
        Err(EngineError::NoUpdate(why)) => {
            tracing::warn!(
                container,
                "restart policy left as it is: this engine cannot change a container in place ({why})"
            );
            Ok(())
        }
        other => other,
    }
}

/// Named volumes are created labelled as ours (Docker would make them
/// unlabelled); host folders are created by the engine layer. A volume
/// that exists already is used only if this berth made it for this
/// record: one another owner made (an admin, another record, another
/// berth) is never adopted, so no container gets someone else's data.
async fn prepare_mounts<E: Engine>(
    engine: &E,
    container_labels: &BTreeMap<String, String>,
    config: &ContainerConfig,
) -> Result<(), EngineError> {
    let labels: BTreeMap<String, String> = container_labels
        .iter()
        .filter(|(k, _)| [LABEL_MANAGED, LABEL_INSTANCE, LABEL_RECORD].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for mount in config.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
        let found = engine.ensure_volume(&mount.source, &labels).await?;
        let owner = |key: &str| found.get(key).map(String::as_str).unwrap_or("none");
        if labels.iter().any(|(k, v)| found.get(k) != Some(v)) {
            return Err(EngineError::Conflict(format!(
                "volume {} for {} exists but was not made by this berth for this record (its labels: managed {}, instance {}, record {}); berth does not adopt it: rename or remove it, or copy its data into a new one",
                mount.source,
                mount.target,
                owner(LABEL_MANAGED),
                owner(LABEL_INSTANCE),
                owner(LABEL_RECORD)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
