//! Updates that roll back by themselves. A recreate keeps the container it
//! replaces, stopped and under restart policy `no`, as `<name>_berth-old`,
//! and the new one is on probation (state.db remembers it): it fails by
//! exiting, restarting (seen as `restarting`, or in an `Up …` shorter than
//! the time since its start), turning unhealthy, or staying `starting`
//! past the health timeout, and then the old container gets its own
//! restart policy back and is put back (`Rollback`); it passes once it has
//! run for the probation period (healthy, when it has a check), or exited
//! 0 as a job (`Restart no`/`on-failure`), and then the old one goes
//! (`RolloutDone`). A rolled-back (spec, image) is not tried again while
//! it is still what the record would recreate to.
//!
//! The names, with the `org.berth.record` label, say what a crash left: a
//! `_berth-old` beside no container of the record's name is put back; one
//! beside a container of the record's name is judged as a probation (from
//! when it was first seen, if state.db has no row for it), so a kill -9
//! anywhere never loses the old container while the new one is unproven.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{keep_legacy_volumes, short, Operation};
use crate::declared::{ContainerSpec, Declared};
use crate::model::{
    ContainerConfig, ContainerUpdate, Health, ObservedContainer, ObservedState, LABEL_SPEC,
    LABEL_SPEC_HASH,
};
use crate::plan::restarts::StartRecord;

/// Suffix of the name the replaced container keeps, stopped, while its
/// replacement is on probation.
pub const OLD_SUFFIX: &str = "_berth-old";

/// How a rollout is judged (config `rollout_probation_seconds`,
/// `rollout_health_timeout_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutSettings {
    /// How long a new container must run (and be healthy, with a check)
    /// before the old one is removed.
    pub probation_seconds: u64,
    /// How long a new container with a health check may stay `starting`.
    pub health_timeout_seconds: u64,
}

pub const DEFAULT_PROBATION_SECONDS: u64 = 10;
pub const DEFAULT_HEALTH_TIMEOUT_SECONDS: u64 = 600;

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            probation_seconds: DEFAULT_PROBATION_SECONDS,
            health_timeout_seconds: DEFAULT_HEALTH_TIMEOUT_SECONDS,
        }
    }
}

/// A recreate whose new container is not proven yet (state.db keeps it by
/// record). Hashes and image IDs only: nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probation {
    pub record: String,
    /// None until the new container was started (a crash before that
    /// leaves it unknown; the container of the record's name is judged).
    pub new_id: Option<String>,
    pub old_id: String,
    pub old_spec_hash: Option<String>,
    pub new_spec_hash: Option<String>,
    pub old_image_id: Option<String>,
    pub new_image_id: Option<String>,
    /// When the new container was started (or the probation first seen).
    pub started_at: DateTime<Utc>,
}

/// A rollout that failed and was rolled back (state.db keeps the latest of
/// each record): while the record would recreate to this same spec hash
/// and image ID, it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub spec_hash: String,
    pub image_id: String,
    /// Why, in berth's own words (never a value from the record).
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl RolledBack {
    /// What `plan`, `apply` and `status` say while it holds.
    pub fn describe(&self) -> String {
        format!(
            "rolled back: {} (image {}); not retried until the record or its image changes",
            self.reason,
            short(&self.image_id)
        )
    }
}

/// `t` plus `seconds`, at most the latest time chrono holds: config
/// bounds the rollout keys, and a pass never panics on a large one anyway.
pub fn after(t: DateTime<Utc>, seconds: u64) -> DateTime<Utc> {
    i64::try_from(seconds)
        .ok()
        .and_then(Duration::try_seconds)
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What the engine's `Up …` (Docker's `units.HumanDuration`) says at
/// most, given the lower bound `up` read from it: to the second below a
/// minute (`3 seconds` is 3 to 4 s), to the minute below an hour
/// (`About a minute` is 60 to 120 s, `2 minutes` 120 to 180 s); hours
/// are rounded and days coarser still, so above an hour nothing is said.
fn up_below(up: u64) -> u64 {
    match up {
        0..60 => up + 1,
        60..3600 => up + 60,
        _ => u64::MAX,
    }
}

/// What a container on probation may lack of the time since its start
/// (`since`, which berth reads once the engine has answered the start,
/// so after the engine's own start time): the pass's `now` and the list's
/// `Up` are read moments apart.
const UP_SLACK_SECONDS: u64 = 2;

/// The restart policy `c` runs under, as an update of only that: its
/// `org.berth.spec` label with an update berth applied in place over
/// those labels, or `fallback`'s (the record's) if the label does not
/// read. What a rollback gives back to a kept container, and what says
/// whether an exit is a job's end.
pub fn restart_policy(
    declared: &Declared,
    c: &ObservedContainer,
    fallback: &ContainerConfig,
) -> ContainerUpdate {
    let label = c
        .labels
        .get(LABEL_SPEC)
        .and_then(|l| serde_json::from_str::<ContainerConfig>(l).ok());
    let mut policy = ContainerUpdate::of(label.as_ref().unwrap_or(fallback));
    if let Some(applied) = declared
        .updates
        .get(&c.id)
        .filter(|u| Some(&u.label_hash) == c.labels.get(LABEL_SPEC_HASH))
    {
        policy = applied.update.clone();
    }
    // Only the policy: an update leaves a limit it does not name as it is.
    policy.memory = None;
    policy.nano_cpus = None;
    policy
}

/// The restart policy a kept container is given while its replacement is
/// on probation: a dockerd restart must not start it beside the new one
/// (same volumes, same alias).
pub fn no_restart() -> ContainerUpdate {
    ContainerUpdate {
        memory: None,
        nano_cpus: None,
        restart: "no".into(),
        restart_max_retries: None,
    }
}

/// What a probation comes to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Fail(String),
    Pass(String),
    /// Look again at `at`.
    Wait {
        at: DateTime<Utc>,
        why: String,
    },
    /// Not judged while the record should not run (or the container is
    /// paused, or not started yet): no deadline of its own.
    Paused(String),
}

/// Judges `new`, the container on probation `p`, which runs under the
/// restart policy `restart`. `started` is berth's latest start of the
/// record: an exit counts only after berth started this container (one
/// berth stopped is not a failure), and the probation runs from that
/// start when it is later than the probation's.
///
/// A container that exited 0 under `no` or `on-failure` finished its job:
/// the engine will not start it again, and that is what it was made for.
/// A restart is seen when a pass catches `restarting`, or when the
/// engine's `Up …` is shorter than the time since the start (less a
/// little slack): a container that crashes after a few seconds shows
/// `running` most of the time, but never a long uptime. `Up` reads to the
/// second below a minute and to the minute below an hour, so a restart is
/// seen to the second in the first minute (what the default 10 s
/// probation covers) and to the minute up to an hour; past an hour of
/// uptime none is seen. A dockerd restart during the probation restarts
/// the new container too, and so fails it: the kept one, not restarted
/// (see `no_restart`), is put back, which is the side to err on.
pub fn judge(
    p: &Probation,
    new: &ObservedContainer,
    restart: &str,
    want_run: bool,
    started: Option<&StartRecord>,
    settings: &RolloutSettings,
    now: DateTime<Utc>,
) -> Verdict {
    let berth_started = started.filter(|s| s.container_id == new.id);
    let since = berth_started.map_or(p.started_at, |s| s.at.max(p.started_at));
    if !want_run {
        return Verdict::Paused("not judged while the record should not run".into());
    }
    // `since` is read after the engine started this container when berth
    // recorded that start, or the probation's own start of it; a row a
    // crash left before the start (no `new_id`) is older than the start
    // by the create and the old container's stop, and says nothing here.
    let start_known = berth_started.is_some() || p.new_id.as_deref() == Some(new.id.as_str());
    let elapsed = u64::try_from((now - since).num_seconds()).unwrap_or(0);
    let restarted = new
        .up_seconds
        .filter(|_| start_known)
        .filter(|up| up_below(*up).saturating_add(UP_SLACK_SECONDS) <= elapsed);
    match new.state.as_str() {
        "exited"
            if berth_started.is_some()
                && new.exit_code == Some(0)
                && matches!(restart, "no" | "" | "on-failure") =>
        {
            Verdict::Pass("the new container finished its job (exit code 0)".into())
        }
        "exited" | "dead" if berth_started.is_some() => {
            let code = new
                .exit_code
                .map(|c| format!(" with code {c}"))
                .unwrap_or_default();
            Verdict::Fail(format!("the new container exited{code}"))
        }
        "created" if berth_started.is_some() => {
            Verdict::Fail("the new container did not start".into())
        }
        "restarting" => Verdict::Fail("the new container restarts in a loop".into()),
        "running" if restarted.is_some() => Verdict::Fail(format!(
            "the new container restarted during its probation (up {}s of {elapsed}s)",
            restarted.unwrap_or_default()
        )),
        "running" => match new.health {
            Some(Health::Unhealthy) => Verdict::Fail("the new container is unhealthy".into()),
            Some(Health::Starting) => {
                let deadline = after(since, settings.health_timeout_seconds);
                if now >= deadline {
                    return Verdict::Fail(format!(
                        "the new container never became healthy in {}s",
                        settings.health_timeout_seconds
                    ));
                }
                // No engine event says "healthy": looked at again each
                // probation period until the deadline.
                let next = after(since, settings.probation_seconds)
                    .max(after(now, settings.probation_seconds))
                    .min(deadline);
                Verdict::Wait {
                    at: next,
                    why: format!(
                        "the new container is not healthy yet (until {} at most)",
                        deadline.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                }
            }
            health => {
                let end = after(since, settings.probation_seconds);
                if now >= end {
                    let healthy = if health.is_some() { ", healthy" } else { "" };
                    return Verdict::Pass(format!(
                        "the new container ran {}s{healthy}",
                        settings.probation_seconds
                    ));
                }
                Verdict::Wait {
                    at: end,
                    why: format!(
                        "the new container runs; proven at {}",
                        end.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                }
            }
        },
        other => Verdict::Paused(format!("the new container is {other}")),
    }
}

/// What the rollout rule makes of a record this pass.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// No kept container: the usual rules.
    None,
    /// This action, and nothing else for the record this pass.
    Act {
        reason: String,
        operation: Box<Operation>,
    },
    /// On probation: the usual rules, but a recreate discards the
    /// container on probation and keeps the one kept already. `at`: when
    /// to look again. Not a held record: nothing is left undone, and
    /// `status` says it.
    Hold { at: Option<DateTime<Utc>> },
}

/// The probation of `new` against `old`: state.db's, or one from `at` when
/// it has none for this old container (a crash before it was written,
/// or state.db lost).
fn probation_of(
    declared: &Declared,
    record: &str,
    new: &ObservedContainer,
    old: &ObservedContainer,
    at: DateTime<Utc>,
) -> Probation {
    declared
        .probations
        .get(record)
        .filter(|p| p.old_id == old.id)
        .cloned()
        .unwrap_or_else(|| Probation {
            record: record.to_string(),
            new_id: Some(new.id.clone()),
            old_id: old.id.clone(),
            old_spec_hash: old.labels.get(LABEL_SPEC_HASH).cloned(),
            new_spec_hash: new.labels.get(LABEL_SPEC_HASH).cloned(),
            old_image_id: Some(old.image_id.clone()),
            new_image_id: Some(new.image_id.clone()),
            started_at: at,
        })
}

/// The rollout rule for `spec`'s record, whose container is `current`
/// (ours) and whose kept container is `kept` (ours, named `_berth-old`).
pub(super) fn step(
    declared: &Declared,
    spec: &ContainerSpec,
    want_run: bool,
    current: Option<&ObservedContainer>,
    kept: Option<&ObservedContainer>,
    at: DateTime<Utc>,
) -> Step {
    let Some(old) = kept else {
        return Step::None;
    };
    let name = spec.name.as_str();
    let Some(new) = current else {
        return Step::Act {
            reason: format!(
                "{} was kept by an update cut off before its new container took its name: put back",
                old.name
            ),
            operation: Box::new(Operation::Rollback {
                name: name.to_string(),
                image: spec.config.image.clone(),
                new_id: None,
                old_id: old.id.clone(),
                restore: restart_policy(declared, old, &spec.config),
                start: want_run,
                bad: None,
            }),
        };
    };
    let p = probation_of(declared, name, new, old, at);
    let verdict = judge(
        &p,
        new,
        &restart_policy(declared, new, &spec.config).restart,
        want_run,
        declared.starts.get(name),
        &declared.rollout,
        at,
    );
    match verdict {
        Verdict::Fail(why) => {
            let bad = RolledBack {
                spec_hash: new
                    .labels
                    .get(LABEL_SPEC_HASH)
                    .cloned()
                    .or(p.new_spec_hash)
                    .unwrap_or_default(),
                image_id: new.image_id.clone(),
                reason: why,
                at,
            };
            Step::Act {
                reason: format!(
                    "rolled back: {} (image {}); {} put back",
                    bad.reason,
                    short(&bad.image_id),
                    old.name
                ),
                operation: Box::new(Operation::Rollback {
                    name: name.to_string(),
                    image: spec.config.image.clone(),
                    new_id: Some(new.id.clone()),
                    old_id: old.id.clone(),
                    restore: restart_policy(declared, old, &spec.config),
                    start: want_run,
                    bad: Some(bad),
                }),
            }
        }
        Verdict::Pass(why) => Step::Act {
            reason: format!("rollout done: {why}; removing {}", old.name),
            operation: Box::new(Operation::RolloutDone {
                old_id: old.id.clone(),
            }),
        },
        Verdict::Wait { at, .. } => Step::Hold { at: Some(at) },
        Verdict::Paused(_) => Step::Hold { at: None },
    }
}

/// What `status` says of a record whose update is on probation: None
/// when nothing is kept for it.
pub fn probation_note(
    declared: &Declared,
    record: &str,
    want_run: bool,
    observed: &ObservedState,
    at: DateTime<Utc>,
) -> Option<String> {
    let spec = declared.specs.get(record)?;
    let old = kept_of(declared, observed, record)?;
    let new = observed
        .containers
        .iter()
        .find(|c| c.name == record && c.is_ours(&declared.instance));
    let Some(new) = new else {
        return Some(format!(
            "{} kept by an update cut off: put back by the next pass",
            old.name
        ));
    };
    let p = probation_of(declared, record, new, old, at);
    let why = match judge(
        &p,
        new,
        &restart_policy(declared, new, &spec.config).restart,
        want_run,
        declared.starts.get(record),
        &declared.rollout,
        at,
    ) {
        Verdict::Fail(why) => format!("failed: {why}; rolled back by the next pass"),
        Verdict::Pass(why) => format!("passed: {why}"),
        Verdict::Wait { why, .. } | Verdict::Paused(why) => why,
    };
    Some(format!(
        "update on probation: {why}; {} kept for a rollback",
        old.name
    ))
}

/// The container a recreate of `record` kept: ours, named
/// `<record>_berth-old` and labelled as `record`'s. The name alone is not
/// enough: a record may be named like another's kept container (the
/// declared layer refuses that name, but a container made before it did
/// still carries it).
pub(super) fn kept_of<'a>(
    declared: &Declared,
    observed: &'a ObservedState,
    record: &str,
) -> Option<&'a ObservedContainer> {
    let name = format!("{record}{OLD_SUFFIX}");
    observed
        .containers
        .iter()
        .find(|c| c.name == name && c.is_ours(&declared.instance) && c.record() == Some(record))
}

/// The rollback of the record, if the change it would make now is the
/// very one that was rolled back: to `spec_hash` on `image_id`.
pub(super) fn blocked<'a>(
    declared: &'a Declared,
    record: &str,
    spec_hash: &str,
    image_id: Option<&String>,
) -> Option<&'a RolledBack> {
    declared
        .rollbacks
        .get(record)
        .filter(|r| r.spec_hash == spec_hash && Some(&r.image_id) == image_id)
}

/// What state.db should learn before a pass plans: probations to forget
/// (their old container is gone or no longer kept: nothing to roll back
/// to), probations to remember (a kept container state.db has no row for:
/// a crash before it was written, from `now`), and rollbacks that no
/// longer hold (the record or its image changed, or the record is gone).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settle {
    pub forget: Vec<String>,
    pub adopt: Vec<Probation>,
    pub stale_rollbacks: Vec<String>,
}

pub fn settle(declared: &Declared, observed: &ObservedState, now: DateTime<Utc>) -> Settle {
    let ours = |c: &&ObservedContainer| c.is_ours(&declared.instance);
    let named = |name: &str| {
        observed
            .containers
            .iter()
            .filter(ours)
            .find(|c| c.name == name)
    };
    let kept = |record: &str| kept_of(declared, observed, record);
    let mut out = Settle::default();
    for (record, p) in &declared.probations {
        if kept(record).is_none_or(|old| old.id != p.old_id) {
            out.forget.push(record.clone());
        }
    }
    for spec in declared.specs.values() {
        let name = spec.name.as_str();
        let (Some(old), Some(new)) = (kept(name), named(name)) else {
            continue;
        };
        if declared
            .probations
            .get(name)
            .is_none_or(|p| p.old_id != old.id)
        {
            out.adopt.push(probation_of(declared, name, new, old, now));
        }
    }
    for (record, r) in &declared.rollbacks {
        if declared.failed.contains_key(record) {
            continue;
        }
        let holds = declared.specs.get(record).is_some_and(|spec| {
            let same_image = observed.image_id(&spec.config.image) == Some(&r.image_id);
            let legacy = named(record).and_then(|c| keep_legacy_volumes(spec, c));
            let same_spec = spec.spec_hash == r.spec_hash
                || legacy.is_some_and(|(_, hash)| hash == r.spec_hash);
            same_image && same_spec
        });
        if !holds {
            out.stale_rollbacks.push(record.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {

    use chrono::TimeZone;

    use super::*;
    use crate::declared::from_text as declared;
    use crate::model::LABEL_RECORD;
    use crate::plan::{plan_at, ActionKind, Plan};

    const V1: &str = "sha256:1111111111111111";
    const V2: &str = "sha256:2222222222222222";

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    }

    fn container(
        line: &str,
        name: &str,
        id: &str,
        image_id: &str,
        state: &str,
    ) -> ObservedContainer {
        let d = declared(line);
        crate::plan::tests::made_from(&d.specs["app"], name, id, image_id, state)
    }

    const OLD_LINE: &str = "app=service|Image|app:1\n";
    const NEW_LINE: &str = "app=service|Image|app:2\n";

    /// Right after berth recreated `app` from app:1 to app:2 at t(0): the
    /// new container runs as `app`, the old one is kept, stopped.
    fn rolled_out() -> (Declared, ObservedState) {
        let mut d = declared(NEW_LINE);
        d.probations.insert(
            "app".into(),
            Probation {
                record: "app".into(),
                new_id: Some("new".into()),
                old_id: "old".into(),
                old_spec_hash: None,
                new_spec_hash: None,
                old_image_id: Some(V1.into()),
                new_image_id: Some(V2.into()),
                started_at: t(0),
            },
        );
        d.starts.insert(
            "app".into(),
            StartRecord {
                container_id: "new".into(),
                at: t(0),
                quick: 0,
            },
        );
        let observed = ObservedState {
            containers: vec![
                container(NEW_LINE, "app", "new", V2, "running"),
                container(OLD_LINE, "app_berth-old", "old", V1, "exited"),
            ],
            images: [("app:1", V1), ("app:2", V2)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            networks: vec!["berth".into()],
        };
        (d, observed)
    }

    fn new_mut(o: &mut ObservedState) -> &mut ObservedContainer {
        o.containers
            .iter_mut()
            .find(|c| c.name == "app")
            .expect("app")
    }

    fn only(p: &Plan) -> &Operation {
        assert_eq!(p.actions.len(), 1, "{:?}", p.actions);
        &p.actions[0].operation
    }

    fn rolled_back_for(p: &Plan) -> RolledBack {
        match only(p) {
            Operation::Rollback {
                name,
                new_id,
                old_id,
                start,
                bad: Some(bad),
                ..
            } => {
                assert_eq!(
                    (name.as_str(), new_id.as_deref(), old_id.as_str(), *start),
                    ("app", Some("new"), "old", true)
                );
                assert!(p.actions[0].reason.starts_with("rolled back: "));
                bad.clone()
            }
            other => panic!("not a rollback: {other:?}"),
        }
    }

    #[test]
    fn a_new_container_that_exits_restarts_or_turns_unhealthy_is_rolled_back() {
        let (d, mut o) = rolled_out();
        new_mut(&mut o).state = "exited".into();
        new_mut(&mut o).exit_code = Some(3);
        let bad = rolled_back_for(&plan_at(&d, &o, &t(2)));
        assert_eq!(bad.reason, "the new container exited with code 3");
        assert_eq!(
            (bad.spec_hash.as_str(), bad.image_id.as_str()),
            (d.specs["app"].spec_hash.as_str(), V2)
        );

        new_mut(&mut o).state = "restarting".into();
        let bad = rolled_back_for(&plan_at(&d, &o, &t(2)));
        assert_eq!(bad.reason, "the new container restarts in a loop");

        new_mut(&mut o).state = "running".into();
        new_mut(&mut o).health = Some(Health::Unhealthy);
        let bad = rolled_back_for(&plan_at(&d, &o, &t(2)));
        assert_eq!(bad.reason, "the new container is unhealthy");

        // A start that did not take.
        new_mut(&mut o).state = "created".into();
        new_mut(&mut o).health = None;
        let bad = rolled_back_for(&plan_at(&d, &o, &t(2)));
        assert_eq!(bad.reason, "the new container did not start");
    }

    #[test]
    fn a_health_check_still_starting_past_the_cap_is_rolled_back() {
        let (d, mut o) = rolled_out();
        new_mut(&mut o).health = Some(Health::Starting);
        let p = plan_at(&d, &o, &t(599));
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert!(p.held.is_empty(), "nothing left undone: {:?}", p.held);
        assert_eq!(p.next_retry, Some(t(600)), "looked at again by the cap");
        let p = plan_at(&d, &o, &t(30));
        assert_eq!(p.next_retry, Some(t(40)), "and each probation period");
        let bad = rolled_back_for(&plan_at(&d, &o, &t(600)));
        assert_eq!(bad.reason, "the new container never became healthy in 600s");
    }

    #[test]
    fn a_new_container_that_runs_for_the_period_is_kept_and_the_old_one_goes() {
        let (d, mut o) = rolled_out();
        let p = plan_at(&d, &o, &t(5));
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(p.next_retry, Some(t(10)), "the daemon wakes for the end");
        let p = plan_at(&d, &o, &t(10));
        assert_eq!(
            only(&p),
            &Operation::RolloutDone {
                old_id: "old".into()
            }
        );
        assert_eq!(p.actions[0].kind(), ActionKind::RolloutDone);
        assert_eq!(
            p.actions[0].reason,
            "rollout done: the new container ran 10s; removing app_berth-old"
        );
        // With a health check: only once healthy.
        new_mut(&mut o).health = Some(Health::Starting);
        assert!(plan_at(&d, &o, &t(10)).actions.is_empty());
        new_mut(&mut o).health = Some(Health::Healthy);
        assert_eq!(
            plan_at(&d, &o, &t(10)).actions[0].kind(),
            ActionKind::RolloutDone
        );
        // A later start by berth (after a stop) starts the period afresh.
        let mut d = d;
        if let Some(s) = d.starts.get_mut("app") {
            s.at = t(8);
        }
        assert!(plan_at(&d, &o, &t(10)).actions.is_empty());
        assert_eq!(plan_at(&d, &o, &t(10)).next_retry, Some(t(18)));
    }

    #[test]
    fn a_new_container_berth_stopped_is_not_a_failure() {
        let (mut d, mut o) = rolled_out();
        d.starts.clear();
        new_mut(&mut o).state = "exited".into();
        let p = plan_at(&d, &o, &t(2));
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.actions[0].kind(), ActionKind::Start, "{:?}", p.actions);
    }

    #[test]
    fn a_rolled_back_change_is_not_retried_until_the_record_or_the_image_changes() {
        // After the rollback: the old container runs as `app` again.
        let (mut d, mut o) = rolled_out();
        d.probations.clear();
        o.containers = vec![container(OLD_LINE, "app", "old", V1, "running")];
        d.rollbacks.insert(
            "app".into(),
            RolledBack {
                spec_hash: d.specs["app"].spec_hash.clone(),
                image_id: V2.into(),
                reason: "the new container exited with code 3".into(),
                at: t(2),
            },
        );
        let p = plan_at(&d, &o, &t(20));
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(
            p.held[0].message,
            "rolled back: the new container exited with code 3 (image 222222222222); not retried until the record or its image changes"
        );
        assert!(settle(&d, &o, t(20)).stale_rollbacks.is_empty());
        // Stopped on purpose: still stopped and started as usual.
        o.containers[0].state = "exited".into();
        assert_eq!(plan_at(&d, &o, &t(20)).actions[0].kind(), ActionKind::Start);
        o.containers[0].state = "running".into();

        // The record changes: recreated, and the rollback is forgotten.
        let mut changed = declared("app=service|Image|app:2|TCPPort|8080\n");
        changed.rollbacks = d.rollbacks.clone();
        assert_eq!(
            plan_at(&changed, &o, &t(20)).actions[0].kind(),
            ActionKind::Recreate
        );
        assert_eq!(settle(&changed, &o, t(20)).stale_rollbacks, ["app"]);
        // The image changes (a new build of app:2): the same.
        o.images.insert("app:2".into(), "sha256:3333".into());
        assert_eq!(
            plan_at(&d, &o, &t(20)).actions[0].kind(),
            ActionKind::Recreate
        );
        assert_eq!(settle(&d, &o, t(20)).stale_rollbacks, ["app"]);
    }

    #[test]
    fn a_change_during_probation_replaces_the_new_container_and_keeps_the_old_one() {
        let (_, o) = rolled_out();
        let (mut d, _) = rolled_out();
        let changed = declared("app=service|Image|app:2|TCPPort|8080\n");
        d.specs = changed.specs;
        let p = plan_at(&d, &o, &t(2));
        match only(&p) {
            Operation::Recreate {
                container_id,
                discard_old,
                ..
            } => assert_eq!((container_id.as_str(), *discard_old), ("new", true)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_a_crash_leaves_converges_without_losing_the_kept_container() {
        // Kept, and no container of the record's name: put back, started.
        let (d, mut o) = rolled_out();
        o.containers.retain(|c| c.name != "app");
        let p = plan_at(&d, &o, &t(2));
        match only(&p) {
            Operation::Rollback {
                new_id: None,
                old_id,
                start: true,
                bad: None,
                ..
            } => assert_eq!(old_id, "old"),
            other => panic!("{other:?}"),
        }
        // Kept beside a new container, with no probation in state.db: a
        // probation from now, never a removal.
        let (mut d, o) = rolled_out();
        d.probations.clear();
        let p = plan_at(&d, &o, &t(50));
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(p.next_retry, Some(t(60)));
        let s = settle(&d, &o, t(50));
        assert_eq!(s.adopt.len(), 1);
        assert_eq!(
            (s.adopt[0].old_id.as_str(), s.adopt[0].started_at),
            ("old", t(50))
        );
        // A probation whose kept container is gone has nothing to go back
        // to: forgotten, and the new container is left as it is.
        let (d, mut o) = rolled_out();
        o.containers.retain(|c| c.name == "app");
        assert_eq!(settle(&d, &o, t(2)).forget, ["app"]);
        assert!(plan_at(&d, &o, &t(2)).actions.is_empty());
    }

    #[test]
    fn a_kept_container_of_a_deleted_record_goes_after_the_record_s_own() {
        let (_, o) = rolled_out();
        let mut d = declared("other=service|Image|app:1\n");
        // Removing the only container of this berth waits for an admin;
        // said so here.
        d.removal.allow = true;
        let removals = |o: &ObservedState| -> Vec<String> {
            plan_at(&d, o, &t(2))
                .actions
                .iter()
                .filter(|a| a.kind() == ActionKind::Remove)
                .filter_map(|a| a.container_id().map(str::to_string))
                .collect()
        };
        assert_eq!(removals(&o), ["new"]);
        let mut o = o;
        o.containers.retain(|c| c.name != "app");
        assert_eq!(removals(&o), ["old"]);
    }

    /// A container named like `app`'s kept one but labelled as another
    /// record's (a record `app_berth-old`, refused now, made it earlier)
    /// is never judged, removed or put back as `app`'s.
    #[test]
    fn a_container_named_like_a_kept_one_of_another_record_is_left_alone() {
        let (rolled, mut o) = rolled_out();
        let mut d = declared(&format!("{NEW_LINE}app_berth-old=service|Image|app:1\n"));
        assert!(
            d.failed.contains_key("app_berth-old"),
            "the name is refused"
        );
        d.probations = rolled.probations;
        d.starts = rolled.starts;
        let other = o
            .containers
            .iter_mut()
            .find(|c| c.name == "app_berth-old")
            .expect("app_berth-old");
        other
            .labels
            .insert(LABEL_RECORD.into(), "app_berth-old".into());
        other.state = "running".into();
        let touches_old = |p: &Plan| {
            p.actions
                .iter()
                .any(|a| a.container_id() == Some("old") || a.kind() == ActionKind::Rollback)
        };
        let p = plan_at(&d, &o, &t(10));
        assert!(!touches_old(&p), "{:?}", p.actions);
        assert!(probation_note(&d, "app", true, &o, t(10)).is_none());
        let s = settle(&d, &o, t(10));
        assert_eq!((s.forget, s.adopt.len()), (vec!["app".to_string()], 0));
        // With no `app` container: nothing of the other record's is renamed.
        o.containers.retain(|c| c.name != "app");
        let p = plan_at(&d, &o, &t(10));
        assert!(!touches_old(&p), "{:?}", p.actions);
    }

    /// A job that finished (exit 0 under `no` or `on-failure`) passes its
    /// probation; an exit 0 under a policy that restarts it, or a failure
    /// under any, does not.
    #[test]
    fn a_job_that_exits_0_under_no_or_on_failure_passes_its_probation() {
        for (restart, code, passes) in [
            ("no", 0, true),
            ("on-failure", 0, true),
            ("on-failure:3", 0, true),
            ("unless-stopped", 0, false),
            ("always", 0, false),
            ("no", 1, false),
            ("on-failure", 2, false),
        ] {
            let line = format!("app=service|Image|app:2|Restart|{restart}\n");
            let (mut d, mut o) = rolled_out();
            d.specs = declared(&line).specs;
            o.containers[0] = container(&line, "app", "new", V2, "exited");
            o.containers[0].exit_code = Some(code);
            let p = plan_at(&d, &o, &t(2));
            if passes {
                assert_eq!(
                    only(&p),
                    &Operation::RolloutDone {
                        old_id: "old".into()
                    },
                    "{restart} {code}"
                );
                assert_eq!(
                    p.actions[0].reason,
                    "rollout done: the new container finished its job (exit code 0); removing app_berth-old"
                );
            } else {
                let bad = rolled_back_for(&p);
                assert_eq!(
                    bad.reason,
                    format!("the new container exited with code {code}"),
                    "{restart}"
                );
            }
        }
    }

    /// A restart the passes did not catch as `restarting` shows in the
    /// engine's `Up`: shorter than the time since berth started it.
    #[test]
    fn a_container_up_for_less_than_its_probation_restarted_and_is_rolled_back() {
        let (d, mut o) = rolled_out();
        let at = |o: &ObservedState, s: i64| plan_at(&d, o, &t(s));
        // `Up 9 seconds` at 10 s: 9 to 10 s, within the slack.
        new_mut(&mut o).up_seconds = Some(9);
        assert_eq!(
            only(&at(&o, 10)).clone(),
            Operation::RolloutDone {
                old_id: "old".into()
            }
        );
        new_mut(&mut o).up_seconds = Some(7);
        let bad = rolled_back_for(&at(&o, 10));
        assert_eq!(
            bad.reason,
            "the new container restarted during its probation (up 7s of 10s)"
        );
        // Seen whenever a pass looks, healthy or not.
        new_mut(&mut o).up_seconds = Some(1);
        new_mut(&mut o).health = Some(Health::Starting);
        let bad = rolled_back_for(&at(&o, 5));
        assert!(
            bad.reason.starts_with("the new container restarted"),
            "{bad:?}"
        );
        new_mut(&mut o).health = Some(Health::Healthy);
        new_mut(&mut o).up_seconds = Some(3);
        assert!(at(&o, 3).actions.is_empty(), "up since berth started it");
        // Minutes: `About a minute` is 60 to 120 s.
        new_mut(&mut o).up_seconds = Some(60);
        assert_eq!(at(&o, 100).actions[0].kind(), ActionKind::RolloutDone);
        assert_eq!(at(&o, 121).actions[0].kind(), ActionKind::RolloutDone);
        assert_eq!(at(&o, 122).actions[0].kind(), ActionKind::Rollback);
        // Hours are rounded: nothing is said past an hour.
        new_mut(&mut o).up_seconds = Some(3600);
        assert_eq!(at(&o, 86_400).actions[0].kind(), ActionKind::RolloutDone);
        // A status line that does not say: judged without it.
        new_mut(&mut o).up_seconds = None;
        assert_eq!(at(&o, 10).actions[0].kind(), ActionKind::RolloutDone);
        // A probation a crash left before the start was recorded runs from
        // before the create: its time says nothing of a restart.
        let (mut d, mut o) = rolled_out();
        d.starts.clear();
        new_mut(&mut o).up_seconds = Some(0);
        if let Some(p) = d.probations.get_mut("app") {
            p.new_id = None;
        }
        assert_eq!(
            only(&plan_at(&d, &o, &t(10))).clone(),
            Operation::RolloutDone {
                old_id: "old".into()
            }
        );
        // Once the probation knows the container, it does.
        if let Some(p) = d.probations.get_mut("app") {
            p.new_id = Some("new".into());
        }
        assert_eq!(
            plan_at(&d, &o, &t(10)).actions[0].kind(),
            ActionKind::Rollback
        );
    }

    /// Settings no config allows still never panic the planner.
    #[test]
    fn huge_rollout_settings_never_overflow() {
        let (mut d, mut o) = rolled_out();
        d.rollout = RolloutSettings {
            probation_seconds: u64::MAX,
            health_timeout_seconds: u64::MAX,
        };
        let p = plan_at(&d, &o, &t(10));
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(p.next_retry, Some(DateTime::<Utc>::MAX_UTC));
        new_mut(&mut o).health = Some(Health::Starting);
        assert!(plan_at(&d, &o, &t(10)).actions.is_empty());
        d.rollout.probation_seconds = i64::MAX as u64 / 1000;
        assert!(plan_at(&d, &o, &t(10)).actions.is_empty());
        assert_eq!(after(t(0), 10), t(10));
    }
}
