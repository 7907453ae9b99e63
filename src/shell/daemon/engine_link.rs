//! The daemon's link to the engine: connect lazily (through [`Connect`]),
//! say once when the engine goes away and once when it is back, retry with
//! backoff, and keep a subscription to managed-container events that only
//! hurries the next pass. Every event the engine's filter lets through
//! (`health_status: healthy` among them: what a dependent waiting for a
//! healthy dependency needs) is forwarded as it is.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connect::Connect;
use super::{Event, Shared};
use crate::config::Config;
use crate::engine::{Engine, EngineError};

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

pub struct EngineLink<E, C> {
    shared: Arc<Shared<E>>,
    connector: Arc<C>,
    /// The `docker_host` the engine in `shared` was reached at.
    host: Option<String>,
    down_since: Option<Instant>,
    backoff: Duration,
    retry_at: Option<Instant>,
    events: Option<JoinHandle<()>>,
}

impl<E: Engine + 'static, C: Connect<E>> EngineLink<E, C> {
    pub fn new(shared: Arc<Shared<E>>, connector: C) -> Self {
        EngineLink {
            shared,
            connector: Arc::new(connector),
            host: None,
            down_since: None,
            backoff: RETRY_MIN,
            retry_at: None,
            events: None,
        }
    }

    /// The connected engine, connecting (and subscribing to its events)
    /// first if there is none, or `docker_host` changed.
    pub async fn engine(&mut self, config: &Config) -> Result<Arc<E>, EngineError> {
        if let Some(engine) = self.shared.engine() {
            if self.host.as_deref() == Some(config.docker_host.as_str()) {
                return Ok(engine);
            }
        }
        match self.connector.connect(&config.docker_host).await {
            Ok(engine) => {
                self.shared.set_engine(Some(engine.clone()));
                self.host = Some(config.docker_host.clone());
                if let Some(old) = self.events.take() {
                    old.abort();
                }
                self.events = Some(tokio::spawn(follow_events(
                    self.connector.clone(),
                    engine.clone(),
                    self.shared.events.clone(),
                )));
                // After the engine is in use: `/version` takes Podman half
                // a second, which the API should not wait for.
                let identity = match self.connector.identify(&engine).await {
                    Ok(identity) => identity,
                    Err(e) => format!("unknown ({e})"),
                };
                tracing::info!(host = %config.docker_host, engine = %identity, "connected to the engine");
                Ok(engine)
            }
            Err(e) => {
                self.lost(&e);
                Err(e)
            }
        }
    }

    /// Logged once per outage; later failures only move the retry time
    /// (1 s, doubling up to 30 s).
    pub fn lost(&mut self, e: &EngineError) {
        let now = Instant::now();
        if self.down_since.is_none() {
            tracing::error!(
                "engine unreachable, retrying with backoff up to {}s: {e}",
                RETRY_MAX.as_secs()
            );
            self.down_since = Some(now);
            self.backoff = RETRY_MIN;
        } else {
            tracing::debug!("engine still unreachable: {e}");
            self.backoff = (self.backoff * 2).min(RETRY_MAX);
        }
        self.retry_at = Some(now + self.backoff);
    }

    pub fn healthy(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(
                "engine reachable again after {}s; converged",
                since.elapsed().as_secs()
            );
        }
        self.retry_at = None;
        self.backoff = RETRY_MIN;
    }

    /// When to try again after a failure, if one is pending.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }
}

impl<E, C> Drop for EngineLink<E, C> {
    fn drop(&mut self) {
        if let Some(task) = self.events.take() {
            task.abort();
        }
    }
}

/// Forwards managed-container events to the loop; when the stream breaks
/// (engine stopped or restarted), says so once and resubscribes with backoff.
async fn follow_events<E, C: Connect<E>>(
    connector: Arc<C>,
    engine: Arc<E>,
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
) {
    let mut backoff = RETRY_MIN;
    loop {
        let mut stream = connector.events(&engine);
        let mut lost = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(what) => {
                    backoff = RETRY_MIN;
                    if tx.send(Event::Docker(what)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    lost = Some(e);
                    break;
                }
            }
        }
        // The engine went away (or closed the stream): a pass will notice
        // and own the logging and retries.
        tracing::debug!("engine event stream ended: {lost:?}");
        if tx.send(Event::Docker("event stream ended".into())).is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}
