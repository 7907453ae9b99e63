//! The build queue and image lineage in state.db. Requests for an image
//! already queued merge; a worker claims the oldest queued build whose base
//! is not itself waiting to be built, so chains build level by level.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{now, State, StateError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub id: i64,
    pub image: String,
    /// queued, running, succeeded, failed, interrupted
    pub state: String,
    pub trigger: String,
    pub requested_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub retry_of: Option<i64>,
    pub base_ref: Option<String>,
    pub base_id: Option<String>,
    pub result_id: Option<String>,
    pub error: Option<String>,
}

/// What berth knows an image was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    pub image: String,
    pub image_id: String,
    pub base_ref: Option<String>,
    pub base_id: Option<String>,
    pub built_at: String,
    pub outdated: bool,
}

const COLUMNS: &str =
    "id, image, state, trigger, requested_at, started_at, finished_at, retry_of, base_ref, base_id, result_id, error";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Build> {
    Ok(Build {
        id: r.get(0)?,
        image: r.get(1)?,
        state: r.get(2)?,
        trigger: r.get(3)?,
        requested_at: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        retry_of: r.get(7)?,
        base_ref: r.get(8)?,
        base_id: r.get(9)?,
        result_id: r.get(10)?,
        error: r.get(11)?,
    })
}

impl State {
    /// Queues a build of `image` unless one is queued already (then that
    /// one's id is returned: requests merge). Returns (id, merged).
    pub fn request_build(&mut self, image: &str, trigger: &str) -> Result<(i64, bool), StateError> {
        let path = self.path.clone();
        let sql = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let queued: Option<i64> = tx
            .query_row(
                "SELECT id FROM builds WHERE image = ?1 AND state = 'queued'",
                params![image],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        let result = match queued {
            Some(id) => (id, true),
            None => {
                tx.execute(
                    "INSERT INTO builds (image, state, trigger, requested_at) VALUES (?1, 'queued', ?2, ?3)",
                    params![image, trigger, now()],
                )
                .map_err(sql)?;
                (tx.last_insert_rowid(), false)
            }
        };
        tx.commit().map_err(sql)?;
        Ok(result)
    }

    /// Claims the oldest queued build whose image is not waiting on another
    /// queued or running build listed in `waits_on(image)`; marks it running.
    pub fn claim_build(
        &mut self,
        waits_on: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Option<Build>, StateError> {
        let path = self.path.clone();
        let sql = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        // One read of the queue: what waits, what runs.
        let pending: Vec<Build> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM builds WHERE state IN ('queued', 'running') ORDER BY id"
                ))
                .map_err(sql)?;
            let rows = stmt.query_map([], row).map_err(sql)?;
            rows.collect::<Result<_, _>>().map_err(sql)?
        };
        let busy: Vec<&str> = pending.iter().map(|b| b.image.as_str()).collect();
        let running: Vec<&str> = pending
            .iter()
            .filter(|b| b.state == "running")
            .map(|b| b.image.as_str())
            .collect();
        let queued = pending.iter().filter(|b| b.state == "queued");
        let pick = queued
            .into_iter()
            .find(|b| {
                !running.contains(&b.image.as_str())
                    && !waits_on(&b.image)
                        .iter()
                        .any(|base| busy.contains(&base.as_str()))
            })
            .cloned();
        if let Some(b) = &pick {
            tx.execute(
                "UPDATE builds SET state = 'running', started_at = ?1 WHERE id = ?2",
                params![now(), b.id],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(pick.map(|b| Build {
            state: "running".into(),
            ..b
        }))
    }

    pub fn append_build_log(&self, id: i64, text: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE builds SET log = log || ?1 WHERE id = ?2",
                params![text, id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn set_build_base(
        &self,
        id: i64,
        base_ref: Option<&str>,
        base_id: Option<&str>,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE builds SET base_ref = ?1, base_id = ?2 WHERE id = ?3",
                params![base_ref, base_id, id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Ends a build; a success also records the image's lineage.
    pub fn finish_build(
        &self,
        build: &Build,
        result: Result<&str, &str>,
    ) -> Result<(), StateError> {
        let (state, result_id, error) = match result {
            Ok(id) => ("succeeded", Some(id), None),
            Err(e) => ("failed", None, Some(e)),
        };
        self.conn
            .execute(
                "UPDATE builds SET state = ?1, finished_at = ?2, result_id = ?3, error = ?4 WHERE id = ?5",
                params![state, now(), result_id, error, build.id],
            )
            .map_err(self.err())?;
        if let Ok(image_id) = result {
            let current = self.build(build.id)?;
            let (base_ref, base_id) = current
                .map(|b| (b.base_ref, b.base_id))
                .unwrap_or((None, None));
            self.conn
                .execute(
                    "INSERT INTO lineage (image, image_id, base_ref, base_id, built_at, outdated)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0)
                     ON CONFLICT(image) DO UPDATE SET image_id = ?2, base_ref = ?3, base_id = ?4, built_at = ?5, outdated = 0",
                    params![build.image, image_id, base_ref, base_id, now()],
                )
                .map_err(self.err())?;
        }
        Ok(())
    }

    /// At daemon start: running builds were cut off. Each becomes
    /// `interrupted`, and is queued again once (not a retry of a retry).
    pub fn interrupt_running_builds(&mut self) -> Result<Vec<Build>, StateError> {
        let running: Vec<Build> = {
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM builds WHERE state = 'running'"
                ))
                .map_err(self.err())?;
            let rows = stmt.query_map([], row).map_err(self.err())?;
            rows.collect::<Result<_, _>>().map_err(self.err())?
        };
        for b in &running {
            self.conn
                .execute(
                    "UPDATE builds SET state = 'interrupted', finished_at = ?1, error = 'berthd stopped during the build' WHERE id = ?2",
                    params![now(), b.id],
                )
                .map_err(self.err())?;
            if b.retry_of.is_none() {
                self.conn
                    .execute(
                        "INSERT INTO builds (image, state, trigger, requested_at, retry_of) VALUES (?1, 'queued', ?2, ?3, ?4)",
                        params![b.image, format!("retry of interrupted build {}", b.id), now(), b.id],
                    )
                    .map_err(self.err())?;
            }
        }
        Ok(running)
    }

    pub fn build(&self, id: i64) -> Result<Option<Build>, StateError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM builds WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()
            .map_err(self.err())
    }

    pub fn build_log(&self, id: i64) -> Result<Option<String>, StateError> {
        self.conn
            .query_row("SELECT log FROM builds WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    pub fn builds(&self, limit: usize) -> Result<Vec<Build>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM builds ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![limit as i64], row)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn has_pending_builds(&self) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM builds WHERE state = 'queued'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// Whether a build of `image` is queued or running.
    pub fn build_in_progress(&self, image: &str) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM builds WHERE image = ?1 AND state IN ('queued', 'running')",
                params![image],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    pub fn lineage(&self) -> Result<Vec<Lineage>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT image, image_id, base_ref, base_id, built_at, outdated FROM lineage ORDER BY image")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Lineage {
                    image: r.get(0)?,
                    image_id: r.get(1)?,
                    base_ref: r.get(2)?,
                    base_id: r.get(3)?,
                    built_at: r.get(4)?,
                    outdated: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Marks an image outdated (its base moved, no AutoRebuild); true if it was not already.
    pub fn mark_outdated(&self, image: &str) -> Result<bool, StateError> {
        let changed = self
            .conn
            .execute(
                "UPDATE lineage SET outdated = 1 WHERE image = ?1 AND outdated = 0",
                params![image],
            )
            .map_err(self.err())?;
        Ok(changed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_merge_claims_follow_bases_and_interrupted_builds_retry_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = State::open(dir.path()).expect("open");
        let (a, merged) = s.request_build("app", "cli").expect("req");
        assert!(!merged);
        assert_eq!(s.request_build("app", "webhook").expect("req"), (a, true));
        let (base, _) = s.request_build("base", "cli").expect("req");
        let waits = |image: &str| {
            if image == "app" {
                vec!["base".to_string()]
            } else {
                vec![]
            }
        };
        // app waits for its base, though it was queued first.
        let first = s.claim_build(&waits).expect("claim").expect("a build");
        assert_eq!(first.id, base);
        assert!(
            s.claim_build(&waits).expect("claim").is_none(),
            "app waits while base runs"
        );
        s.finish_build(&first, Ok("sha256:base1")).expect("finish");
        let second = s.claim_build(&waits).expect("claim").expect("app");
        assert_eq!(second.id, a);
        // The daemon dies with app running: interrupted, queued again once.
        drop(s);
        let mut s = State::open(dir.path()).expect("reopen");
        let cut = s.interrupt_running_builds().expect("interrupt");
        assert_eq!(cut.len(), 1);
        let retry = s.claim_build(&waits).expect("claim").expect("retry");
        assert_eq!(retry.retry_of, Some(a));
        let cut = s.interrupt_running_builds().expect("interrupt");
        assert_eq!(cut.len(), 1);
        assert!(
            s.claim_build(&waits).expect("claim").is_none(),
            "a retry is not retried again"
        );
        let states: Vec<String> = s
            .builds(10)
            .expect("list")
            .into_iter()
            .map(|b| b.state)
            .collect();
        assert_eq!(
            states,
            vec!["interrupted", "succeeded", "interrupted"],
            "newest first"
        );
        assert_eq!(s.lineage().expect("lineage")[0].image_id, "sha256:base1");
    }
}
