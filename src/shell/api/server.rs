//! Serving the API on its listeners, bounded: each listener (the unix
//! socket, the TCP address) has its own cap on open connections, so
//! clients of one can never starve the other or berthd's own file
//! descriptors; request headers (and the wait for the next request on an
//! idle connection) must arrive within [`HEADER_TIMEOUT`]; bodies are small
//! and must arrive within [`BODY_TIMEOUT`].

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};

use super::{ApiError, Backend};

/// Open connections per listener. Beyond it berthd stops accepting (they
/// wait in the kernel's queue), so a flood costs no file descriptors.
pub const MAX_CONNECTIONS: usize = 64;
/// A request's headers, and the next request on a kept-alive connection,
/// must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body (all of it) must arrive within this...
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// ...and be no larger than this: the API takes small JSON bodies only.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A bound API socket, not yet serving.
pub struct ApiSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

/// Binds `path` (replacing a stale socket, refusing a live one and
/// anything that is not a socket), mode 0660, group `berth` when that
/// group exists. Its folder is made 0755 if missing: the socket's own
/// mode is what keeps others out.
pub async fn bind(path: &Path) -> Result<ApiSocket, ApiError> {
    let err = |doing: &'static str| {
        move |error| ApiError::Socket {
            path: path.to_path_buf(),
            doing,
            error,
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(err("cannot create folder"))?;
    }
    if super::client::is_listening(path).await {
        return Err(ApiError::InUse(path.to_path_buf()));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(err("cannot remove the stale socket"))?;
        }
        Ok(_) => return Err(ApiError::InTheWay(path.to_path_buf())),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err("cannot bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(err("cannot set mode 0660"))?;
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

/// Serves on the unix socket until `shutdown` completes, then removes it.
pub async fn serve<B: Backend>(
    socket: ApiSocket,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let ApiSocket { listener, path } = socket;
    let app = bounded(super::router(backend));
    serve_loop(
        || async { listener.accept().await.map(|(s, _)| s) },
        app,
        shutdown,
    )
    .await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// The token the TCP API asks for; reloaded on SIGHUP. None: every
/// request is refused (the token was removed from the credentials file).
pub type SharedToken = Arc<RwLock<Option<String>>>;

/// Serves the same API over TCP; every request but the webhooks (which have
/// their own per-image tokens) must carry `Authorization: Bearer <token>`.
pub async fn serve_tcp<B: Backend>(
    listen: &str,
    token: SharedToken,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| ApiError::Socket {
            path: PathBuf::from(listen),
            doing: "cannot listen",
            error,
        })?;
    let app = bounded(super::router(backend)).layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let token = token.clone();
            async move {
                let expected = match token.read() {
                    Ok(t) => t.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                let allowed = request.uri().path().starts_with("/v1/hooks/")
                    || expected.is_some_and(|t| {
                        bearer_token(&request)
                            .is_some_and(|given| crate::images::credentials::same_secret(&t, given))
                    });
                if allowed {
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
    serve_loop(
        || async { listener.accept().await.map(|(s, _)| s) },
        app,
        shutdown,
    )
    .await;
    Ok(())
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// matched without regard to case (RFC 9110).
fn bearer_token(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The router with the body rules every listener applies.
fn bounded(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(read_body_in_time))
}

/// Reads the whole body (small, in time) before the handler runs, so a
/// client dribbling a body cannot hold a handler.
async fn read_body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let refuse = |status: StatusCode, why: &str| {
        (status, Json(serde_json::json!({ "error": why }))).into_response()
    };
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large or broken",
        ),
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        ),
    }
}

/// One accept loop: a connection is accepted only with a free slot; each
/// runs HTTP/1.1 with the header timeout; on shutdown, connections finish
/// their request and close (given 2 s).
async fn serve_loop<S, F, Fut>(
    mut accept: F,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<S>>,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing_tx, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            stream = accept() => stream,
            () = &mut shutdown => break,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or a connection reset before accept:
                // wait a little rather than spin.
                tracing::warn!("API: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let _slot = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let closed = tokio::select! {
                _ = conn.as_mut() => false,
                _ = closing.wait_for(|c| *c) => true,
            };
            if closed {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
            }
        });
    }
    let _ = closing_tx.send(true);
    // Wait (briefly) for connections to finish what they were answering.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        slots.acquire_many(MAX_CONNECTIONS as u32),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/v1/status");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file (or a link) where the socket goes is not removed.
        let path = dir.path().join("api.sock");
        std::fs::write(&path, "not a socket").expect("write");
        assert!(bind(&path).await.is_err());
        assert_eq!(
            std::fs::read_to_string(&path).expect("kept"),
            "not a socket"
        );
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("write");
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&victim, &link).expect("link");
        assert!(bind(&link).await.is_err());
        assert_eq!(std::fs::read_to_string(&victim).expect("kept"), "precious");
        // A stale socket (nobody listening) is replaced.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        assert!(stale.exists());
        let socket = bind(&stale).await.expect("rebind");
        drop(socket);
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        assert_eq!(bearer_token(&request(Some("Bearer abc"))), Some("abc"));
        assert_eq!(bearer_token(&request(Some("bearer abc"))), Some("abc"));
        assert_eq!(bearer_token(&request(Some("BEARER  abc "))), Some("abc"));
        assert_eq!(bearer_token(&request(Some("Basic abc"))), None);
        assert_eq!(bearer_token(&request(Some("Bearer "))), None);
        assert_eq!(bearer_token(&request(None)), None);
    }
}
