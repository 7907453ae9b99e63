//! Rollouts in state.db: the probation of each record whose recreate kept
//! its old container, and the latest rollback of each record (the spec
//! hash and image ID not to try again). Written before the engine is asked
//! where a crash must not lose them: a probation before the recreate, a
//! rollback before the old container is put back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{State, StateError};
use crate::plan::rollout::{Probation, RolledBack};

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl State {
    /// Remembers `p` (replacing the record's previous probation).
    pub fn record_probation(&self, p: &Probation) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO probations (record, new_id, old_id, old_spec_hash, new_spec_hash, old_image_id, new_image_id, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(record) DO UPDATE SET new_id = ?2, old_id = ?3, old_spec_hash = ?4,
                   new_spec_hash = ?5, old_image_id = ?6, new_image_id = ?7, started_at = ?8",
                params![
                    p.record,
                    p.new_id,
                    p.old_id,
                    p.old_spec_hash,
                    p.new_spec_hash,
                    p.old_image_id,
                    p.new_image_id,
                    p.started_at.to_rfc3339()
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The new container of `record`'s probation was started now: the
    /// probation runs from here.
    pub fn probation_started(&self, record: &str, new_id: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE probations SET new_id = ?2, started_at = ?3 WHERE record = ?1",
                params![record, new_id, Utc::now().to_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn probations(&self) -> Result<BTreeMap<String, Probation>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT record, new_id, old_id, old_spec_hash, new_spec_hash, old_image_id, new_image_id, started_at FROM probations",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(7)?,
                    Probation {
                        record: r.get(0)?,
                        new_id: r.get(1)?,
                        old_id: r.get(2)?,
                        old_spec_hash: r.get(3)?,
                        new_spec_hash: r.get(4)?,
                        old_image_id: r.get(5)?,
                        new_image_id: r.get(6)?,
                        started_at: DateTime::<Utc>::MIN_UTC,
                    },
                ))
            })
            .map_err(self.err())?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (at, mut p) = row.map_err(self.err())?;
            // A time that does not parse counts from now (the pass adopts
            // the kept container afresh), never as long proven.
            if let Some(at) = time(&at) {
                p.started_at = at;
                out.insert(p.record.clone(), p);
            }
        }
        Ok(out)
    }

    /// Forgets these records' probations; nothing to do is no write.
    pub fn forget_probations(&self, records: &[String]) -> Result<(), StateError> {
        self.forget("probations", records)
    }

    /// Remembers that `record`'s rollout to `r.spec_hash` on `r.image_id`
    /// was rolled back (replacing the record's previous one).
    pub fn record_rollback(&self, record: &str, r: &RolledBack) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO rollbacks (record, spec_hash, image_id, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(record) DO UPDATE SET spec_hash = ?2, image_id = ?3, reason = ?4, at = ?5",
                params![record, r.spec_hash, r.image_id, r.reason, r.at.to_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn rollbacks(&self) -> Result<BTreeMap<String, RolledBack>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT record, spec_hash, image_id, reason, at FROM rollbacks")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (record, spec_hash, image_id, reason, at) = row.map_err(self.err())?;
            let at = time(&at).unwrap_or(DateTime::<Utc>::MIN_UTC);
            out.insert(
                record,
                RolledBack {
                    spec_hash,
                    image_id,
                    reason,
                    at,
                },
            );
        }
        Ok(out)
    }

    /// Forgets these records' rollbacks (the record or its image changed).
    pub fn forget_rollbacks(&self, records: &[String]) -> Result<(), StateError> {
        self.forget("rollbacks", records)
    }

    fn forget(&self, table: &str, records: &[String]) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.err())?;
        for record in records {
            tx.execute(
                &format!("DELETE FROM {table} WHERE record = ?1"),
                params![record],
            )
            .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probations_and_rollbacks_round_trip_and_are_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(dir.path()).expect("open");
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("time");
        let p = Probation {
            record: "app".into(),
            new_id: None,
            old_id: "old".into(),
            old_spec_hash: Some("h1".into()),
            new_spec_hash: Some("h2".into()),
            old_image_id: Some("sha256:1".into()),
            new_image_id: None,
            started_at: at,
        };
        state.record_probation(&p).expect("record");
        assert_eq!(state.probations().expect("read").get("app"), Some(&p));
        state.probation_started("app", "new").expect("started");
        let read = state.probations().expect("read");
        assert_eq!(read["app"].new_id.as_deref(), Some("new"));
        assert!(read["app"].started_at > at);
        state.forget_probations(&["app".into()]).expect("forget");
        assert!(state.probations().expect("read").is_empty());

        let r = RolledBack {
            spec_hash: "h2".into(),
            image_id: "sha256:2".into(),
            reason: "the new container exited with code 1".into(),
            at,
        };
        state.record_rollback("app", &r).expect("record");
        assert_eq!(state.rollbacks().expect("read").get("app"), Some(&r));
        state.forget_rollbacks(&["app".into()]).expect("forget");
        assert!(state.rollbacks().expect("read").is_empty());
    }
}
