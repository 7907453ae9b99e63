//! berthd's main loop: one `Event` enum, one pass at a time. Files, Docker
//! events, signals and API calls only make the next full pass come sooner;
//! a pass runs at least every `resync_seconds` whatever happened.

mod backend;
mod engine_link;
pub mod systemd;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::config::{Config, ConfigError};
use crate::engine::DockerEngine;
use crate::reconcile::{self, PassError, PassReport};
use crate::state::{State, StateError};

/// After the first event of a burst, wait this long for quiet before a pass,
/// so a burst of edits costs a pass or two, not one per edit.
const QUIET: Duration = Duration::from_millis(100);
/// ...but never longer than this after the first event.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// The trigger of the periodic full pass.
const RESYNC: &str = "resync";

/// Everything that can make berthd act.
#[derive(Debug)]
pub enum Event {
    /// Something changed in the db or template folders.
    FilesChanged(String),
    /// A managed container changed in the engine (`die app`), or the event
    /// stream came back after the engine was away.
    Docker(String),
    /// SIGHUP: re-read the config and everything else.
    Reload,
    /// A pass asked for (`POST /v1/apply`, a console start/stop, a stage
    /// of a signalled event): run one soon and answer with its report.
    Pass {
        trigger: String,
        /// `berth apply --allow-mass-removal`.
        allow_mass_removal: bool,
        reply: oneshot::Sender<Result<PassReport, String>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Watch(String),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
}

/// What the loop shares with the API and the watchers.
pub struct Shared {
    pub config: RwLock<Config>,
    pub engine: RwLock<Option<Arc<DockerEngine>>>,
    pub events: mpsc::UnboundedSender<Event>,
    pub builds: std::sync::OnceLock<crate::images::worker::BuildPool>,
}

impl Shared {
    pub fn config(&self) -> Config {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn engine(&self) -> Option<Arc<DockerEngine>> {
        match self.engine.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Runs berthd until `shutdown` completes: then the action in flight
/// finishes, no new one starts, and it returns.
pub async fn run(
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let mut config = Config::locate(config_path.as_deref())?;
    raise_file_limit();
    let mut state = State::open(&config.state_dir)?;
    match state.mark_interrupted() {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            "{n} action(s) were cut off when berthd last stopped; this start finishes the job"
        ),
        Err(e) => tracing::warn!("journal: {e}"),
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        config: RwLock::new(config.clone()),
        engine: RwLock::new(None),
        events: tx.clone(),
        builds: std::sync::OnceLock::new(),
    });
    start_builds(&shared, &mut state);
    let mut watcher = watch::FolderWatch::start(&config, tx.clone()).map_err(DaemonError::Watch)?;
    let (api_stop_tx, api_stop_rx) = oneshot::channel::<()>();
    // Bound before the first pass, so a second berthd fails at start.
    let socket = crate::api::bind(&config.api_socket).await?;
    let backend = Arc::new(backend::DaemonBackend {
        shared: shared.clone(),
    });
    let mut tcp_api = TcpApi::new(backend.clone());
    tcp_api.configure(&config);
    let api_task = tokio::spawn(async move {
        let stopped = async move {
            let _ = api_stop_rx.await;
        };
        if let Err(e) = crate::api::serve(socket, backend, stopped).await {
            tracing::error!("API: {e}");
        }
    });
    systemd::spawn_signal_relay(tx.clone());

    let stop = AtomicBool::new(false);
    let mut link = engine_link::EngineLink::new(shared.clone());
    let mut due: Option<String> = Some("start".into());
    let mut replies: Vec<oneshot::Sender<Result<PassReport, String>>> = Vec::new();
    // An admin's confirmation, for the next pass only.
    let mut allow_mass_removal = false;
    let mut next_resync = Instant::now() + Duration::from_secs(config.resync_seconds);
    let mut ready_sent = false;
    let mut next_scheduled: Option<Instant> = None;
    let mut said = Said::default();
    // Pruned at start, then daily, off the loop's thread.
    let mut next_prune = Instant::now();
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
    tokio::pin!(shutdown);

    loop {
        if let Some(trigger) = due.take() {
            let outcome = {
                let allow = std::mem::take(&mut allow_mass_removal);
                let pass = one_pass(
                    &config, &state, &mut link, &mut said, &trigger, allow, &stop,
                );
                tokio::pin!(pass);
                tokio::select! {
                    outcome = &mut pass => Some(outcome),
                    () = &mut shutdown => {
                        // Finish what is in flight, start nothing new; the
                        // engine calls are never cut half-way.
                        stop.store(true, Ordering::SeqCst);
                        tracing::info!("stopping: finishing the action in flight");
                        // No longer than a container gets to stop: what the
                        // engine was asked to do, it finishes on its own.
                        let budget = Duration::from_secs(u64::from(config.stop_grace_seconds));
                        let _ = tokio::time::timeout(budget, &mut pass).await;
                        None
                    }
                }
            };
            let Some(outcome) = outcome else { break };
            for reply in replies.drain(..) {
                let _ = reply.send(
                    outcome
                        .as_ref()
                        .map(Clone::clone)
                        .map_err(ToString::to_string),
                );
            }
            let queued = match &outcome {
                Ok(report) => check_lineage(&config, &mut state, report),
                Err(_) => false,
            };
            // The workers sleep with no timer of their own: woken for what
            // this pass queued, and by the resync, so a request that reached
            // state.db without a wake (another process) still runs within a
            // resync.
            if queued || trigger == RESYNC {
                if let Some(pool) = shared.builds.get() {
                    pool.wake();
                }
            }
            // Templates need only the files, not the engine: rendered after
            // every pass, even one the engine's absence cut short.
            render_templates(&config, &mut said).await;
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_EVERY;
                spawn_prune(&config);
            }
            if outcome.is_ok() && !ready_sent {
                systemd::notify_ready();
                ready_sent = true;
            }
            next_resync = Instant::now() + Duration::from_secs(config.resync_seconds);
            // The next schedule event, or the end of a crash loop's
            // back-off, whichever comes first.
            next_scheduled = outcome
                .as_ref()
                .ok()
                .and_then(|r| {
                    let retry = r.plan.next_retry.map(std::time::SystemTime::from);
                    r.next_scheduled.into_iter().chain(retry).min()
                })
                .map(instant_of);
        }
        // Sleep until the next thing due: no polling for schedules.
        let wake = [Some(next_resync), link.retry_at(), next_scheduled]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_resync);
        tokio::select! {
            () = &mut shutdown => break,
            event = rx.recv() => {
                let Some(event) = event else { break };
                let mut trigger = handle(event, &mut replies, &mut allow_mass_removal, &mut config, &shared, &mut watcher, &mut tcp_api);
                // Gather the rest of a burst into the same pass.
                let first = Instant::now();
                loop {
                    let quiet_until = (Instant::now() + QUIET).min(first + MAX_DELAY);
                    tokio::select! {
                        more = rx.recv() => match more {
                            Some(e) => { trigger = handle(e, &mut replies, &mut allow_mass_removal, &mut config, &shared, &mut watcher, &mut tcp_api).or(trigger); }
                            None => break,
                        },
                        () = sleep_until(quiet_until) => break,
                    }
                }
                due = trigger.or(due);
            }
            () = sleep_until(wake) => {
                let now = Instant::now();
                due = Some(if link.retry_at().is_some_and(|r| r <= now) {
                    "engine retry"
                } else if next_scheduled.is_some_and(|t| t <= now) {
                    "schedule"
                } else {
                    RESYNC
                }.into());
            }
        }
    }
    systemd::notify_stopping();
    if let Some(task) = watchdog {
        task.abort();
    }
    let _ = api_stop_tx.send(());
    tcp_api.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), api_task).await;
    // Event actions and reload commands still running are not waited for.
    crate::command::kill_all();
    tracing::info!("berthd stopped");
    Ok(())
}

/// How often old journal rows, events and builds are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);
/// The newest rows of each kind always kept, however old.
const PRUNE_KEEP: usize = 1000;

/// Prunes state.db (`journal_keep_days`) on a blocking thread: the first
/// prune of a years-old journal may take a while.
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

/// Applies one event to the loop's state; returns the trigger it names.
fn handle(
    event: Event,
    replies: &mut Vec<oneshot::Sender<Result<PassReport, String>>>,
    allow_mass_removal: &mut bool,
    config: &mut Config,
    shared: &Shared,
    watcher: &mut watch::FolderWatch,
    tcp_api: &mut TcpApi,
) -> Option<String> {
    match event {
        Event::FilesChanged(what) => Some(format!("file changed: {what}")),
        Event::Docker(what) => Some(format!("docker: {what}")),
        Event::Pass {
            trigger,
            allow_mass_removal: allow,
            reply,
        } => {
            replies.push(reply);
            *allow_mass_removal |= allow;
            Some(trigger)
        }
        Event::Reload => {
            match Config::locate(config.source.as_deref()) {
                Ok(new) => {
                    if new != *config {
                        tracing::info!("configuration reloaded");
                        if let Err(e) = watcher.rewatch(&new) {
                            tracing::error!("{e}");
                        }
                        if let Ok(mut c) = shared.config.write() {
                            *c = new.clone();
                        }
                        *config = new;
                    }
                }
                Err(e) => tracing::error!("SIGHUP: keeping the old configuration: {e}"),
            }
            // The credentials file may have changed alone.
            tcp_api.configure(config);
            Some("SIGHUP".into())
        }
    }
}

async fn one_pass(
    config: &Config,
    state: &State,
    link: &mut engine_link::EngineLink,
    said: &mut Said,
    trigger: &str,
    allow_mass_removal: bool,
    stop: &AtomicBool,
) -> Result<PassReport, PassError> {
    let engine = link.engine(config).await?;
    let result = reconcile::run_pass(
        config,
        &*engine,
        Some(state),
        trigger,
        allow_mass_removal,
        stop,
        |o: &crate::apply::Outcome| match &o.error {
            None => tracing::info!(record = %o.record, action = o.kind.as_str(), "{}", o.reason),
            Some(e) => tracing::error!(record = %o.record, action = o.kind.as_str(), "failed: {e}"),
        },
    )
    .await;
    match &result {
        Ok(report) => {
            link.healthy();
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
            for (record, message) in said.fresh(current) {
                if record.is_empty() {
                    tracing::warn!("{message}");
                } else {
                    tracing::warn!(record = %record, "{message}");
                }
            }
        }
        Err(PassError::Engine(e)) => link.lost(e),
        Err(e) => {
            // A missing or unreadable db: said once, retried every pass.
            for (_, message) in said.fresh(vec![(String::new(), format!("pass not run: {e}"))]) {
                tracing::error!("{message}");
            }
        }
    }
    result
}

/// A wall-clock time as a tokio instant (past times are due now).
fn instant_of(t: std::time::SystemTime) -> Instant {
    let delay = t
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    // A schedule event is due at its second; a little slack makes sure the
    // pass evaluates the schedule after it, not a hair before.
    Instant::now() + delay + Duration::from_millis(20)
}

/// Builds cut off by the last stop are re-queued once; the pool starts.
fn start_builds(shared: &Arc<Shared>, state: &mut State) {
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

/// Dynamic inheritance after each pass: images whose base moved are queued
/// (AutoRebuild) or marked outdated, with the notification command run.
/// True when a build was queued.
fn check_lineage(config: &Config, state: &mut State, report: &PassReport) -> bool {
    let images = match crate::images::load(config) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("docker_images: {e}");
            return false;
        }
    };
    match crate::images::check_lineage(state, &images, &report.image_tags) {
        Ok(found) => {
            for (image, why) in &found.queued {
                tracing::info!(image = %image, "rebuild queued: {why}");
            }
            for image in &found.outdated {
                tracing::warn!(image = %image, "outdated: its base moved and AutoRebuild is off");
                // Off the loop's thread: the command may take its time.
                let (config, image) = (config.clone(), image.clone());
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

/// Every pass re-renders the templates; only files whose bytes changed are
/// written, and each reload command runs once.
async fn render_templates(config: &Config, said: &mut Said) {
    // Off the async threads: a reload command may take its time.
    let cfg = config.clone();
    let report = match tokio::task::spawn_blocking(move || crate::templates::run(&cfg, true)).await
    {
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
    for (_, message) in said.fresh_templates(current) {
        tracing::warn!("{message}");
    }
}

/// The API over TCP: on only when `api_listen` is set and the credentials
/// file holds an `api_token` (said, not fatal, when it does not: the
/// containers matter more than the remote API). SIGHUP re-reads both: a
/// new token takes effect at once, a new address restarts the listener.
struct TcpApi {
    backend: Arc<backend::DaemonBackend>,
    token: crate::api::SharedToken,
    listening: Option<String>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl TcpApi {
    fn new(backend: Arc<backend::DaemonBackend>) -> Self {
        TcpApi {
            backend,
            token: Arc::new(RwLock::new(None)),
            listening: None,
            stop: None,
        }
    }

    fn configure(&mut self, config: &Config) {
        let token = config.api_listen.as_ref().and_then(|listen| {
            match crate::images::credentials::load(&config.credentials_file) {
                Ok(c) => {
                    let token = c.api_token.filter(|t| !t.is_empty());
                    if token.is_none() {
                        tracing::error!(
                            "api_listen {listen}: not listening: {} has no api_token (a TCP API always needs one)",
                            config.credentials_file.display()
                        );
                    }
                    token
                }
                Err(e) => {
                    tracing::error!("api_listen {listen}: not listening: {e}");
                    None
                }
            }
        });
        let wanted = config.api_listen.clone().filter(|_| token.is_some());
        match self.token.write() {
            Ok(mut t) => *t = token,
            Err(poisoned) => *poisoned.into_inner() = token,
        }
        if wanted == self.listening {
            return;
        }
        self.shutdown();
        self.listening = wanted.clone();
        let Some(listen) = wanted else { return };
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        self.stop = Some(stop_tx);
        let (token, backend) = (self.token.clone(), self.backend.clone());
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tracing::info!("API also on tcp {listen} (token required)");
            if let Err(e) = crate::api::serve_tcp(&listen, token, backend, stopped).await {
                tracing::error!("API over TCP: {e}");
            }
        });
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}
