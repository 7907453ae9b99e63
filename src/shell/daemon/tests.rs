//! The loop in-process: a [`FakeEngine`] behind a test [`Connect`], tokio's
//! paused time (the wall clock follows it), a sandbox folder for the config,
//! the dbs and state.db. Passes are read back from the journal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::TimeZone;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, Instant};

use super::connect::{Connect, EngineEvents};
use super::{Daemon, Event, Shared, WallClock};
use crate::config::Config;
use crate::engine::fake::FakeEngine;
use crate::engine::EngineError;
use crate::state::State;

const IMAGE: &str = "img:1";

/// Hands the loop one shared fake, or refuses while `refuse` is set; notes
/// when each attempt was made.
#[derive(Clone)]
struct TestConnect {
    engine: Arc<FakeEngine>,
    refuse: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Instant>>>,
}

impl Connect<FakeEngine> for TestConnect {
    async fn connect(&self, host: &str) -> Result<Arc<FakeEngine>, EngineError> {
        if let Ok(mut a) = self.attempts.lock() {
            a.push(Instant::now());
        }
        if self.refuse.load(Ordering::SeqCst) {
            return Err(EngineError::Unreachable {
                host: host.to_string(),
                message: "connection refused".into(),
            });
        }
        Ok(self.engine.clone())
    }

    async fn identify(&self, _: &FakeEngine) -> Result<String, EngineError> {
        Ok("fake".into())
    }

    fn events(&self, _: &Arc<FakeEngine>) -> EngineEvents {
        // The tests send Docker events to the loop themselves.
        Box::pin(futures_util::stream::pending())
    }
}

struct Sandbox {
    dir: tempfile::TempDir,
    config: Config,
    fake: Arc<FakeEngine>,
    connect: TestConnect,
}

impl Sandbox {
    fn new(containers: &str) -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("db")).expect("db dir");
        let config_path = dir.path().join("berth.toml");
        std::fs::write(
            &config_path,
            "db_dir = \"db\"\nstate_dir = \"state\"\nevents_dir = \"events\"\n\
             templates_dir = \"templates\"\ntemplates_custom_dir = \"templates-custom\"\n\
             output_root = \"output\"\napi_socket = \"state/api.sock\"\ninstance = \"t\"\n\
             stop_grace_seconds = 10\nresync_seconds = 7200\n",
        )
        .expect("config");
        let config = Config::locate(Some(&config_path)).expect("config");
        let fake = Arc::new(FakeEngine::new());
        fake.add_image(IMAGE, "sha256:img1");
        let connect = TestConnect {
            engine: fake.clone(),
            refuse: Arc::new(AtomicBool::new(false)),
            attempts: Arc::new(Mutex::new(Vec::new())),
        };
        let s = Sandbox {
            dir,
            config,
            fake,
            connect,
        };
        s.declare(containers);
        s
    }

    fn declare(&self, containers: &str) {
        std::fs::write(self.dir.path().join("db/docker_containers"), containers).expect("db");
    }

    /// A loop on this sandbox whose wall clock starts at `wall` and follows
    /// tokio's, the sender of its events, and the trigger of its shutdown.
    fn daemon(
        &self,
        wall: SystemTime,
    ) -> (
        Daemon<FakeEngine, TestConnect>,
        mpsc::UnboundedSender<Event>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(self.config.clone(), tx.clone()));
        let state = State::open(&self.config.state_dir).expect("state");
        let base = Instant::now();
        let clock: WallClock = Arc::new(move || wall + (Instant::now() - base));
        let daemon = Daemon::new(
            self.config.clone(),
            state,
            shared,
            rx,
            self.connect.clone(),
            clock,
        );
        (daemon, tx)
    }

    /// The triggers of the journalled passes, oldest first.
    fn passes(&self) -> Vec<String> {
        let state = State::open(&self.config.state_dir).expect("state");
        let mut passes: Vec<String> = state
            .passes(1000)
            .expect("passes")
            .into_iter()
            .map(|p| p.trigger)
            .collect();
        passes.reverse();
        passes
    }

    /// The db's path, as the folder watch names it.
    fn db(&self) -> String {
        self.dir
            .path()
            .join("db/docker_containers")
            .display()
            .to_string()
    }

    /// The image reference `name`'s container was made with.
    fn image(&self, name: &str) -> String {
        self.fake
            .container(name)
            .map(|c| c.image)
            .unwrap_or_default()
    }

    fn running(&self, name: &str) -> bool {
        self.fake.container(name).is_some_and(|c| c.is_running())
    }
}

/// Runs `daemon` beside `script` on this task; the daemon stops when the
/// script ends (or, if the script sends it, at its own shutdown signal).
/// Returns when the daemon's loop returned.
async fn drive<F: std::future::Future<Output = ()>>(
    mut daemon: Daemon<FakeEngine, TestConnect>,
    shutdown: oneshot::Receiver<()>,
    script: F,
) -> Instant {
    let run = async {
        daemon
            .run_until(async {
                let _ = shutdown.await;
            })
            .await;
        Instant::now()
    };
    let (ended, ()) = tokio::join!(run, script);
    ended
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_edits_costs_its_first_pass_and_one_gathered() {
    let s = Sandbox::new("");
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    let db = s.db();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        assert_eq!(s.passes(), ["start"]);
        // Five edits 50 ms apart, each sooner than the quiet time: the
        // first starts a pass at once, the rest are gathered.
        for i in 0..5 {
            s.declare(&format!("app=service|Image|{IMAGE}|Note|{i}\n"));
            tx.send(Event::FilesChanged(db.clone())).expect("send");
            sleep(Duration::from_millis(50)).await;
        }
        // 50 ms after the last edit: still gathering.
        assert_eq!(s.passes().len(), 2, "{:?}", s.passes());
        sleep(Duration::from_millis(100)).await;
        let after = s.passes();
        assert_eq!(after.len(), 3, "one more pass for the rest: {after:?}");
        assert_eq!(after[2], format!("file changed: {db}"));
        assert!(s.running("app"));
        // Right after that pass, a burst that never goes quiet still gets
        // a pass within 500 ms.
        for _ in 0..12 {
            tx.send(Event::Docker("die app".into())).expect("send");
            sleep(Duration::from_millis(50)).await;
        }
        let after = s.passes();
        assert_eq!(after.len(), 4, "{after:?}");
        assert_eq!(after[3], "docker: die app");
        let _ = stop.send(());
    })
    .await;
}

/// How long after `since` the loop journals its `n`th pass (polled every
/// millisecond of paused time, for at most a second).
async fn nth_pass_after(s: &Sandbox, n: usize, since: Instant) -> Duration {
    while s.passes().len() < n {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "no pass {n}: {:?}",
            s.passes()
        );
        sleep(Duration::from_millis(1)).await;
    }
    since.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_single_edit_after_quiet_starts_its_pass_at_once() {
    let s = Sandbox::new(&format!("app=service|Image|{IMAGE}\n"));
    s.fake.add_image("img:2", "sha256:img2");
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    let db = s.db();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        assert_eq!(s.passes(), ["start"]);
        s.declare("app=service|Image|img:2\n");
        let sent = Instant::now();
        tx.send(Event::FilesChanged(db.clone())).expect("send");
        let took = nth_pass_after(&s, 2, sent).await;
        assert!(took <= Duration::from_millis(5), "no quiet wait: {took:?}");
        assert_eq!(s.passes()[1], format!("file changed: {db}"));
        assert_eq!(s.image("app"), "img:2", "the pass saw the edit");
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_a_hundred_edits_costs_a_handful_of_passes_and_the_last_sees_the_last() {
    let s = Sandbox::new("app=service|Image|img:0\n");
    for i in 0..=100 {
        s.fake
            .add_image(&format!("img:{i}"), &format!("sha256:{i}"));
    }
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    let db = s.db();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        assert_eq!(s.passes(), ["start"]);
        let began = Instant::now();
        for i in 1..=100 {
            s.declare(&format!("app=service|Image|img:{i}\n"));
            tx.send(Event::FilesChanged(db.clone())).expect("send");
            if i == 1 {
                let took = nth_pass_after(&s, 2, began).await;
                assert!(
                    took <= Duration::from_millis(5),
                    "the first at once: {took:?}"
                );
            }
            sleep(Duration::from_millis(10)).await;
        }
        sleep(Duration::from_secs(1)).await;
        let passes = s.passes();
        let count = passes.len() - 1;
        assert!(count <= 5, "{count} passes for 100 edits");
        assert_eq!(s.image("app"), "img:100", "the last pass saw the last edit");
        assert!(s.running("app"));
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_edit_and_an_apply_during_a_pass_get_a_pass_after_it() {
    let s = Sandbox::new("app=service|Image|img:0\n");
    for i in 0..4 {
        s.fake
            .add_image(&format!("img:{i}"), &format!("sha256:{i}"));
    }
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    let db = s.db();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        // Each recreate's stop of the old container takes a second.
        s.fake.slow_stop(Duration::from_secs(1));
        s.declare("app=service|Image|img:1\n");
        tx.send(Event::FilesChanged(db.clone())).expect("send");
        sleep(Duration::from_millis(200)).await;
        assert_eq!(s.passes().len(), 2, "the pass for img:1 runs");
        assert_eq!(s.image("app"), "img:0", "its stop is in flight");
        // An edit while it runs: the pass after it sees it.
        s.declare("app=service|Image|img:2\n");
        tx.send(Event::FilesChanged(db.clone())).expect("send");
        sleep(Duration::from_millis(2500)).await;
        assert_eq!(s.passes().len(), 3, "{:?}", s.passes());
        assert_eq!(s.image("app"), "img:2");

        // An edit and an apply while a pass runs: the apply is answered by
        // the pass after it, which saw the edit.
        s.declare("app=service|Image|img:1\n");
        tx.send(Event::FilesChanged(db.clone())).expect("send");
        sleep(Duration::from_millis(200)).await;
        assert_eq!(s.passes().len(), 4, "the pass for img:1 runs");
        s.declare("app=service|Image|img:3\n");
        tx.send(Event::FilesChanged(db.clone())).expect("send");
        let (reply, answer) = oneshot::channel();
        tx.send(Event::Pass {
            trigger: "api apply".into(),
            allow_mass_removal: false,
            reply,
        })
        .expect("send");
        let report = answer.await.expect("an answer").expect("a pass");
        assert_eq!(report.trigger, "api apply", "not the pass it came during");
        assert!(
            report.outcomes.iter().any(|o| o.record == "app"),
            "that pass saw the edit made during the first: {:?}",
            report.outcomes
        );
        assert_eq!(s.passes().len(), 5, "{:?}", s.passes());
        assert_eq!(s.image("app"), "img:3");
        assert!(s.running("app"));
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_file_written_in_place_holds_the_pass_until_its_writer_closes_it() {
    let s = Sandbox::new(&format!("app=service|Image|{IMAGE}\n"));
    s.fake.add_image("img:2", "sha256:img2");
    s.fake.add_image("img:3", "sha256:img3");
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    let db = s.db();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        // Truncated, then written in two parts: read in between, the db
        // would say `app` is gone.
        s.declare("");
        tx.send(Event::FileWriting(db.clone())).expect("send");
        sleep(Duration::from_millis(30)).await;
        s.declare("app=service|Ima");
        tx.send(Event::FileWriting(db.clone())).expect("send");
        sleep(Duration::from_millis(30)).await;
        assert_eq!(s.passes(), ["start"], "no pass while it is written");
        s.declare("app=service|Image|img:2\n");
        tx.send(Event::FileWriting(db.clone())).expect("send");
        let closed = Instant::now();
        tx.send(Event::FilesChanged(db.clone())).expect("send");
        let took = nth_pass_after(&s, 2, closed).await;
        assert!(took <= Duration::from_millis(5), "at its close: {took:?}");
        assert_eq!(s.image("app"), "img:2");
        // A writer that never says it is done: the quiet time.
        sleep(Duration::from_secs(1)).await;
        s.declare("app=service|Image|img:3\n");
        let written = Instant::now();
        tx.send(Event::FileWriting(db.clone())).expect("send");
        let took = nth_pass_after(&s, 3, written).await;
        assert!(
            took >= Duration::from_millis(100) && took <= Duration::from_millis(105),
            "{took:?}"
        );
        assert_eq!(s.image("app"), "img:3");
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_schedule_wakes_the_loop_at_its_instant_and_not_before() {
    let s = Sandbox::new(&format!(
        "app=service|Image|{IMAGE}|StopSchedule|0 10 * * *|StartSchedule|0 11 * * *\n"
    ));
    // 10:00:30 local: stopped since 10:00, started at 11:00.
    let wall = chrono::Local
        .with_ymd_and_hms(2026, 3, 2, 10, 0, 30)
        .single()
        .map(SystemTime::from)
        .expect("a local time");
    let (daemon, _tx) = s.daemon(wall);
    let (stop, stopped) = oneshot::channel();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        assert_eq!(s.passes(), ["start"]);
        assert!(!s.running("app"), "stopped by its schedule");
        // 11:00:00 is 3570 s after the start; nothing runs before it.
        sleep(Duration::from_millis(3_570_000 - 1_000 - 10)).await;
        assert_eq!(s.passes(), ["start"], "no pass before the schedule");
        assert!(!s.running("app"));
        sleep(Duration::from_millis(100)).await;
        assert_eq!(s.passes(), ["start", "schedule"]);
        assert!(s.running("app"), "started at 11:00");
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_engine_is_retried_with_growing_intervals_then_converges() {
    let s = Sandbox::new(&format!("app=service|Image|{IMAGE}\n"));
    s.connect.refuse.store(true, Ordering::SeqCst);
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(95)).await;
        let attempts = s.connect.attempts.lock().expect("attempts").clone();
        let gaps: Vec<u64> = attempts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis() as u64)
            .collect();
        assert_eq!(
            gaps,
            [1000, 2000, 4000, 8000, 16000, 30000, 30000],
            "1 s doubling to 30 s"
        );
        assert!(s.passes().is_empty(), "no pass ran without an engine");
        assert!(!s.running("app"));

        // Back: the next retry (at 121 s) is the pass that converges.
        s.connect.refuse.store(false, Ordering::SeqCst);
        sleep(Duration::from_secs(27)).await;
        assert_eq!(s.passes(), ["engine retry"]);
        assert!(s.running("app"));

        // Lost while connected: observe fails, and the retry starts at 1 s again.
        s.fake.fail_observe();
        tx.send(Event::Docker("die app".into())).expect("send");
        sleep(Duration::from_millis(200)).await;
        s.fake.heal();
        assert_eq!(s.passes().len(), 1, "the failed pass is not journalled");
        sleep(Duration::from_millis(1000)).await;
        assert_eq!(s.passes(), ["engine retry", "engine retry"]);
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_the_action_in_flight_finish_and_starts_nothing_new() {
    let s = Sandbox::new(&format!("old=service|Image|{IMAGE}\n"));
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    let mut asked_at = None;
    let ended = drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        assert!(s.running("old"));
        // `old` is to stop (5 s), then `new` to be made: a wave later.
        s.fake.slow_stop(Duration::from_secs(5));
        s.declare(&format!(
            "old=service|Image|{IMAGE}|status|disabled\nnew=service|Image|{IMAGE}\n"
        ));
        tx.send(Event::FilesChanged("docker_containers".into()))
            .expect("send");
        sleep(Duration::from_secs(1)).await;
        assert!(s.running("old"), "the stop is in flight");
        asked_at = Some(Instant::now());
        let _ = stop.send(());
    })
    .await;
    let asked_at = asked_at.expect("shutdown sent");
    let waited = ended - asked_at;
    assert!(
        waited >= Duration::from_millis(3800) && waited < Duration::from_secs(5),
        "returned when the stop ended: {waited:?}"
    );
    assert!(!s.running("old"), "the stop finished");
    assert!(s.fake.container("new").is_none(), "nothing new started");
    assert!(!s.fake.actions().iter().any(|a| a.starts_with("create new")));
    let state = State::open(&s.config.state_dir).expect("state");
    let old = state.history(Some("old"), 10).expect("history");
    assert_eq!(old[0].action, "stop");
    assert_eq!(old[0].result, "ok", "the stop is journalled as done");
    // Journalled as not started, never asked of the engine.
    let new = state.history(Some("new"), 10).expect("history");
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0].result, "failed");
    assert!(new[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("shutting down")));
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_no_longer_than_the_grace_period() {
    let s = Sandbox::new(&format!("old=service|Image|{IMAGE}\n"));
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    let mut asked_at = None;
    let ended = drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        s.fake.slow_stop(Duration::from_secs(600));
        s.declare(&format!("old=service|Image|{IMAGE}|status|disabled\n"));
        tx.send(Event::FilesChanged("docker_containers".into()))
            .expect("send");
        sleep(Duration::from_secs(1)).await;
        asked_at = Some(Instant::now());
        let _ = stop.send(());
    })
    .await;
    let waited = ended - asked_at.expect("shutdown sent");
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_100),
        "stop_grace_seconds = 10: {waited:?}"
    );
    let state = State::open(&s.config.state_dir).expect("state");
    let old = state.history(Some("old"), 10).expect("history");
    assert_eq!(
        (old[0].action.as_str(), old[0].result.as_str()),
        ("stop", "started"),
        "cut off: the next start marks it interrupted"
    );
}

#[tokio::test(start_paused = true)]
async fn templates_render_from_the_pass_snapshot_while_the_engine_is_down() {
    let s = Sandbox::new(&format!("app=service|Image|{IMAGE}\n"));
    let fragment = s.dir.path().join("templates/etc/app.conf/10app");
    std::fs::create_dir_all(fragment.parent().expect("folder")).expect("folder");
    std::fs::write(
        &fragment,
        "{% for c in containers %}{{ c.name }}{% endfor %}\n",
    )
    .expect("fragment");
    s.connect.refuse.store(true, Ordering::SeqCst);
    let (daemon, _tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    drive(daemon, stopped, async {
        sleep(Duration::from_millis(500)).await;
        assert!(s.passes().is_empty(), "no engine, no pass");
        let written = std::fs::read_to_string(s.dir.path().join("output/etc/app.conf"));
        assert_eq!(written.expect("written").as_str(), "app\n");
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_mass_removal_confirmation_does_not_outlive_the_pass_it_was_for() {
    let s = Sandbox::new(&format!(
        "a=service|Image|{IMAGE}\nb=service|Image|{IMAGE}\n"
    ));
    let (daemon, _tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        let _ = stop.send(());
    })
    .await;
    assert!(s.running("a") && s.running("b"));
    // Every record gone: held until an admin confirms. berthd starts
    // again while the engine is away, and the admin confirms then: that
    // pass cannot even connect.
    s.declare("");
    s.connect.refuse.store(true, Ordering::SeqCst);
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    drive(daemon, stopped, async {
        sleep(Duration::from_millis(200)).await;
        let (reply, answer) = oneshot::channel();
        tx.send(Event::Pass {
            trigger: "api apply".into(),
            allow_mass_removal: true,
            reply,
        })
        .expect("send");
        let answered = answer.await.expect("an answer");
        assert!(answered.is_err(), "the confirmed pass did not run");
        // Back: the pass that follows, nobody confirmed.
        s.connect.refuse.store(false, Ordering::SeqCst);
        sleep(Duration::from_secs(40)).await;
        assert_eq!(s.passes(), ["start", "engine retry"]);
        assert!(
            s.fake.container("a").is_some() && s.fake.container("b").is_some(),
            "the removal is still held: {:?}",
            s.fake.actions()
        );
        let _ = stop.send(());
    })
    .await;
}

/// Pulls run off the loop: the pass that wants one goes on (other records
/// are applied, later passes are not held up), the pull's end makes the
/// next pass, and a failed pull is retried after its back-off, not at
/// every pass.
#[tokio::test(start_paused = true)]
async fn pulls_run_off_the_loop_and_their_end_makes_the_next_pass() {
    let s = Sandbox::new(&format!(
        "app=service|Image|reg.example/app:1\n\
         bad=service|Image|reg.example/bad:1\n\
         other=service|Image|{IMAGE}\n"
    ));
    s.fake.publish("reg.example/app:1", "sha256:app1");
    s.fake.publish("reg.example/bad:1", "sha256:bad1");
    s.fake
        .fail(crate::engine::fake::Op::Pull, "reg.example/bad:1");
    s.fake.slow_pull(Duration::from_secs(30));
    let (daemon, tx) = s.daemon(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    drive(daemon, stopped, async {
        sleep(Duration::from_secs(1)).await;
        assert_eq!(s.passes(), ["start"]);
        assert!(s.running("other"), "nothing else waits for the pulls");
        assert!(s.fake.container("app").is_none());
        // A pass while the pulls run is not held up by them.
        let sent = Instant::now();
        tx.send(Event::Docker("die other".into())).expect("send");
        let took = nth_pass_after(&s, 2, sent).await;
        assert!(took <= Duration::from_millis(5), "{took:?}");
        // The pulls end at 30 s: each end makes a pass.
        sleep(Duration::from_secs(30)).await;
        assert_eq!(
            s.fake.pulled().len(),
            2,
            "each pulled once, however many passes wanted it: {:?}",
            s.fake.pulled()
        );
        let passes = s.passes();
        assert!(
            passes.iter().any(|p| p == "pulled reg.example/app:1"),
            "{passes:?}"
        );
        assert!(passes
            .iter()
            .any(|p| p == "pull of reg.example/bad:1 failed"));
        assert!(s.running("app"), "created once its image came");
        assert!(s.fake.container("bad").is_none());
        // Passes during the back-off do not pull again.
        let before = s.fake.pulled().len();
        tx.send(Event::Docker("die other".into())).expect("send");
        sleep(Duration::from_secs(2)).await;
        assert_eq!(s.fake.pulled().len(), before, "not hammered");
        // After it (10 s), a pass comes by itself and tries again.
        s.fake.heal();
        sleep(Duration::from_secs(50)).await;
        assert!(s.running("bad"), "{:?}", s.passes());
        let _ = stop.send(());
    })
    .await;
}
