//! The router's status codes, from a backend that refuses in every way,
//! through the real socket server and the CLI's client: the status comes
//! from the error's kind, and the client hands back berthd's text once.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::StatusCode;

use super::client::{self, DaemonClient};
use super::{Backend, BackendError, BuildQueued, ErrorKind};
use crate::db::DbError;
use crate::declared::LoadError;
use crate::engine::EngineError;
use crate::events::EventError;
use crate::plan::PlanView;
use crate::reconcile::{PassError, PassReport};
use crate::state::{EventRun, JournalEntry};
use crate::status::RecordStatus;

/// Refuses each request the way its name says.
struct Refuses;

impl Backend for Refuses {
    async fn status(&self) -> Result<Vec<RecordStatus>, BackendError> {
        let missing = DbError::Missing(PathBuf::from("/db/docker_containers"));
        Err(PassError::Declared(LoadError::Db(missing)).into())
    }

    async fn plan(&self) -> Result<PlanView, BackendError> {
        Err(BackendError::NoEngine)
    }

    async fn apply(&self, _allow_mass_removal: bool) -> Result<PassReport, BackendError> {
        Err(EngineError::Conflict("name web is in use".into()).into())
    }

    async fn history(
        &self,
        _record: Option<String>,
        _limit: usize,
    ) -> Result<Vec<JournalEntry>, BackendError> {
        Ok(Vec::new())
    }

    async fn container(&self, name: String, run: bool) -> Result<PassReport, BackendError> {
        Err(match (name.as_str(), run) {
            ("off", true) => EventError::Disabled(name),
            _ => EventError::NoRecord(name),
        }
        .into())
    }

    async fn signal(&self, name: String, _args: Vec<String>) -> Result<EventRun, BackendError> {
        Err(EventError::BadName(name).into())
    }

    async fn events(&self, _limit: usize) -> Result<Vec<EventRun>, BackendError> {
        Ok(Vec::new())
    }

    async fn build(
        &self,
        name: String,
        token: Option<String>,
        _no_cache: bool,
    ) -> Result<BuildQueued, BackendError> {
        match token {
            Some(_) => Err(BackendError::Forbidden),
            None => Err(BackendError::NoImage(name)),
        }
    }

    async fn check_images(&self, names: Vec<String>) -> Result<crate::watch::Report, BackendError> {
        Err(crate::watch::WatchError::NotWatched(names.join(",")).into())
    }
}

#[tokio::test]
async fn each_error_kind_is_its_status_and_the_client_says_its_text_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.sock");
    let socket = super::bind(&path).await.expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::serve(socket, Arc::new(Refuses), async {
        let _ = stopped.await;
    }));

    let cases: [(&str, &str, StatusCode, &str); 10] = [
        (
            "GET",
            "/v1/status",
            StatusCode::INTERNAL_SERVER_ERROR,
            "/db/docker_containers: no such db file",
        ),
        (
            "GET",
            "/v1/plan",
            StatusCode::SERVICE_UNAVAILABLE,
            "berthd is not connected to the engine yet",
        ),
        (
            "POST",
            "/v1/apply",
            StatusCode::CONFLICT,
            "conflict: name web is in use",
        ),
        (
            "POST",
            "/v1/containers/web/start",
            StatusCode::NOT_FOUND,
            "no record web in docker_containers",
        ),
        (
            "POST",
            "/v1/containers/off/start",
            StatusCode::CONFLICT,
            "off has status disabled: no event starts it (set status enabled)",
        ),
        (
            "POST",
            "/v1/containers/web/restart",
            StatusCode::NOT_FOUND,
            "no verb restart: use start or stop",
        ),
        (
            "POST",
            "/v1/events/a..b",
            StatusCode::BAD_REQUEST,
            "\"a..b\" is not a valid event name (letters, digits, '-', '_', '.')",
        ),
        (
            "POST",
            "/v1/images/app/build",
            StatusCode::NOT_FOUND,
            "no docker_images record app",
        ),
        (
            "POST",
            "/v1/images/check",
            StatusCode::NOT_FOUND,
            ": no record, image record or image reference of that name is watched (Update notify or auto)",
        ),
        (
            "POST",
            "/v1/hooks/images/app?token=nope",
            StatusCode::FORBIDDEN,
            "wrong or missing webhook token",
        ),
    ];
    let body = serde_json::json!({ "args": [] });
    for (method, uri, status, text) in cases {
        let (got, json) = client::send(&path, method, uri, Some(&body), client::QUESTION)
            .await
            .expect("an answer")
            .expect("berthd listens");
        assert_eq!(got, status, "{method} {uri}: {json}");
        assert_eq!(json["error"], text, "{method} {uri}");
    }
    let (got, json) = client::send(&path, "GET", "/v1/history", None, client::QUESTION)
        .await
        .expect("an answer")
        .expect("berthd listens");
    assert_eq!((got, json), (StatusCode::OK, serde_json::json!([])));

    // The CLI's side: the kind back from the status, the text as said.
    let daemon = DaemonClient::new(&path);
    let e = daemon
        .container("web".into(), false)
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "no record web in docker_containers");
    let e = daemon.apply(false).await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(e.to_string(), "conflict: name web is in use");
    let e = daemon
        .signal("a..b".into(), Vec::new())
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::BadInput);

    let _ = stop.send(());
    server.await.expect("server task").expect("served");
}
