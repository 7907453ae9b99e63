//! A unix-socket proxy in front of the engine that notes every HTTP request
//! a client makes: how many Docker API calls berth and docker-compose each
//! issue for the same job. Used only in an untimed round (it adds latency).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// The requests seen so far, as `METHOD /shape` (IDs and names folded).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, request: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(request);
        }
    }
    /// The requests since the last take.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Requests counted by shape, most frequent first.
pub fn summary(requests: &[String]) -> Vec<(String, usize)> {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for r in requests {
        *by.entry(r).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = by.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

pub struct Proxy {
    pub log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `listen`, forwarding each connection to `upstream`.
pub fn start(
    rt: &tokio::runtime::Runtime,
    listen: &Path,
    upstream: PathBuf,
) -> anyhow::Result<Proxy> {
    let _ = std::fs::remove_file(listen);
    let listener = {
        let _guard = rt.enter();
        UnixListener::bind(listen)?
    };
    let log = Log::default();
    let l = log.clone();
    let task = rt.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(connection(client, upstream.clone(), l.clone()));
        }
    });
    Ok(Proxy { log, task })
}

async fn connection(client: UnixStream, upstream: PathBuf, log: Log) {
    let Ok(server) = UnixStream::connect(&upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut parser = Requests::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for r in parser.feed(&buf[..n]) {
                log.push(r);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Splits a client's byte stream into HTTP/1.1 requests: head, then a body
/// of Content-Length bytes or in chunks.
#[derive(Default)]
struct Requests {
    buf: Vec<u8>,
    state: State,
}

#[derive(Default)]
enum State {
    #[default]
    Head,
    Body(usize),
    ChunkSize,
    ChunkData(usize),
    /// After an upgrade (attach, exec): raw bytes, no more requests.
    Raw,
}

impl Requests {
    fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut found = Vec::new();
        if matches!(self.state, State::Raw) {
            return found;
        }
        self.buf.extend_from_slice(data);
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            match self.state {
                State::Raw => break,
                State::Body(n) | State::ChunkData(n) => {
                    let k = n.min(rest.len());
                    at += k;
                    let left = n - k;
                    if left > 0 {
                        self.state = match self.state {
                            State::Body(_) => State::Body(left),
                            _ => State::ChunkData(left),
                        };
                        break;
                    }
                    self.state = match self.state {
                        State::Body(_) => State::Head,
                        _ => State::ChunkSize,
                    };
                }
                State::ChunkSize => {
                    let Some(end) = find(rest, b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&rest[..end]);
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .unwrap_or(0);
                    at += end + 2;
                    // The data and its CRLF; a zero chunk ends with one CRLF
                    // (no trailers from these clients).
                    self.state = if size == 0 {
                        State::Body(2)
                    } else {
                        State::ChunkData(size + 2)
                    };
                }
                State::Head => {
                    let Some(end) = find(rest, b"\r\n\r\n") else {
                        break;
                    };
                    let head = String::from_utf8_lossy(&rest[..end]).into_owned();
                    at += end + 4;
                    let mut lines = head.lines();
                    let first = lines.next().unwrap_or("");
                    let mut parts = first.split_whitespace();
                    let method = parts.next().unwrap_or("?");
                    let target = parts.next().unwrap_or("?");
                    found.push(shape(method, target));
                    let mut length = 0usize;
                    let mut chunked = false;
                    let mut upgrade = false;
                    for l in lines {
                        let Some((k, v)) = l.split_once(':') else {
                            continue;
                        };
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                        match k.as_str() {
                            "content-length" => length = v.parse().unwrap_or(0),
                            "transfer-encoding" => chunked = v.contains("chunked"),
                            "upgrade" => upgrade = true,
                            _ => {}
                        }
                    }
                    self.state = if upgrade {
                        State::Raw
                    } else if chunked {
                        State::ChunkSize
                    } else {
                        State::Body(length)
                    };
                }
            }
        }
        self.buf.drain(..at.min(self.buf.len()));
        found
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `GET /v1.41/containers/3f2a…/json?size=0` → `GET /containers/{id}/json`.
fn shape(method: &str, target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    let mut segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.first().is_some_and(|s| {
        s.starts_with('v') && s[1..].chars().all(|c| c.is_ascii_digit() || c == '.') && s.len() > 1
    }) {
        segs.remove(0);
    }
    const KINDS: [&str; 5] = ["containers", "images", "networks", "volumes", "exec"];
    const FLAT: [&str; 8] = [
        "json", "create", "prune", "load", "search", "get", "import", "build",
    ];
    const OPS: [&str; 22] = [
        "json",
        "start",
        "stop",
        "kill",
        "rename",
        "wait",
        "attach",
        "logs",
        "restart",
        "connect",
        "disconnect",
        "tag",
        "push",
        "history",
        "top",
        "update",
        "resize",
        "pause",
        "unpause",
        "archive",
        "changes",
        "export",
    ];
    match segs.as_slice() {
        [kind, rest @ ..]
            if KINDS.contains(kind) && !rest.is_empty() && !FLAT.contains(&rest[0]) =>
        {
            match rest.last() {
                Some(op) if rest.len() >= 2 && OPS.contains(op) => {
                    format!("{method} /{kind}/{{id}}/{op}")
                }
                _ => format!("{method} /{kind}/{{id}}"),
            }
        }
        _ => format!("{method} /{}", segs.join("/")),
    }
}
