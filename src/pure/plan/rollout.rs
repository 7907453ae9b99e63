//! Updates that roll back by themselves. A recreate keeps the container it
//! replaces, stopped, as `<name>_berth-old`, and the new one is on
//! probation (state.db remembers it): it fails by exiting, restarting in a
//! loop, turning unhealthy, or staying `starting` past the health timeout,
//! and then the old container is put back (`Rollback`); it passes once it
//! has run for the probation period (healthy, when it has a check), and
//! then the old one goes (`RolloutDone`). A rolled-back (spec, image) is
//! not tried again while it is still what the record would recreate to.
//!
//! The names say what a crash left: a `_berth-old` beside no container
//! of the record's name is put back; one beside a container of the
//! record's name is judged as a probation (from when it was first seen,
//! if state.db has no row for it), so a kill -9 anywhere never loses the
//! old container while the new one is unproven.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{keep_legacy_volumes, short, Operation};
use crate::declared::{ContainerSpec, Declared};
use crate::model::{Health, ObservedContainer, ObservedState, LABEL_SPEC_HASH};
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

/// Judges `new`, the container on probation `p`. `started` is berth's
/// latest start of the record: an exit counts only after berth started
/// this container (one berth stopped is not a failure), and the probation
/// runs from that start when it is later than the probation's.
pub fn judge(
    p: &Probation,
    new: &ObservedContainer,
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
    let seconds = |n: u64| Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000));
    let probation = seconds(settings.probation_seconds);
    match new.state.as_str() {
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
        "running" => match new.health {
            Some(Health::Unhealthy) => Verdict::Fail("the new container is unhealthy".into()),
            Some(Health::Starting) => {
                let deadline = since + seconds(settings.health_timeout_seconds);
                if now >= deadline {
                    return Verdict::Fail(format!(
                        "the new container never became healthy in {}s",
                        settings.health_timeout_seconds
                    ));
                }
                // No engine event says "healthy": looked at again each
                // probation period until the deadline.
                let next = (since + probation).max(now + probation).min(deadline);
                Verdict::Wait {
                    at: next,
                    why: format!(
                        "the new container is not healthy yet (until {} at most)",
                        deadline.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                }
            }
            health => {
                let end = since + probation;
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
        operation: Operation,
    },
    /// On probation: the usual rules, but a recreate discards the
    /// container on probation and keeps the one kept already. `at`: when
    /// to look again.
    Hold {
        why: String,
        at: Option<DateTime<Utc>>,
    },
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
            operation: Operation::Rollback {
                name: name.to_string(),
                image: spec.config.image.clone(),
                new_id: None,
                old_id: old.id.clone(),
                start: want_run,
                bad: None,
            },
        };
    };
    let p = probation_of(declared, name, new, old, at);
    let verdict = judge(
        &p,
        new,
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
                operation: Operation::Rollback {
                    name: name.to_string(),
                    image: spec.config.image.clone(),
                    new_id: Some(new.id.clone()),
                    old_id: old.id.clone(),
                    start: want_run,
                    bad: Some(bad),
                },
            }
        }
        Verdict::Pass(why) => Step::Act {
            reason: format!("rollout done: {why}; removing {}", old.name),
            operation: Operation::RolloutDone {
                old_id: old.id.clone(),
            },
        },
        Verdict::Wait { at, why } => Step::Hold {
            why: format!(
                "rollout on probation: {why}; {} kept for a rollback",
                old.name
            ),
            at: Some(at),
        },
        Verdict::Paused(why) => Step::Hold {
            why: format!(
                "rollout on probation: {why}; {} kept for a rollback",
                old.name
            ),
            at: None,
        },
    }
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
    let kept = |record: &str| named(&format!("{record}{OLD_SUFFIX}"));
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
            let same_image = observed.images.get(&spec.config.image) == Some(&r.image_id);
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
