//! The one "ask berthd, else do it here" path. [`backend`] chooses once
//! per command: [`DaemonClient`] when berthd listens on its socket (so
//! passes never overlap), else [`LocalBackend`], which does the work in
//! this process and connects to the engine only when a request needs it.
//! Both are the API's [`Backend`], the shape berthd answers requests with.

use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use tokio::sync::OnceCell;

use crate::api::client::DaemonClient;
use crate::api::{Backend, BackendError, BuildQueued};
use crate::config::Config;
use crate::engine::DockerEngine;
use crate::plan::PlanView;
use crate::reconcile::{self, PassReport, Planned, Remembered};
use crate::state::{EventRun, JournalEntry, State};
use crate::status::{self, RecordStatus};

/// berthd's client when it listens on `api_socket`, else the local backend.
pub async fn backend(config: &Config) -> CliBackend {
    if crate::api::client::is_listening(&config.api_socket).await {
        CliBackend::Daemon(DaemonClient::new(&config.api_socket))
    } else {
        CliBackend::Local(Box::new(LocalBackend::new(config)))
    }
}

/// The backend a command chose.
pub enum CliBackend {
    Daemon(DaemonClient),
    Local(Box<LocalBackend>),
}

impl CliBackend {
    /// Whether a pass's outcome lines were already printed as its actions
    /// ended (here), or are the command's to print from the report (berthd's).
    pub fn printed_outcomes(&self) -> bool {
        matches!(self, CliBackend::Local(_))
    }
}

/// The work done in this process, as berthd would do it: passes run here
/// (with the journal when state.db can be opened), events run their
/// actions here.
pub struct LocalBackend {
    config: Config,
    engine: OnceCell<DockerEngine>,
}

impl LocalBackend {
    pub fn new(config: &Config) -> LocalBackend {
        LocalBackend {
            config: config.clone(),
            engine: OnceCell::new(),
        }
    }

    /// The engine, connected at the first request that needs it.
    async fn engine(&self) -> Result<&DockerEngine, BackendError> {
        Ok(self
            .engine
            .get_or_try_init(|| DockerEngine::connect(&self.config.docker_host))
            .await?)
    }

    /// The plan at `at` (schedules and stored events evaluated then), with
    /// what was learnt making it.
    pub async fn plan_at(&self, at: SystemTime) -> Result<Planned, BackendError> {
        let engine = self.engine().await?;
        let remembered = Remembered::read_dir(&self.config.state_dir);
        let snapshot = crate::db::Snapshot::read(&self.config.db_dir);
        Ok(reconcile::plan_now(&self.config, engine, &snapshot, remembered, at, false).await?)
    }
}

impl Backend for LocalBackend {
    async fn status(&self) -> Result<Vec<RecordStatus>, BackendError> {
        let engine = self.engine().await?;
        let state = State::open(&self.config.state_dir).ok();
        let remembered = Remembered::read(state.as_ref());
        let mut rows = status::current(&self.config, engine, remembered).await?;
        if let Some(state) = &state {
            status::add_last_errors(&mut rows, state);
            status::add_updates(&mut rows, state);
        }
        Ok(rows)
    }

    /// The warnings the daemon logs are said on stderr here.
    async fn plan(&self) -> Result<PlanView, BackendError> {
        let Planned { plan, warnings, .. } = self.plan_at(SystemTime::now()).await?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        Ok(plan.view())
    }

    async fn apply(&self, allow_mass_removal: bool) -> Result<PassReport, BackendError> {
        let engine = self.engine().await?;
        // Said as each action ends, as berthd logs them.
        let said = |o: &crate::apply::Outcome| {
            super::outcome::print(std::slice::from_ref(o));
        };
        let trigger = "berth apply";
        Ok(pass_after_pulls(
            &self.config,
            engine,
            trigger,
            allow_mass_removal,
            true,
            said,
        )
        .await?)
    }

    async fn history(
        &self,
        record: Option<String>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, BackendError> {
        Ok(State::open(&self.config.state_dir)?.history(record.as_deref(), limit)?)
    }

    async fn container(&self, name: String, run: bool) -> Result<PassReport, BackendError> {
        let (config, engine) = (&self.config, self.engine().await?);
        let pass = |trigger: String| async move {
            pass_after_pulls(config, engine, &trigger, false, false, |_| {}).await
        };
        Ok(crate::events::console(config, &name, run, pass).await?)
    }

    async fn signal(&self, name: String, args: Vec<String>) -> Result<EventRun, BackendError> {
        let (config, engine) = (&self.config, self.engine().await?);
        let pass = |trigger: String| async move {
            pass_after_pulls(config, engine, &trigger, false, false, |_| {}).await
        };
        let trigger = "berth signal-event";
        Ok(crate::events::signal(config, &name, &args, trigger, pass).await?)
    }

    async fn events(&self, limit: usize) -> Result<Vec<EventRun>, BackendError> {
        Ok(State::open(&self.config.state_dir)?.event_history(limit)?)
    }

    /// Queues the build; the command then runs the workers itself.
    async fn build(
        &self,
        name: String,
        _token: Option<String>,
        no_cache: bool,
    ) -> Result<BuildQueued, BackendError> {
        crate::api::queue_build(&self.config, name, "berth image build", no_cache)
    }

    /// Checks here; with `auto`, what was pulled is rolled out by the next
    /// pass (`berth apply`, or berthd's).
    async fn check_images(&self, names: Vec<String>) -> Result<crate::watch::Report, BackendError> {
        let engine = self.engine().await?;
        let state = State::open(&self.config.state_dir)?;
        let request = crate::watch::Request {
            names,
            on_demand: true,
        };
        Ok(crate::watch::round(&self.config, engine, &state, &request).await?)
    }
}

/// A pass run here, as `docker compose up` runs: first the pulls a plan
/// wants (waited for, at most `pull_concurrency` at once), then the pass,
/// planned with what they did, so one command pulls and applies. A failed
/// pull fails only its records (the pass says so). `say_pulls`: print a
/// line for each pull done.
async fn pass_after_pulls(
    config: &Config,
    engine: &DockerEngine,
    trigger: &str,
    allow_mass_removal: bool,
    say_pulls: bool,
    on_done: impl FnMut(&crate::apply::Outcome),
) -> Result<PassReport, reconcile::PassError> {
    // The journal is best effort here: an admin without a writable
    // state_dir can still apply.
    let state = State::open(&config.state_dir)
        .map_err(|e| eprintln!("warning: no journal: {e}"))
        .ok();
    let snapshot = crate::db::Snapshot::read(&config.db_dir);
    let puller = crate::pulls::Puller::new(config.pull_concurrency);
    let now = SystemTime::now();
    let remembered = Remembered::read(state.as_ref());
    let planned = reconcile::plan_now(
        config,
        engine,
        &snapshot,
        remembered,
        now,
        allow_mass_removal,
    )
    .await?;
    let stop = AtomicBool::new(false);
    // No later pass follows a one-shot command: wait between waves for
    // dependencies' health checks, as `docker compose up` does.
    let gate = crate::apply::HealthGate::ONE_SHOT;
    if planned.plan.pulls.is_empty() {
        // Nothing to pull: this plan is the pass's (one observe, not two).
        let state = state.as_ref();
        return reconcile::apply_planned(
            config, engine, state, trigger, planned, gate, &stop, on_done,
        )
        .await;
    }
    let wanted = planned.plan.pulls;
    let settings = crate::pulls::PullSettings::from_config(config);
    for done in puller.run(engine, &wanted, &settings, now).await {
        if let (true, Ok(id)) = (say_pulls, &done.result) {
            println!(
                "{:<14} {}: {} ({})",
                "pull",
                done.records.join(", "),
                done.reference,
                crate::plan::short(id)
            );
        }
    }
    let input = reconcile::PassInput {
        snapshot: &snapshot,
        trigger,
        at: SystemTime::now(),
        allow_mass_removal,
    };
    let pulls = puller.states();
    reconcile::run_pass_with_pulls(
        config,
        engine,
        state.as_ref(),
        input,
        &pulls,
        gate,
        &stop,
        on_done,
    )
    .await
}

impl Backend for CliBackend {
    async fn status(&self) -> Result<Vec<RecordStatus>, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.status().await,
            CliBackend::Local(b) => b.status().await,
        }
    }

    async fn plan(&self) -> Result<PlanView, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.plan().await,
            CliBackend::Local(b) => b.plan().await,
        }
    }

    async fn apply(&self, allow_mass_removal: bool) -> Result<PassReport, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.apply(allow_mass_removal).await,
            CliBackend::Local(b) => b.apply(allow_mass_removal).await,
        }
    }

    async fn history(
        &self,
        record: Option<String>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.history(record, limit).await,
            CliBackend::Local(b) => b.history(record, limit).await,
        }
    }

    async fn container(&self, name: String, run: bool) -> Result<PassReport, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.container(name, run).await,
            CliBackend::Local(b) => b.container(name, run).await,
        }
    }

    async fn signal(&self, name: String, args: Vec<String>) -> Result<EventRun, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.signal(name, args).await,
            CliBackend::Local(b) => b.signal(name, args).await,
        }
    }

    async fn events(&self, limit: usize) -> Result<Vec<EventRun>, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.events(limit).await,
            CliBackend::Local(b) => b.events(limit).await,
        }
    }

    async fn build(
        &self,
        name: String,
        token: Option<String>,
        no_cache: bool,
    ) -> Result<BuildQueued, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.build(name, token, no_cache).await,
            CliBackend::Local(b) => b.build(name, token, no_cache).await,
        }
    }

    async fn check_images(&self, names: Vec<String>) -> Result<crate::watch::Report, BackendError> {
        match self {
            CliBackend::Daemon(b) => b.check_images(names).await,
            CliBackend::Local(b) => b.check_images(names).await,
        }
    }
}
