//! Images: declared in `docker_images`, built from git + Dockerfile,
//! imported from a rootfs or loaded from a saved tar, queued in state.db,
//! built by a fixed pool of workers, and rebuilt when their base moves.
//! Everything here reaches the engine through the [`crate::engine::Engine`]
//! trait; failures are [`ImageError`]s.

pub mod admit;
pub mod build;
pub mod credentials;
mod error;
pub mod inputs;
pub mod recipe;
pub mod record;
pub mod stream;
pub mod tenant;
pub mod worker;

use std::collections::BTreeMap;

use crate::config::Config;
use crate::db::snapshot::{ReadError, Snapshot};
use crate::db::{Db, DbError};
use crate::state::{State, StateError};

pub use error::{ImageError, PathProblem};
pub use record::{DeclaredImages, ImageSpec, Source};

/// Reads `docker_images` (a missing db declares no images).
pub fn load(config: &Config) -> Result<DeclaredImages, DbError> {
    Ok(record::declare(&Db::load_or_empty(
        &config.db_path("docker_images"),
    )?))
}

/// The images `snapshot`'s `docker_images` declares: what a pass's lineage
/// check uses, so it reads no file again.
pub fn declared(snapshot: &Snapshot) -> Result<DeclaredImages, ReadError> {
    Ok(record::declare(snapshot.images()?))
}

/// The image records an image's build waits for: its base, if the base is
/// itself declared here (so chains build level by level).
pub fn waits_on(
    images: &DeclaredImages,
    lineage: &[crate::state::Lineage],
    name: &str,
) -> Vec<String> {
    let Some(base_ref) = lineage
        .iter()
        .find(|l| l.image == name)
        .and_then(|l| l.base_ref.as_deref())
    else {
        return Vec::new();
    };
    images
        .specs
        .values()
        .filter(|s| s.tag == base_ref)
        .map(|s| s.name.clone())
        .collect()
}

/// What a lineage check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LineageReport {
    /// Images queued for rebuild (AutoRebuild yes), with the reason.
    pub queued: Vec<(String, String)>,
    /// Images newly marked outdated (AutoRebuild no).
    pub outdated: Vec<String>,
}

/// Dynamic inheritance: every image whose recorded base ID differs from
/// what its base tag names now is queued (AutoRebuild yes) or marked
/// outdated. `tags` is the engine's tag → ID map from the pass's observe.
/// A recipe image whose inputs (`recipe_inputs`: its rendered manifest,
/// files and tool folders, as of now) differ from its last build's is
/// treated the same way. `seen_at` is when the pass began reading the dbs
/// and the engine (a state.db timestamp): what `images` and `tags` say is
/// as of then.
pub fn check_lineage(
    state: &mut State,
    images: &DeclaredImages,
    tags: &BTreeMap<String, String>,
    recipe_inputs: &mut dyn FnMut(&ImageSpec) -> Option<String>,
    seen_at: &str,
) -> Result<LineageReport, StateError> {
    let mut report = LineageReport::default();
    // Lineage, last builds and queue as of one moment: a build ending
    // between two separate reads looked like a change with nothing queued
    // to answer it (and the old value was built again).
    for view in state.lineage_views()? {
        let l = &view.lineage;
        let Some(spec) = images.specs.get(&l.image) else {
            continue;
        };
        let base_now = l.base_ref.as_ref().and_then(|r| tags.get(r));
        let moved = match (&l.base_ref, &l.base_id, base_now) {
            (Some(base_ref), Some(base_id), Some(now)) if now != base_id => Some(format!(
                "base {base_ref} moved to {}",
                crate::plan::short(now)
            )),
            _ => None,
        };
        let inputs_now = match (&spec.source, &l.inputs) {
            (Source::Recipe { .. }, Some(_)) => recipe_inputs(spec),
            _ => None,
        };
        let changed = match (&inputs_now, &l.inputs) {
            (Some(now), Some(built)) if now != built => Some(
                "its recipe's inputs changed (manifest, files or the db values it renders)"
                    .to_string(),
            ),
            _ => None,
        };
        let Some(why) = moved.or(changed) else {
            continue;
        };
        let last = view.last;
        // A build that ended after this pass read the db and the engine
        // (or in the same millisecond) recorded a newer world than the
        // pass saw: a db edit its build already took would look like a
        // change (and the old value would be built again). The pass its
        // end triggers judges it instead.
        if last
            .as_ref()
            .and_then(|b| b.finished_at.as_deref())
            .is_some_and(|end| end >= seen_at)
        {
            continue;
        }
        // The last build tried this very base and these inputs, and
        // failed: another at once would likely fail the same way, after
        // every pass. It is tried again after a wait that doubles with
        // each failure in a row (a registry or mirror may come back); a
        // new base, a new input, or `berth image build` tries at once.
        if let Some(last) = last {
            let same_base = base_now.is_none() || last.base_id.as_ref() == base_now;
            let same_inputs = inputs_now.is_none() || last.inputs == inputs_now;
            if last.state == "failed" && same_base && same_inputs {
                let failures = state.failures_in_a_row(&l.image, 16)?;
                let since = std::time::SystemTime::now()
                    .checked_sub(retry_wait(failures))
                    .map(crate::state::timestamp)
                    .unwrap_or_default();
                if last
                    .finished_at
                    .as_deref()
                    .is_some_and(|end| end > since.as_str())
                {
                    continue;
                }
            }
        }
        if spec.auto_rebuild {
            // A queued or running build already answers the move, or its
            // end records the old base and the pass after it (every build's
            // end triggers one) queues again: level-triggered, so the same
            // move never rebuilds twice.
            if view.in_progress {
                continue;
            }
            let (_, merged) = state.request_build(&l.image, &why)?;
            if !merged {
                report.queued.push((l.image.clone(), why));
            }
        } else if state.mark_outdated(&l.image)? {
            report.outdated.push(l.image.clone());
        }
    }
    Ok(report)
}

/// How long a rebuild that failed `failures` times in a row on the same
/// base and inputs waits before a pass queues it again: 10 minutes,
/// doubling, at most a day.
pub fn retry_wait(failures: usize) -> std::time::Duration {
    let minutes = 10u64.saturating_mul(1 << failures.saturating_sub(1).min(8));
    std::time::Duration::from_secs(minutes.min(24 * 60) * 60)
}

/// Runs the configured notification command for an image event, if any;
/// killed after `action_timeout_seconds`. Blocks: callers on an async
/// thread run it with `spawn_blocking`. True when it exited 0 (or none is
/// configured): a caller that remembers what was notified marks it only
/// then, so a failed or killed command runs again.
pub fn notify(config: &Config, image: &str, event: &str) -> bool {
    let Some(command) = &config.image_notify_command else {
        return true;
    };
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("BERTH_IMAGE", image)
        .env("BERTH_IMAGE_EVENT", event);
    let timeout = std::time::Duration::from_secs(config.action_timeout_seconds);
    match crate::command::run(cmd, Some(timeout), crate::command::OUTPUT_CAP) {
        Ok(done) if done.success() => true,
        Ok(done) => {
            tracing::warn!(
                image,
                "image_notify_command exited with {}: {}",
                done.status,
                done.output.trim()
            );
            false
        }
        Err(e) => {
            tracing::warn!(image, "image_notify_command: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::db::Db;

    /// A pass that read the world after every build here ended.
    const LATER: &str = "9999-12-31T00:00:00.000Z";

    #[test]
    fn a_moved_base_queues_auto_rebuild_images_and_marks_the_others_outdated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = State::open(dir.path()).expect("state");
        let images = record::declare(&Db::parse(
            Path::new("/db/docker_images"),
            "auto=image|Source|git|Repository|file:///a.git|Tag|t/auto:1|AutoRebuild|yes\n\
             manual=image|Source|git|Repository|file:///m.git|Tag|t/manual:1\n",
        ));
        for name in ["auto", "manual"] {
            let (id, _) = state.request_build(name, "test").expect("request");
            let build = state
                .claim_build(&|_| Vec::new())
                .expect("claim")
                .expect("build");
            assert_eq!(build.id, id);
            state
                .set_build_base(id, Some("t/base:1"), Some("sha256:old"))
                .expect("base");
            state
                .finish_build(&build, crate::state::BuildEnd::Built("sha256:built"))
                .expect("finish");
        }
        let same: BTreeMap<String, String> =
            [("t/base:1".to_string(), "sha256:old".to_string())].into();
        assert_eq!(
            check_lineage(&mut state, &images, &same, &mut |_| None, LATER).expect("check"),
            LineageReport::default()
        );

        let moved: BTreeMap<String, String> =
            [("t/base:1".to_string(), "sha256:new".to_string())].into();
        let found =
            check_lineage(&mut state, &images, &moved, &mut |_| None, LATER).expect("check");
        assert_eq!(
            found
                .queued
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            vec!["auto"]
        );
        assert!(found.queued[0].1.contains("base t/base:1 moved"));
        assert_eq!(found.outdated, vec!["manual".to_string()]);
        // Said once: a second check queues nothing new (merged) and marks nothing again.
        assert_eq!(
            check_lineage(&mut state, &images, &moved, &mut |_| None, LATER).expect("check"),
            LineageReport::default()
        );
        // While that rebuild runs, a pass sees the old lineage still: no
        // second build of the same image is queued behind it.
        state
            .claim_build(&|_| Vec::new())
            .expect("claim")
            .expect("the rebuild");
        assert_eq!(
            check_lineage(&mut state, &images, &moved, &mut |_| None, LATER).expect("check"),
            LineageReport::default()
        );
        assert_eq!(
            state
                .builds(10)
                .expect("builds")
                .iter()
                .filter(|b| b.image == "auto")
                .count(),
            2,
            "the first build and one rebuild"
        );
        assert!(state
            .lineage()
            .expect("lineage")
            .iter()
            .any(|l| l.image == "manual" && l.outdated));
    }

    /// The worker ends its build on its own connection while a pass
    /// judges the image: the pass sees the build running (and leaves it to
    /// the pass its end triggers), never ended with the lineage before it.
    #[test]
    fn a_build_ending_while_the_pass_judges_it_is_not_queued_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = State::open(dir.path()).expect("state");
        let images = record::declare(&Db::parse(
            Path::new("/db/docker_images"),
            "r=image|Source|recipe|Path|/r|Tag|t/r:1|AutoRebuild|yes\n",
        ));
        let worker = State::open(dir.path()).expect("the worker's state");
        let build = |inputs: &str, finish: bool| {
            let mut w = State::open(dir.path()).expect("state");
            w.request_build("r", "test").expect("request");
            let b = w
                .claim_build(&|_| Vec::new())
                .expect("claim")
                .expect("build");
            w.set_build_inputs(b.id, inputs).expect("inputs");
            if finish {
                w.finish_build(&b, crate::state::BuildEnd::Built("sha256:r"))
                    .expect("finish");
            }
            b
        };
        build("in-1", true);
        // The db now says in-2; its build runs.
        let running = build("in-2", false);
        let tags = BTreeMap::new();
        let mut ends_now = |_: &ImageSpec| {
            worker
                .finish_build(&running, crate::state::BuildEnd::Built("sha256:r2"))
                .expect("finish");
            Some("in-2".to_string())
        };
        assert_eq!(
            check_lineage(&mut state, &images, &tags, &mut ends_now, LATER).expect("check"),
            LineageReport::default()
        );
        // The pass its end triggers finds the lineage up to date.
        let mut same = |_: &ImageSpec| Some("in-2".to_string());
        assert_eq!(
            check_lineage(&mut state, &images, &tags, &mut same, LATER).expect("check"),
            LineageReport::default()
        );
    }

    /// A recipe whose inputs changed is rebuilt like a moved base; a
    /// build that failed on the same inputs (or base) is not queued again
    /// by every pass.
    #[test]
    fn changed_recipe_inputs_queue_a_rebuild_once_and_a_failure_is_not_retried_each_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = State::open(dir.path()).expect("state");
        let images = record::declare(&Db::parse(
            Path::new("/db/docker_images"),
            "r=image|Source|recipe|Path|/r|Tag|t/r:1|AutoRebuild|yes\n",
        ));
        // Claims the queued build and ends it as if it ran on `inputs`.
        let run_queued = |state: &mut State, inputs: &str, ok: bool| {
            let b = state
                .claim_build(&|_| Vec::new())
                .expect("claim")
                .expect("build");
            state
                .set_build_base(b.id, Some("t/base:1"), Some("sha256:b"))
                .expect("base");
            state.set_build_inputs(b.id, inputs).expect("inputs");
            let end = if ok {
                crate::state::BuildEnd::Built("sha256:r")
            } else {
                crate::state::BuildEnd::Failed("step 1 exited with 1")
            };
            state.finish_build(&b, end).expect("finish");
        };
        state.request_build("r", "test").expect("request");
        run_queued(&mut state, "in-1", true);
        let tags: BTreeMap<String, String> =
            [("t/base:1".to_string(), "sha256:b".to_string())].into();
        let mut same = |_: &ImageSpec| Some("in-1".to_string());
        let mut changed = |_: &ImageSpec| Some("in-2".to_string());
        assert_eq!(
            check_lineage(&mut state, &images, &tags, &mut same, LATER).expect("check"),
            LineageReport::default()
        );
        // A pass that read the world before that build ended leaves the
        // change to the pass after it: it may have read the db before an
        // edit the build already took.
        assert_eq!(
            check_lineage(
                &mut state,
                &images,
                &tags,
                &mut changed,
                "2000-01-01T00:00:00.000Z"
            )
            .expect("check"),
            LineageReport::default()
        );
        let found = check_lineage(&mut state, &images, &tags, &mut changed, LATER).expect("check");
        assert_eq!(found.queued.len(), 1, "{found:?}");
        assert!(found.queued[0].1.contains("inputs changed"));
        // That build fails on the new inputs: the next passes leave it
        // (for a while: retry_wait).
        run_queued(&mut state, "in-2", false);
        assert_eq!(retry_wait(1), std::time::Duration::from_secs(600));
        assert_eq!(retry_wait(2), std::time::Duration::from_secs(1200));
        assert_eq!(retry_wait(40), std::time::Duration::from_secs(86_400));
        assert_eq!(
            check_lineage(&mut state, &images, &tags, &mut changed, LATER).expect("check"),
            LineageReport::default(),
            "not retried by every pass"
        );
        // Once its wait is over, the same inputs are tried again.
        state.backdate_builds("r", "2000-01-01T00:00:00.000Z");
        let retried =
            check_lineage(&mut state, &images, &tags, &mut changed, LATER).expect("check");
        assert_eq!(retried.queued.len(), 1, "{retried:?}");
        run_queued(&mut state, "in-2", false);
        // Inputs changed again: tried again at once.
        let mut again = |_: &ImageSpec| Some("in-3".to_string());
        assert_eq!(
            check_lineage(&mut state, &images, &tags, &mut again, LATER)
                .expect("check")
                .queued
                .len(),
            1
        );
    }

    #[test]
    fn the_notification_command_gets_the_image_and_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("notified");
        let config = crate::config::Config {
            image_notify_command: Some(format!(
                "echo \"$BERTH_IMAGE $BERTH_IMAGE_EVENT\" >> {}",
                out.display()
            )),
            ..crate::config::Config::default()
        };
        assert!(notify(&config, "app", "outdated"));
        assert!(notify(&config, "base", "rebuilt"));
        assert_eq!(
            std::fs::read_to_string(&out).expect("ran"),
            "app outdated\nbase rebuilt\n"
        );
        let failing = crate::config::Config {
            image_notify_command: Some("exit 3".into()),
            ..crate::config::Config::default()
        };
        assert!(!notify(&failing, "app", "outdated"), "a failure is said");
    }
}
