//! berthd: [`run`] wires the outside (config, state.db, folder watch, API,
//! signals, build workers, the registry watch task) to a [`Daemon`], the
//! main loop. The loop runs one
//! pass at a time; each pass has one [`Trigger`]: an [`Event`] (files,
//! Docker, SIGHUP, an API request) or a timer it computed (resync, a
//! schedule or back-off end, an engine retry). Events only make the next
//! full pass come sooner; a pass runs at least every `resync_seconds`.
//!
//! Bursts are gathered on the leading edge: when the loop has been quiet
//! for [`QUIET`], the first event starts a pass at once (unless a file is
//! still being written in place: then its writer's close does); what comes
//! during that pass or in the [`QUIET`] after it is gathered into the next
//! one (quiet for [`QUIET`], at most [`MAX_DELAY`] after the first of it).
//!
//! The loop is generic over the [`Engine`] and how it connects
//! ([`connect::Connect`]), and reads the wall clock through a [`WallClock`],
//! so its tests (`tests.rs`) drive it in-process on a fake engine and
//! tokio's paused time.

pub mod args;
mod backend;
pub mod connect;
mod engine_link;
pub mod systemd;
mod tcp_api;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::config::{Config, ConfigError};
use crate::db::Snapshot;
use crate::engine::{DockerEngine, Engine};
use crate::reconcile::{self, PassError, PassInput, PassReport};
use crate::state::{State, StateError};
use connect::{Connect, DockerConnect};
use engine_link::EngineLink;

/// The loop is quiet this long after its last pass ended; the first event
/// after that starts a pass at once. Events sooner than that are gathered
/// until this long passes with none, so a burst of edits costs a handful of
/// passes, not one per edit.
const QUIET: Duration = Duration::from_millis(100);
/// ...but never longer than this after the first event gathered.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// How often old journal rows, events and builds are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// The newest rows of each kind always kept, however old.
const PRUNE_KEEP: usize = 1000;
/// A schedule event is due at its second; this slack makes sure the pass
/// evaluates the schedule after it, not a hair before.
const SCHEDULE_SLACK: Duration = Duration::from_millis(20);

/// What a pass asked for through [`Event::Pass`] is answered with. The
/// error is shared: one pass answers every request gathered into it.
pub type PassReply = Result<PassReport, Arc<PassError>>;

/// Everything from outside the loop that can make berthd act.
#[derive(Debug)]
pub enum Event {
    /// A file in the db or template folders is whole in its new state: a
    /// file renamed into place (how `berth db` writes), closed by its
    /// writer, removed, or its mode changed.
    FilesChanged(String),
    /// A file there is being written in place or was moved away (created,
    /// written to, renamed elsewhere): its writer may not be done, so what
    /// a pass read now could be cut short.
    FileWriting(String),
    /// A managed container changed in the engine (`die app`), or the event
    /// stream came back after the engine was away.
    Docker(String),
    /// SIGHUP: re-read the config and everything else.
    Reload,
    /// A pull ended (`pulled nginx:1`, `pull of nginx:1 failed`): the
    /// records waiting for it go on, or fail, at the next pass.
    PullDone(String),
    /// A pass asked for (`POST /v1/apply`, a console start/stop, a stage
    /// of a signalled event): run one soon and answer with its report.
    Pass {
        trigger: String,
        /// `berth apply --allow-mass-removal`.
        allow_mass_removal: bool,
        reply: oneshot::Sender<PassReply>,
    },
}

/// Why a pass runs. Its words are what the journal and the log say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// berthd started.
    Start,
    FilesChanged(String),
    Docker(String),
    /// SIGHUP.
    Reload,
    /// Asked for through the API; the asker's words (`api apply`,
    /// `berth start app`, `event pre-backup`).
    Api(String),
    /// The periodic full pass.
    Resync,
    /// A schedule event, or the end of a crash loop's back-off.
    Schedule,
    /// The engine was unreachable and its back-off ended.
    EngineRetry,
    /// A pull ended; its words.
    PullDone(String),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Start => f.write_str("start"),
            Trigger::FilesChanged(what) => write!(f, "file changed: {what}"),
            Trigger::Docker(what) => write!(f, "docker: {what}"),
            Trigger::Reload => f.write_str("SIGHUP"),
            Trigger::Api(words) => f.write_str(words),
            Trigger::Resync => f.write_str("resync"),
            Trigger::Schedule => f.write_str("schedule"),
            Trigger::EngineRetry => f.write_str("engine retry"),
            Trigger::PullDone(what) => f.write_str(what),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
}

/// What the loop shares with the API and the watchers.
pub struct Shared<E> {
    pub config: RwLock<Config>,
    pub engine: RwLock<Option<Arc<E>>>,
    pub events: mpsc::UnboundedSender<Event>,
    pub builds: std::sync::OnceLock<crate::images::worker::BuildPool>,
    /// The pulls passes want, run off the loop; the API's plan and status
    /// see what they did.
    pub pulls: crate::pulls::Puller,
    /// Held by a registry watch round (the timer's or an API request's):
    /// one at a time, so no reference is asked twice at once.
    pub watch_round: tokio::sync::Mutex<()>,
}

impl<E> Shared<E> {
    pub fn new(config: Config, events: mpsc::UnboundedSender<Event>) -> Self {
        Shared {
            pulls: crate::pulls::Puller::new(config.pull_concurrency),
            config: RwLock::new(config),
            engine: RwLock::new(None),
            events,
            builds: std::sync::OnceLock::new(),
            watch_round: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> Config {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn engine(&self) -> Option<Arc<E>> {
        match self.engine.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_engine(&self, engine: Option<Arc<E>>) {
        match self.engine.write() {
            Ok(mut slot) => *slot = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }

    fn set_config(&self, config: Config) {
        match self.config.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }
}

/// The wall clock passes plan at (schedules are wall-clock times). berthd
/// reads the system's; tests make one that follows tokio's paused time.
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

pub fn system_clock() -> WallClock {
    Arc::new(SystemTime::now)
}

/// Runs berthd until `shutdown` completes: then the action in flight
/// finishes (within `stop_grace_seconds`), no new one starts, and it returns.
pub async fn run(
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let config = Config::locate(config_path.as_deref())?;
    raise_file_limit();
    let mut state = State::open(&config.state_dir)?;
    match state.mark_interrupted() {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            "{n} action(s) were cut off when berthd last stopped; this start finishes the job"
        ),
        Err(e) => tracing::warn!("journal: {e}"),
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::<DockerEngine>::new(config.clone(), tx.clone()));
    start_builds(&shared, &mut state);
    let registry_watch = spawn_registry_watch(shared.clone());
    let watcher = watch::FolderWatch::start(&config, tx.clone())?;
    let (api_stop_tx, api_stop_rx) = oneshot::channel::<()>();
    // Bound before the first pass, so a second berthd fails at start.
    let socket = crate::api::bind(&config.api_socket).await?;
    let backend = Arc::new(backend::DaemonBackend {
        shared: shared.clone(),
    });
    let mut tcp_api = tcp_api::TcpApi::new(backend.clone());
    tcp_api.configure(&config);
    let api_task = tokio::spawn(async move {
        let stopped = async move {
            let _ = api_stop_rx.await;
        };
        if let Err(e) = crate::api::serve(socket, backend, stopped).await {
            tracing::error!("API: {e}");
        }
    });
    systemd::spawn_signal_relay(tx);
    // Fed from its own task: a long pass or event action (a backup script)
    // must not make systemd kill berthd mid-action.
    let watchdog = systemd::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                systemd::notify_watchdog();
            }
        })
    });

    let mut daemon = Daemon::new(config, state, shared, rx, DockerConnect, system_clock());
    daemon.surroundings = Some(Surroundings { watcher, tcp_api });
    daemon.run_until(shutdown).await;

    systemd::notify_stopping();
    registry_watch.abort();
    if let Some(task) = watchdog {
        task.abort();
    }
    let _ = api_stop_tx.send(());
    if let Some(s) = daemon.surroundings.as_mut() {
        s.tcp_api.shutdown();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), api_task).await;
    // Event actions and reload commands still running are not waited for.
    crate::command::kill_all();
    tracing::info!("berthd stopped");
    Ok(())
}

/// What surrounds the loop in berthd (not in its tests): both re-read on
/// SIGHUP.
struct Surroundings<E> {
    watcher: watch::FolderWatch,
    tcp_api: tcp_api::TcpApi<E>,
}

/// When the loop next wakes by itself, apart from the engine retry (which
/// the [`EngineLink`] keeps).
struct Timers {
    resync: Instant,
    /// The next schedule event or end of a crash loop's back-off.
    schedule: Option<Instant>,
    /// The next prune of state.db (checked after a pass: not a pass itself).
    prune: Instant,
}

/// The main loop and its state. See the module documentation.
pub struct Daemon<E: Engine + 'static, C: Connect<E>> {
    config: Config,
    state: State,
    shared: Arc<Shared<E>>,
    events: mpsc::UnboundedReceiver<Event>,
    link: EngineLink<E, C>,
    clock: WallClock,
    surroundings: Option<Surroundings<E>>,
    /// Set when shutdown begins: the pass in flight starts nothing new.
    stop: Arc<AtomicBool>,
    said: Said,
    /// Requests the next pass answers.
    waiting: Vec<oneshot::Sender<PassReply>>,
    /// An admin's confirmation, for the next pass only.
    allow_mass_removal: bool,
    due: Option<Trigger>,
    /// QUIET after the last pass ended: from then on, an event starts a
    /// pass at once.
    quiet_from: Instant,
    timers: Timers,
    ready_sent: bool,
    /// Each recipe's inputs as last read, against its folder's fingerprint.
    recipe_inputs: crate::images::inputs::InputsMemo,
}

impl<E: Engine + 'static, C: Connect<E>> Daemon<E, C> {
    /// A loop whose first pass is due at once (trigger `start`).
    pub fn new(
        config: Config,
        state: State,
        shared: Arc<Shared<E>>,
        events: mpsc::UnboundedReceiver<Event>,
        connector: C,
        clock: WallClock,
    ) -> Self {
        let now = Instant::now();
        Daemon {
            timers: Timers {
                resync: now + Duration::from_secs(config.resync_seconds),
                schedule: None,
                prune: now,
            },
            config,
            state,
            link: EngineLink::new(shared.clone(), connector),
            shared,
            events,
            clock,
            surroundings: None,
            stop: Arc::new(AtomicBool::new(false)),
            said: Said::default(),
            waiting: Vec::new(),
            allow_mass_removal: false,
            due: Some(Trigger::Start),
            quiet_from: now,
            ready_sent: false,
            recipe_inputs: Default::default(),
        }
    }

    /// Runs passes until `shutdown` completes (the loop's own `Shared`
    /// keeps a sender, so the channel never closes under it). A pass in flight at shutdown finishes its actions in flight
    /// (waited for at most `stop_grace_seconds`) and starts nothing new.
    pub async fn run_until(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Some(trigger) = self.due.take() {
                let stop = self.stop.clone();
                let grace = Duration::from_secs(u64::from(self.config.stop_grace_seconds));
                let finished = {
                    let pass = self.pass(trigger);
                    tokio::pin!(pass);
                    tokio::select! {
                        () = &mut pass => true,
                        () = &mut shutdown => {
                            // Finish what is in flight, start nothing new;
                            // the engine calls are never cut half-way.
                            stop.store(true, Ordering::SeqCst);
                            tracing::info!("stopping: finishing the action in flight");
                            // No longer than a container gets to stop: what
                            // the engine was asked to do, it finishes alone.
                            let _ = tokio::time::timeout(grace, &mut pass).await;
                            false
                        }
                    }
                };
                if !finished {
                    return;
                }
                // Events sent during the pass wait in the channel; they
                // and what follows within QUIET go to the next pass.
                self.quiet_from = Instant::now() + QUIET;
            }
            // Sleep until the next thing due: no polling for schedules.
            let (wake, timer) = self.next_timer();
            let event = tokio::select! {
                () = &mut shutdown => return,
                event = self.events.recv() => event,
                () = sleep_until(wake) => {
                    self.due = Some(timer);
                    continue;
                }
            };
            let Some(event) = event else { return };
            self.gather(event).await;
        }
    }

    /// The timer that fires first, as the trigger it makes; on a tie the
    /// engine retry, then the schedule, then the resync.
    fn next_timer(&self) -> (Instant, Trigger) {
        [
            self.link.retry_at().map(|t| (t, 0, Trigger::EngineRetry)),
            self.timers.schedule.map(|t| (t, 1, Trigger::Schedule)),
            Some((self.timers.resync, 2, Trigger::Resync)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(t, rank, _)| (*t, *rank))
        .map(|(t, _, trigger)| (t, trigger))
        .unwrap_or((self.timers.resync, Trigger::Resync))
    }

    /// Decides when the pass `first` asks for starts, taking what else
    /// comes until then; the pass's trigger is the latest event's.
    ///
    /// After quiet, the first event starts the pass at once. That is safe
    /// for the files because no pass reads a file mid-write. `berth db`
    /// writes a temp file, whose own events the watch ignores, and renames
    /// it into place: the first event for the db's name comes after the
    /// rename, and the pass reads the new file whole. A file written in
    /// place (nano, `cat >`, an editor that truncates) is told as
    /// [`Event::FileWriting`] until its writer closes it; read then, it
    /// could be empty or cut at a write (records missing: their containers
    /// removed, templates rendered without them), so the pass waits until
    /// every such file is closed or renamed into place, or for [`QUIET`]
    /// with no event (a writer that never says it is done). A pass that
    /// starts before a change lands (another tool's temp file, closed
    /// before its rename) reads the old file whole, and the change's own
    /// event makes another pass: each pass reads everything again, so the
    /// loop converges.
    ///
    /// When the last pass ended less than [`QUIET`] ago, events are
    /// gathered until [`QUIET`] passes with none, at most [`MAX_DELAY`]
    /// after `first`: so a burst costs its first pass, then at most one
    /// pass per [`MAX_DELAY`] while it lasts, and one after it.
    async fn gather(&mut self, first: Event) {
        let began = Instant::now();
        let leading = began >= self.quiet_from;
        // Files being written in place, on the leading edge only: later
        // passes wait for quiet anyway.
        let mut writing = HashSet::new();
        let mut trigger = self.take(first, &mut writing);
        while !(leading && writing.is_empty()) {
            let quiet_until = (Instant::now() + QUIET).min(began + MAX_DELAY);
            let more = tokio::select! {
                more = self.events.recv() => more,
                () = sleep_until(quiet_until) => None,
            };
            let Some(event) = more else { break };
            trigger = self.take(event, &mut writing);
        }
        self.due = Some(trigger);
    }

    /// Applies one event to the loop's state, noting in `writing` the files
    /// written in place and not yet closed; returns the trigger it makes.
    fn take(&mut self, event: Event, writing: &mut HashSet<String>) -> Trigger {
        match event {
            Event::FilesChanged(what) => {
                writing.remove(&what);
                Trigger::FilesChanged(what)
            }
            Event::FileWriting(what) => {
                writing.insert(what.clone());
                Trigger::FilesChanged(what)
            }
            Event::Docker(what) => Trigger::Docker(what),
            Event::PullDone(what) => Trigger::PullDone(what),
            Event::Pass {
                trigger,
                allow_mass_removal,
                reply,
            } => {
                self.waiting.push(reply);
                self.allow_mass_removal |= allow_mass_removal;
                Trigger::Api(trigger)
            }
            Event::Reload => {
                self.reload();
                Trigger::Reload
            }
        }
    }

    fn reload(&mut self) {
        match Config::locate(self.config.source.as_deref()) {
            Ok(new) => {
                if new != self.config {
                    tracing::info!("configuration reloaded");
                    if let Some(s) = self.surroundings.as_mut() {
                        if let Err(e) = s.watcher.rewatch(&new) {
                            tracing::error!("{e}");
                        }
                    }
                    self.shared.set_config(new.clone());
                    self.config = new;
                }
            }
            Err(e) => tracing::error!("SIGHUP: keeping the old configuration: {e}"),
        }
        // The credentials file may have changed alone.
        if let Some(s) = self.surroundings.as_mut() {
            s.tcp_api.configure(&self.config);
        }
    }

    /// One pass and what follows it: the answers to the requests it
    /// served, the image lineage check, the templates, the timers. The dbs
    /// are read once, into the snapshot all of them use.
    async fn pass(&mut self, trigger: Trigger) {
        let seen_at = crate::state::timestamp(std::time::SystemTime::now());
        let snapshot = Arc::new(Snapshot::read(&self.config.db_dir));
        let outcome = self
            .reconcile(&snapshot, &trigger.to_string())
            .await
            .map_err(Arc::new);
        for reply in self.waiting.drain(..) {
            let _ = reply.send(outcome.clone());
        }
        // Once berthd is stopping, nothing new starts: no lineage check (it
        // may run the notification command), no templates (reloads). The
        // next start's first pass does both.
        let stopping = self.stop.load(Ordering::SeqCst);
        let queued = match &outcome {
            Ok(report) if !stopping => self.check_lineage(&snapshot, report, &seen_at),
            _ => false,
        };
        // The workers sleep with no timer of their own: woken for what
        // this pass queued, and by the resync, so a request that reached
        // state.db without a wake (another process) still runs within a
        // resync.
        if queued || trigger == Trigger::Resync {
            if let Some(pool) = self.shared.builds.get() {
                pool.wake();
            }
        }
        // Templates need only the files, not the engine: rendered after
        // every pass, even one the engine's absence cut short.
        if !stopping {
            self.render_templates(snapshot).await;
        }
        let now = Instant::now();
        if now >= self.timers.prune {
            self.timers.prune = now + PRUNE_EVERY;
            spawn_prune(&self.config);
        }
        // Ready once the first pass has ended, whatever it met: the API
        // serves, and a pass the engine's absence cut short is retried. A
        // READY held for the engine would fail the unit at its start timeout
        // (and the package's install with it) when dockerd is late or down;
        // `systemctl status` says how the last pass went instead.
        systemd::notify_status(&match &outcome {
            Ok(_) => "last pass: done".to_string(),
            Err(e) => format!("last pass failed: {e}"),
        });
        if !self.ready_sent {
            systemd::notify_ready();
            self.ready_sent = true;
        }
        self.timers.resync = now + Duration::from_secs(self.config.resync_seconds);
        // The next schedule event, the end of a crash loop's back-off or
        // the next look at a rollout on probation (the plan's next_retry),
        // whichever comes first.
        let wall = (self.clock)();
        self.timers.schedule = outcome
            .as_ref()
            .ok()
            .and_then(|r| {
                let retry = r.plan.next_retry.map(SystemTime::from);
                r.next_scheduled.into_iter().chain(retry).min()
            })
            .map(|t| now + t.duration_since(wall).unwrap_or_default() + SCHEDULE_SLACK);
    }

    async fn reconcile(
        &mut self,
        snapshot: &Snapshot,
        trigger: &str,
    ) -> Result<PassReport, PassError> {
        // An admin's confirmation is for the pass it asked for: taken before
        // connecting, so a pass the engine's absence cuts short does not
        // leave it armed for a later one nobody watches.
        let allow_mass_removal = std::mem::take(&mut self.allow_mass_removal);
        let engine = self.link.engine(&self.config).await?;
        let input = PassInput {
            snapshot,
            trigger,
            at: (self.clock)(),
            allow_mass_removal,
        };
        let pulls = self.shared.pulls.states();
        let result = reconcile::run_pass_with_pulls(
            &self.config,
            &*engine,
            Some(&self.state),
            input,
            &pulls,
            crate::apply::HealthGate::Look,
            &self.stop,
            |o: &crate::apply::Outcome| match &o.error {
                None => {
                    tracing::info!(record = %o.record, action = o.kind.as_str(), "{}", o.reason)
                }
                Some(e) => {
                    tracing::error!(record = %o.record, action = o.kind.as_str(), "failed: {e}")
                }
            },
        )
        .await;
        match &result {
            Ok(report) => {
                self.link.healthy();
                if !self.stop.load(Ordering::SeqCst) {
                    self.start_pulls(engine, &report.plan.pulls);
                }
                // Said once, not at every pass: a typo logged every minute
                // buries everything else.
                let current: Vec<(String, String)> = report
                    .warnings
                    .iter()
                    .map(|w| (String::new(), w.clone()))
                    .chain(
                        report
                            .plan
                            .problems
                            .iter()
                            .map(|p| (p.record.clone(), format!("not applied: {}", p.message))),
                    )
                    .collect();
                for (record, message) in self.said.fresh(current) {
                    if record.is_empty() {
                        tracing::warn!("{message}");
                    } else {
                        tracing::warn!(record = %record, "{message}");
                    }
                }
            }
            Err(PassError::Engine(e)) => self.link.lost(e),
            Err(e) => {
                // A missing or unreadable db: said once, retried every pass.
                let said = self
                    .said
                    .fresh(vec![(String::new(), format!("pass not run: {e}"))]);
                for (_, message) in said {
                    tracing::error!("{message}");
                }
            }
        }
        result
    }

    /// Starts what the pass wants pulled, off the loop (pulls already
    /// running are joined, not repeated); each end is logged and makes the
    /// next pass come sooner.
    fn start_pulls(&self, engine: Arc<E>, wants: &[crate::plan::pulls::PullWant]) {
        if wants.is_empty() {
            return;
        }
        for want in wants {
            tracing::info!(records = %want.records.join(","), "pulling {}", want.reference);
        }
        let events = self.shared.events.clone();
        let on_done = move |done: crate::pulls::Finished| {
            let records = done.records.join(",");
            let words = match &done.result {
                Ok(id) => {
                    tracing::info!(records = %records, "pulled {} ({})", done.reference, crate::plan::short(id));
                    format!("pulled {}", done.reference)
                }
                Err(e) => {
                    tracing::warn!(records = %records, "pull of {} failed: {e}", done.reference);
                    format!("pull of {} failed", done.reference)
                }
            };
            let _ = events.send(Event::PullDone(words));
        };
        let settings = crate::pulls::PullSettings::from_config(&self.config);
        self.shared
            .pulls
            .start(engine, wants, &settings, (self.clock)(), on_done);
    }

    /// Dynamic inheritance after each pass: images whose base moved are
    /// queued (AutoRebuild) or marked outdated, with the notification
    /// command run off the loop. True when a build was queued. `seen_at`:
    /// when the pass began reading the dbs and the engine.
    fn check_lineage(&mut self, snapshot: &Snapshot, report: &PassReport, seen_at: &str) -> bool {
        let images = match crate::images::declared(snapshot) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("docker_images: {e}");
                return false;
            }
        };
        if let Some(s) = self.surroundings.as_mut() {
            s.watcher.watch_recipes(
                images
                    .specs
                    .values()
                    .filter_map(|spec| match &spec.source {
                        crate::images::Source::Recipe { path, .. } => Some(path.clone()),
                        _ => None,
                    })
                    .collect(),
            );
        }
        self.recipe_inputs
            .retain(|name| images.specs.contains_key(name));
        // The configuration db a recipe renders with, as this pass read it:
        // unreadable, no recipe's inputs are judged (an empty one would
        // render `hostname` as "" and look like a change).
        let configuration = snapshot.configuration();
        if let Err(e) = &configuration {
            if images
                .specs
                .values()
                .any(|s| matches!(s.source, crate::images::Source::Recipe { .. }))
            {
                tracing::warn!("recipe inputs not checked: {e}");
            }
        }
        let memo = &mut self.recipe_inputs;
        let mut inputs = |spec: &crate::images::ImageSpec| match &configuration {
            Ok(c) => memo.get(spec, c),
            Err(_) => None,
        };
        match crate::images::check_lineage(
            &mut self.state,
            &images,
            &report.image_tags,
            &mut inputs,
            seen_at,
        ) {
            Ok(found) => {
                for (image, why) in &found.queued {
                    tracing::info!(image = %image, "rebuild queued: {why}");
                }
                for image in &found.outdated {
                    tracing::warn!(image = %image, "outdated: its base or its recipe changed and AutoRebuild is off");
                    // Not awaited: the command may take its time, and
                    // berthd's stop ends it.
                    let (config, image) = (self.config.clone(), image.clone());
                    tokio::task::spawn_blocking(move || {
                        crate::images::notify(&config, &image, "outdated")
                    });
                }
                !found.queued.is_empty()
            }
            Err(e) => {
                tracing::warn!("image lineage: {e}");
                false
            }
        }
    }

    /// Every pass re-renders the templates from its snapshot; only files
    /// whose bytes changed are written, and each reload command runs once.
    /// On a blocking thread (a reload command may take its time); awaited
    /// inside the pass, so berthd's stop waits for it no longer than for
    /// the pass.
    async fn render_templates(&mut self, snapshot: Arc<Snapshot>) {
        let cfg = self.config.clone();
        let rendered =
            tokio::task::spawn_blocking(move || crate::templates::run(&cfg, &snapshot, true));
        let report = match rendered.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("templates: {e}");
                return;
            }
        };
        for path in &report.changed {
            tracing::info!(file = %path.display(), "template written");
        }
        for path in &report.removed {
            tracing::info!(file = %path.display(), "template output removed (its template was deleted)");
        }
        for (cmd, result) in &report.reloads {
            match result {
                Ok(()) => tracing::info!("ran {cmd}"),
                Err(e) => tracing::error!("reload failed: {cmd}: {e}"),
            }
        }
        let current: Vec<(String, String)> = report
            .failed
            .iter()
            .map(|(p, e)| {
                (
                    String::new(),
                    format!("template {} not written: {e}", p.display()),
                )
            })
            .chain(
                report
                    .warnings
                    .iter()
                    .map(|w| (String::new(), format!("template: {w}"))),
            )
            .collect();
        for (_, message) in self.said.fresh_templates(current) {
            tracing::warn!("{message}");
        }
    }
}

/// The registry watch sleeps at most this long, so references that became
/// watched (a record edited) are seen within it.
const WATCH_MAX_SLEEP: Duration = Duration::from_secs(3600);
/// ...and at least this long between rounds, whatever a round left due.
const WATCH_MIN_SLEEP: Duration = Duration::from_secs(60);
/// How often the watch looks whether the loop has connected the engine
/// (a read of a lock: the first round starts soon after the first pass).
const WATCH_NO_ENGINE: Duration = Duration::from_secs(1);

/// Watching registries, off the loop: sleeps until the next watched
/// reference is due (`registry_poll_seconds` after its last check, or a
/// registry's `Retry-After`), runs a round, and asks for a pass when it
/// pulled (`Update auto`): the pass recreates what runs the old image and
/// its lineage check queues rebuilds. A round and an API check never run
/// at once (`watch_round`).
fn spawn_registry_watch<E: Engine + 'static>(
    shared: Arc<Shared<E>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut said = String::new();
        let mut say = |message: String| {
            if message != said {
                tracing::warn!("registry watch: {message}");
                said = message;
            }
        };
        loop {
            let config = shared.config();
            let Some(engine) = shared.engine() else {
                tokio::time::sleep(WATCH_NO_ENGINE).await;
                continue;
            };
            let state = match State::open(&config.state_dir) {
                Ok(s) => s,
                Err(e) => {
                    say(e.to_string());
                    tokio::time::sleep(WATCH_MAX_SLEEP).await;
                    continue;
                }
            };
            let now = SystemTime::now();
            let wait = match crate::watch::next_due(&config, &state, now) {
                Ok(Some(t)) if t <= now => {
                    let _one_round = shared.watch_round.lock().await;
                    let request = crate::watch::Request::default();
                    match crate::watch::round(&config, &*engine, &state, &request).await {
                        Ok(report) => {
                            if report.pulled() {
                                let _ = shared.events.send(Event::Docker(
                                    "registry: a watched tag moved and was pulled".into(),
                                ));
                            }
                        }
                        Err(e) => say(e.to_string()),
                    }
                    WATCH_MIN_SLEEP
                }
                Ok(Some(t)) => t
                    .duration_since(now)
                    .unwrap_or_default()
                    .clamp(WATCH_MIN_SLEEP, WATCH_MAX_SLEEP),
                Ok(None) => WATCH_MAX_SLEEP,
                Err(e) => {
                    say(e.to_string());
                    WATCH_MAX_SLEEP
                }
            };
            drop(state);
            tokio::time::sleep(wait).await;
        }
    })
}

/// Prunes state.db (`journal_keep_days`) on a blocking thread, not waited
/// for: the first prune of a years-old journal may take a while.
fn spawn_prune(config: &Config) {
    let (dir, days) = (config.state_dir.clone(), config.journal_keep_days);
    tokio::task::spawn_blocking(move || {
        match State::open(&dir).and_then(|mut s| s.prune(days, PRUNE_KEEP)) {
            Ok(0) => {}
            Ok(n) => tracing::info!("state.db: pruned {n} row(s) older than {days} days"),
            Err(e) => tracing::warn!("state.db: cannot prune: {e}"),
        }
    });
}

/// The soft limit on open files up to the hard one (at most 65536): the
/// API's connection caps keep well below it, and passes never run out.
fn raise_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let wanted = hard.min(65536);
        if soft < wanted {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
                tracing::warn!("cannot raise the open-file limit to {wanted}: {e}");
            }
        }
    }
}

/// Builds cut off by the last stop are re-queued once; the pool starts.
fn start_builds(shared: &Arc<Shared<DockerEngine>>, state: &mut State) {
    match state.interrupt_running_builds() {
        Ok(cut) => {
            for b in cut {
                tracing::warn!(image = %b.image, build = b.id, "build interrupted by the last stop; queued again once");
            }
        }
        Err(e) => tracing::warn!("build queue: {e}"),
    }
    let getter = {
        let shared = shared.clone();
        Arc::new(move || shared.config())
    };
    let events = shared.events.clone();
    let on_built = Arc::new(move |image: &str, ok: bool| {
        let what = if ok { "built" } else { "failed to build" };
        let _ = events.send(Event::Docker(format!("image {image} {what}")));
    });
    let pool = crate::images::worker::BuildPool::start(getter, on_built);
    if state.has_pending_builds().unwrap_or(false) {
        pool.wake();
    }
    let _ = shared.builds.set(pool);
}

/// Warnings and problems already logged, so each is said once (and again
/// only after it went away and came back).
#[derive(Default)]
struct Said(
    std::collections::HashSet<(String, String)>,
    std::collections::HashSet<(String, String)>,
);

impl Said {
    /// Template messages are tracked apart from pass messages, so neither
    /// resets the other.
    fn fresh_templates(&mut self, current: Vec<(String, String)>) -> Vec<(String, String)> {
        let tagged = current
            .into_iter()
            .map(|(_, m)| ("templates".to_string(), m))
            .collect::<Vec<_>>();
        let new: Vec<(String, String)> = tagged
            .iter()
            .filter(|m| !self.1.contains(*m))
            .cloned()
            .collect();
        self.1 = tagged.into_iter().collect();
        new
    }

    fn fresh(&mut self, current: Vec<(String, String)>) -> Vec<(String, String)> {
        let new = current
            .iter()
            .filter(|m| !self.0.contains(*m))
            .cloned()
            .collect();
        self.0 = current.into_iter().collect();
        new
    }
}
