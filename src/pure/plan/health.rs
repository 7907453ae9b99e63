//! Start order on health (compose's `depends_on: condition:
//! service_healthy`): a container that links to one with a health check
//! is created or started only once that one is healthy. Here, for what the
//! engine already runs: a start whose dependency is observed starting,
//! unhealthy or down is held (not failed), and the pass that follows the
//! dependency's `health_status` event starts it. A dependency started in
//! the same plan is the applier's to check after its wave (`apply::health`).
//! Running dependents are never touched: a dependency that restarts or
//! turns unhealthy stops nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Plan, Problem};
use crate::declared::Declared;
use crate::model::{Health, HealthCheck, ObservedContainer, ObservedState};

/// Holds each action that would start a container while a record it links
/// to has a health check and is not healthy, and (in wave order) what
/// links to a held one. `out.actions` must be sorted by wave.
pub fn hold_for_health(declared: &Declared, observed: &ObservedState, out: &mut Plan) {
    if !out
        .actions
        .iter()
        .any(|a| a.starts() && !a.needs.is_empty())
    {
        return;
    }
    let by_name: BTreeMap<&str, &ObservedContainer> = observed
        .containers
        .iter()
        .filter(|c| c.is_ours(&declared.instance))
        .map(|c| (c.name.as_str(), c))
        .collect();
    // Dependencies started in this plan are checked by the applier after
    // their wave, with what the engine says then.
    let started_here: BTreeSet<String> = out
        .actions
        .iter()
        .filter(|a| a.starts())
        .map(|a| a.record.clone())
        .collect();
    // Record → why it waits; filled in wave order, so a dependency's
    // verdict is known before its dependents are looked at.
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    let mut kept: Vec<Action> = Vec::with_capacity(out.actions.len());
    for action in std::mem::take(&mut out.actions) {
        let why = action.starts().then(|| {
            action.needs.iter().find_map(|need| {
                if let Some(waits) = held.get(need) {
                    return Some(format!("waiting for {need}, which is {waits}"));
                }
                if started_here.contains(need) {
                    return None;
                }
                let check = declared
                    .specs
                    .get(need)
                    .and_then(|s| s.config.health.as_ref());
                not_healthy(check, by_name.get(need.as_str()).copied())
                    .map(|verdict| format!("waiting for {need} to be healthy ({verdict})"))
            })
        });
        match why.flatten() {
            Some(why) => {
                out.held.push(Problem {
                    record: action.record.clone(),
                    message: why.clone(),
                });
                held.insert(action.record, why);
            }
            None => kept.push(action),
        }
    }
    out.actions = kept;
}

/// Why a dependency's container is not (yet) healthy, if it has a health
/// check: its verdict, or its state when it is not running at all (the
/// engine lists no verdict then). None: healthy, no check, or no container
/// (a dependency that cannot be made is a problem of its own).
fn not_healthy(check: Option<&HealthCheck>, c: Option<&ObservedContainer>) -> Option<String> {
    let c = c?;
    match c.health {
        Some(Health::Healthy) => None,
        Some(verdict) => Some(verdict.as_str().to_string()),
        // A container that is not running lists no verdict, whether or
        // not it has a check: the record's own command says it has one.
        None if c.state != "running" && HealthCheck::runs_own_command(check) => {
            Some(c.state.clone())
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::declared::from_text as declared;
    use crate::model::{LABEL_INSTANCE, LABEL_MANAGED, LABEL_RECORD, LABEL_SPEC, LABEL_SPEC_HASH};
    use crate::plan::{plan, ActionKind};

    const IMAGE_ID: &str = "sha256:1111111111111111111111111111";
    const DB: &str = "db=service|Image|app:1|HealthCmd|test -f /tmp/ready\n";

    /// The engine after berth applied `text`: every record's container
    /// running, `health` of each as given (None: no verdict listed).
    fn running(text: &str, health: &[(&str, Option<Health>)]) -> ObservedState {
        let d = declared(text);
        let containers = d
            .specs
            .values()
            .map(|s| ObservedContainer {
                id: format!("id-{}", s.name),
                name: s.name.clone(),
                labels: [
                    (LABEL_MANAGED, "true".to_string()),
                    (LABEL_INSTANCE, "test".to_string()),
                    (LABEL_RECORD, s.name.clone()),
                    (LABEL_SPEC_HASH, s.spec_hash.clone()),
                    (LABEL_SPEC, serde_json::to_string(&s.config).expect("json")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
                image: s.config.image.clone(),
                image_id: IMAGE_ID.into(),
                state: "running".into(),
                exit_code: None,
                health: health
                    .iter()
                    .find(|(n, _)| *n == s.name)
                    .and_then(|(_, h)| *h),
                up_seconds: None,
            })
            .collect();
        ObservedState {
            containers,
            images: [("app:1".to_string(), IMAGE_ID.to_string())].into(),
            networks: vec!["berth".into()],
        }
    }

    fn kinds(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .map(|a| format!("{} {}", a.kind().as_str(), a.record))
            .collect()
    }

    #[test]
    fn a_dependent_waits_while_its_dependency_is_starting_and_is_created_once_healthy() {
        let before = DB;
        let after = format!("{DB}app=service|Image|app:1|Interlinked|db\n");
        let d = declared(&after);
        let starting = running(before, &[("db", Some(Health::Starting))]);
        let p = plan(&d, &starting, SystemTime::UNIX_EPOCH);
        assert!(kinds(&p).is_empty(), "{:?}", kinds(&p));
        assert_eq!(p.held.len(), 1);
        assert_eq!(p.held[0].record, "app");
        assert_eq!(p.held[0].message, "waiting for db to be healthy (starting)");
        assert!(p.problems.is_empty(), "a hold is not a failure");

        let unhealthy = running(before, &[("db", Some(Health::Unhealthy))]);
        let p = plan(&d, &unhealthy, SystemTime::UNIX_EPOCH);
        assert_eq!(
            p.held[0].message,
            "waiting for db to be healthy (unhealthy)"
        );

        let healthy = running(before, &[("db", Some(Health::Healthy))]);
        let p = plan(&d, &healthy, SystemTime::UNIX_EPOCH);
        assert_eq!(kinds(&p), vec!["create app"]);
        assert!(p.held.is_empty());
    }

    #[test]
    fn the_images_own_check_counts_and_no_check_waits_for_nothing() {
        let before = "db=service|Image|app:1\n";
        let after = format!("{before}app=service|Image|app:1|Interlinked|db\n");
        let d = declared(&after);
        // The record sets no check; the engine lists the image's verdict.
        let p = plan(
            &d,
            &running(before, &[("db", Some(Health::Starting))]),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(p.held.len(), 1, "{:?}", kinds(&p));
        let p = plan(&d, &running(before, &[]), SystemTime::UNIX_EPOCH);
        assert_eq!(kinds(&p), vec!["create app"]);
    }

    #[test]
    fn a_hold_carries_down_the_links_and_running_dependents_are_left_alone() {
        let before = format!("{DB}app=service|Image|app:1|Interlinked|db\n");
        let after = format!("{before}web=service|Image|app:1|Interlinked|app\n");
        let d = declared(&after);
        let mut observed = running(&before, &[("db", Some(Health::Unhealthy))]);
        // app is running already: it stays running, nothing is planned for
        // it, so web (which needs app, not db) is created.
        let p = plan(&d, &observed, SystemTime::UNIX_EPOCH);
        assert_eq!(kinds(&p), vec!["create web"]);
        // app stopped: its start waits for db, and web waits for app.
        for c in observed.containers.iter_mut().filter(|c| c.name == "app") {
            c.state = "exited".into();
        }
        let p = plan(&d, &observed, SystemTime::UNIX_EPOCH);
        assert!(kinds(&p).is_empty(), "{:?}", kinds(&p));
        let held: Vec<(&str, &str)> = p
            .held
            .iter()
            .map(|h| (h.record.as_str(), h.message.as_str()))
            .collect();
        assert_eq!(
            held,
            vec![
                ("app", "waiting for db to be healthy (unhealthy)"),
                (
                    "web",
                    "waiting for app, which is waiting for db to be healthy (unhealthy)"
                ),
            ]
        );
    }

    #[test]
    fn a_dependency_started_in_the_same_plan_is_left_to_the_applier() {
        let text = format!("{DB}app=service|Image|app:1|Interlinked|db\n");
        let d = declared(&text);
        // db stopped (so no verdict listed): this plan starts it, and app
        // after it, in a later wave; the applier checks db in between.
        let mut observed = running(DB, &[]);
        observed.containers[0].state = "exited".into();
        let p = plan(&d, &observed, SystemTime::UNIX_EPOCH);
        assert_eq!(kinds(&p), vec!["start db", "create app"]);
        let app = p.actions.iter().find(|a| a.record == "app").expect("app");
        assert_eq!(app.needs, vec!["db".to_string()]);
        assert_eq!(app.kind(), ActionKind::Create);
        assert!(p.held.is_empty());
    }

    #[test]
    fn a_stopped_dependency_with_its_own_command_is_not_healthy() {
        let before = DB;
        let after = format!("{DB}app=service|Image|app:1|Interlinked|db\n");
        let d = declared(&after);
        let mut observed = running(before, &[]);
        observed.containers[0].state = "restarting".into();
        let p = plan(&d, &observed, SystemTime::UNIX_EPOCH);
        assert_eq!(
            p.held.first().map(|h| h.message.as_str()),
            Some("waiting for db to be healthy (restarting)"),
            "{:?}",
            kinds(&p)
        );
    }
}
