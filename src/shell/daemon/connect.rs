//! How the daemon gets an engine: one connection attempt, which engine
//! it is for the log, and its stream of managed-container events. Behind
//! a trait so the loop runs on Docker in berthd and on a fake in its tests
//! (which make connecting fail at will).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;

use crate::engine::{DockerEngine, EngineError};

/// Managed-container events as the loop's words (`die app`), until the
/// stream breaks.
pub type EngineEvents = Pin<Box<dyn Stream<Item = Result<String, EngineError>> + Send>>;

/// Connects to engines of type `E`. See the module documentation.
pub trait Connect<E>: Send + Sync + 'static {
    /// One attempt to reach the engine at `host` (config `docker_host`).
    fn connect(&self, host: &str) -> impl Future<Output = Result<Arc<E>, EngineError>> + Send;
    /// Which engine this is, with its version and API version (`Podman
    /// 4.3.1 (API 1.41)`), said once per connection.
    fn identify(&self, engine: &E) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// A subscription to managed-container events.
    fn events(&self, engine: &Arc<E>) -> EngineEvents;
}

/// The real engine, through bollard (`crate::engine::docker`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DockerConnect;

impl Connect<DockerEngine> for DockerConnect {
    async fn connect(&self, host: &str) -> Result<Arc<DockerEngine>, EngineError> {
        Ok(Arc::new(DockerEngine::connect(host).await?))
    }

    async fn identify(&self, engine: &DockerEngine) -> Result<String, EngineError> {
        Ok(engine.identify().await?.to_string())
    }

    fn events(&self, engine: &Arc<DockerEngine>) -> EngineEvents {
        Box::pin(engine.container_events())
    }
}
