//! Pulls, as the planner sees them: which image references a pass wants
//! pulled, and whether a record waits for one. The pulls themselves run in
//! the shell (`crate::pulls`), off the loop; what they did comes back in as
//! [`PullStates`], so the planner stays a function of its inputs.
//!
//! A record waits (held, its running container left alone) while its pull
//! is wanted or running, fails while a failed pull backs off, and goes on
//! once the image is there. `Pull always` asks for a pull before each
//! create or recreate; a pull done for that create or recreate (the same
//! record, spec and container: [`PullFor`]) satisfies it, so a pass after
//! the pull does not want it again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::declared::{ContainerSpec, PullPolicy};

/// What a pull was wanted for: the create (no container) or the recreate
/// of `container` for `record` at `spec_hash`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PullFor {
    pub record: String,
    pub spec_hash: String,
    pub container: Option<String>,
}

/// A reference a pass wants pulled, with the records waiting for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullWant {
    pub reference: String,
    /// The `Credentials` of the first record (by name) that names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    pub records: Vec<String>,
    /// The creates and recreates it is for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wanted_for: Vec<PullFor>,
    /// A record asks `Pull always`: the registry is asked even if the
    /// engine has the image. Otherwise the engine is asked first, and an
    /// image it has is not pulled (its list may lag behind a tag).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always: bool,
}

/// Where a reference's pull is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullState {
    Running,
    /// The last try failed with `message` (no secret in it); the next may
    /// start at `retry_at`.
    Failed {
        message: String,
        retry_at: DateTime<Utc>,
    },
}

/// What the shell's puller knows, given to the planner each pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStates {
    /// By reference (as the record writes it).
    pub pulls: BTreeMap<String, PullState>,
    /// Creates and recreates a finished pull was made for.
    pub done: BTreeSet<PullFor>,
}

/// What a record that needs its image (to create or recreate) does about a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Go on (the image is there, or a pull already served this change).
    Go,
    /// Wait for a pull: held, with this reason.
    Wait(String),
    /// A pull failed: the record fails with this message until `retry_at`.
    Failed {
        message: String,
        retry_at: DateTime<Utc>,
    },
    /// No pull may be made (`Pull never`), and the image is missing.
    Missing(String),
}

/// Decides for `spec`, about to be created (`container` None) or to
/// replace `container`, whose image is `present` in the engine or not; a
/// pull it wants is added to `wants`.
pub fn gate(
    spec: &ContainerSpec,
    container: Option<&str>,
    present: bool,
    states: &PullStates,
    at: DateTime<Utc>,
    wants: &mut Vec<PullWant>,
) -> Gate {
    let reference = &spec.config.image;
    let wanted_for = PullFor {
        record: spec.name.clone(),
        spec_hash: spec.spec_hash.clone(),
        container: container.map(str::to_string),
    };
    let served = states.done.contains(&wanted_for);
    match spec.pull {
        PullPolicy::Never if !present => {
            return Gate::Missing(format!(
                "image {reference} is not in the engine and Pull is never: build, import or load it (berth image …), or set Pull missing"
            ))
        }
        PullPolicy::Never => return Gate::Go,
        PullPolicy::Missing if present => return Gate::Go,
        PullPolicy::Always if served && present => return Gate::Go,
        _ => {}
    }
    if served {
        // Pulled for this very change, and still not there: pulling again
        // would loop.
        return Gate::Missing(format!(
            "image {reference} was pulled, but the engine lists no image by that reference"
        ));
    }
    match states.pulls.get(reference) {
        Some(PullState::Failed { message, retry_at }) if at < *retry_at => {
            return Gate::Failed {
                message: format!("pull of {reference} failed: {message}"),
                retry_at: *retry_at,
            }
        }
        Some(PullState::Running) => return Gate::Wait(format!("pulling {reference}")),
        _ => {}
    }
    match wants.iter_mut().find(|w| w.reference == *reference) {
        Some(want) => {
            want.records.push(spec.name.clone());
            want.wanted_for.push(wanted_for);
            want.always |= spec.pull == PullPolicy::Always;
            if want.credentials.is_none() {
                want.credentials = spec.credentials.clone();
            }
        }
        None => wants.push(PullWant {
            reference: reference.clone(),
            credentials: spec.credentials.clone(),
            records: vec![spec.name.clone()],
            wanted_for: vec![wanted_for],
            always: spec.pull == PullPolicy::Always,
        }),
    }
    Gate::Wait(format!("pulling {reference}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::declared::{from_text, Declared};
    use crate::model::{ObservedContainer, ObservedState};
    use crate::plan::{plan, ActionKind, Plan};

    fn engine(images: &[(&str, &str)]) -> ObservedState {
        ObservedState {
            images: images
                .iter()
                .map(|(r, id)| (r.to_string(), id.to_string()))
                .collect(),
            networks: vec!["berth".into()],
            ..Default::default()
        }
    }

    /// `record`'s container as berth made it from `spec_of`'s spec, on `image_id`.
    fn running(declared: &Declared, spec_of: &str, image_id: &str) -> ObservedContainer {
        let spec = &declared.specs[spec_of];
        let id = format!("id-{}", spec.name);
        crate::plan::tests::made_from(spec, &spec.name, &id, image_id, "running")
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn utc(secs: u64) -> DateTime<Utc> {
        DateTime::<Utc>::from(at(secs))
    }

    fn acts(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .filter(|a| a.kind() != ActionKind::CreateNetwork)
            .map(|a| format!("{} {}", a.kind().as_str(), a.record))
            .collect()
    }

    fn held(p: &Plan) -> Vec<String> {
        p.held
            .iter()
            .map(|h| format!("{}: {}", h.record, h.message))
            .collect()
    }

    #[test]
    fn a_missing_image_is_wanted_once_for_all_its_records_and_holds_only_them() {
        let d = from_text(
            "a=service|Image|reg.example:5000/app:1|Credentials|reg\n\
             b=service|Image|reg.example:5000/app:1\n\
             c=service|Image|local:1\n",
        );
        let p = plan(&d, &engine(&[("local:1", "sha256:l")]), at(0));
        assert_eq!(acts(&p), ["create c"], "nothing else waits");
        assert_eq!(
            held(&p),
            [
                "a: pulling reg.example:5000/app:1",
                "b: pulling reg.example:5000/app:1"
            ]
        );
        assert_eq!(p.pulls.len(), 1, "one pull for two records: {:?}", p.pulls);
        let want = &p.pulls[0];
        assert_eq!(want.reference, "reg.example:5000/app:1");
        assert_eq!(want.records, ["a", "b"]);
        assert_eq!(want.credentials.as_deref(), Some("reg"));
        assert!(p.problems.is_empty(), "{:?}", p.problems);

        // While it runs: still held, not wanted again.
        let mut d = d;
        d.pulls
            .pulls
            .insert("reg.example:5000/app:1".into(), PullState::Running);
        let p = plan(&d, &engine(&[("local:1", "sha256:l")]), at(1));
        assert!(p.pulls.is_empty());
        assert_eq!(held(&p).len(), 2);

        // Once there: created, nothing wanted.
        d.pulls.pulls.clear();
        let pulled = engine(&[
            ("local:1", "sha256:l"),
            ("reg.example:5000/app:1", "sha256:a"),
        ]);
        let p = plan(&d, &pulled, at(2));
        assert_eq!(acts(&p), ["create a", "create b", "create c"]);
        assert!(p.pulls.is_empty() && p.held.is_empty());
    }

    #[test]
    fn a_failed_pull_fails_its_records_until_its_back_off_ends() {
        let mut d = from_text("a=service|Image|reg.example/app:1\nb=service|Image|local:1\n");
        d.pulls.pulls.insert(
            "reg.example/app:1".into(),
            PullState::Failed {
                message: "unauthorized: authentication required".into(),
                retry_at: utc(60),
            },
        );
        let observed = engine(&[("local:1", "sha256:l")]);
        let p = plan(&d, &observed, at(10));
        assert_eq!(acts(&p), ["create b"]);
        assert!(p.pulls.is_empty(), "not hammered: {:?}", p.pulls);
        assert_eq!(p.problems.len(), 1);
        assert_eq!(p.problems[0].record, "a");
        assert_eq!(
            p.problems[0].message,
            "pull of reg.example/app:1 failed: unauthorized: authentication required"
        );
        assert_eq!(p.next_retry, Some(utc(60)), "the next pass is due then");

        let p = plan(&d, &observed, at(60));
        assert_eq!(p.pulls.len(), 1, "tried again after the back-off");
        assert!(p.problems.is_empty());
    }

    #[test]
    fn a_running_container_is_left_alone_while_its_new_image_is_pulled() {
        let old = from_text("a=service|Image|reg.example/app:1\n");
        let new = from_text("a=service|Image|reg.example/app:2\n");
        let mut observed = engine(&[("reg.example/app:1", "sha256:1")]);
        observed.containers.push(running(&old, "a", "sha256:1"));
        let p = plan(&new, &observed, at(0));
        assert!(p.actions.is_empty(), "{:?}", acts(&p));
        assert_eq!(held(&p), ["a: pulling reg.example/app:2"]);
        assert_eq!(p.pulls[0].wanted_for[0].container.as_deref(), Some("id-a"));
    }

    /// `always` pulls before a create or recreate, and a pull done for it
    /// satisfies it: pull → pass → create, never pull → pass → pull.
    #[test]
    fn pull_always_pulls_before_each_create_and_recreate_without_looping() {
        let mut d = from_text("a=service|Image|reg.example/app:1|Pull|always\n");
        let mut observed = engine(&[("reg.example/app:1", "sha256:1")]);
        let p = plan(&d, &observed, at(0));
        assert!(
            acts(&p).is_empty(),
            "the image is there, but always pulls first"
        );
        assert_eq!(held(&p), ["a: pulling reg.example/app:1"]);
        // The shell pulled it for that create (and the tag moved).
        d.pulls.done.extend(p.pulls[0].wanted_for.iter().cloned());
        observed
            .images
            .insert("reg.example/app:1".into(), "sha256:2".into());
        let p = plan(&d, &observed, at(1));
        assert_eq!(acts(&p), ["create a"]);
        assert!(p.pulls.is_empty() && p.held.is_empty());

        // Created: nothing to do, nothing to pull.
        observed.containers.push(running(&d, "a", "sha256:2"));
        let p = plan(&d, &observed, at(2));
        assert!(p.actions.is_empty() && p.pulls.is_empty());

        // A change that recreates pulls again first, once.
        let mut changed = from_text("a=service|Image|reg.example/app:1|Pull|always|Env|A=1\n");
        changed.pulls = d.pulls.clone();
        let p = plan(&changed, &observed, at(3));
        assert!(acts(&p).is_empty(), "{:?}", acts(&p));
        assert_eq!(p.pulls.len(), 1);
        changed
            .pulls
            .done
            .extend(p.pulls[0].wanted_for.iter().cloned());
        let p = plan(&changed, &observed, at(4));
        assert_eq!(acts(&p), ["recreate a"]);
        assert!(p.pulls.is_empty());
    }

    #[test]
    fn pull_never_keeps_the_old_problem_and_a_pull_that_finds_nothing_does_not_loop() {
        let d = from_text("a=service|Image|reg.example/app:1|Pull|never\n");
        let p = plan(&d, &engine(&[]), at(0));
        assert!(p.pulls.is_empty() && p.held.is_empty());
        assert!(p.problems[0].message.contains("Pull is never"));

        let mut d = from_text("a=service|Image|reg.example/app@sha256:abc\n");
        let p = plan(&d, &engine(&[]), at(0));
        assert_eq!(p.pulls.len(), 1);
        d.pulls.done.extend(p.pulls[0].wanted_for.iter().cloned());
        let p = plan(&d, &engine(&[]), at(1));
        assert!(p.pulls.is_empty(), "pulled for this create already");
        assert!(
            p.problems[0]
                .message
                .contains("was pulled, but the engine lists no image"),
            "{:?}",
            p.problems
        );
    }
}
