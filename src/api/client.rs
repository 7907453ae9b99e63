//! The `berth` command's side of the API: one HTTP/1.1 request over the
//! unix socket. "No daemon" (no socket, nobody listening) is not an error:
//! the caller then does the work itself.

use std::path::Path;

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

/// `METHOD path` to the daemon. Ok(None) when no daemon listens; Ok(Some(json))
/// for a 2xx answer; Err with the daemon's error otherwise.
pub async fn request(
    socket: &Path,
    method: &str,
    uri: &str,
) -> Result<Option<serde_json::Value>, ClientError> {
    request_with(socket, method, uri, None).await
}

/// [`request`] with a JSON body.
pub async fn request_with(
    socket: &Path,
    method: &str,
    uri: &str,
    body: Option<&serde_json::Value>,
) -> Result<Option<serde_json::Value>, ClientError> {
    let fail = |message: String| ClientError::Failed {
        path: socket.display().to_string(),
        message,
    };
    let Ok(stream) = tokio::net::UnixStream::connect(socket).await else {
        return Ok(None);
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(connection);
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "berthd")
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .map_err(|e| fail(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        fail(format!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        ))
    })?;
    if status.is_success() {
        Ok(Some(json))
    } else {
        let message = json
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("request failed")
            .to_string();
        Err(fail(format!("{status}: {message}")))
    }
}
