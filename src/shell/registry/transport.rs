//! One HTTP/1.1 exchange with a registry (or its token realm), bounded:
//! a connect timeout, a deadline on the whole exchange, a cap on the
//! header buffer and on the body. TLS is rustls with the system's roots
//! plus every `*.crt` in `<registry_certs_dir>/<host:port>/`, as the
//! engine reads them; plain http only where the caller allows it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::safe_fs;

/// A connection to a registry takes at most this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One exchange (connect, TLS, request, answer) takes at most this long.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// hyper's read buffer, which holds an answer's headers whole.
const HEADER_BUFFER: usize = 64 * 1024;

/// What came back.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why an exchange failed; the caller adds which registry and reference.
/// Never holds a header or a body (a token could be in either).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Tls(String),
    /// The handshake's answer was not TLS at all: a plain-http registry.
    #[error("it answered in plain http, not TLS")]
    PlainHttp,
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("an answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Http(String),
    #[error("{}: {error}", .path.display())]
    Certs {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A handshake that failed, told apart from a server that does not speak
/// TLS at all: its first bytes (`HTTP/1.1 400`) are no TLS record type.
fn handshake_error(e: std::io::Error) -> TransportError {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            TransportError::PlainHttp
        }
        _ => TransportError::Tls(e.to_string()),
    }
}

/// Connections and TLS settings shared by a round's checks.
pub struct Transport {
    certs_dir: PathBuf,
    /// The system's roots, read once (reading them parses every file).
    system_roots: Arc<OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>>>,
    /// TLS settings per `host[:port]` (its own certs folder).
    tls: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
    requests: AtomicU64,
}

impl Transport {
    pub fn new(certs_dir: &Path) -> Transport {
        Transport {
            certs_dir: certs_dir.to_path_buf(),
            system_roots: Arc::default(),
            tls: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// Exchanges made so far (for the measures and the tests).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One request to an absolute `uri` (`http` or `https`); the body is
    /// read up to `body_limit` bytes (a larger one is an error).
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body_limit: usize,
    ) -> Result<Answer, TransportError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(
            EXCHANGE_TIMEOUT,
            self.exchange(method, uri, headers, body_limit),
        )
        .await
        .map_err(|_| TransportError::Timeout(EXCHANGE_TIMEOUT))?
    }

    async fn exchange(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body_limit: usize,
    ) -> Result<Answer, TransportError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(TransportError::Http(format!(
                    "not an http(s) address: {uri}"
                )))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| TransportError::Http(format!("no host in {uri}")))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| TransportError::Timeout(CONNECT_TIMEOUT))?
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::USER_AGENT, "berth");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| TransportError::Http(e.to_string()))?;
        if https {
            let config = self.tls_config(authority.as_str()).await?;
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(handshake_error)?;
            over(TokioIo::new(stream), request, body_limit).await
        } else {
            over(TokioIo::new(tcp), request, body_limit).await
        }
    }

    /// The TLS settings for `authority`: the system's roots and the
    /// certificates of its folder under `registry_certs_dir` (read once
    /// per round: a CA added between rounds is seen at the next). The
    /// files are read on a blocking thread, with no lock held.
    async fn tls_config(
        &self,
        authority: &str,
    ) -> Result<Arc<rustls::ClientConfig>, TransportError> {
        if let Some(c) = self.cached(authority) {
            return Ok(c);
        }
        if matches!(authority, "" | "." | "..") || authority.contains('/') {
            return Err(TransportError::Http(format!(
                "{authority:?} is not a registry host"
            )));
        }
        let (system, folder) = (self.system_roots.clone(), self.certs_dir.join(authority));
        let config = tokio::task::spawn_blocking(move || build_tls(&system, &folder))
            .await
            .map_err(|e| TransportError::Tls(format!("reading certificates: {e}")))??;
        let mut cache = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        // Two checks of one registry may both have read it: keep the first.
        Ok(cache.entry(authority.to_string()).or_insert(config).clone())
    }

    fn cached(&self, authority: &str) -> Option<Arc<rustls::ClientConfig>> {
        let cache = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(authority).cloned()
    }
}

/// The system's roots (read once per transport) and `folder`'s certificates.
fn build_tls(
    system: &OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>>,
    folder: &Path,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    let system = system.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("system certificates: {e}");
        }
        found.certs
    });
    // A root the system store has that rustls cannot use is skipped,
    // as every other client does.
    let _ = roots.add_parsable_certificates(system.iter().cloned());
    for cert in private_certs(folder)? {
        roots.add(cert).map_err(|e| {
            TransportError::Tls(format!("a certificate under {}: {e}", folder.display()))
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A certs folder holds a few files; more is not a CA folder.
const MAX_CERT_FILES: usize = 64;
/// ...and each a few KiB.
const MAX_CERT_FILE: u64 = 1 << 20;

/// Every certificate of every `*.crt` in `dir` (Docker's rule: `ca.crt`
/// and any other `.crt`); a missing folder is none. Whoever can write
/// here decides whom berth trusts, so the folder is reached through no
/// link but root's (`safe_fs`), and the folder and each file must be
/// owned by root (or berth's user) and writable by no one else; a file
/// that is not regular (a FIFO would block), too large or not so owned is
/// skipped with a warning naming it. Blocking: run off the async workers.
fn private_certs(
    dir: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    use std::io::Read;
    let err = |path: &Path, error| TransportError::Certs {
        path: path.to_path_buf(),
        error,
    };
    let folder = match safe_fs::open_dir(dir, safe_fs::Links::Trusted) {
        Ok(f) => f,
        Err(safe_fs::SafeFsError::Io { error, .. })
            if error.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(Vec::new())
        }
        Err(safe_fs::SafeFsError::Io { path, error }) => return Err(err(&path, error)),
        Err(e) => {
            tracing::warn!("registry certificates: {e}: none used");
            return Ok(Vec::new());
        }
    };
    let meta = folder.metadata().map_err(|e| err(dir, e))?;
    if let Some(why) = not_trusted(&meta) {
        tracing::warn!("registry certificates: {} {why}: none used", dir.display());
        return Ok(Vec::new());
    }
    let mut names: Vec<std::ffi::OsString> = folder
        .names(MAX_CERT_FILES * 4)
        .map_err(|e| err(dir, e))?
        .into_iter()
        .filter(|n| Path::new(n).extension().is_some_and(|x| x == "crt"))
        .collect();
    names.sort();
    names.truncate(MAX_CERT_FILES);
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let skip = |why: &str| {
            tracing::warn!("registry certificates: {} {why}: skipped", path.display());
        };
        let file = match folder.open_file(&name) {
            Ok(Some(f)) => f,
            Ok(None) => {
                skip("is a link or not a regular file");
                continue;
            }
            Err(e) => {
                skip(&format!("cannot be opened ({e})"));
                continue;
            }
        };
        let meta = file.metadata().map_err(|e| err(&path, e))?;
        if let Some(why) = not_trusted(&meta) {
            skip(&why);
            continue;
        }
        if meta.len() > MAX_CERT_FILE {
            skip(&format!("is larger than {MAX_CERT_FILE} bytes"));
            continue;
        }
        let mut text = Vec::new();
        file.take(MAX_CERT_FILE)
            .read_to_end(&mut text)
            .map_err(|e| err(&path, e))?;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&text) {
            let cert = cert.map_err(|e| {
                err(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                )
            })?;
            out.push(cert);
        }
    }
    Ok(out)
}

/// Why a certs folder or file is not trusted (someone other than root or
/// berth's user owns it, or could write it), if it is not.
fn not_trusted(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::Uid::effective().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!("is owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "is writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Sends `request` over `io` and reads the answer, driving the connection
/// in the same future: nothing is left running when the deadline drops it.
async fn over<I>(
    io: I,
    request: Request<Empty<Bytes>>,
    body_limit: usize,
) -> Result<Answer, TransportError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| TransportError::Http(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(HEADER_BUFFER)
        .handshake(io)
        .await
        .map_err(http)?;
    let exchange = async move {
        let answer = sender.send_request(request).await.map_err(http)?;
        let (parts, body) = answer.into_parts();
        let body = Limited::new(body, body_limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    TransportError::TooLarge(body_limit)
                } else {
                    TransportError::Http(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::pin!(exchange);
    tokio::pin!(conn);
    tokio::select! {
        answer = &mut exchange => answer,
        ended = &mut conn => match ended {
            // The answer is whole in hyper's hands: take it.
            Ok(()) => exchange.await,
            Err(e) => Err(http(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    /// `private_certs` on a thread, given up after a while: a FIFO once
    /// blocked it for ever.
    fn certs_of(dir: &Path) -> usize {
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(private_certs(&dir).map(|c| c.len()));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("private_certs did not block")
            .expect("read")
    }

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn only_regular_files_root_owns_and_only_root_may_write_are_trusted() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("reg.example:5000");
        std::fs::create_dir(&dir).expect("dir");
        mode(&dir, 0o755);
        let write = |name: &str, m: u32| {
            let path = dir.join(name);
            std::fs::write(&path, PEM).expect("write");
            mode(&path, m);
            path
        };
        write("ca.crt", 0o644);
        write("ignored.pem", 0o644);
        write("group-writable.crt", 0o664);
        let theirs = write("theirs.crt", 0o644);
        let me = nix::unistd::Uid::effective();
        let other = if me.is_root() { 1000 } else { 0 };
        let owned_by_other =
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(other)), None).is_ok();
        nix::unistd::mkfifo(
            &dir.join("fifo.crt"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .expect("fifo");
        let elsewhere = root.path().join("elsewhere.crt");
        std::fs::write(&elsewhere, PEM).expect("write");
        std::os::unix::fs::symlink(&elsewhere, dir.join("link.crt")).expect("link");
        if !owned_by_other {
            std::fs::remove_file(&theirs).expect("rm");
        }
        assert_eq!(certs_of(&dir), 1, "ca.crt only");
        assert_eq!(certs_of(&root.path().join("missing")), 0);

        // A folder others may write: none of it.
        mode(&dir, 0o777);
        assert_eq!(certs_of(&dir), 0);
        mode(&dir, 0o755);
        // A folder reached through a link someone else owns: none.
        if me.is_root() {
            let hop = root.path().join("hop");
            std::os::unix::fs::symlink(&dir, &hop).expect("link");
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &hop,
                Some(nix::unistd::Uid::from_raw(1000)),
                None,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .expect("chown the link");
            assert_eq!(certs_of(&hop), 0);
        }
    }
}
