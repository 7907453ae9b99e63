//! berthd's HTTP API on a unix socket (JSON): status, plan, apply, history,
//! console start/stop, events, image builds and registry checks, webhooks. The [`Backend`]
//! trait is what a request asks of berth: berthd implements it, and so do
//! the `berth` command's two ways of answering (ask berthd, or do it here).
//! Errors carry an [`ErrorKind`] that alone decides the HTTP status.
//! `client` is the other end, used by the `berth` command.

pub mod client;
mod server;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::events::EventError;
use crate::plan::PlanView;
use crate::reconcile::{PassError, PassReport};
use crate::state::{EventRun, JournalEntry, StateError};
use crate::status::RecordStatus;

/// What the API asks of berth. berthd implements it; the CLI's daemon
/// client and local backend do too; tests can.
pub trait Backend: Send + Sync + 'static {
    fn status(&self) -> impl Future<Output = Result<Vec<RecordStatus>, BackendError>> + Send;
    fn plan(&self) -> impl Future<Output = Result<PlanView, BackendError>> + Send;
    /// Runs a pass now (through the daemon's loop, never beside it);
    /// `allow_mass_removal` confirms removals the pass would hold back.
    fn apply(
        &self,
        allow_mass_removal: bool,
    ) -> impl Future<Output = Result<PassReport, BackendError>> + Send;
    fn history(
        &self,
        record: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<JournalEntry>, BackendError>> + Send;
    /// Console start (`run`) or stop of a record.
    fn container(
        &self,
        name: String,
        run: bool,
    ) -> impl Future<Output = Result<PassReport, BackendError>> + Send;
    /// Signals an event with its args.
    fn signal(
        &self,
        name: String,
        args: Vec<String>,
    ) -> impl Future<Output = Result<EventRun, BackendError>> + Send;
    fn events(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventRun>, BackendError>> + Send;
    /// Queues a build of a `docker_images` record (merged with a queued one).
    /// With `token`, it is a webhook call and the token must match. With
    /// `no_cache`, a recipe build runs every step.
    fn build(
        &self,
        name: String,
        token: Option<String>,
        no_cache: bool,
    ) -> impl Future<Output = Result<BuildQueued, BackendError>> + Send;
    /// Asks the registries of watched image references (`Update notify` or
    /// `auto`) for their tags now: all of them, or those `names` names
    /// (records, image records or references). Skips the poll period,
    /// never a registry's `Retry-After`.
    fn check_images(
        &self,
        names: Vec<String>,
    ) -> impl Future<Output = Result<crate::watch::Report, BackendError>> + Send;
}

/// `POST /v1/images/{name}/build?no_cache=true`
#[derive(Debug, Deserialize)]
struct BuildQuery {
    no_cache: Option<bool>,
}

/// A build request's answer: the build's id, and whether it joined one
/// already queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildQueued {
    pub build: i64,
    pub merged: bool,
}

/// Queues a build of the `docker_images` record `name` (merged with one
/// already queued), after checking the record exists and is valid: what
/// berthd's API and a `berth image build` without berthd both do.
pub fn queue_build(
    config: &crate::config::Config,
    name: String,
    trigger: &str,
    no_cache: bool,
) -> Result<BuildQueued, BackendError> {
    let images = crate::images::load(config).map_err(BackendError::ImagesDb)?;
    if let Some(errors) = images.failed.get(&name) {
        return Err(BackendError::InvalidImage {
            name,
            errors: errors.iter().map(ToString::to_string).collect(),
        });
    }
    if !images.specs.contains_key(&name) {
        return Err(BackendError::NoImage(name));
    }
    let mut state = crate::state::State::open(&config.state_dir)?;
    let (build, merged) = state.request_build_with(&name, trigger, no_cache)?;
    Ok(BuildQueued { build, merged })
}

/// What kind of failure an error is; the HTTP status follows from it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such record, image record or build (404).
    NotFound,
    /// A wrong or missing webhook token (403).
    Forbidden,
    /// The record's state refuses it: invalid, disabled, or the engine
    /// refused the change (409).
    Conflict,
    /// The request itself is wrong: a bad event name (400).
    BadInput,
    /// berthd cannot do it now: it is stopping, or has no engine yet (503).
    Unavailable,
    /// A real fault on berth's side: a db or state.db it cannot read (500).
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind an answer's status stands for (the client's side).
    pub fn from_status(status: StatusCode) -> ErrorKind {
        match status {
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::FORBIDDEN => ErrorKind::Forbidden,
            StatusCode::CONFLICT => ErrorKind::Conflict,
            StatusCode::BAD_REQUEST => ErrorKind::BadInput,
            StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// Why a [`Backend`] request failed. Each says its cause in its own text
/// (or is transparent), so the CLI prints it once.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("wrong or missing webhook token")]
    Forbidden,
    #[error("no docker_images record {0}")]
    NoImage(String),
    /// The image record fails validation: its errors, one per problem.
    #[error("{}", .errors.join("; "))]
    InvalidImage { name: String, errors: Vec<String> },
    #[error("berthd is not connected to the engine yet")]
    NoEngine,
    /// The credentials file cannot be used: a webhook caller is told no
    /// more than this (berthd's log says why).
    #[error("webhooks are unavailable: berthd cannot use its credentials file (its log says why)")]
    WebhooksUnavailable,
    /// The `docker_images` db could not be read.
    #[error(transparent)]
    ImagesDb(crate::db::DbError),
    /// berthd could not be asked, its answer not read, or it answered
    /// with an error (its kind and text, as it said them).
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
}

impl BackendError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::Event(e) => match e {
                EventError::NoRecord(_) => ErrorKind::NotFound,
                EventError::Invalid(_) | EventError::Disabled(_) => ErrorKind::Conflict,
                EventError::BadName(_) => ErrorKind::BadInput,
                EventError::Pass(p) => pass_kind(p),
                EventError::State(_) => ErrorKind::Internal,
            },
            BackendError::Pass(p) => pass_kind(p),
            BackendError::Engine(e) => engine_kind(e),
            BackendError::State(_) | BackendError::ImagesDb(_) => ErrorKind::Internal,
            BackendError::Forbidden => ErrorKind::Forbidden,
            BackendError::NoImage(_) => ErrorKind::NotFound,
            BackendError::InvalidImage { .. } => ErrorKind::Conflict,
            BackendError::NoEngine => ErrorKind::Unavailable,
            BackendError::WebhooksUnavailable => ErrorKind::Internal,
            BackendError::Client(e) => e.kind(),
            BackendError::Watch(crate::watch::WatchError::NotWatched(_)) => ErrorKind::NotFound,
            BackendError::Watch(_) => ErrorKind::Internal,
        }
    }
}

fn pass_kind(e: &PassError) -> ErrorKind {
    match e {
        PassError::Declared(_) => ErrorKind::Internal,
        PassError::Engine(e) => engine_kind(e),
        PassError::Db(_) => ErrorKind::Internal,
        PassError::Shared(inner) => pass_kind(inner),
        PassError::DaemonStopping | PassError::DaemonStopped => ErrorKind::Unavailable,
    }
}

fn engine_kind(e: &EngineError) -> ErrorKind {
    match e {
        EngineError::Unreachable { .. } => ErrorKind::Unavailable,
        EngineError::Conflict(_) => ErrorKind::Conflict,
        _ => ErrorKind::Internal,
    }
}

impl IntoResponse for BackendError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        (self.kind().status(), body).into_response()
    }
}

/// Why berthd cannot serve the API: each names the socket or address.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `doing` says what failed: "cannot bind", "cannot set mode 0660", …
    #[error("{}: {doing}: {error}", .path.display())]
    Socket {
        path: PathBuf,
        doing: &'static str,
        error: std::io::Error,
    },
    #[error("{}: another berthd is already serving this socket", .0.display())]
    InUse(PathBuf),
    #[error("{}: something that is not a socket is in the way; berthd removes only a stale socket (check api_socket)", .0.display())]
    InTheWay(PathBuf),
}

#[derive(Debug, Default, Deserialize)]
struct EventBody {
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CheckBody {
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

#[derive(Debug, Default, Deserialize)]
struct ApplyQuery {
    #[serde(default)]
    allow_mass_removal: bool,
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    record: Option<String>,
    limit: Option<usize>,
}

fn reply<T: Serialize>(result: Result<T, BackendError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub fn router<B: Backend>(backend: Arc<B>) -> Router {
    Router::new()
        .route("/v1/status", get(|AxumState(b): AxumState<Arc<B>>| async move { reply(b.status().await) }))
        .route("/v1/plan", get(|AxumState(b): AxumState<Arc<B>>| async move { reply(b.plan().await) }))
        .route(
            "/v1/apply",
            post(|AxumState(b): AxumState<Arc<B>>, Query(q): Query<ApplyQuery>| async move {
                reply(b.apply(q.allow_mass_removal).await)
            }),
        )
        .route(
            "/v1/history",
            get(|AxumState(b): AxumState<Arc<B>>, Query(q): Query<HistoryQuery>| async move {
                reply(b.history(q.record, q.limit.unwrap_or(50)).await)
            }),
        )
        .route(
            "/v1/containers/{name}/{verb}",
            post(|AxumState(b): AxumState<Arc<B>>, Path((name, verb)): Path<(String, String)>| async move {
                match verb.as_str() {
                    "start" => reply(b.container(name, true).await),
                    "stop" => reply(b.container(name, false).await),
                    _ => (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("no verb {verb}: use start or stop") })))
                        .into_response(),
                }
            }),
        )
        .route(
            "/v1/events/{name}",
            post(|AxumState(b): AxumState<Arc<B>>, Path(name): Path<String>, body: Option<Json<EventBody>>| async move {
                let args = body.map(|Json(b)| b.args).unwrap_or_default();
                reply(b.signal(name, args).await)
            }),
        )
        .route(
            "/v1/events",
            get(|AxumState(b): AxumState<Arc<B>>, Query(q): Query<HistoryQuery>| async move {
                reply(b.events(q.limit.unwrap_or(50)).await)
            }),
        )
        .route(
            "/v1/images/{name}/build",
            post(|AxumState(b): AxumState<Arc<B>>, Path(name): Path<String>, Query(q): Query<BuildQuery>| async move {
                reply(b.build(name, None, q.no_cache.unwrap_or(false)).await)
            }),
        )
        .route(
            "/v1/images/check",
            post(|AxumState(b): AxumState<Arc<B>>, body: Option<Json<CheckBody>>| async move {
                let names = body.map(|Json(b)| b.names).unwrap_or_default();
                reply(b.check_images(names).await)
            }),
        )
        .route(
            "/v1/hooks/images/{name}",
            post(|AxumState(b): AxumState<Arc<B>>, Path(name): Path<String>, Query(q): Query<TokenQuery>| async move {
                reply(b.build(name, Some(q.token), false).await)
            }),
        )
        .with_state(backend)
}

pub use server::{bind, serve, serve_tcp, ApiSocket, SharedToken};

#[cfg(test)]
mod tests;
