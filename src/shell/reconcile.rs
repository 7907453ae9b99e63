//! One reconcile pass, the same for `berth apply` and berthd: declare from
//! the pass's db snapshot, observe the engine, plan, apply, and journal all
//! of it in state.db, with the rollouts it starts, ends and rolls back
//! (probations and rollbacks, and the `rolled-back` notification).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::apply::{self, ApplySettings, HealthGate, Observer, Outcome};
use crate::config::Config;
use crate::db::snapshot::{ReadError, Snapshot};
use crate::declared::{self, LoadError};
use crate::engine::{Engine, EngineError};
use crate::model::{AppliedUpdate, LABEL_SPEC_HASH};
use crate::plan::rollout::{self, Probation, RolledBack, RolloutSettings};
use crate::plan::{self, Action, ActionKind, Operation, Plan, PlanView};
use crate::schedule::RunEvent;
use crate::state::State;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Declared(#[from] LoadError),
    /// A db of the pass's snapshot could not be read.
    #[error(transparent)]
    Db(#[from] ReadError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// berthd's loop ran the pass and it failed: every request that pass
    /// answered gets the same error.
    #[error(transparent)]
    Shared(Arc<PassError>),
    /// berthd's loop did not take the request: it is stopping.
    #[error("berthd is stopping")]
    DaemonStopping,
    /// berthd stopped before the pass asked for ended.
    #[error("berthd stopped before the pass ended")]
    DaemonStopped,
}

/// What a pass is run on and why.
#[derive(Debug, Clone, Copy)]
pub struct PassInput<'a> {
    /// The dbs, read once for the whole pass.
    pub snapshot: &'a Snapshot,
    /// Why it runs, as the journal and the log say it.
    pub trigger: &'a str,
    /// The time the plan is made for (schedules, back-off).
    pub at: SystemTime,
    /// `berth apply --allow-mass-removal`.
    pub allow_mass_removal: bool,
}

/// What a pass did: the plan it made and how each action went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PassReport {
    pub trigger: String,
    /// As JSON shows it: a client reads the report back.
    pub plan: PlanView,
    pub outcomes: Vec<Outcome>,
    /// Unknown properties, lines that do not parse: said, never fatal.
    pub warnings: Vec<String>,
    /// The next StartSchedule/StopSchedule event of any record: the daemon
    /// sleeps until then (or the resync), it never polls.
    #[serde(default)]
    pub next_scheduled: Option<std::time::SystemTime>,
    /// The engine's image tags → IDs as this pass saw them.
    #[serde(skip)]
    pub image_tags: BTreeMap<String, String>,
}

impl PassReport {
    pub fn failed_actions(&self) -> usize {
        self.outcomes.iter().filter(|o| o.error.is_some()).count()
    }

    /// Records left alone, each counted once however many problems it has.
    pub fn records_not_applied(&self) -> usize {
        self.plan
            .problems
            .iter()
            .map(|p| p.record.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }

    /// Everything applied: no failed action, no record left alone.
    pub fn is_clean(&self) -> bool {
        self.failed_actions() == 0 && self.plan.problems.is_empty()
    }
}

pub fn apply_settings(config: &Config) -> ApplySettings {
    ApplySettings {
        instance: config.instance.clone(),
        concurrency: config.apply_concurrency,
        stop_grace_seconds: config.stop_grace_seconds,
    }
}

/// A plan and what was learnt while making it.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    pub plan: Plan,
    pub warnings: Vec<String>,
    pub next_scheduled: Option<SystemTime>,
    /// The engine's image tags → IDs (for the image lineage check).
    pub image_tags: BTreeMap<String, String>,
    /// Containers state.db holds an in-place update for that are gone, or
    /// were recreated since (their spec-hash label is not the one the
    /// update was applied over): never matched again, to be forgotten.
    pub stale_updates: Vec<String>,
    /// Probations and rollbacks state.db should forget or learn.
    pub settle: rollout::Settle,
    /// Each observed container's spec-hash label and image ID, by ID:
    /// what a probation remembers of the container a recreate keeps.
    pub containers: BTreeMap<String, (Option<String>, String)>,
}

/// What state.db remembers that plans depend on: the latest console or
/// signalled start/stop of each record, berth's latest start of each, and
/// the updates it applied in place (by container ID).
#[derive(Debug, Clone, Default)]
pub struct Remembered {
    pub overrides: BTreeMap<String, RunEvent>,
    pub starts: BTreeMap<String, crate::plan::restarts::StartRecord>,
    pub updates: BTreeMap<String, crate::model::AppliedUpdate>,
    pub probations: BTreeMap<String, Probation>,
    pub rollbacks: BTreeMap<String, RolledBack>,
    /// Not from state.db: the pulls this process runs, failed or did
    /// (`crate::pulls`); none when nothing pulls here.
    pub pulls: crate::plan::pulls::PullStates,
}

impl Remembered {
    /// Read from `state`; what cannot be read is logged and taken as none
    /// (the engine is the truth; a plan without memory is still safe).
    pub fn read(state: Option<&State>) -> Remembered {
        let Some(state) = state else {
            return Remembered::default();
        };
        let overrides = state.overrides().unwrap_or_else(|e| {
            tracing::warn!("journal: {e}");
            BTreeMap::new()
        });
        let starts = state.starts().unwrap_or_else(|e| {
            tracing::warn!("journal: {e}");
            BTreeMap::new()
        });
        // Without them, a container updated in place looks changed again:
        // the next pass repeats the update (same values), nothing worse.
        let updates = state.updates().unwrap_or_else(|e| {
            tracing::warn!("journal: {e}");
            BTreeMap::new()
        });
        // Without them, a kept container is judged from now (never lost),
        // and a rolled-back change may be tried once more.
        let probations = state.probations().unwrap_or_else(|e| {
            tracing::warn!("journal: {e}");
            BTreeMap::new()
        });
        let rollbacks = state.rollbacks().unwrap_or_else(|e| {
            tracing::warn!("journal: {e}");
            BTreeMap::new()
        });
        Remembered {
            overrides,
            starts,
            updates,
            probations,
            rollbacks,
            pulls: Default::default(),
        }
    }

    /// Read from `state_dir/state.db`, if it can be opened.
    pub fn read_dir(state_dir: &std::path::Path) -> Remembered {
        Remembered::read(State::open(state_dir).ok().as_ref())
    }
}

/// When the host booted (`btime` of /proc/stat): berth's starts from
/// before it do not count for crash-loop back-off.
pub fn booted_at() -> Option<chrono::DateTime<chrono::Utc>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    chrono::DateTime::from_timestamp(secs, 0)
}

/// Declared state (from `snapshot`, with what state.db remembers) and
/// engine state, and the plan between them at `at`.
pub async fn plan_now<E: Engine>(
    config: &Config,
    engine: &E,
    snapshot: &Snapshot,
    remembered: Remembered,
    at: SystemTime,
    allow_mass_removal: bool,
) -> Result<Planned, PassError> {
    let mut declared = declared::declare(
        snapshot.containers()?,
        snapshot.images()?,
        &declared::SpecSettings::from_config(config),
    );
    crate::policy_file::apply(config, snapshot.images()?, &mut declared);
    declared.removal = declared::RemovalGuard {
        share: config.mass_removal_share,
        allow: allow_mass_removal,
    };
    declared.overrides = remembered.overrides;
    declared.starts = remembered.starts;
    declared.updates = remembered.updates;
    declared.pulls = remembered.pulls;
    declared.booted_at = booted_at();
    remember_rollouts(
        &mut declared,
        config,
        remembered.probations,
        remembered.rollbacks,
    );
    let next = next_scheduled(&declared, at);
    let warnings = declared
        .policy_refusal
        .iter()
        .cloned()
        .chain(declared.unparsed.iter().map(ToString::to_string))
        .chain(declared.warnings.iter().map(ToString::to_string))
        .collect();
    let observed = engine.observe().await?;
    crate::policy::enforce::keep_running_security(&mut declared, &observed);
    let labels: BTreeMap<&str, &str> = observed
        .containers
        .iter()
        .filter_map(|c| Some((c.id.as_str(), c.labels.get(LABEL_SPEC_HASH)?.as_str())))
        .collect();
    let stale_updates = declared
        .updates
        .iter()
        .filter(|(id, u)| labels.get(id.as_str()) != Some(&u.label_hash.as_str()))
        .map(|(id, _)| id.clone())
        .collect();
    let settle = rollout::settle(&declared, &observed, chrono::DateTime::from(at));
    // The plan sees what state.db will hold once the pass wrote it.
    for record in &settle.forget {
        declared.probations.remove(record);
    }
    for p in &settle.adopt {
        declared.probations.insert(p.record.clone(), p.clone());
    }
    let containers = observed
        .containers
        .iter()
        .map(|c| {
            let hash = c.labels.get(LABEL_SPEC_HASH).cloned();
            (c.id.clone(), (hash, c.image_id.clone()))
        })
        .collect();
    Ok(Planned {
        plan: plan::plan(&declared, &observed, at),
        warnings,
        next_scheduled: next,
        image_tags: observed.images,
        stale_updates,
        settle,
        containers,
    })
}

/// The rollout settings from `config` and what state.db remembers of
/// rollouts, into `declared` (for `plan`, `apply` and `status` alike).
pub fn remember_rollouts(
    declared: &mut declared::Declared,
    config: &Config,
    probations: BTreeMap<String, Probation>,
    rollbacks: BTreeMap<String, RolledBack>,
) {
    declared.probations = probations;
    declared.rollbacks = rollbacks;
    declared.rollout = RolloutSettings {
        probation_seconds: config.rollout_probation_seconds,
        health_timeout_seconds: config.rollout_health_timeout_seconds,
    };
}

/// Runs `image_notify_command` for a rollback, if one is set; killed after
/// `action_timeout_seconds`. Blocks. Only berth's own words and IDs reach
/// its environment, never a value from the record.
fn notify_rollback(config: &Config, record: &str, image: &str, bad: &RolledBack) {
    let Some(command) = &config.image_notify_command else {
        return;
    };
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("BERTH_IMAGE", image)
        .env("BERTH_IMAGE_EVENT", "rolled-back")
        .env("BERTH_RECORD", record)
        .env("BERTH_IMAGE_ID", &bad.image_id)
        .env("BERTH_REASON", &bad.reason);
    let timeout = std::time::Duration::from_secs(config.action_timeout_seconds);
    match crate::command::run(cmd, Some(timeout), crate::command::OUTPUT_CAP) {
        Ok(done) if done.success() => {}
        Ok(done) => tracing::warn!(
            record,
            "image_notify_command exited with {}: {}",
            done.status,
            done.output.trim()
        ),
        Err(e) => tracing::warn!(record, "image_notify_command: {e}"),
    }
}

fn next_scheduled(declared: &declared::Declared, at: SystemTime) -> Option<SystemTime> {
    let local = chrono::DateTime::<chrono::Local>::from(at);
    declared
        .specs
        .values()
        .filter(|s| s.enabled)
        .filter_map(|s| {
            let schedules = crate::schedule::Schedules {
                enabled: true,
                start: s.start_schedule.as_deref(),
                stop: s.stop_schedule.as_deref(),
            };
            crate::schedule::next_event(&schedules, &local)
        })
        .map(|e| SystemTime::from(e.at))
        .min()
}

/// Journals each action: started before its wave, finished after.
struct Journal<'a, F> {
    state: Option<&'a State>,
    pass_id: Option<i64>,
    /// Journal row of each action, by its index in the plan.
    ids: BTreeMap<usize, i64>,
    /// Spec-hash label and image ID of each observed container.
    containers: &'a BTreeMap<String, (Option<String>, String)>,
    /// Image reference → ID, as the pass observed them.
    images: &'a BTreeMap<String, String>,
    /// Rollbacks carried out: (record, image reference, what was undone).
    rolled_back: &'a mut Vec<(String, String, RolledBack)>,
    on_done: F,
}

impl<F> Journal<'_, F> {
    /// Before the engine is asked, what a kill -9 must not lose: that a
    /// recreate is about to keep the old container (so the next pass
    /// judges the new one), and which rollout is being rolled back (so it
    /// is not tried again).
    fn before(&self, state: &State, action: &Action) -> Result<(), crate::state::StateError> {
        match &action.operation {
            Operation::Recreate {
                container_id,
                config,
                spec_hash,
                start: true,
                discard_old: false,
                ..
            }
            | Operation::Update {
                container_id,
                config,
                spec_hash,
                start: true,
                discard_old: false,
                ..
            } => {
                let (old_spec_hash, old_image_id) = self
                    .containers
                    .get(container_id)
                    .map(|(h, i)| (h.clone(), Some(i.clone())))
                    .unwrap_or_default();
                state.record_probation(&Probation {
                    record: action.record.clone(),
                    new_id: None,
                    old_id: container_id.clone(),
                    old_spec_hash,
                    new_spec_hash: Some(spec_hash.clone()),
                    old_image_id,
                    new_image_id: crate::model::image_id_in(self.images, &config.image).cloned(),
                    started_at: chrono::Utc::now(),
                })
            }
            Operation::Rollback { bad: Some(bad), .. } => {
                state.record_rollback(&action.record, bad)
            }
            _ => Ok(()),
        }
    }

    /// After the engine answered: the probation runs from the new
    /// container's start, or is over.
    fn after(
        &mut self,
        state: &State,
        action: &Action,
        outcome: &Outcome,
    ) -> Result<(), crate::state::StateError> {
        let record = &action.record;
        if let Some(new_id) = &outcome.rollout {
            return state.probation_started(record, new_id);
        }
        if outcome.error.is_some() {
            // The next pass sees what was left and decides again.
            return Ok(());
        }
        match &action.operation {
            // Updated in place, or recreated stopped: nothing kept.
            Operation::Recreate {
                start: true,
                discard_old: false,
                ..
            }
            | Operation::Update {
                start: true,
                discard_old: false,
                ..
            }
            | Operation::RolloutDone { .. } => {
                state.forget_probations(std::slice::from_ref(record))
            }
            Operation::Rollback { image, bad, .. } => {
                if let Some(bad) = bad {
                    self.rolled_back
                        .push((record.clone(), image.clone(), bad.clone()));
                }
                state.forget_probations(std::slice::from_ref(record))
            }
            _ => Ok(()),
        }
    }
}

impl<F: FnMut(&Outcome)> Observer for Journal<'_, F> {
    fn starting(&mut self, index: usize, action: &Action) {
        if let Some(state) = self.state {
            if let Err(e) = self.before(state, action) {
                tracing::warn!(record = %action.record, "journal: {e}");
            }
            match state.action_started(
                self.pass_id,
                &action.record,
                action.kind().as_str(),
                &action.reason,
            ) {
                Ok(id) => {
                    self.ids.insert(index, id);
                }
                Err(e) => tracing::warn!(record = %action.record, "journal: {e}"),
            }
        }
    }

    fn done(&mut self, index: usize, action: &Action, outcome: &Outcome) {
        if let (Some(state), Some(id)) = (self.state, self.ids.get(&index)) {
            if let Err(e) = state.action_finished(*id, outcome.error.as_deref()) {
                tracing::warn!(record = %action.record, "journal: {e}");
            }
        }
        if let Some(state) = self.state {
            if let Err(e) = self.after(state, action, outcome) {
                tracing::warn!(record = %action.record, "journal: {e}");
            }
            if let (
                Operation::Update {
                    container_id,
                    label_hash,
                    update,
                    spec_hash,
                    ..
                },
                None,
                None,
            ) = (&action.operation, &outcome.error, &outcome.refused)
            {
                // Only now that the engine accepted it: see record_update.
                let applied = AppliedUpdate {
                    label_hash: label_hash.clone(),
                    spec_hash: spec_hash.clone(),
                    update: update.clone(),
                };
                if let Err(e) = state.record_update(container_id, &applied) {
                    tracing::warn!(record = %action.record, "journal: {e}");
                }
            }
            // What berth started, and what it stopped itself: a container
            // that stops after berth started it (and before berth stopped
            // it) stopped on its own.
            let remembered = match (&outcome.started, action.kind(), &outcome.error) {
                (Some(container), _, _) => state.record_start(&action.record, container),
                (None, ActionKind::Stop | ActionKind::Remove, None) => {
                    state.forget_start(&action.record)
                }
                _ => Ok(()),
            };
            if let Err(e) = remembered {
                tracing::warn!(record = %action.record, "journal: {e}");
            }
        }
        (self.on_done)(outcome);
    }
}

/// Runs one pass. With `state`, the pass and its actions are journalled;
/// journal errors are logged, never fatal (the engine is the truth).
/// Nothing is pulled here (see [`run_pass_with_pulls`]), and a
/// dependency's health is looked at once between waves (berthd's way: the
/// pass after its `health_status` event starts what waits for it).
pub async fn run_pass<E: Engine>(
    config: &Config,
    engine: &E,
    state: Option<&State>,
    input: PassInput<'_>,
    stop: &AtomicBool,
    on_done: impl FnMut(&Outcome),
) -> Result<PassReport, PassError> {
    let pulls = crate::plan::pulls::PullStates::default();
    run_pass_with_pulls(
        config,
        engine,
        state,
        input,
        &pulls,
        HealthGate::Look,
        stop,
        on_done,
    )
    .await
}

/// [`run_pass`] planned with what the caller's puller knows (`pulls`); the
/// report's `plan.pulls` says what the pass wants pulled next. `gate` says
/// whether to wait between waves for a dependency's health check (a
/// one-shot command, which no later pass follows) or only look (berthd).
#[allow(clippy::too_many_arguments)]
pub async fn run_pass_with_pulls<E: Engine>(
    config: &Config,
    engine: &E,
    state: Option<&State>,
    input: PassInput<'_>,
    pulls: &crate::plan::pulls::PullStates,
    gate: HealthGate,
    stop: &AtomicBool,
    on_done: impl FnMut(&Outcome),
) -> Result<PassReport, PassError> {
    let mut remembered = Remembered::read(state);
    remembered.pulls = pulls.clone();
    let PassInput {
        snapshot,
        trigger,
        at,
        allow_mass_removal,
    } = input;
    let planned = plan_now(config, engine, snapshot, remembered, at, allow_mass_removal).await?;
    apply_planned(config, engine, state, trigger, planned, gate, stop, on_done).await
}

/// The second half of a pass: what `planned` (one observe, one plan) says
/// is done and journalled. A caller that planned already, to see what it
/// must pull first, applies that plan when nothing is to be pulled,
/// instead of observing and planning again.
#[allow(clippy::too_many_arguments)]
pub async fn apply_planned<E: Engine>(
    config: &Config,
    engine: &E,
    state: Option<&State>,
    trigger: &str,
    planned: Planned,
    gate: HealthGate,
    stop: &AtomicBool,
    on_done: impl FnMut(&Outcome),
) -> Result<PassReport, PassError> {
    let Planned {
        mut plan,
        warnings,
        next_scheduled,
        image_tags,
        stale_updates,
        settle,
        containers,
    } = planned;
    // Updates of containers gone or recreated since: never matched again.
    if let Some(Err(e)) = state.map(|s| s.forget_updates(&stale_updates)) {
        tracing::warn!("journal: {e}");
    }
    if let Some(state) = state {
        let written = state
            .forget_probations(&settle.forget)
            .and_then(|()| {
                settle
                    .adopt
                    .iter()
                    .try_for_each(|p| state.record_probation(p))
            })
            .and_then(|()| state.forget_rollbacks(&settle.stale_rollbacks));
        if let Err(e) = written {
            tracing::warn!("journal: {e}");
        }
    }
    let pass_id = match state.map(|s| s.begin_pass(trigger)) {
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => {
            tracing::warn!("journal: {e}");
            None
        }
        None => None,
    };
    let mut rolled_back = Vec::new();
    let journal = Journal {
        state,
        pass_id,
        ids: BTreeMap::new(),
        containers: &containers,
        images: &image_tags,
        rolled_back: &mut rolled_back,
        on_done,
    };
    let settings = apply_settings(config);
    let report = apply::apply_gated(engine, &plan, &settings, gate, stop, journal).await;
    for (record, image, bad) in rolled_back {
        tracing::warn!(record = %record, "{}", bad.describe());
        // Not awaited: the command may take its time; berthd's stop ends it.
        let config = config.clone();
        tokio::task::spawn_blocking(move || notify_rollback(&config, &record, &image, &bad));
    }
    let outcomes = report.outcomes;
    // A rollout started in this pass is judged when its probation ends:
    // the daemon wakes for it (no engine event says "ran long enough").
    if outcomes.iter().any(|o| o.rollout.is_some()) {
        let due = rollout::after(
            chrono::DateTime::<chrono::Utc>::from(SystemTime::now()),
            config.rollout_probation_seconds,
        );
        plan.next_retry = Some(plan.next_retry.map_or(due, |t| t.min(due)));
    }
    if let (Some(state), Some(id)) = (state, pass_id) {
        let failures = outcomes.iter().filter(|o| o.error.is_some()).count();
        let records: std::collections::BTreeSet<&str> =
            plan.problems.iter().map(|p| p.record.as_str()).collect();
        if let Err(e) = state.finish_pass(id, outcomes.len(), failures, records.len()) {
            tracing::warn!("journal: {e}");
        }
    }
    let mut view = plan.view();
    view.held.extend(report.held);
    Ok(PassReport {
        trigger: trigger.to_string(),
        plan: view,
        outcomes,
        warnings,
        next_scheduled,
        image_tags,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::engine::fake::FakeEngine;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("folder");
        }
        std::fs::write(path, text).expect("write");
    }

    /// Read once, then the folder is gone: reconcile, the lineage check and
    /// the templates still see the same dbs, so none of them reads again.
    #[tokio::test]
    async fn one_snapshot_serves_reconcile_lineage_and_templates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(
            &root.join("berth.toml"),
            "db_dir = \"db\"\nstate_dir = \"state\"\ntemplates_dir = \"t\"\n\
             templates_custom_dir = \"c\"\noutput_root = \"out\"\ninstance = \"t\"\n",
        );
        write(
            &root.join("db/docker_containers"),
            "app=service|Image|img:1\n",
        );
        write(
            &root.join("db/docker_images"),
            "img=image|Source|git|Repository|file:///r.git|Tag|img:1\n",
        );
        write(&root.join("db/configuration"), "DomainName=example.com\n");
        write(
            &root.join("t/etc/site.conf/10site"),
            "{{ db.configuration.DomainName.type }}{% for c in containers %} {{ c.name }}{% endfor %}\n",
        );
        let config = Config::locate(Some(&root.join("berth.toml"))).expect("config");
        let snapshot = Snapshot::read(&config.db_dir);
        assert_eq!(snapshot.reads(), 3, "each db file read once");
        std::fs::remove_dir_all(root.join("db")).expect("remove the dbs");

        let engine = FakeEngine::new();
        engine.add_image("img:1", "sha256:1");
        let planned = plan_now(
            &config,
            &engine,
            &snapshot,
            Remembered::default(),
            SystemTime::now(),
            false,
        )
        .await
        .expect("planned from the snapshot");
        assert!(planned.plan.actions.iter().any(|a| a.record == "app"));

        let images = crate::images::declared(&snapshot).expect("images");
        assert!(images.specs.contains_key("img"));

        let report = crate::templates::run(&config, &snapshot, false);
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let rendered: Vec<&String> = report.diffs.values().map(|(_, new)| new).collect();
        assert_eq!(rendered, ["example.com app\n"]);
    }

    /// A sandbox config with one record `app` of `line`'s properties.
    fn sandbox(root: &Path, line: &str) -> Config {
        write(
            &root.join("berth.toml"),
            "db_dir = \"db\"\nstate_dir = \"state\"\ntemplates_dir = \"t\"\n\
             templates_custom_dir = \"c\"\noutput_root = \"out\"\ninstance = \"t\"\n",
        );
        write(&root.join("db/docker_containers"), line);
        Config::locate(Some(&root.join("berth.toml"))).expect("config")
    }

    async fn pass(config: &Config, engine: &FakeEngine, state: &State) -> PassReport {
        let snapshot = Snapshot::read(&config.db_dir);
        let input = PassInput {
            snapshot: &snapshot,
            trigger: "test",
            at: SystemTime::now(),
            allow_mass_removal: false,
        };
        let report = run_pass(
            config,
            engine,
            Some(state),
            input,
            &AtomicBool::new(false),
            |_| {},
        )
        .await
        .expect("pass");
        assert_eq!(report.failed_actions(), 0, "{:?}", report.outcomes);
        report
    }

    fn kinds(report: &PassReport) -> Vec<&'static str> {
        report.outcomes.iter().map(|o| o.kind.as_str()).collect()
    }

    /// In place, recorded, then nothing; a crash between the update and
    /// its record is updated again, never recreated; a refusal recreates
    /// in the same pass, and the record of the container it replaced goes.
    #[tokio::test]
    async fn an_update_in_place_is_recorded_survives_a_crash_and_falls_back_when_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let config = sandbox(root, "app=service|Image|img:1|MaxMemory|64M\n");
        let state = State::open(&config.state_dir).expect("state");
        let engine = FakeEngine::new();
        engine.add_image("img:1", "sha256:1");
        assert_eq!(
            kinds(&pass(&config, &engine, &state).await),
            ["create-network", "create"]
        );
        let id = engine.id_of("app").expect("created");
        let memory = || engine.config_of("app").and_then(|c| c.memory);

        write(
            &root.join("db/docker_containers"),
            "app=service|Image|img:1|MaxMemory|128M\n",
        );
        let report = pass(&config, &engine, &state).await;
        assert_eq!(kinds(&report), ["update"]);
        assert_eq!(report.outcomes[0].reason, "MaxMemory 64M → 128M, in place");
        assert_eq!(report.plan.actions[0].kind.as_str(), "update");
        assert_eq!(engine.id_of("app"), Some(id.clone()), "same container");
        assert_eq!(memory(), Some(128 << 20));
        assert!(state.updates().expect("updates").contains_key(&id));
        assert!(pass(&config, &engine, &state).await.outcomes.is_empty());

        // kill -9 after the engine took the update, before state.db did:
        // the update is made again (the same values), not a recreate.
        write(
            &root.join("db/docker_containers"),
            "app=service|Image|img:1|MaxMemory|256M\n",
        );
        let applied = crate::model::ContainerUpdate {
            memory: Some(256 << 20),
            nano_cpus: None,
            restart: "unless-stopped".into(),
            restart_max_retries: None,
        };
        engine
            .update_container(&id, &applied)
            .await
            .expect("update");
        engine.clear_log();
        assert_eq!(kinds(&pass(&config, &engine, &state).await), ["update"]);
        assert_eq!(engine.id_of("app"), Some(id.clone()));
        assert!(
            !engine.actions().iter().any(|a| a.starts_with("create")),
            "{:?}",
            engine.actions()
        );
        assert!(pass(&config, &engine, &state).await.outcomes.is_empty());

        // Below what it uses: refused, so recreated in this pass.
        engine.set_memory_usage(&id, 200 << 20);
        write(
            &root.join("db/docker_containers"),
            "app=service|Image|img:1|MaxMemory|32M\n",
        );
        let report = pass(&config, &engine, &state).await;
        assert_eq!(kinds(&report), ["update"]);
        let outcome = &report.outcomes[0];
        assert!(outcome.refused.is_some());
        assert!(
            outcome
                .reason
                .starts_with("MaxMemory 256M → 32M, in place; update refused by the engine: ")
                && outcome.reason.ends_with("; recreated"),
            "{}",
            outcome.reason
        );
        let new_id = engine.id_of("app").expect("recreated");
        assert_ne!(new_id, id);
        assert_eq!(memory(), Some(32 << 20));
        assert_eq!(
            engine.container("app").map(|c| c.state),
            Some("running".into())
        );
        assert!(pass(&config, &engine, &state).await.outcomes.is_empty());
        // Kept for a rollback, it still runs the update if put back.
        assert_eq!(engine.id_of("app_berth-old"), Some(id.clone()));
        assert!(state.updates().expect("updates").contains_key(&id));
        engine.remove_container(&id).await.expect("remove");
        assert!(pass(&config, &engine, &state).await.outcomes.is_empty());
        assert!(
            state.updates().expect("updates").is_empty(),
            "the replaced container's record is pruned once it is gone"
        );
    }

    /// Podman before 5 has no update: the change is a recreate in the
    /// same pass, the old container is kept (with its own restart
    /// policy), and the next pass has nothing to do.
    #[tokio::test]
    async fn an_engine_without_updates_recreates_and_converges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let config = sandbox(root, "app=service|Image|img:1|MaxMemory|64M\n");
        let state = State::open(&config.state_dir).expect("state");
        let engine = FakeEngine::new();
        engine.add_image("img:1", "sha256:1");
        engine.without_updates();
        pass(&config, &engine, &state).await;
        let id = engine.id_of("app").expect("created");
        write(
            &root.join("db/docker_containers"),
            "app=service|Image|img:1|MaxMemory|128M\n",
        );
        let report = pass(&config, &engine, &state).await;
        assert_eq!(kinds(&report), ["update"]);
        let reason = &report.outcomes[0].reason;
        assert!(
            reason.contains("cannot change a container in place")
                && reason.ends_with("; recreated"),
            "{reason}"
        );
        assert_ne!(engine.id_of("app"), Some(id.clone()));
        assert_eq!(engine.id_of("app_berth-old"), Some(id));
        assert_eq!(
            engine.config_of("app").and_then(|c| c.memory),
            Some(128 << 20)
        );
        assert!(pass(&config, &engine, &state).await.outcomes.is_empty());
    }
}
