//! Keeping one network per name on engines that allow two.
//!
//! Engines before API 1.44 (Docker 25) create a second network with a taken
//! name unless the client asks `CheckDuplicate`, which bollard 0.21 can no
//! longer send; containers then fail with "network X is ambiguous". So
//! network creation is serialised within the process, and after a create,
//! or when the engine says a name is ambiguous, the oldest network of the
//! name is kept and younger ones of ours are removed. Two processes racing
//! agree on the oldest, so repeated passes converge on one network.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::ListNetworksOptionsBuilder;

use super::{is_status, DockerEngine};
use crate::engine::{EngineError, LABEL_INSTANCE, LABEL_MANAGED};

/// Held while checking for and creating a network.
pub(super) static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The engine's answer when a name matches several networks (HTTP 400).
pub(super) fn is_ambiguous(e: &BollardError) -> bool {
    matches!(e, BollardError::DockerResponseServerError { message, .. } if message.contains("ambiguous"))
}

impl DockerEngine {
    /// Removes the younger networks named `name` that this berth instance
    /// made (both labels); one of another instance or of nobody's, or one
    /// that has containers attached, stays and is reported.
    pub(super) async fn drop_duplicate_networks(
        &self,
        name: &str,
        instance: &str,
    ) -> Result<(), EngineError> {
        self.count();
        let options = ListNetworksOptionsBuilder::new()
            .filters(&HashMap::from([("name", vec![name])]))
            .build();
        let mut same_name: Vec<(String, String, bool)> = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| self.error(e))?
            .into_iter()
            // The engine's name filter also matches parts of names.
            .filter(|n| n.name.as_deref() == Some(name))
            .map(|n| {
                let label = |key: &str| n.labels.as_ref().and_then(|l| l.get(key)).cloned();
                let ours = label(LABEL_MANAGED).is_some_and(|v| v == "true")
                    && label(LABEL_INSTANCE).is_some_and(|v| v == instance);
                let created = n.created.as_deref().map(sortable_time).unwrap_or_default();
                (created, n.id.unwrap_or_default(), ours)
            })
            .collect();
        same_name.sort();
        let mut kept = Vec::new();
        for (_, id, ours) in same_name.into_iter().skip(1) {
            if !ours {
                kept.push(id);
                continue;
            }
            tracing::info!(network = name, id = %id, "removing a duplicate network");
            self.count();
            match self.docker.remove_network(&id).await {
                Ok(()) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => {
                    tracing::warn!(network = name, id = %id, "cannot remove a duplicate network: {e}");
                    kept.push(id);
                }
            }
        }
        if kept.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Conflict(format!(
                "network {name} is ambiguous: {} more networks of that name could not be removed ({})",
                kept.len(),
                kept.join(", ")
            )))
        }
    }
}

/// An RFC 3339 time from the engine as a string that sorts by time: Go trims
/// trailing zeros of the fraction, so `…:05.1Z` would sort after `…:05.12Z`.
/// The zone is dropped: both times come from the same engine.
fn sortable_time(time: &str) -> String {
    let zone_start = time
        .rfind(['Z', '+', '-'])
        .filter(|&i| i > time.find('T').unwrap_or(time.len()))
        .unwrap_or(time.len());
    let (seconds, fraction) = time[..zone_start]
        .split_once('.')
        .unwrap_or((&time[..zone_start], ""));
    format!("{seconds}.{fraction:0<9}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sort_by_value_not_by_text() {
        assert!(sortable_time("2024-05-01T10:00:05.1Z") > sortable_time("2024-05-01T10:00:05.09Z"));
        assert!(
            sortable_time("2024-05-01T10:00:05Z") < sortable_time("2024-05-01T10:00:05.000001Z")
        );
        assert_eq!(
            sortable_time("2024-05-01T10:00:05.5+02:00"),
            "2024-05-01T10:00:05.500000000"
        );
        assert_eq!(sortable_time("garbage"), "garbage.000000000");
    }
}
