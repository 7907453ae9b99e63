//! The applier on the in-memory engine: order, create-first recreate,
//! failure isolation, convergence. (The real engine is in tests/.)

use std::time::SystemTime;

use std::sync::atomic::AtomicBool;

use super::*;
use crate::declared::{from_text as declared, Declared};
use crate::engine::fake::FakeEngine;
use crate::plan::plan;

fn settings() -> ApplySettings {
    ApplySettings {
        instance: "test".into(),
        concurrency: 4,
        stop_grace_seconds: 1,
    }
}

fn engine() -> FakeEngine {
    let e = FakeEngine::new();
    e.add_image("app:1", "sha256:aaaa");
    e.add_image("app:2", "sha256:bbbb");
    e
}

async fn pass(engine: &FakeEngine, d: &Declared) -> Report {
    let observed = engine.observe().await.expect("observe");
    let p = plan(d, &observed, SystemTime::UNIX_EPOCH);
    apply(
        engine,
        &p,
        &settings(),
        &AtomicBool::new(false),
        |_: &Outcome| {},
    )
    .await
}

#[tokio::test]
async fn converges_then_does_nothing() {
    let e = engine();
    let d = declared(
        "db=service|Image|app:1|MountPath|/data\nweb=service|Image|app:1|Interlinked|db\n",
    );
    let report = pass(&e, &d).await;
    assert_eq!(report.failures().count(), 0, "{report:?}");
    assert_eq!(e.container("web").map(|c| c.state), Some("running".into()));
    assert!(e.volumes().contains_key("db_data"));
    assert_eq!(
        e.volumes()["db_data"]
            .get(crate::engine::LABEL_INSTANCE)
            .map(String::as_str),
        Some("test")
    );
    let creates: Vec<String> = e
        .actions()
        .into_iter()
        .filter(|a| a.starts_with("create"))
        .collect();
    assert_eq!(creates, vec!["create db", "create web"], "dependency first");
    e.clear_log();
    let calls = e.api_calls();
    let report = pass(&e, &d).await;
    assert!(report.outcomes.is_empty());
    assert_eq!(e.log(), vec!["observe"]);
    assert_eq!(e.api_calls() - calls, 3, "a no-op pass is one observe");
}

#[tokio::test]
async fn recreate_creates_first_and_a_failed_create_keeps_the_old_container_running() {
    let e = engine();
    pass(&e, &declared("a=service|Image|app:1\n")).await;
    let old = e.id_of("a").expect("a exists");
    e.fail_create("a_berth-new");
    let report = pass(&e, &declared("a=service|Image|app:2\n")).await;
    assert_eq!(report.failures().count(), 1);
    assert_eq!(e.id_of("a"), Some(old.clone()), "old container untouched");
    assert_eq!(e.container("a").map(|c| c.state), Some("running".into()));

    e.heal();
    e.clear_log();
    let report = pass(&e, &declared("a=service|Image|app:2\n")).await;
    assert_eq!(report.failures().count(), 0, "{report:?}");
    let new = e.id_of("a").expect("a exists");
    assert_ne!(new, old);
    assert_eq!(e.container("a").map(|c| c.image), Some("app:2".into()));
    let ops: Vec<String> = e.actions();
    let pos = |prefix: &str| {
        ops.iter()
            .position(|o| o.starts_with(prefix))
            .unwrap_or(usize::MAX)
    };
    assert!(
        pos("create a_berth-new") < pos(&format!("stop {old}")),
        "{ops:?}"
    );
    // The old container is kept, stopped, under another name before the
    // new one takes the name; nothing is removed.
    assert!(
        pos(&format!("stop {old}")) < pos(&format!("rename {old} a_berth-old")),
        "{ops:?}"
    );
    assert!(
        pos(&format!("rename {old} a_berth-old")) < pos(&format!("rename {new} a")),
        "{ops:?}"
    );
    assert!(
        pos(&format!("rename {new} a")) < pos(&format!("start {new}")),
        "{ops:?}"
    );
    assert_eq!(pos("remove"), usize::MAX, "{ops:?}");
    assert_eq!(
        e.container("a_berth-old").map(|c| (c.id, c.state)),
        Some((old, "exited".to_string()))
    );
}

#[tokio::test]
async fn one_failure_does_not_stop_the_others() {
    let e = engine();
    e.fail_create("b");
    let report = pass(
        &e,
        &declared("a=service|Image|app:1\nb=service|Image|app:1\nc=service|Image|app:1\n"),
    )
    .await;
    let failed: Vec<&str> = report.failures().map(|o| o.record.as_str()).collect();
    assert_eq!(failed, vec!["b"]);
    assert!(e.container("a").is_some() && e.container("c").is_some());
}

/// Cut off after the old container was kept and before the new one took
/// the name: the next pass puts the old one back (and removes the
/// replacement), the pass after tries the recreate again.
#[tokio::test]
async fn a_crash_between_the_renames_puts_the_old_container_back_then_retries() {
    let e = engine();
    pass(&e, &declared("a=service|Image|app:1|MountPath|/data\n")).await;
    let old = e.id_of("a").expect("a exists");
    e.fail_rename("a_berth-new");
    let report = pass(&e, &declared("a=service|Image|app:2|MountPath|/data\n")).await;
    assert_eq!(report.failures().count(), 1);
    assert!(
        e.id_of("a").is_none()
            && e.id_of("a_berth-new").is_some()
            && e.id_of("a_berth-old") == Some(old.clone()),
        "cut off mid-recreate"
    );
    e.heal();
    let report = pass(&e, &declared("a=service|Image|app:2|MountPath|/data\n")).await;
    assert_eq!(report.failures().count(), 0, "{report:?}");
    let kinds: Vec<&str> = report.outcomes.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["remove", "rollback"], "{report:?}");
    assert!(e.id_of("a_berth-new").is_none(), "leftover removed");
    assert!(e.id_of("a_berth-old").is_none(), "kept one put back");
    assert_eq!(
        e.container("a").map(|c| (c.id, c.state)),
        Some((old, "running".into()))
    );
    assert!(e.volumes().contains_key("a_data"), "data kept throughout");
    let report = pass(&e, &declared("a=service|Image|app:2|MountPath|/data\n")).await;
    let kinds: Vec<&str> = report.outcomes.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["recreate"], "tried again: {report:?}");
    assert_eq!(e.container("a").map(|c| c.image), Some("app:2".into()));
}

#[tokio::test]
async fn what_links_to_a_failed_record_is_not_started() {
    let e = engine();
    e.fail_create("db");
    let report = pass(&e, &declared("db=service|Image|app:1\nweb=service|Image|app:1|Interlinked|db\nother=service|Image|app:1\n")).await;
    let failed: Vec<(&str, &str)> = report
        .failures()
        .map(|o| (o.record.as_str(), o.error.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[1].0, "web");
    assert!(
        failed[1].1.contains("db, which it links to, failed"),
        "{failed:?}"
    );
    assert!(e.container("web").is_none());
    assert!(
        e.container("other").is_some(),
        "unrelated records still apply"
    );
}

#[tokio::test]
async fn a_volume_someone_else_made_is_never_adopted() {
    let e = engine();
    let d = declared("app=service|Image|app:1|MountPath|/data\nother=service|Image|app:1\n");
    // An admin's volume under the name berth would give app's data.
    e.add_volume("app_data", BTreeMap::new());
    let report = pass(&e, &d).await;
    let failed: Vec<&Outcome> = report.failures().collect();
    assert_eq!(failed.len(), 1, "{:?}", report.outcomes);
    assert_eq!(failed[0].record, "app");
    assert!(
        failed[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("does not adopt")),
        "{failed:?}"
    );
    assert!(e.id_of("app").is_none() && e.id_of("other").is_some());
    // One this berth made for the record is used as it is.
    let mine = labels_for("test", "app", &d.specs["app"].config, "x")
        .into_iter()
        .filter(|(k, _)| [LABEL_MANAGED, LABEL_INSTANCE, LABEL_RECORD].contains(&k.as_str()))
        .collect();
    e.add_volume("app_data", mine);
    let report = pass(&e, &d).await;
    assert_eq!(report.failures().count(), 0, "{:?}", report.outcomes);
}

/// The journal finds an action's row by its index in the plan: each index
/// is announced once before its wave and finished once, for that action.
#[tokio::test]
async fn observers_see_each_action_by_its_index_in_the_plan() {
    struct Seen<'a> {
        plan: &'a Plan,
        started: Vec<usize>,
        finished: &'a mut Vec<usize>,
    }
    impl Observer for Seen<'_> {
        fn starting(&mut self, index: usize, action: &Action) {
            assert_eq!(&self.plan.actions[index], action);
            assert!(!self.started.contains(&index));
            self.started.push(index);
        }
        fn done(&mut self, index: usize, action: &Action, _: &Outcome) {
            assert_eq!(&self.plan.actions[index], action);
            assert!(self.started.contains(&index) && !self.finished.contains(&index));
            self.finished.push(index);
        }
    }
    let e = engine();
    let d = declared("db=service|Image|app:1\nweb=service|Image|app:1|Interlinked|db\nlone=service|Image|app:2\n");
    let observed = e.observe().await.expect("observe");
    let p = plan(&d, &observed, SystemTime::UNIX_EPOCH);
    assert_eq!(p.actions.len(), 4, "the network and three creates");
    let mut finished = Vec::new();
    let seen = Seen {
        plan: &p,
        started: Vec::new(),
        finished: &mut finished,
    };
    apply(&e, &p, &settings(), &AtomicBool::new(false), seen).await;
    finished.sort();
    assert_eq!(finished, [0, 1, 2, 3]);
}

/// A whole pass on the fake: each journalled action is finished with its
/// own result (the journal finds its row by the action's index).
#[tokio::test]
async fn a_pass_journals_each_action_with_its_own_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::config::Config {
        db_dir: dir.path().join("db"),
        state_dir: dir.path().join("state"),
        instance: "test".into(),
        ..crate::config::Config::default()
    };
    std::fs::create_dir_all(&config.db_dir).expect("db dir");
    std::fs::write(
        config.db_dir.join("docker_containers"),
        "db=service|Image|app:1\nweb=service|Image|app:1|Interlinked|db\nbad=service|Image|app:2\n",
    )
    .expect("db");
    let state = crate::state::State::open(&config.state_dir).expect("state");
    let e = engine();
    e.fail_create("bad");
    let snapshot = crate::db::Snapshot::read(&config.db_dir);
    let input = crate::reconcile::PassInput {
        snapshot: &snapshot,
        trigger: "test",
        at: std::time::SystemTime::now(),
        allow_mass_removal: false,
    };
    let report = crate::reconcile::run_pass(
        &config,
        &e,
        Some(&state),
        input,
        &AtomicBool::new(false),
        |_: &Outcome| {},
    )
    .await
    .expect("pass");
    assert_eq!(report.outcomes.len(), 4, "{report:?}");
    let journal = state.history(None, 100).expect("history");
    let result = |record: &str| {
        journal
            .iter()
            .find(|j| j.record == record)
            .map(|j| (j.action.as_str(), j.result.as_str()))
    };
    assert_eq!(result("berth"), Some(("create-network", "ok")));
    assert_eq!(result("db"), Some(("create", "ok")));
    assert_eq!(result("web"), Some(("create", "ok")));
    assert_eq!(result("bad"), Some(("create", "failed")));
    assert_eq!(journal.len(), 4);
}

/// A sandbox with a state.db for whole passes on the fake engine.
struct Sandbox {
    _dir: tempfile::TempDir,
    config: crate::config::Config,
    state: crate::state::State,
}

impl Sandbox {
    fn new(line: &str) -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::config::Config {
            db_dir: dir.path().join("db"),
            state_dir: dir.path().join("state"),
            instance: "test".into(),
            ..crate::config::Config::default()
        };
        std::fs::create_dir_all(&config.db_dir).expect("db dir");
        let state = crate::state::State::open(&config.state_dir).expect("state");
        let sandbox = Sandbox {
            _dir: dir,
            config,
            state,
        };
        sandbox.write(line);
        sandbox
    }

    fn write(&self, line: &str) {
        std::fs::write(self.config.db_dir.join("docker_containers"), line).expect("db");
    }

    /// A pass as if run `later` seconds from now.
    async fn pass(&self, e: &FakeEngine, later: u64) -> crate::reconcile::PassReport {
        let snapshot = crate::db::Snapshot::read(&self.config.db_dir);
        let input = crate::reconcile::PassInput {
            snapshot: &snapshot,
            trigger: "test",
            at: SystemTime::now() + std::time::Duration::from_secs(later),
            allow_mass_removal: false,
        };
        crate::reconcile::run_pass(
            &self.config,
            e,
            Some(&self.state),
            input,
            &AtomicBool::new(false),
            |_: &Outcome| {},
        )
        .await
        .expect("pass")
    }
}

fn kinds(report: &crate::reconcile::PassReport) -> Vec<&'static str> {
    report.outcomes.iter().map(|o| o.kind.as_str()).collect()
}

/// A new container that exits is rolled back: the old one runs again under
/// the record's name with its volume, the new one is gone, state.db and
/// the journal say so, and the next passes do not try the same image
/// again until it changes.
#[tokio::test]
async fn a_rollout_whose_container_exits_is_rolled_back_and_not_retried() {
    let s = Sandbox::new("a=service|Image|app:1|MountPath|/data\n");
    let e = engine();
    assert_eq!(kinds(&s.pass(&e, 0).await), ["create-network", "create"]);
    let old = e.id_of("a").expect("a");

    s.write("a=service|Image|app:2|MountPath|/data\n");
    let report = s.pass(&e, 0).await;
    assert_eq!(kinds(&report), ["recreate"]);
    let new = report.outcomes[0].rollout.clone().expect("on probation");
    assert_eq!(e.id_of("a"), Some(new.clone()));
    assert_eq!(e.id_of("a_berth-old"), Some(old.clone()));
    let probation = s.state.probations().expect("read")["a"].clone();
    assert_eq!(
        (probation.new_id.as_deref(), probation.old_id.as_str()),
        (Some(new.as_str()), old.as_str())
    );
    assert!(
        report.plan.next_retry.is_some(),
        "the daemon wakes when the probation ends"
    );

    e.set_exited(&new, 1);
    let report = s.pass(&e, 1).await;
    assert_eq!(kinds(&report), ["rollback"], "{report:?}");
    assert!(
        report.outcomes[0]
            .reason
            .starts_with("rolled back: the new container exited with code 1 (image bbbb)"),
        "{}",
        report.outcomes[0].reason
    );
    assert_eq!(
        e.container("a").map(|c| (c.id, c.state, c.image)),
        Some((old.clone(), "running".into(), "app:1".into()))
    );
    assert!(e.container(&new).is_none() && e.id_of("a_berth-old").is_none());
    assert!(e.volumes().contains_key("a_data"), "data kept throughout");
    assert!(s.state.probations().expect("read").is_empty());
    let rolled = s.state.rollbacks().expect("read")["a"].clone();
    assert_eq!(rolled.image_id, "sha256:bbbb");
    let history = s.state.history(Some("a"), 10).expect("history");
    assert_eq!(
        (history[0].action.as_str(), history[0].result.as_str()),
        ("rollback", "ok")
    );

    // Not tried again: the record says why.
    e.clear_log();
    let report = s.pass(&e, 2).await;
    assert!(report.outcomes.is_empty(), "{report:?}");
    assert!(
        report.plan.held[0].message.starts_with("rolled back: "),
        "{:?}",
        report.plan.held
    );
    // A new app:2: tried, and the rollback is forgotten.
    e.add_image("app:2", "sha256:cccc");
    let report = s.pass(&e, 3).await;
    assert_eq!(kinds(&report), ["recreate"]);
    assert!(s.state.rollbacks().expect("read").is_empty());
}

/// A new container that runs for the probation period stays; the old one
/// is removed (never its volumes) and the probation forgotten.
#[tokio::test]
async fn a_rollout_that_runs_through_its_probation_removes_the_old_container() {
    let s = Sandbox::new("a=service|Image|app:1|MountPath|/data\n");
    let e = engine();
    s.pass(&e, 0).await;
    let old = e.id_of("a").expect("a");
    s.write("a=service|Image|app:2|MountPath|/data\n");
    s.pass(&e, 0).await;
    let new = e.id_of("a").expect("a");
    let rows = crate::status::current(
        &s.config,
        &e,
        crate::reconcile::Remembered::read(Some(&s.state)),
    )
    .await
    .expect("status");
    assert!(
        rows[0]
            .why
            .contains("update on probation: the new container runs")
            && rows[0].why.ends_with("a_berth-old kept for a rollback"),
        "{rows:?}"
    );
    assert!(
        s.pass(&e, 5).await.outcomes.is_empty(),
        "still on probation"
    );
    assert!(e.container(&old).is_some());
    let report = s.pass(&e, 11).await;
    assert_eq!(kinds(&report), ["rollout-done"], "{report:?}");
    assert!(e.container(&old).is_none());
    assert_eq!(e.id_of("a"), Some(new));
    assert!(e.volumes().contains_key("a_data"));
    assert!(s.state.probations().expect("read").is_empty());
    assert!(s.pass(&e, 12).await.outcomes.is_empty(), "converged");
}

/// A first create has nothing to roll back to, and an in-place update
/// keeps its container: neither leaves a probation.
#[tokio::test]
async fn creates_and_updates_in_place_are_not_on_probation() {
    let s = Sandbox::new("a=service|Image|app:1|MaxMemory|64M\n");
    let e = engine();
    let report = s.pass(&e, 0).await;
    assert!(report.outcomes.iter().all(|o| o.rollout.is_none()));
    s.write("a=service|Image|app:1|MaxMemory|128M\n");
    assert_eq!(kinds(&s.pass(&e, 0).await), ["update"]);
    assert!(s.state.probations().expect("read").is_empty());
    assert!(e.containers().iter().all(|c| c.name == "a"));
}

/// A recreate that must stop the old container first (a new host folder
/// inside one it has mounted) still keeps it for a rollback.
#[tokio::test]
async fn a_stop_first_recreate_keeps_the_old_container_too() {
    let e = engine();
    pass(
        &e,
        &declared("a=service|Image|app:1|DataMount|host|DataMountPath|/srv|MountPath|/d\n"),
    )
    .await;
    let old = e.id_of("a").expect("a");
    e.clear_log();
    let d = declared("a=service|Image|app:1|DataMount|host|DataMountPath|/srv|MountPath|/d/sub\n");
    let observed = e.observe().await.expect("observe");
    let p = plan(&d, &observed, SystemTime::UNIX_EPOCH);
    assert!(p.actions[0].stops_first(), "{:?}", p.actions);
    let report = apply(
        &e,
        &p,
        &settings(),
        &AtomicBool::new(false),
        |_: &Outcome| {},
    )
    .await;
    assert_eq!(report.failures().count(), 0, "{report:?}");
    let ops = e.actions();
    let pos = |prefix: &str| {
        ops.iter()
            .position(|o| o.starts_with(prefix))
            .unwrap_or(usize::MAX)
    };
    assert!(
        pos(&format!("stop {old}")) < pos("create a_berth-new"),
        "{ops:?}"
    );
    assert_eq!(e.id_of("a_berth-old"), Some(old));
    assert_eq!(e.container("a").map(|c| c.state), Some("running".into()));
    assert!(report.outcomes[0].rollout.is_some());
}

/// The kept container waits under restart `no`, so a dockerd restart
/// during the probation never starts it beside the new one (same volumes,
/// same alias), and gets its own policy back before it takes the name
/// again: after a failed rollout, and after a crash between the renames.
#[tokio::test]
async fn the_kept_container_waits_under_no_restart_and_gets_its_policy_back() {
    let restart = |e: &FakeEngine, id: &str| e.config_of(id).map(|c| c.restart);
    let s = Sandbox::new("a=service|Image|app:1|MountPath|/data|Restart|always\n");
    let e = engine();
    s.pass(&e, 0).await;
    let old = e.id_of("a").expect("a");
    assert_eq!(restart(&e, &old).as_deref(), Some("always"));

    s.write("a=service|Image|app:2|MountPath|/data|Restart|always\n");
    let report = s.pass(&e, 0).await;
    assert_eq!(kinds(&report), ["recreate"], "{report:?}");
    let new = e.id_of("a").expect("a");
    assert_eq!(e.id_of("a_berth-old"), Some(old.clone()));
    assert_eq!(restart(&e, &old).as_deref(), Some("no"), "kept under no");
    assert_eq!(restart(&e, &new).as_deref(), Some("always"));
    let log = e.actions();
    let pos = |s: &str| log.iter().position(|a| a == s).unwrap_or(usize::MAX);
    assert!(
        pos(&format!("rename {old} a_berth-old")) < pos(&format!("update {old}"))
            && pos(&format!("update {old}")) < pos(&format!("rename {new} a")),
        "policy taken once kept, before the new one takes the name: {log:?}"
    );

    e.clear_log();
    e.set_exited(&new, 1);
    let report = s.pass(&e, 1).await;
    assert_eq!(kinds(&report), ["rollback"], "{report:?}");
    assert_eq!(restart(&e, &old).as_deref(), Some("always"), "given back");
    let log = e.actions();
    let pos = |s: &str| log.iter().position(|a| a == s).unwrap_or(usize::MAX);
    assert!(
        pos(&format!("update {old}")) < pos(&format!("rename {old} a"))
            && pos(&format!("rename {old} a")) < pos(&format!("start {old}")),
        "given back while still kept: {log:?}"
    );

    // Cut off between the renames: the kept one, alone under `no`, is put
    // back with its policy.
    let e = engine();
    pass(
        &e,
        &declared("a=service|Image|app:1|Restart|unless-stopped\n"),
    )
    .await;
    let old = e.id_of("a").expect("a exists");
    e.fail_rename("a_berth-new");
    let v2 = declared("a=service|Image|app:2|Restart|unless-stopped\n");
    assert_eq!(pass(&e, &v2).await.failures().count(), 1);
    assert_eq!(e.id_of("a_berth-old"), Some(old.clone()));
    assert_eq!(restart(&e, &old).as_deref(), Some("no"));
    e.heal();
    let report = pass(&e, &v2).await;
    assert_eq!(report.failures().count(), 0, "{report:?}");
    assert_eq!(e.id_of("a"), Some(old.clone()));
    assert_eq!(restart(&e, &old).as_deref(), Some("unless-stopped"));
}
