//! Asks a registry what a tag names now: the digest of its manifest, by a
//! `HEAD` (the answer's `Docker-Content-Digest`), through the registry's
//! auth flow (a Bearer token from the realm its 401 names, or Basic) and
//! honouring a rate limit's `Retry-After`. No bollard here: the engine is
//! not asked, so a check pulls nothing. Errors name the registry and the
//! reference and never hold a password or a token.

pub mod challenge;
mod transport;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use sha2::Digest as _;

use crate::config::Config;
use crate::reference::ImageRef;
pub use challenge::Challenge;
pub use transport::TransportError;
use transport::{Answer, Transport};

/// Every manifest type a tag may name: a multi-platform index or list, or
/// one image's manifest, OCI or Docker.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// A token answer is a small JSON object.
const TOKEN_LIMIT: usize = 64 * 1024;
/// A manifest read whole (a registry that sends no digest on HEAD).
const MANIFEST_LIMIT: usize = 4 << 20;
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;
/// A 429 without `Retry-After` waits this long.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// A registry login. No `Debug`: it holds a password.
#[derive(Clone)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl Login {
    fn basic(&self) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        value.set_sensitive(true);
        value
    }
}

/// Why a tag's digest is not known. Never quotes a header, a body, a
/// password or a token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference}: cannot reach registry {registry}: {why}")]
    Unreachable {
        registry: String,
        reference: String,
        why: String,
    },
    #[error("{reference}: registry {registry} answered in plain http, not TLS; if it is meant to, list it in insecure_registries")]
    PlainHttp { registry: String, reference: String },
    #[error("{reference}: TLS with registry {registry} failed: {why} (a private CA's certificate goes in {certs_dir}/{registry}/ca.crt)")]
    Tls {
        registry: String,
        reference: String,
        why: String,
        certs_dir: String,
    },
    #[error("{reference}: registry {registry} {}", if *.with_login { "refused the login (wrong username or password?)" } else { "wants a login (add one to the credentials file)" })]
    Unauthorized {
        registry: String,
        reference: String,
        with_login: bool,
    },
    #[error("{reference}: registry {registry} has no such tag")]
    NotFound { registry: String, reference: String },
    #[error("{reference}: registry {registry} limits requests; next try after {}", crate::state::timestamp(*.until))]
    RateLimited {
        registry: String,
        reference: String,
        until: SystemTime,
    },
    #[error("{reference}: registry {registry}: {why}")]
    Protocol {
        registry: String,
        reference: String,
        why: String,
    },
    #[error("{reference}: {what} is not watched: it names no tag")]
    NoTag { reference: String, what: String },
}

impl RegistryError {
    /// When a rate-limited registry may be asked again.
    pub fn retry_at(&self) -> Option<SystemTime> {
        match self {
            RegistryError::RateLimited { until, .. } => Some(*until),
            _ => None,
        }
    }
}

/// Asks registries for tag digests; one per round (its TLS settings and
/// the auth schemes it learned live as long as it does).
pub struct RegistryClient {
    transport: Transport,
    certs_dir: String,
    insecure: Vec<String>,
    /// The challenge each registry answered last, so later references
    /// there send their login (or fetch their token) at once.
    challenges: Mutex<HashMap<String, Challenge>>,
}

/// The registry and reference an error names.
struct Ctx<'a> {
    registry: &'a str,
    reference: String,
    certs_dir: &'a str,
}

impl Ctx<'_> {
    fn transport(&self, e: TransportError) -> RegistryError {
        match e {
            TransportError::Tls(why) => RegistryError::Tls {
                registry: self.registry.to_string(),
                reference: self.reference.clone(),
                why,
                certs_dir: self.certs_dir.to_string(),
            },
            TransportError::PlainHttp => RegistryError::PlainHttp {
                registry: self.registry.to_string(),
                reference: self.reference.clone(),
            },
            TransportError::Connect(why) => RegistryError::Unreachable {
                registry: self.registry.to_string(),
                reference: self.reference.clone(),
                why,
            },
            other => self.protocol(other.to_string()),
        }
    }

    fn protocol(&self, why: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.to_string(),
            reference: self.reference.clone(),
            why: why.into(),
        }
    }

    fn unauthorized(&self, with_login: bool) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.to_string(),
            reference: self.reference.clone(),
            with_login,
        }
    }

    /// A 429, or a 503 that says when to come back.
    fn limited(&self, answer: &Answer) -> Option<RegistryError> {
        let now = SystemTime::now();
        let said = answer
            .headers
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| challenge::parse_retry_after(v, now));
        let until = match (answer.status, said) {
            (StatusCode::TOO_MANY_REQUESTS, None) => now + DEFAULT_BACKOFF,
            (StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, Some(t)) => t,
            _ => return None,
        };
        Some(RegistryError::RateLimited {
            registry: self.registry.to_string(),
            reference: self.reference.clone(),
            until,
        })
    }
}

impl RegistryClient {
    pub fn new(config: &Config) -> RegistryClient {
        RegistryClient {
            transport: Transport::new(&config.registry_certs_dir),
            certs_dir: config.registry_certs_dir.display().to_string(),
            insecure: config.insecure_registries.clone(),
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// Requests sent so far (token requests and redirects included).
    pub fn requests(&self) -> u64 {
        self.transport.requests()
    }

    /// The digest `image`'s tag names in its registry now.
    pub async fn digest(
        &self,
        image: &ImageRef,
        login: Option<&Login>,
    ) -> Result<String, RegistryError> {
        let host = image.api_host();
        let ctx = Ctx {
            registry: &image.registry,
            reference: image.to_string(),
            certs_dir: &self.certs_dir,
        };
        let Some(tag) = image.tag_or_latest() else {
            return Err(RegistryError::NoTag {
                reference: image.to_string(),
                what: "a reference by digest".into(),
            });
        };
        if image.digest.is_some() {
            return Err(RegistryError::NoTag {
                reference: image.to_string(),
                what: "a reference pinned by digest".into(),
            });
        }
        let scheme = if self.is_insecure(&image.registry) || self.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        let uri: Uri = format!("{scheme}://{host}/v2/{}/manifests/{tag}", image.repository)
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| ctx.protocol(e.to_string()))?;
        let known = self.known_challenge(host);
        let mut auth = match &known {
            Some(c) => Some(self.answer(&ctx, c, image, login).await?),
            None => None,
        };
        let mut answered = known.is_some();
        loop {
            let answer = self
                .follow(&ctx, Method::HEAD, &uri, auth.as_ref(), 0)
                .await?;
            match answer.status {
                s if s.is_success() => {
                    if let Some(d) = content_digest(&answer) {
                        return Ok(d);
                    }
                    // Some registries say the digest only with the body.
                    let whole = self
                        .follow(&ctx, Method::GET, &uri, auth.as_ref(), MANIFEST_LIMIT)
                        .await?;
                    if !whole.status.is_success() {
                        return Err(ctx.protocol(format!("GET manifest answered {}", whole.status)));
                    }
                    return Ok(content_digest(&whole).unwrap_or_else(|| {
                        format!("sha256:{:x}", sha2::Sha256::digest(&whole.body))
                    }));
                }
                StatusCode::UNAUTHORIZED if !answered => {
                    let Some(c) = answer
                        .headers
                        .get_all(hyper::header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .find_map(challenge::parse_www_authenticate)
                    else {
                        return Err(ctx.unauthorized(login.is_some()));
                    };
                    if c == Challenge::Basic && login.is_none() {
                        return Err(ctx.unauthorized(false));
                    }
                    auth = Some(self.answer(&ctx, &c, image, login).await?);
                    self.challenges
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(host.to_string(), c);
                    answered = true;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(ctx.unauthorized(login.is_some()))
                }
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound {
                        registry: image.registry.clone(),
                        reference: image.to_string(),
                    })
                }
                s => {
                    return Err(ctx
                        .limited(&answer)
                        .unwrap_or_else(|| ctx.protocol(format!("manifest request answered {s}"))))
                }
            }
        }
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|r| r == registry)
    }

    fn known_challenge(&self, host: &str) -> Option<Challenge> {
        self.challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
            .cloned()
    }

    /// The `Authorization` a challenge asks for: the login (Basic), or a
    /// token fetched from the realm for this repository.
    async fn answer(
        &self,
        ctx: &Ctx<'_>,
        challenge: &Challenge,
        image: &ImageRef,
        login: Option<&Login>,
    ) -> Result<HeaderValue, RegistryError> {
        let (realm, service) = match challenge {
            Challenge::Basic => {
                return login
                    .map(Login::basic)
                    .ok_or_else(|| ctx.unauthorized(false))
            }
            Challenge::Bearer { realm, service, .. } => (realm, service),
        };
        // The scope is this repository's, not the one the challenge named
        // for the request that learned it.
        let scope = format!("repository:{}:pull", image.repository);
        let mut query = vec![("scope", scope.as_str())];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let joined: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let sep = if realm.contains('?') { '&' } else { '?' };
        let uri: Uri = format!("{realm}{sep}{}", joined.join("&"))
            .parse()
            .map_err(|_| ctx.protocol("its token realm is not a valid address"))?;
        if uri.scheme_str() != Some("https") && !self.realm_may_be_plain(&uri) {
            // A login or a token over plain http is for an insecure registry only.
            return Err(ctx.protocol("its token realm is not https"));
        }
        let basic = login.map(Login::basic);
        let answer = self
            .follow(ctx, Method::GET, &uri, basic.as_ref(), TOKEN_LIMIT)
            .await?;
        match answer.status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(ctx.unauthorized(login.is_some()))
            }
            s => {
                return Err(ctx
                    .limited(&answer)
                    .unwrap_or_else(|| ctx.protocol(format!("token request answered {s}"))))
            }
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|_| ctx.protocol("its token answer is not the JSON a registry sends"))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ctx.protocol("its token answer holds no token"))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ctx.protocol("its token is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn realm_may_be_plain(&self, uri: &Uri) -> bool {
        uri.authority()
            .is_some_and(|a| self.is_insecure(a.as_str()))
    }

    /// One request, following redirects (at most [`MAX_REDIRECTS`]; never
    /// from https to http; the `Authorization` only to the same host).
    async fn follow(
        &self,
        ctx: &Ctx<'_>,
        method: Method,
        uri: &Uri,
        auth: Option<&HeaderValue>,
        body_limit: usize,
    ) -> Result<Answer, RegistryError> {
        let accept = HeaderValue::from_static(MANIFEST_TYPES);
        let mut current = uri.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut headers: Vec<(HeaderName, HeaderValue)> =
                vec![(hyper::header::ACCEPT, accept.clone())];
            if let Some(a) = auth.filter(|_| current.authority() == uri.authority()) {
                headers.push((hyper::header::AUTHORIZATION, a.clone()));
            }
            let answer = self
                .transport
                .send(method.clone(), &current, &headers, body_limit)
                .await
                .map_err(|e| ctx.transport(e))?;
            if !answer.status.is_redirection() || answer.status == StatusCode::NOT_MODIFIED {
                return Ok(answer);
            }
            let location = answer
                .headers
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| ctx.protocol("a redirect without a Location"))?;
            let next: Uri = if location.starts_with('/') {
                format!(
                    "{}://{}{location}",
                    current.scheme_str().unwrap_or("https"),
                    current.authority().map(|a| a.as_str()).unwrap_or_default()
                )
                .parse()
            } else {
                location.parse()
            }
            .map_err(|_| ctx.protocol("a redirect to an invalid address"))?;
            if current.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
                return Err(ctx.protocol("a redirect from https to plain http"));
            }
            current = next;
        }
        Err(ctx.protocol(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

fn content_digest(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|d| d.contains(':') && d.len() <= 200)
        .map(str::to_string)
}

/// A query value: unreserved characters as they are, the rest `%XX`.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod test_server;

#[cfg(test)]
mod tests {
    use super::*;
    use test_server::token_registry;

    #[tokio::test]
    async fn a_bearer_challenge_is_answered_with_a_token_from_its_realm() {
        let (host, tokens) = token_registry().await;
        let config = Config {
            insecure_registries: vec![host.clone()],
            ..Config::default()
        };
        let image = ImageRef::parse(&format!("{host}/a/b:1")).expect("reference");
        let right = Login {
            username: "u".into(),
            password: "right".into(),
        };
        let client = RegistryClient::new(&config);
        let digest = client.digest(&image, Some(&right)).await.expect("digest");
        assert_eq!(digest, "sha256:feedbeef");
        assert_eq!(client.requests(), 3, "401, token, HEAD");
        // Learnt: the next check fetches its token at once.
        client.digest(&image, Some(&right)).await.expect("digest");
        assert_eq!(client.requests(), 5);
        assert_eq!(tokens.load(std::sync::atomic::Ordering::Relaxed), 2);

        let wrong = Login {
            username: "u".into(),
            password: "wrong-pw".into(),
        };
        let e = RegistryClient::new(&config)
            .digest(&image, Some(&wrong))
            .await
            .expect_err("the realm refuses");
        assert!(
            matches!(
                e,
                RegistryError::Unauthorized {
                    with_login: true,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("wrong-pw"));

        let limited = ImageRef::parse(&format!("{host}/limited/x:1")).expect("reference");
        let before = SystemTime::now();
        let e = RegistryClient::new(&config)
            .digest(&limited, None)
            .await
            .expect_err("rate limited");
        let until = e.retry_at().expect("a time to come back");
        assert!(until >= before + Duration::from_secs(119), "{e}");

        // Without insecure_registries it is https, which this one is not.
        let e = RegistryClient::new(&Config::default())
            .digest(&image, Some(&right))
            .await
            .expect_err("no TLS there");
        // Said as what it is, with the key that fixes it.
        assert!(matches!(e, RegistryError::PlainHttp { .. }), "{e}");
        assert!(e.to_string().contains("insecure_registries"), "{e}");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            percent_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
        assert_eq!(percent_encode("registry.docker.io"), "registry.docker.io");
    }

    #[test]
    fn errors_name_the_registry_and_reference_and_no_secret() {
        let e = RegistryError::Unauthorized {
            registry: "127.0.0.1:5000".into(),
            reference: "127.0.0.1:5000/a/b:1".into(),
            with_login: true,
        };
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:5000/a/b:1"), "{text}");
        assert!(text.contains("refused the login"), "{text}");
        let login = Login {
            username: "u".into(),
            password: "s3cret".into(),
        };
        assert!(login.basic().is_sensitive());
    }
}
