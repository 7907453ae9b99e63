//! The API's request parsing. The input reads like an HTTP/1 request:
//! `METHOD TARGET` on the first line, then `Name: value` header lines up to
//! an empty line, then the body. What `http` can hold becomes a request to
//! berth's router, with a backend that answers every call with canned JSON
//! (and refuses webhooks without the right token, as berthd does). The
//! router must answer (never panic) with 2xx or 4xx: a 5xx could only come
//! from the framework's own handling, since this backend never fails. The
//! answer must be small.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use berth::api::{router, Backend, BackendError, BuildQueued};
use berth::plan::PlanView;
use berth::reconcile::PassReport;
use berth::state::{EventRun, JournalEntry};
use berth::status::RecordStatus;
use http_body_util::{BodyExt, Limited};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Canned;

impl Backend for Canned {
    async fn status(&self) -> Result<Vec<RecordStatus>, BackendError> {
        Ok(Vec::new())
    }
    async fn plan(&self) -> Result<PlanView, BackendError> {
        Ok(PlanView::default())
    }
    async fn apply(&self, _allow_mass_removal: bool) -> Result<PassReport, BackendError> {
        Ok(PassReport::default())
    }
    async fn history(
        &self,
        _record: Option<String>,
        _limit: usize,
    ) -> Result<Vec<JournalEntry>, BackendError> {
        Ok(Vec::new())
    }
    async fn container(&self, name: String, _run: bool) -> Result<PassReport, BackendError> {
        Ok(PassReport {
            trigger: name,
            ..PassReport::default()
        })
    }
    async fn signal(&self, name: String, args: Vec<String>) -> Result<EventRun, BackendError> {
        Ok(EventRun {
            at: String::new(),
            name,
            args,
            trigger: "fuzz".into(),
            result: "ok".into(),
            output: String::new(),
        })
    }
    async fn events(&self, _limit: usize) -> Result<Vec<EventRun>, BackendError> {
        Ok(Vec::new())
    }
    async fn build(
        &self,
        _name: String,
        token: Option<String>,
        _no_cache: bool,
    ) -> Result<BuildQueued, BackendError> {
        match token {
            Some(t) if t != "s3cret" => Err(BackendError::Forbidden),
            _ => Ok(BuildQueued {
                build: 1,
                merged: false,
            }),
        }
    }
    async fn check_images(
        &self,
        _names: Vec<String>,
    ) -> Result<berth::watch::Report, BackendError> {
        Ok(berth::watch::Report::default())
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

/// `METHOD TARGET\nName: value\n…\n\nbody` as a request, when `http` can
/// hold it (hyper refuses the rest before any router sees them).
fn request(data: &[u8]) -> Option<Request<Body>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let first = lines.next()?;
    let mut words = first.splitn(2, |b| *b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let target = std::str::from_utf8(words.next().unwrap_or(b"/")).ok()?;
    let mut builder = Request::builder().method(method).uri(target);
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            builder = builder.header(n, v);
        }
    }
    builder.body(Body::from(body.to_vec())).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = request(data) else {
        return;
    };
    let app = router(Arc::new(Canned));
    runtime().block_on(async move {
        let response = app.oneshot(req).await.expect("the router is infallible");
        let status = response.status();
        assert!(
            status.is_success() || status.is_client_error(),
            "status {status} for a backend that never fails"
        );
        let body = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .expect("a small answer");
        let _ = body.to_bytes();
    });
});
