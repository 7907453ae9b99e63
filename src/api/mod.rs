//! berthd's HTTP API on a unix socket (JSON): status, plan, apply, history.
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
use serde::Deserialize;

/// What the API asks of the daemon. berthd implements it; tests can too.
pub trait Backend: Send + Sync + 'static {
    fn status(&self) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
    fn plan(&self) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
    /// Runs a pass now (through the daemon's loop, never beside it);
    /// `allow_mass_removal` confirms removals the pass would hold back.
    fn apply(
        &self,
        allow_mass_removal: bool,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
    fn history(
        &self,
        record: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
    /// Console start (`run`) or stop of a record.
    fn container(
        &self,
        name: String,
        run: bool,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
    /// Signals an event with its args.
    fn signal(
        &self,
        name: String,
        args: Vec<String>,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
    fn events(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
    /// Queues a build of a `docker_images` record (merged with a queued one).
    /// With `token`, it is a webhook call and the token must match.
    fn build(
        &self,
        name: String,
        token: Option<String>,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{path}: {message}")]
    Socket { path: PathBuf, message: String },
}

#[derive(Debug, Default, Deserialize)]
struct EventBody {
    #[serde(default)]
    args: Vec<String>,
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

fn reply(result: Result<serde_json::Value, String>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e })),
        )
            .into_response(),
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
            post(|AxumState(b): AxumState<Arc<B>>, Path(name): Path<String>| async move { reply(b.build(name, None).await) }),
        )
        .route(
            "/v1/hooks/images/{name}",
            post(|AxumState(b): AxumState<Arc<B>>, Path(name): Path<String>, Query(q): Query<TokenQuery>| async move {
                match b.build(name, Some(q.token)).await {
                    Err(e) if e == FORBIDDEN => {
                        (StatusCode::FORBIDDEN, Json(serde_json::json!({ "error": e }))).into_response()
                    }
                    other => reply(other),
                }
            }),
        )
        .with_state(backend)
}

/// The error a webhook with a wrong or missing token gets (HTTP 403).
pub const FORBIDDEN: &str = "wrong or missing webhook token";

pub use server::{bind, serve, serve_tcp, ApiSocket, SharedToken};
