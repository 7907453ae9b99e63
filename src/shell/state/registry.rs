//! What registries said of watched image references: one row per
//! reference (canonical form), replaced at each check; the digest already
//! notified survives checks, so a moved tag is notified once. Rows of
//! references no longer watched are dropped by the round that sees it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{State, StateError};

/// One reference's last check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCheck {
    pub reference: String,
    /// RFC 3339, as [`super::timestamp`] writes it.
    pub checked_at: String,
    /// The tag's digest in the registry, when the check got one.
    pub remote_digest: Option<String>,
    /// The remote digest is none of the local image's.
    pub update_available: bool,
    pub error: Option<String>,
    /// A registry's `Retry-After`: not asked before this.
    pub not_before: Option<String>,
    /// The remote digest `image_notify_command` was last run for.
    pub notified_digest: Option<String>,
    /// The `docker_containers` records using the reference at the check.
    pub records: Vec<String>,
}

impl RegistryCheck {
    /// The times the poll schedule decides on.
    pub fn last(&self) -> crate::poll::LastCheck {
        crate::poll::LastCheck {
            checked_at: parse_time(&self.checked_at),
            not_before: self.not_before.as_deref().and_then(parse_time),
        }
    }
}

fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

impl State {
    /// Every reference's last check, by reference.
    pub fn registry_checks(&self) -> Result<BTreeMap<String, RegistryCheck>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT reference, checked_at, remote_digest, update_available, error,
                        not_before, notified_digest, records FROM registry_checks",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RegistryCheck {
                    reference: r.get(0)?,
                    checked_at: r.get(1)?,
                    remote_digest: r.get(2)?,
                    update_available: r.get(3)?,
                    error: r.get(4)?,
                    not_before: r.get(5)?,
                    notified_digest: r.get(6)?,
                    records: r
                        .get::<_, String>(7)?
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .map_err(self.err())?;
        let mut out = BTreeMap::new();
        for row in rows {
            let row = row.map_err(self.err())?;
            out.insert(row.reference.clone(), row);
        }
        Ok(out)
    }

    /// Records a check; the notified digest is kept (`check`'s is ignored).
    pub fn record_registry_check(&self, check: &RegistryCheck) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO registry_checks (reference, checked_at, remote_digest,
                     update_available, error, not_before, records)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(reference) DO UPDATE SET checked_at = ?2, remote_digest = ?3,
                     update_available = ?4, error = ?5, not_before = ?6, records = ?7",
                params![
                    check.reference,
                    check.checked_at,
                    check.remote_digest,
                    check.update_available,
                    check.error,
                    check.not_before,
                    check.records.join(","),
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Marks `digest` notified for `reference`; false if it already was
    /// (the caller then does not run the command again).
    pub fn mark_update_notified(&self, reference: &str, digest: &str) -> Result<bool, StateError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE registry_checks SET notified_digest = ?2
                 WHERE reference = ?1 AND notified_digest IS NOT ?2",
                params![reference, digest],
            )
            .map_err(self.err())?;
        Ok(changed > 0)
    }

    /// The reference's update is here now (pulled): status stops saying it.
    pub fn clear_update_available(&self, reference: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE registry_checks SET update_available = 0 WHERE reference = ?1",
                params![reference],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Drops the rows of references not in `watched`.
    pub fn forget_registry_checks_except(&self, watched: &[String]) -> Result<usize, StateError> {
        let known = self.registry_checks()?;
        let gone: Vec<&String> = known.keys().filter(|r| !watched.contains(r)).collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.err())?;
        for r in &gone {
            tx.execute(
                "DELETE FROM registry_checks WHERE reference = ?1",
                params![r],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())?;
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reference: &str, digest: &str, update: bool) -> RegistryCheck {
        RegistryCheck {
            reference: reference.into(),
            checked_at: "2026-01-01T00:00:00.000Z".into(),
            remote_digest: Some(digest.into()),
            update_available: update,
            error: None,
            not_before: None,
            notified_digest: None,
            records: vec!["app".into()],
        }
    }

    #[test]
    fn a_check_replaces_the_last_but_keeps_what_was_notified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(dir.path()).expect("open");
        let r = "127.0.0.1:5000/a/b:1";
        state
            .record_registry_check(&check(r, "sha256:1", true))
            .expect("record");
        assert!(state.mark_update_notified(r, "sha256:1").expect("mark"));
        assert!(
            !state.mark_update_notified(r, "sha256:1").expect("mark"),
            "the same digest is notified once"
        );
        let mut later = check(r, "sha256:1", true);
        later.checked_at = "2026-01-01T06:00:00.000Z".into();
        later.not_before = Some("2026-01-01T07:00:00.000Z".into());
        state.record_registry_check(&later).expect("record");
        let rows = state.registry_checks().expect("rows");
        let row = &rows[r];
        assert_eq!(row.notified_digest.as_deref(), Some("sha256:1"));
        assert_eq!(row.checked_at, later.checked_at);
        assert_eq!(
            row.last().not_before,
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_250_800))
        );
        // A new digest is notified again.
        assert!(state.mark_update_notified(r, "sha256:2").expect("mark"));
        state.clear_update_available(r).expect("clear");
        assert!(!state.registry_checks().expect("rows")[r].update_available);

        state
            .record_registry_check(&check("other:1", "sha256:9", false))
            .expect("record");
        assert_eq!(
            state
                .forget_registry_checks_except(&[r.to_string()])
                .expect("forget"),
            1
        );
        assert_eq!(
            state
                .registry_checks()
                .expect("rows")
                .keys()
                .collect::<Vec<_>>(),
            vec![r]
        );
    }
}
