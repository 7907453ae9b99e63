//! Between waves: a container started in this pass that later actions link
//! to is looked at before they run, and if it has a health check (the
//! record's or its image's own) they start only once it is healthy
//! (compose's `depends_on: condition: service_healthy`). berthd looks once
//! and leaves what is not healthy yet to a later pass (the dependency's
//! `health_status` event brings one), so its loop never waits on a check;
//! a one-shot `berth apply` (or console start without berthd) waits, as
//! `docker compose up` does, for each dependency's own bound (start period
//! plus `retries + 1` probes), never longer than a cap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::Engine;
use crate::model::{Health, HealthCheck};

/// What the applier does about a dependency whose health check has no
/// verdict yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthGate {
    /// Look once (one observe): what is not healthy yet holds its
    /// dependents until a later pass. berthd's loop.
    Look,
    /// Wait for the verdict, at most each dependency's own bound and
    /// `cap` in all, looking every `poll`. A one-shot command.
    Wait { cap: Duration, poll: Duration },
}

impl HealthGate {
    /// The one-shot wait: checks of a second or more, at most 5 minutes
    /// for a wave (an image's own check may be slow, and the admin is
    /// waiting at a prompt).
    pub const ONE_SHOT: HealthGate = HealthGate::Wait {
        cap: Duration::from_secs(300),
        poll: Duration::from_millis(500),
    };
}

/// A container started in the wave that later actions link to.
#[derive(Debug, Clone)]
pub struct Dependency<'a> {
    pub record: &'a str,
    /// The record's own check, if it sets one (None: only the image's own
    /// can apply, seen in what the engine lists).
    pub check: Option<&'a HealthCheck>,
}

/// Each dependency that is not healthy (yet), with why its dependents are
/// not started. A dependency without a health check is never held.
pub async fn gate<E: Engine>(
    engine: &E,
    dependencies: &[Dependency<'_>],
    mode: HealthGate,
    stop: &AtomicBool,
) -> BTreeMap<String, String> {
    let mut blocked = BTreeMap::new();
    if dependencies.is_empty() {
        return blocked;
    }
    let began = Instant::now();
    let (cap, poll) = match mode {
        HealthGate::Look => (Duration::ZERO, Duration::ZERO),
        HealthGate::Wait { cap, poll } => (cap, poll.max(Duration::from_millis(10))),
    };
    // Each waits for its own bound, within the cap.
    let mut pending: Vec<(&str, Option<&HealthCheck>, Duration)> = dependencies
        .iter()
        .map(|d| {
            let own = Duration::from_secs(HealthCheck::verdict_within_seconds(d.check));
            (d.record, d.check, own.min(cap))
        })
        .collect();
    loop {
        let observed = match engine.observe().await {
            Ok(observed) => observed,
            Err(e) => {
                for (record, _, _) in pending {
                    blocked.insert(
                        record.to_string(),
                        format!("cannot see whether {record} is healthy: {e}"),
                    );
                }
                return blocked;
            }
        };
        let waited = began.elapsed();
        pending.retain(|(record, check, bound)| {
            let container = observed.containers.iter().find(|c| c.name == *record);
            let why = match container.map(|c| (c.state.as_str(), c.health)) {
                Some((_, Some(Health::Healthy))) => return false,
                Some((_, Some(Health::Unhealthy))) => {
                    format!("{record}, which it links to, is unhealthy")
                }
                Some((_, Some(Health::Starting))) if waited < *bound => return true,
                Some((_, Some(Health::Starting))) if mode == HealthGate::Look => {
                    format!("waiting for {record} to be healthy (starting); a later pass starts it")
                }
                Some((_, Some(Health::Starting))) => format!(
                    "{record}, which it links to, was not healthy within {} s (starting)",
                    waited.as_secs()
                ),
                // No verdict while running: no health check at all.
                Some(("running", None)) => return false,
                Some((state, None)) if HealthCheck::runs_own_command(*check) => {
                    format!("{record}, which it links to, is {state}, not healthy")
                }
                Some((_, None)) => return false,
                None if HealthCheck::runs_own_command(*check) => {
                    format!("{record}, which it links to, is gone")
                }
                None => return false,
            };
            blocked.insert(record.to_string(), why);
            false
        });
        if pending.is_empty() || stop.load(Ordering::SeqCst) {
            // Shutting down: the next wave starts nothing anyway.
            return blocked;
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::apply::{apply_gated, ApplySettings, Outcome, Report};
    use crate::declared::{from_text as declared, Declared};
    use crate::engine::fake::FakeEngine;
    use crate::plan::plan;

    const LINKED: &str =
        "db=service|Image|app:1|HealthCmd|test -f /tmp/ready|HealthInterval|1s|HealthRetries|2\n\
                          app=service|Image|app:1|Interlinked|db\n";

    fn engine() -> FakeEngine {
        let e = FakeEngine::new();
        e.add_image("app:1", "sha256:aaaa");
        e
    }

    async fn pass(e: &FakeEngine, d: &Declared, gate: HealthGate) -> Report {
        let observed = e.observe().await.expect("observe");
        let p = plan(d, &observed, SystemTime::UNIX_EPOCH);
        let settings = ApplySettings {
            instance: "test".into(),
            concurrency: 4,
            stop_grace_seconds: 1,
        };
        let stop = AtomicBool::new(false);
        apply_gated(e, &p, &settings, gate, &stop, |_: &Outcome| {}).await
    }

    fn errors(r: &Report) -> Vec<String> {
        r.failures()
            .map(|o| format!("{}: {}", o.record, o.error.clone().unwrap_or_default()))
            .collect()
    }

    #[tokio::test]
    async fn berthd_looks_once_and_the_pass_after_the_verdict_starts_the_dependent() {
        let e = engine();
        let d = declared(LINKED);
        let r = pass(&e, &d, HealthGate::Look).await;
        assert!(errors(&r).is_empty(), "held, not failed: {r:?}");
        let held: Vec<String> = r
            .held
            .iter()
            .map(|p| format!("{}: {}", p.record, p.message))
            .collect();
        assert_eq!(
            held,
            vec![
                "app: not started: waiting for db to be healthy (starting); a later pass starts it"
            ]
        );
        assert!(
            e.container("app").is_none(),
            "not created before db is healthy"
        );
        // Still starting: the plan holds it, nothing fails.
        let r = pass(&e, &d, HealthGate::Look).await;
        assert!(r.outcomes.is_empty(), "{r:?}");
        e.set_health("db", Some(Health::Healthy));
        let r = pass(&e, &d, HealthGate::Look).await;
        assert!(errors(&r).is_empty(), "{r:?}");
        assert_eq!(e.container("app").map(|c| c.state), Some("running".into()));
    }

    #[tokio::test]
    async fn a_dependency_without_a_check_holds_nothing_and_costs_one_look() {
        let e = engine();
        let d = declared("db=service|Image|app:1\napp=service|Image|app:1|Interlinked|db\n");
        let r = pass(&e, &d, HealthGate::Look).await;
        assert!(errors(&r).is_empty(), "{r:?}");
        assert_eq!(e.container("app").map(|c| c.state), Some("running".into()));
        let looks = e.log().iter().filter(|l| *l == "observe").count();
        assert_eq!(looks, 2, "the plan's observe and one look between waves");
    }

    #[tokio::test]
    async fn the_images_own_check_holds_too_and_none_switches_it_off() {
        let e = engine();
        e.add_image_healthcheck("app:1");
        let d = declared("db=service|Image|app:1\napp=service|Image|app:1|Interlinked|db\n");
        let r = pass(&e, &d, HealthGate::Look).await;
        assert_eq!(r.held.len(), 1, "{r:?}");
        assert!(e.container("app").is_none(), "held, not created");
        let e = engine();
        e.add_image_healthcheck("app:1");
        let d = declared(
            "db=service|Image|app:1|HealthCmd|none\napp=service|Image|app:1|Interlinked|db\n",
        );
        let r = pass(&e, &d, HealthGate::Look).await;
        assert!(errors(&r).is_empty() && r.held.is_empty(), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_apply_waits_for_healthy_then_starts_the_dependent() {
        let e = std::sync::Arc::new(engine());
        let d = declared(LINKED);
        let flip = {
            let e = e.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                e.set_health("db", Some(Health::Healthy));
            })
        };
        let began = Instant::now();
        let r = pass(&e, &d, HealthGate::ONE_SHOT).await;
        flip.await.expect("flip");
        assert!(errors(&r).is_empty(), "{r:?}");
        assert_eq!(e.container("app").map(|c| c.state), Some("running".into()));
        assert!(began.elapsed() >= Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_shot_apply_gives_up_at_the_checks_own_bound_or_on_unhealthy() {
        let e = engine();
        let d = declared(LINKED);
        let began = Instant::now();
        let r = pass(&e, &d, HealthGate::ONE_SHOT).await;
        // 1 s interval + 30 s default timeout, 3 probes.
        assert_eq!(
            errors(&r),
            vec!["app: not started: db, which it links to, was not healthy within 93 s (starting)"]
        );
        assert!(began.elapsed() < Duration::from_secs(95));
        assert!(e.container("app").is_none());

        let e = std::sync::Arc::new(engine());
        let flip = {
            let e = e.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                e.set_health("db", Some(Health::Unhealthy));
            })
        };
        let r = pass(&e, &d, HealthGate::ONE_SHOT).await;
        flip.await.expect("flip");
        assert_eq!(
            errors(&r),
            vec!["app: not started: db, which it links to, is unhealthy"]
        );
    }
}
