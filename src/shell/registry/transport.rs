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

/// Connections and TLS settings shared by a round's checks.
pub struct Transport {
    certs_dir: PathBuf,
    /// The system's roots, read once (reading them parses every file).
    system_roots: OnceLock<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
    /// TLS settings per `host[:port]` (its own certs folder).
    tls: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
    requests: AtomicU64,
}

impl Transport {
    pub fn new(certs_dir: &Path) -> Transport {
        Transport {
            certs_dir: certs_dir.to_path_buf(),
            system_roots: OnceLock::new(),
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
            let config = self.tls_config(authority.as_str())?;
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            over(TokioIo::new(stream), request, body_limit).await
        } else {
            over(TokioIo::new(tcp), request, body_limit).await
        }
    }

    /// The TLS settings for `authority`: the system's roots and the
    /// certificates of its folder under `registry_certs_dir` (read once
    /// per round: a CA added between rounds is seen at the next).
    fn tls_config(&self, authority: &str) -> Result<Arc<rustls::ClientConfig>, TransportError> {
        let mut cache = self.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.get(authority) {
            return Ok(c.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        let system = self.system_roots.get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!("system certificates: {e}");
            }
            Arc::new(found.certs)
        });
        // A root the system store has that rustls cannot use is skipped,
        // as every other client does.
        let _ = roots.add_parsable_certificates(system.iter().cloned());
        for cert in private_certs(&self.certs_dir.join(authority))? {
            roots.add(cert).map_err(|e| {
                TransportError::Tls(format!(
                    "a certificate under {}: {e}",
                    self.certs_dir.join(authority).display()
                ))
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        cache.insert(authority.to_string(), config.clone());
        Ok(config)
    }
}

/// A certs folder holds a few files; more is not a CA folder.
const MAX_CERT_FILES: usize = 64;
/// ...and each a few KiB.
const MAX_CERT_FILE: u64 = 1 << 20;

/// Every certificate of every `*.crt` in `dir` (Docker's rule: `ca.crt`
/// and any other `.crt`); a missing folder is none.
fn private_certs(
    dir: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    let err = |path: &Path, error| TransportError::Certs {
        path: path.to_path_buf(),
        error,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(dir, e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .take(MAX_CERT_FILES)
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        use std::io::Read;
        let mut text = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_CERT_FILE).read_to_end(&mut text))
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
