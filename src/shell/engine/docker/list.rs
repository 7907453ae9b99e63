//! The engine's container list, read as plain JSON rather than through
//! bollard's model: bollard's `State` is a closed enum, and Podman's
//! Docker-compatible list says `stopped` (between a container's exit and
//! its cleanup, so for a while after every exit of a container that
//! restarts), which fails the whole list and with it every pass
//! (bollard#701, podman#28359). Here an unknown state is one container's
//! matter: mapped to the Docker state it stands for, or kept as the
//! engine words it (never running) and logged.
//!
//! Podman's list says no health verdict in its status line, so on Podman
//! the verdicts come from lists filtered by health (see `observe`).
//!
//! bollard has no call for an arbitrary path, so the request is one it
//! streams raw (`export_container` of a name no container can have) with
//! its path rewritten by a request modifier; the connection, TLS and
//! timeouts stay bollard's.

use std::collections::HashMap;
use std::str::FromStr;

use bollard::BollardRequest;
use futures_util::StreamExt;
use serde::Deserialize;

use super::DockerEngine;
use crate::engine::EngineError;

/// The names the raw lists are asked under: every container, and the
/// containers of one health verdict. `:` is not allowed in a container
/// name, so no real export can be rewritten.
const LIST_SENTINEL: &str = "berth:list";
const HEALTH_SENTINEL: &str = "berth:health-";
/// Podman's own ping (`/libpod/_ping`), which Docker does not have: which
/// engine this is for the price of a ping, where `/version` costs Podman
/// half a second (it asks runc, conmon and the package manager).
const LIBPOD_PING_SENTINEL: &str = "berth:libpod-ping";

/// The health verdicts the engine filters lists by (Docker's `health`
/// filter, which Podman's Docker API has too).
pub(super) const VERDICTS: [&str; 3] = ["starting", "healthy", "unhealthy"];

/// At most this much JSON is read (a listed container is about 1–2 KiB).
const MAX_LIST_BYTES: usize = 64 << 20;

/// bollard's request modifier: a sentinel export becomes `GET
/// /containers/json?all=1` (with a health filter for a health sentinel),
/// anything else is left as it is.
pub(super) fn rewrite(request: BollardRequest) -> BollardRequest {
    let path = request.uri().path().replace("%3A", ":").replace("%3a", ":");
    let Some((prefix, name)) = path
        .strip_suffix("/export")
        .and_then(|p| p.rsplit_once("/containers/"))
    else {
        return request;
    };
    if name == LIBPOD_PING_SENTINEL {
        return with_path(request, &format!("{prefix}/libpod/_ping"));
    }
    let query = if name == LIST_SENTINEL {
        "all=1".to_string()
    } else if let Some(verdict) = name
        .strip_prefix(HEALTH_SENTINEL)
        .filter(|v| VERDICTS.contains(v))
    {
        // {"health":["<verdict>"]}, percent-encoded.
        format!("all=1&filters=%7B%22health%22%3A%5B%22{verdict}%22%5D%7D")
    } else {
        return request;
    };
    with_path(request, &format!("{prefix}/containers/json?{query}"))
}

fn with_path(mut request: BollardRequest, target: &str) -> BollardRequest {
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = hyper::http::uri::PathAndQuery::from_str(target) {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = hyper::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// One container as the list shows it; every field may be missing or null.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Listed {
    #[serde(rename = "Id")]
    pub id: Option<String>,
    #[serde(rename = "Names")]
    pub names: Option<Vec<String>>,
    #[serde(rename = "Image")]
    pub image: Option<String>,
    #[serde(rename = "ImageID")]
    pub image_id: Option<String>,
    #[serde(rename = "Labels")]
    pub labels: Option<HashMap<String, String>>,
    #[serde(rename = "State")]
    pub state: Option<String>,
    #[serde(rename = "Status")]
    pub status: Option<String>,
}

/// A state as the planner knows states (Docker's words). Podman's
/// transient ones are what Podman itself now reports for them
/// (podman#28390): `stopped` (exited, not yet cleaned up) is `exited`,
/// `stopping` is still `running`; `configured` and `initialized` (made,
/// never started) are `created`. Anything else stays as the engine said
/// it, which the planner never takes for running.
pub(super) fn docker_state(engine_state: &str) -> String {
    let state = engine_state.to_ascii_lowercase();
    match state.as_str() {
        "stopped" => "exited".to_string(),
        "stopping" => "running".to_string(),
        "configured" | "initialized" => "created".to_string(),
        _ => state,
    }
}

/// Whether the planner knows `state` (after [`docker_state`]).
pub(super) fn known_state(state: &str) -> bool {
    matches!(
        state,
        "" | "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead"
    )
}

impl DockerEngine {
    /// Every container, running or not (no label filter: an unmanaged
    /// container may hold a record's name).
    pub(super) async fn list_containers_raw(&self) -> Result<Vec<Listed>, EngineError> {
        self.list_under(LIST_SENTINEL).await
    }

    /// The IDs of the containers whose health check says `verdict` (one of
    /// [`VERDICTS`]).
    pub(super) async fn list_health(&self, verdict: &str) -> Result<Vec<String>, EngineError> {
        let listed = self
            .list_under(&format!("{HEALTH_SENTINEL}{verdict}"))
            .await?;
        Ok(listed.into_iter().filter_map(|c| c.id).collect())
    }

    /// Whether the engine answers Podman's own ping: `Ok(false)` is
    /// Docker's 404.
    pub(super) async fn answers_libpod_ping(&self) -> Result<bool, EngineError> {
        self.count();
        let mut stream = self.docker.export_container(LIBPOD_PING_SENTINEL);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(_) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(false),
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(true)
    }

    async fn list_under(&self, sentinel: &str) -> Result<Vec<Listed>, EngineError> {
        self.count();
        let mut stream = self.docker.export_container(sentinel);
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(e))?;
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(EngineError::Api(format!(
                    "the container list is over {} MiB",
                    MAX_LIST_BYTES >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|e| EngineError::Api(format!("the engine's container list: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_transient_states_are_the_docker_ones_and_unknown_ones_stay() {
        assert_eq!(docker_state("stopped"), "exited");
        assert_eq!(docker_state("stopping"), "running");
        assert_eq!(docker_state("configured"), "created");
        assert_eq!(docker_state("Running"), "running");
        assert_eq!(docker_state("exited"), "exited");
        assert_eq!(docker_state("frozen"), "frozen");
        assert!(!known_state("frozen"));
        assert!(known_state(&docker_state("stopped")));
    }

    #[test]
    fn a_list_with_unknown_states_and_nulls_parses() {
        let json = r#"[
            {"Id":"a","Names":["/app"],"Image":"x","ImageID":"sha256:1","Labels":null,
             "State":"stopped","Status":"Exited (3) Less than a second ago","Extra":1},
            {"Id":"b","Names":null,"State":"something-new"},
            {}
        ]"#;
        let listed: Vec<Listed> = serde_json::from_str(json).expect("parses");
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].state.as_deref(), Some("stopped"));
        assert_eq!(listed[0].image_id.as_deref(), Some("sha256:1"));
        assert!(listed[1].names.is_none());
        assert!(listed[2].id.is_none());
    }

    #[test]
    fn only_the_sentinel_export_is_rewritten() {
        let request = |uri: &str| {
            hyper::Request::builder()
                .uri(uri)
                .body(bollard::body_full(Default::default()))
                .expect("request")
        };
        let rewritten = rewrite(request(
            "http://localhost:2375/containers/berth%3Alist/export",
        ));
        assert_eq!(
            rewritten.uri().to_string(),
            "http://localhost:2375/containers/json?all=1"
        );
        let versioned = rewrite(request("http://h/v1.41/containers/berth:list/export"));
        assert_eq!(
            versioned.uri().to_string(),
            "http://h/v1.41/containers/json?all=1"
        );
        let ping = rewrite(request("http://h/containers/berth:libpod-ping/export"));
        assert_eq!(ping.uri().to_string(), "http://h/libpod/_ping");
        let health = rewrite(request("http://h/containers/berth:health-healthy/export"));
        assert_eq!(
            health.uri().to_string(),
            "http://h/containers/json?all=1&filters=%7B%22health%22%3A%5B%22healthy%22%5D%7D"
        );
        for untouched in [
            "http://h/containers/app/export",
            "http://h/containers/berth:health-sick/export",
            "http://h/containers/berth:list/logs",
        ] {
            assert_eq!(rewrite(request(untouched)).uri().to_string(), untouched);
        }
    }
}
