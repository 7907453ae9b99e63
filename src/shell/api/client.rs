//! The `berth` command's side of the API: one HTTP/1.1 request over the
//! unix socket, and [`DaemonClient`], the [`Backend`] that asks berthd.
//! "No daemon" (no socket, nobody listening) is not an error for
//! [`request`]: the caller then does the work itself. Every request has a
//! deadline: a daemon that accepts and never answers must not hang the
//! command. berthd's own error answers come back as [`ClientError::Answered`]
//! with the kind its status stands for and its text as it said it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::{Backend, BackendError, BuildQueued, ErrorKind};
use crate::plan::PlanView;
use crate::reconcile::PassReport;
use crate::state::{EventRun, JournalEntry};
use crate::status::RecordStatus;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket is there but could not be connected to (not "nobody
    /// listens", which is no berthd).
    #[error("berthd API at {}: cannot connect: {error}", .path.display())]
    Connect {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("berthd API at {}: berthd did not accept the connection within {secs}s", .path.display())]
    ConnectTimeout { path: PathBuf, secs: u64 },
    #[error("berthd API at {}: berthd did not answer within {secs}s (see journalctl -u berthd)", .path.display())]
    AnswerTimeout { path: PathBuf, secs: u64 },
    #[error("berthd API at {}: nobody listens (has berthd stopped?)", .path.display())]
    Gone { path: PathBuf },
    #[error("berthd API at {}: {error}", .path.display())]
    Http { path: PathBuf, error: hyper::Error },
    #[error("berthd API at {}: {error}", .path.display())]
    Request {
        path: PathBuf,
        error: hyper::http::Error,
    },
    #[error("berthd API at {}: answer is not JSON ({error}): {body}", .path.display())]
    NotJson {
        path: PathBuf,
        error: serde_json::Error,
        body: String,
    },
    /// JSON, but not the answer this berth expects (a berthd of another
    /// version?).
    #[error("berthd API at {}: unexpected answer ({error})", .path.display())]
    Unexpected {
        path: PathBuf,
        error: serde_json::Error,
    },
    /// berthd answered with an error: said once, as berthd said it.
    #[error("{message}")]
    Answered { kind: ErrorKind, message: String },
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Answered { kind, .. } => *kind,
            ClientError::NotJson { .. } | ClientError::Unexpected { .. } => ErrorKind::Internal,
            _ => ErrorKind::Unavailable,
        }
    }
}

/// Whether a daemon answers on `path`.
pub async fn is_listening(path: &Path) -> bool {
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => true,
        Err(e) => !no_daemon(&e),
    }
}

/// Only a socket that is missing, or that nobody listens on, means "no
/// berthd". Any other failure (a full accept queue, EAGAIN; a socket this
/// user may not open) is a berthd that is there: the command asks it and
/// says why it could not, rather than run a pass beside berthd's.
fn no_daemon(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

/// How long a question (GET) may take to be answered.
pub const QUESTION: Duration = Duration::from_secs(60);
/// How long a pass asked for (apply, start, stop, build) may take: stops
/// wait out their grace periods, recreates create and start.
pub const PASS: Duration = Duration::from_secs(30 * 60);

/// How long a signalled event may take: its actions may run for hours (a
/// backup), each bounded by `action_timeout_seconds`.
pub const EVENT: Duration = Duration::from_secs(24 * 3600);

/// Connecting to the socket: a daemon with every connection slot taken
/// leaves a new one waiting in the kernel's queue.
const CONNECT: Duration = Duration::from_secs(10);

/// `METHOD path` to the daemon. Ok(None) when no daemon listens; Ok(Some(json))
/// for a 2xx answer; Err with the daemon's error otherwise. GET must be
/// answered within [`QUESTION`], anything else within [`PASS`].
pub async fn request(
    socket: &Path,
    method: &str,
    uri: &str,
) -> Result<Option<serde_json::Value>, ClientError> {
    let within = if method == "GET" { QUESTION } else { PASS };
    request_with(socket, method, uri, None, within).await
}

/// [`request`] with a JSON body, answered `within`.
pub async fn request_with(
    socket: &Path,
    method: &str,
    uri: &str,
    body: Option<&serde_json::Value>,
    within: Duration,
) -> Result<Option<serde_json::Value>, ClientError> {
    let Some((status, json)) = send(socket, method, uri, body, within).await? else {
        return Ok(None);
    };
    if status.is_success() {
        return Ok(Some(json));
    }
    let message = json
        .get("error")
        .and_then(|e| e.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{status}"));
    Err(ClientError::Answered {
        kind: ErrorKind::from_status(status),
        message,
    })
}

/// One request: the answer's status and JSON, whatever the status; None
/// when nobody listens on `socket`.
pub async fn send(
    socket: &Path,
    method: &str,
    uri: &str,
    body: Option<&serde_json::Value>,
    within: Duration,
) -> Result<Option<(StatusCode, serde_json::Value)>, ClientError> {
    let path = socket.to_path_buf();
    let stream = match tokio::time::timeout(CONNECT, tokio::net::UnixStream::connect(socket)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if no_daemon(&e) => return Ok(None),
        Ok(Err(error)) => return Err(ClientError::Connect { path, error }),
        Err(_) => {
            return Err(ClientError::ConnectTimeout {
                path,
                secs: CONNECT.as_secs(),
            })
        }
    };
    match tokio::time::timeout(within, exchange(stream, &path, method, uri, body)).await {
        Ok(result) => result.map(Some),
        Err(_) => Err(ClientError::AnswerTimeout {
            path,
            secs: within.as_secs(),
        }),
    }
}

/// One request on a connected socket: the answer's status and JSON.
async fn exchange(
    stream: tokio::net::UnixStream,
    path: &Path,
    method: &str,
    uri: &str,
    body: Option<&serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value), ClientError> {
    let http = |error| ClientError::Http {
        path: path.to_path_buf(),
        error,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "berthd")
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .map_err(|error| ClientError::Request {
            path: path.to_path_buf(),
            error,
        })?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    let json = serde_json::from_slice(&body).map_err(|error| ClientError::NotJson {
        path: path.to_path_buf(),
        error,
        body: String::from_utf8_lossy(&body).into_owned(),
    })?;
    Ok((status, json))
}

/// The [`Backend`] that asks berthd over its socket, for a command that
/// found it listening.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    socket: PathBuf,
}

impl DaemonClient {
    pub fn new(socket: &Path) -> DaemonClient {
        DaemonClient {
            socket: socket.to_path_buf(),
        }
    }

    async fn ask<T: DeserializeOwned>(
        &self,
        method: &str,
        uri: &str,
        body: Option<&serde_json::Value>,
        within: Duration,
    ) -> Result<T, BackendError> {
        let answer = request_with(&self.socket, method, uri, body, within)
            .await?
            .ok_or_else(|| ClientError::Gone {
                path: self.socket.clone(),
            })?;
        serde_json::from_value(answer).map_err(|error| {
            BackendError::Client(ClientError::Unexpected {
                path: self.socket.clone(),
                error,
            })
        })
    }
}

impl Backend for DaemonClient {
    async fn status(&self) -> Result<Vec<RecordStatus>, BackendError> {
        self.ask("GET", "/v1/status", None, QUESTION).await
    }

    async fn plan(&self) -> Result<PlanView, BackendError> {
        self.ask("GET", "/v1/plan", None, QUESTION).await
    }

    async fn apply(&self, allow_mass_removal: bool) -> Result<PassReport, BackendError> {
        let uri = if allow_mass_removal {
            "/v1/apply?allow_mass_removal=true"
        } else {
            "/v1/apply"
        };
        self.ask("POST", uri, None, PASS).await
    }

    async fn history(
        &self,
        record: Option<String>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, BackendError> {
        let mut uri = format!("/v1/history?limit={limit}");
        if let Some(name) = record {
            uri.push_str(&format!("&record={name}"));
        }
        self.ask("GET", &uri, None, QUESTION).await
    }

    async fn container(&self, name: String, run: bool) -> Result<PassReport, BackendError> {
        let verb = if run { "start" } else { "stop" };
        let uri = format!("/v1/containers/{name}/{verb}");
        self.ask("POST", &uri, None, PASS).await
    }

    async fn signal(&self, name: String, args: Vec<String>) -> Result<EventRun, BackendError> {
        let uri = format!("/v1/events/{name}");
        let body = serde_json::json!({ "args": args });
        self.ask("POST", &uri, Some(&body), EVENT).await
    }

    async fn events(&self, limit: usize) -> Result<Vec<EventRun>, BackendError> {
        let uri = format!("/v1/events?limit={limit}");
        self.ask("GET", &uri, None, QUESTION).await
    }

    /// The command asks as the admin on the root-only socket: a token is
    /// only ever a webhook's, and is never sent from here.
    async fn build(
        &self,
        name: String,
        _token: Option<String>,
        no_cache: bool,
    ) -> Result<BuildQueued, BackendError> {
        let uri = if no_cache {
            format!("/v1/images/{name}/build?no_cache=true")
        } else {
            format!("/v1/images/{name}/build")
        };
        self.ask("POST", &uri, None, PASS).await
    }

    /// A check asks each registry with its own deadlines (and pulls with
    /// `auto`): a pass's time.
    async fn check_images(&self, names: Vec<String>) -> Result<crate::watch::Report, BackendError> {
        let body = serde_json::json!({ "names": names });
        self.ask("POST", "/v1/images/check", Some(&body), PASS)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };

    use super::*;

    #[tokio::test]
    async fn only_a_missing_or_refusing_socket_means_no_berthd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.sock");
        assert!(!is_listening(&missing).await);
        assert!(matches!(
            request(&missing, "GET", "/v1/status").await,
            Ok(None)
        ));

        // A berthd whose accept queue is full: connecting fails with
        // EAGAIN. That is a busy berthd, not none.
        let path = dir.path().join("busy.sock");
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .expect("socket");
        bind(fd.as_raw_fd(), &UnixAddr::new(&path).expect("addr")).expect("bind");
        listen(&fd, Backlog::new(0).expect("backlog")).expect("listen");
        let mut held = Vec::new();
        let mut refused = None;
        for _ in 0..64 {
            match tokio::net::UnixStream::connect(&path).await {
                Ok(s) => held.push(s),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let refused = refused.expect("the queue filled up");
        assert_eq!(refused.kind(), std::io::ErrorKind::WouldBlock, "{refused}");
        assert!(is_listening(&path).await, "a full queue is a berthd");
        match request(&path, "GET", "/v1/status").await {
            Err(ClientError::Connect { .. }) => {}
            other => panic!("said as a berthd that cannot be reached: {other:?}"),
        }
    }
}
