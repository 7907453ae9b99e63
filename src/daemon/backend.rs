//! The API's view of the running daemon: reads (status, plan, history) are
//! served directly; apply goes through the loop so passes never overlap.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Event, Shared};
use crate::api::Backend;
use crate::engine::Engine;
use crate::reconcile::{PassError, PassReport};
use crate::state::State;

pub struct DaemonBackend<E> {
    pub shared: Arc<Shared<E>>,
}

fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
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

    fn engine(&self) -> Result<Arc<E>, String> {
        self.shared
            .engine()
            .ok_or_else(|| "berthd is not connected to the engine yet".to_string())
    }
}

impl<E: Engine + 'static> Backend for DaemonBackend<E> {
    async fn status(&self) -> Result<serde_json::Value, String> {
        let config = self.shared.config();
        let engine = self.engine()?;
        let remembered = crate::reconcile::Remembered::read_dir(&config.state_dir);
        let mut rows = crate::status::current(&config, &*engine, remembered)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(state) = State::open(&config.state_dir) {
            crate::status::add_last_errors(&mut rows, &state);
        }
        json(&rows)
    }

    async fn plan(&self) -> Result<serde_json::Value, String> {
        let config = self.shared.config();
        let engine = self.engine()?;
        let remembered = crate::reconcile::Remembered::read_dir(&config.state_dir);
        let snapshot = crate::db::Snapshot::read(&config.db_dir);
        let plan = crate::reconcile::plan_now(
            &config,
            &*engine,
            &snapshot,
            remembered,
            std::time::SystemTime::now(),
            false,
        )
        .await
        .map_err(|e| e.to_string())?;
        json(&plan.plan)
    }

    async fn apply(&self, allow_mass_removal: bool) -> Result<serde_json::Value, String> {
        let report = self.pass("api apply".into(), allow_mass_removal).await;
        json(&report.map_err(|e| e.to_string())?)
    }

    /// Console events run here, on the API's task: the loop only runs the
    /// pass they ask for, and keeps serving everything else meanwhile.
    async fn container(&self, name: String, run: bool) -> Result<serde_json::Value, String> {
        let config = self.shared.config();
        let pass = |trigger| self.pass_for_event(trigger);
        let report = crate::events::console(&config, &name, run, pass)
            .await
            .map_err(|e| e.to_string())?;
        json(&report)
    }

    /// Signalled events run here too: their actions on a blocking thread,
    /// their passes in the loop; a long action holds up nothing else.
    async fn signal(&self, name: String, args: Vec<String>) -> Result<serde_json::Value, String> {
        let config = self.shared.config();
        let pass = |trigger| self.pass_for_event(trigger);
        let run = crate::events::signal(&config, &name, &args, "api", pass)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(event = %name, result = %run.result, "event signalled");
        json(&run)
    }

    async fn events(&self, limit: usize) -> Result<serde_json::Value, String> {
        let config = self.shared.config();
        let state = State::open(&config.state_dir).map_err(|e| e.to_string())?;
        json(&state.event_history(limit).map_err(|e| e.to_string())?)
    }

    async fn build(
        &self,
        name: String,
        token: Option<String>,
    ) -> Result<serde_json::Value, String> {
        let config = self.shared.config();
        if let Some(token) = &token {
            let creds = crate::images::credentials::load(&config.credentials_file)?;
            if !creds.webhook_allows(&name, token) {
                tracing::warn!(image = %name, "webhook refused: wrong or missing token");
                return Err(crate::api::FORBIDDEN.to_string());
            }
        }
        let images = crate::images::load(&config).map_err(|e| e.to_string())?;
        if let Some(errors) = images.failed.get(&name) {
            return Err(errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "));
        }
        if !images.specs.contains_key(&name) {
            return Err(format!("no docker_images record {name}"));
        }
        let mut state = State::open(&config.state_dir).map_err(|e| e.to_string())?;
        let trigger = if token.is_some() { "webhook" } else { "api" };
        let (id, merged) = state
            .request_build(&name, trigger)
            .map_err(|e| e.to_string())?;
        if let Some(pool) = self.shared.builds.get() {
            pool.wake();
        }
        Ok(serde_json::json!({ "build": id, "merged": merged }))
    }

    async fn history(
        &self,
        record: Option<String>,
        limit: usize,
    ) -> Result<serde_json::Value, String> {
        let config = self.shared.config();
        let state = State::open(&config.state_dir).map_err(|e| e.to_string())?;
        json(
            &state
                .history(record.as_deref(), limit)
                .map_err(|e| e.to_string())?,
        )
    }
}
