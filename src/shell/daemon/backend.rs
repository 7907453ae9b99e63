//! The API's view of the running daemon: reads (status, plan, history) are
//! served directly; apply goes through the loop so passes never overlap.
//! Failures are [`BackendError`]s, whose kind alone decides the HTTP status.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Event, Shared};
use crate::api::{Backend, BackendError, BuildQueued};
use crate::engine::Engine;
use crate::plan::PlanView;
use crate::reconcile::{PassError, PassReport};
use crate::state::{EventRun, JournalEntry, State};
use crate::status::RecordStatus;

pub struct DaemonBackend<E> {
    pub shared: Arc<Shared<E>>,
}

impl<E: Engine + 'static> DaemonBackend<E> {
    /// Asks the loop for a pass and waits for its report (passes never
    /// overlap: only the loop runs them).
    async fn pass(
        &self,
        trigger: String,
        allow_mass_removal: bool,
    ) -> Result<PassReport, PassError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .events
            .send(Event::Pass {
                trigger,
                allow_mass_removal,
                reply,
            })
            .map_err(|_| PassError::DaemonStopping)?;
        rx.await
            .map_err(|_| PassError::DaemonStopped)?
            .map_err(PassError::Shared)
    }

    async fn pass_for_event(&self, trigger: String) -> Result<PassReport, PassError> {
        self.pass(trigger, false).await
    }

    fn engine(&self) -> Result<Arc<E>, BackendError> {
        self.shared.engine().ok_or(BackendError::NoEngine)
    }
}

impl<E: Engine + 'static> Backend for DaemonBackend<E> {
    async fn status(&self) -> Result<Vec<RecordStatus>, BackendError> {
        let config = self.shared.config();
        let engine = self.engine()?;
        let mut remembered = crate::reconcile::Remembered::read_dir(&config.state_dir);
        remembered.pulls = self.shared.pulls.states();
        let mut rows = crate::status::current(&config, &*engine, remembered).await?;
        if let Ok(state) = State::open(&config.state_dir) {
            crate::status::add_last_errors(&mut rows, &state);
            crate::status::add_updates(&mut rows, &state);
        }
        Ok(rows)
    }

    async fn plan(&self) -> Result<PlanView, BackendError> {
        let config = self.shared.config();
        let engine = self.engine()?;
        let mut remembered = crate::reconcile::Remembered::read_dir(&config.state_dir);
        remembered.pulls = self.shared.pulls.states();
        let snapshot = crate::db::Snapshot::read(&config.db_dir);
        let planned = crate::reconcile::plan_now(
            &config,
            &*engine,
            &snapshot,
            remembered,
            std::time::SystemTime::now(),
            false,
        )
        .await?;
        Ok(planned.plan.view())
    }

    async fn apply(&self, allow_mass_removal: bool) -> Result<PassReport, BackendError> {
        Ok(self.pass("api apply".into(), allow_mass_removal).await?)
    }

    /// Console events run here, on the API's task: the loop only runs the
    /// pass they ask for, and keeps serving everything else meanwhile.
    async fn container(&self, name: String, run: bool) -> Result<PassReport, BackendError> {
        let config = self.shared.config();
        let pass = |trigger| self.pass_for_event(trigger);
        Ok(crate::events::console(&config, &name, run, pass).await?)
    }

    /// Signalled events run here too: their actions on a blocking thread,
    /// their passes in the loop; a long action holds up nothing else.
    async fn signal(&self, name: String, args: Vec<String>) -> Result<EventRun, BackendError> {
        let config = self.shared.config();
        let pass = |trigger| self.pass_for_event(trigger);
        let run = crate::events::signal(&config, &name, &args, "api", pass).await?;
        tracing::info!(event = %name, result = %run.result, "event signalled");
        Ok(run)
    }

    async fn events(&self, limit: usize) -> Result<Vec<EventRun>, BackendError> {
        let config = self.shared.config();
        Ok(State::open(&config.state_dir)?.event_history(limit)?)
    }

    async fn build(
        &self,
        name: String,
        token: Option<String>,
        no_cache: bool,
    ) -> Result<BuildQueued, BackendError> {
        let config = self.shared.config();
        if let Some(token) = &token {
            // The caller may be anyone who can reach the port: what is
            // wrong with the file is for berthd's log, not for them.
            let creds =
                crate::images::credentials::load(&config.credentials_file).map_err(|e| {
                    tracing::error!(image = %name, "webhook: {e}");
                    BackendError::WebhooksUnavailable
                })?;
            if !creds.webhook_allows(&name, token) {
                tracing::warn!(image = %name, "webhook refused: wrong or missing token");
                return Err(BackendError::Forbidden);
            }
        }
        let trigger = if token.is_some() { "webhook" } else { "api" };
        let queued = crate::api::queue_build(&config, name, trigger, no_cache)?;
        if let Some(pool) = self.shared.builds.get() {
            pool.wake();
        }
        Ok(queued)
    }

    /// On the API's task, never the loop's; one round at a time with the
    /// daemon's own timer. What `auto` pulled is rolled out by a pass.
    async fn check_images(&self, names: Vec<String>) -> Result<crate::watch::Report, BackendError> {
        let config = self.shared.config();
        let engine = self.engine()?;
        let _one_round = self.shared.watch_round.lock().await;
        let state = State::open(&config.state_dir)?;
        let request = crate::watch::Request {
            names,
            on_demand: true,
        };
        let report = crate::watch::round(&config, &*engine, &state, &request).await?;
        if report.pulled() {
            let _ = self.shared.events.send(Event::Docker(
                "registry: a watched tag moved and was pulled".into(),
            ));
        }
        Ok(report)
    }

    async fn history(
        &self,
        record: Option<String>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, BackendError> {
        let config = self.shared.config();
        Ok(State::open(&config.state_dir)?.history(record.as_deref(), limit)?)
    }
}
