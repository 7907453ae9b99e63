//! A registry in the unit tests' process (plain http on 127.0.0.1, so
//! `insecure_registries`): `a/b` wants a Bearer token from its realm, which
//! wants the login `u:right`; `limited/*` answers 429 with `Retry-After:
//! 120`. Its manifest digest is `sha256:feedbeef`.

use axum::response::IntoResponse;
use base64::Engine as _;

/// A registry on 127.0.0.1 (plain http: `insecure_registries`) that
/// wants a Bearer token from its realm, which wants the login; and a
/// repository that is rate limited.
pub async fn token_registry() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use axum::http::{HeaderMap, StatusCode as S, Uri as AxUri};
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let tokens = std::sync::Arc::new(AtomicU64::new(0));
    let (realm, counted) = (format!("http://{host}/token"), tokens.clone());
    let app = axum::Router::new().fallback(move |uri: AxUri, headers: HeaderMap| {
        let (realm, counted) = (realm.clone(), counted.clone());
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let path = uri.path();
            if path == "/token" {
                counted.fetch_add(1, Ordering::Relaxed);
                let query = uri.query().unwrap_or_default();
                let basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("u:right")
                );
                return if auth == basic && query.contains("scope=repository%3Aa%2Fb%3Apull") {
                    (S::OK, [("x", "y")], r#"{"token":"tok-Q9"}"#).into_response()
                } else {
                    (S::UNAUTHORIZED, [("x", "y")], "").into_response()
                };
            }
            if path.starts_with("/v2/limited/") {
                return (S::TOO_MANY_REQUESTS, [("retry-after", "120")], "").into_response();
            }
            if auth != "Bearer tok-Q9" {
                let challenge =
                    format!(r#"Bearer realm="{realm}",service="test",scope="repository:a/b:pull""#);
                return (
                    S::UNAUTHORIZED,
                    [("www-authenticate", challenge.as_str())],
                    "",
                )
                    .into_response();
            }
            (S::OK, [("docker-content-digest", "sha256:feedbeef")], "").into_response()
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (host, tokens)
}
