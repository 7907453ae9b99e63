//! The `berth` command's side of the API: one HTTP/1.1 request over the
//! unix socket. "No daemon" (no socket, nobody listening) is not an error:
//! the caller then does the work itself. Every request has a deadline: a
//! daemon that accepts and never answers must not hang the command.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("berthd API at {path}: {message}")]
    Failed { path: String, message: String },
}

/// Whether a daemon answers on `path`.
pub async fn is_listening(path: &Path) -> bool {
    tokio::net::UnixStream::connect(path).await.is_ok()
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
    let fail = |message: String| ClientError::Failed {
        path: socket.display().to_string(),
        message,
    };
    let stream = match tokio::time::timeout(CONNECT, tokio::net::UnixStream::connect(socket)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) => return Ok(None),
        Err(_) => {
            return Err(fail(format!(
                "berthd did not accept the connection within {}s",
                CONNECT.as_secs()
            )))
        }
    };
    match tokio::time::timeout(within, exchange(stream, method, uri, body)).await {
        Ok(result) => result.map(Some).map_err(fail),
        Err(_) => Err(fail(format!(
            "berthd did not answer within {}s (see journalctl -u berthd)",
            within.as_secs()
        ))),
    }
}

/// One request on a connected socket: the answer's JSON, or the error.
async fn exchange(
    stream: tokio::net::UnixStream,
    method: &str,
    uri: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "berthd")
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    if status.is_success() {
        Ok(json)
    } else {
        let message = json
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("request failed")
            .to_string();
        Err(format!("{status}: {message}"))
    }
}
