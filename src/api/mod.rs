//! berthd's HTTP API on a unix socket (JSON): status, plan, apply, history.
//! `client` is the other end, used by the `berth` command.

pub mod client;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
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
    /// Runs a pass now (through the daemon's loop, never beside it).
    fn apply(&self) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
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
        .route("/v1/apply", post(|AxumState(b): AxumState<Arc<B>>| async move { reply(b.apply().await) }))
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

/// A bound API socket, not yet serving.
pub struct ApiSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

/// Binds `path` (replacing a stale socket, refusing a live one), mode 0660,
/// group `berth` when that group exists.
pub async fn bind(path: &std::path::Path) -> Result<ApiSocket, ApiError> {
    let err = |message: String| ApiError::Socket {
        path: path.to_path_buf(),
        message,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err(format!("cannot create folder: {e}")))?;
    }
    if client::is_listening(path).await {
        return Err(err("another berthd is already serving this socket".into()));
    }
    let _ = std::fs::remove_file(path);
    let listener =
        tokio::net::UnixListener::bind(path).map_err(|e| err(format!("cannot bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err(format!("cannot set mode 0660: {e}")))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name("berth") {
        if let Err(e) = nix::unistd::chown(path, None, Some(group.gid)) {
            tracing::warn!("{}: cannot give group berth access: {e}", path.display());
        }
    }
    Ok(ApiSocket {
        listener,
        path: path.to_path_buf(),
    })
}

/// Serves until `shutdown` completes, then removes the socket.
pub async fn serve<B: Backend>(
    socket: ApiSocket,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let ApiSocket { listener, path } = socket;
    let result = axum::serve(listener, router(backend))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ApiError::Socket {
            path: path.clone(),
            message: e.to_string(),
        });
    let _ = std::fs::remove_file(&path);
    result
}

/// Serves the same API over TCP; every request but the webhooks (which have
/// their own per-image tokens) must carry `Authorization: Bearer <token>`.
pub async fn serve_tcp<B: Backend>(
    listen: &str,
    token: String,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let err = |message: String| ApiError::Socket {
        path: PathBuf::from(listen),
        message,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| err(format!("cannot listen: {e}")))?;
    let token = Arc::new(token);
    let app = router(backend).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let token = token.clone();
            async move {
                let path = request.uri().path();
                let bearer = request
                    .headers()
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if path.starts_with("/v1/hooks/")
                    || crate::images::credentials::same_secret(&token, bearer)
                {
                    next.run(request).await
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        Json(serde_json::json!({ "error": "missing or wrong API token" })),
                    )
                        .into_response()
                }
            }
        },
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| err(e.to_string()))
}
