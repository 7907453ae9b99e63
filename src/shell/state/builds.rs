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
    /// Asked with `--no-cache`: a recipe build runs every step.
    #[serde(default)]
    pub no_cache: bool,
    /// A recipe build's inputs hash, once it read them.
    #[serde(default)]
    pub inputs: Option<String>,
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
    /// A recipe build's inputs hash (`images::recipe::Loaded::inputs`).
    #[serde(default)]
    pub inputs: Option<String>,
}

/// What a lineage check reads of one image ([`State::lineage_views`]).
#[derive(Debug, Clone)]
pub struct LineageView {
    pub lineage: Lineage,
    /// The last build that succeeded or failed.
    pub last: Option<Build>,
    /// A build of the image is queued or running.
    pub in_progress: bool,
}

const LINEAGE_COLUMNS: &str = "image, image_id, base_ref, base_id, built_at, outdated, inputs";

fn lineage_row(r: &rusqlite::Row) -> rusqlite::Result<Lineage> {
    Ok(Lineage {
        image: r.get(0)?,
        image_id: r.get(1)?,
        base_ref: r.get(2)?,
        base_id: r.get(3)?,
        built_at: r.get(4)?,
        outdated: r.get(5)?,
        inputs: r.get(6)?,
    })
}

const COLUMNS: &str =
    "id, image, state, trigger, requested_at, started_at, finished_at, retry_of, base_ref, base_id, result_id, error, no_cache, inputs";

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
        no_cache: r.get(12)?,
        inputs: r.get(13)?,
    })
}

/// How a build ended, as state.db keeps it.
#[derive(Debug, Clone, Copy)]
pub enum BuildEnd<'a> {
    /// The ID of the image it made.
    Built(&'a str),
    /// Why it failed, worded for the admin.
    Failed(&'a str),
}

impl State {
    /// Queues a build of `image` unless one is queued already (then that
    /// one's id is returned: requests merge). Returns (id, merged).
    pub fn request_build(&mut self, image: &str, trigger: &str) -> Result<(i64, bool), StateError> {
        self.request_build_with(image, trigger, false)
    }

    /// [`State::request_build`]; with `no_cache`, the build (a queued one
    /// it joins too) runs every recipe step.
    pub fn request_build_with(
        &mut self,
        image: &str,
        trigger: &str,
        no_cache: bool,
    ) -> Result<(i64, bool), StateError> {
        let sql = self.err();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let queued: Option<i64> = tx
            .query_row(
                "SELECT id FROM builds WHERE image = ?1 AND state = 'queued'",
                params![image],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?;
        let result = match queued {
            Some(id) => {
                if no_cache {
                    tx.execute("UPDATE builds SET no_cache = 1 WHERE id = ?1", params![id])
                        .map_err(&sql)?;
                }
                (id, true)
            }
            None => {
                tx.execute(
                    "INSERT INTO builds (image, state, trigger, requested_at, no_cache) VALUES (?1, 'queued', ?2, ?3, ?4)",
                    params![image, trigger, now(), no_cache],
                )
                .map_err(&sql)?;
                (tx.last_insert_rowid(), false)
            }
        };
        tx.commit().map_err(&sql)?;
        Ok(result)
    }

    /// Claims the oldest queued build whose image is not waiting on another
    /// queued or running build listed in `waits_on(image)`; marks it running.
    pub fn claim_build(
        &mut self,
        waits_on: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Option<Build>, StateError> {
        let sql = self.err();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        // One read of the queue: what waits, what runs.
        let pending: Vec<Build> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM builds WHERE state IN ('queued', 'running') ORDER BY id"
                ))
                .map_err(&sql)?;
            let rows = stmt.query_map([], row).map_err(&sql)?;
            rows.collect::<Result<_, _>>().map_err(&sql)?
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
            .map_err(&sql)?;
        }
        tx.commit().map_err(&sql)?;
        Ok(pick.map(|b| Build {
            state: "running".into(),
            ..b
        }))
    }

    /// A writer for build `id`'s log.
    pub fn build_log_writer(&self, id: i64) -> BuildLog<'_> {
        BuildLog {
            state: self,
            build: id,
            seq: 0,
            pending: String::new(),
            last_write: std::time::Instant::now(),
            kept: 0,
            tail: std::collections::VecDeque::new(),
            tail_bytes: 0,
            cut: 0,
            full: false,
        }
    }

    fn insert_log_chunk(&self, build: i64, seq: i64, text: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO build_logs (build_id, seq, text) VALUES (?1, ?2, ?3)",
                params![build, seq, text],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The chunks of build `id`'s log after chunk `after` (-1: from the
    /// start), in order, with their numbers: what `berth image log -f` follows.
    pub fn build_log_chunks(&self, id: i64, after: i64) -> Result<Vec<(i64, String)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT seq, text FROM build_logs WHERE build_id = ?1 AND seq > ?2 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![id, after], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn set_build_base(
        &self,
        id: i64,
        base_ref: Option<&str>,
        base_id: Option<&str>,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE builds SET base_ref = ?1, base_id = ?2 WHERE id = ?3",
                params![base_ref, base_id, id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The inputs hash of a recipe build (what its lineage keeps).
    pub fn set_build_inputs(&self, id: i64, inputs: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE builds SET inputs = ?1 WHERE id = ?2",
                params![inputs, id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Ends a build; a success also records the image's lineage.
    pub fn finish_build(&self, build: &Build, end: BuildEnd<'_>) -> Result<(), StateError> {
        let (state, result_id, error) = match end {
            BuildEnd::Built(id) => ("succeeded", Some(id), None),
            BuildEnd::Failed(e) => ("failed", None, Some(e)),
        };
        // One transaction: a reader sees the build running with the old
        // lineage, or ended with the new one; never ended with the old
        // (a lineage check would take the old inputs for a change).
        let sql = self.err();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let at = now();
        tx.execute(
            "UPDATE builds SET state = ?1, finished_at = ?2, result_id = ?3, error = ?4 WHERE id = ?5",
            params![state, at, result_id, error, build.id],
        )
        .map_err(&sql)?;
        if let BuildEnd::Built(image_id) = end {
            // What the build recorded of its base and inputs becomes the
            // image's lineage (`WHERE true`: SQLite's upsert after a SELECT).
            tx.execute(
                "INSERT INTO lineage (image, image_id, base_ref, base_id, built_at, outdated, inputs)
                 SELECT image, ?2, base_ref, base_id, ?3, 0, inputs FROM builds WHERE id = ?1 AND true
                 ON CONFLICT(image) DO UPDATE SET image_id = excluded.image_id, base_ref = excluded.base_ref,
                   base_id = excluded.base_id, built_at = excluded.built_at, outdated = 0, inputs = excluded.inputs",
                params![build.id, image_id, at],
            )
            .map_err(&sql)?;
        }
        tx.commit().map_err(&sql)
    }

    /// At daemon start: running builds were cut off. Each becomes
    /// `interrupted`, and is queued again once (not a retry of a retry).
    pub fn interrupt_running_builds(&mut self) -> Result<Vec<Build>, StateError> {
        let running: Vec<Build> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM builds WHERE state = 'running'"
                ))
                .map_err(self.err())?;
            let rows = stmt.query_map([], row).map_err(self.err())?;
            rows.collect::<Result<_, _>>().map_err(self.err())?
        };
        for b in &running {
            self.conn()
                .execute(
                    "UPDATE builds SET state = 'interrupted', finished_at = ?1, error = 'berthd stopped during the build' WHERE id = ?2",
                    params![now(), b.id],
                )
                .map_err(self.err())?;
            if b.retry_of.is_none() {
                self.conn()
                    .execute(
                        "INSERT INTO builds (image, state, trigger, requested_at, retry_of, no_cache) VALUES (?1, 'queued', ?2, ?3, ?4, ?5)",
                        params![b.image, format!("retry of interrupted build {}", b.id), now(), b.id, b.no_cache],
                    )
                    .map_err(self.err())?;
            }
        }
        Ok(running)
    }

    pub fn build(&self, id: i64) -> Result<Option<Build>, StateError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM builds WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()
            .map_err(self.err())
    }

    /// How many of `image`'s last finished builds failed, in a row (at
    /// most `limit` looked at).
    pub fn failures_in_a_row(&self, image: &str, limit: usize) -> Result<usize, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT state FROM builds WHERE image = ?1 AND state IN ('succeeded', 'failed') ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let states = stmt
            .query_map(params![image, limit as i64], |r| r.get::<_, String>(0))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(states.iter().take_while(|s| *s == "failed").count())
    }

    /// Tests: the finished builds of `image` as if they ended at `at`.
    #[cfg(test)]
    pub(crate) fn backdate_builds(&self, image: &str, at: &str) {
        let _ = self.conn().execute(
            "UPDATE builds SET finished_at = ?1 WHERE image = ?2 AND finished_at IS NOT NULL",
            params![at, image],
        );
    }

    /// The image berth committed for a recipe stage's cache `key`, if any.
    pub fn cached_stage(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn()
            .query_row(
                "SELECT image_id FROM recipe_cache WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// Remembers that berth committed `image_id` for `key` (for the last
    /// stage: once its checks passed).
    pub fn remember_stage(
        &self,
        key: &str,
        image_id: &str,
        record: &str,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO recipe_cache (key, image_id, record, made_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET image_id = ?2, record = ?3, made_at = ?4",
                params![key, image_id, record, now()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Every image the step cache holds (what prune may remove).
    pub fn cached_images(&self) -> Result<Vec<String>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT image_id FROM recipe_cache")
            .map_err(self.err())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Forgets the cache entries of an image that is gone.
    pub fn forget_cached_image(&self, image_id: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "DELETE FROM recipe_cache WHERE image_id = ?1",
                params![image_id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The whole log of build `id` (a log from before chunks, then the chunks).
    pub fn build_log(&self, id: i64) -> Result<Option<String>, StateError> {
        let old: Option<String> = self
            .conn()
            .query_row("SELECT log FROM builds WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        let Some(mut text) = old else {
            return Ok(None);
        };
        for (_, chunk) in self.build_log_chunks(id, -1)? {
            text.push_str(&chunk);
        }
        Ok(Some(text))
    }

    pub fn builds(&self, limit: usize) -> Result<Vec<Build>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
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
        self.conn()
            .query_row(
                "SELECT count(*) FROM builds WHERE state = 'queued'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// Each image's lineage with its last finished build and whether a
    /// build of it is queued or running, all read in one transaction: a
    /// build's end (one transaction too) is in all three or in none.
    pub fn lineage_views(&self) -> Result<Vec<LineageView>, StateError> {
        let sql = self.err();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(&sql)?;
        let lineage: Vec<Lineage> = tx
            .prepare(&format!(
                "SELECT {LINEAGE_COLUMNS} FROM lineage ORDER BY image"
            ))
            .and_then(|mut stmt| stmt.query_map([], lineage_row)?.collect())
            .map_err(&sql)?;
        let mut last_of = tx
            .prepare(&format!(
                "SELECT {COLUMNS} FROM builds WHERE image = ?1 AND state IN ('succeeded', 'failed') ORDER BY id DESC LIMIT 1"
            ))
            .map_err(&sql)?;
        let mut busy = tx
            .prepare(
                "SELECT count(*) FROM builds WHERE image = ?1 AND state IN ('queued', 'running')",
            )
            .map_err(&sql)?;
        let mut views = Vec::with_capacity(lineage.len());
        for lineage in lineage {
            let last = last_of
                .query_row(params![lineage.image], row)
                .optional()
                .map_err(&sql)?;
            let in_progress = busy
                .query_row(params![lineage.image], |r| r.get::<_, i64>(0))
                .map_err(&sql)?
                > 0;
            views.push(LineageView {
                lineage,
                last,
                in_progress,
            });
        }
        drop((last_of, busy));
        tx.commit().map_err(&sql)?;
        Ok(views)
    }

    pub fn lineage(&self) -> Result<Vec<Lineage>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {LINEAGE_COLUMNS} FROM lineage ORDER BY image"
            ))
            .map_err(self.err())?;
        let rows = stmt.query_map([], lineage_row).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Marks an image outdated (its base moved, no AutoRebuild); true if it was not already.
    pub fn mark_outdated(&self, image: &str) -> Result<bool, StateError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE lineage SET outdated = 1 WHERE image = ?1 AND outdated = 0",
                params![image],
            )
            .map_err(self.err())?;
        Ok(changed > 0)
    }
}

/// Bytes of a build's log kept from its start, and from its end (where a
/// failure says why); what lies between is counted, not kept.
pub const LOG_HEAD: usize = 4 << 20;
pub const LOG_TAIL: usize = 1 << 20;
/// Lines are gathered into chunks of about this size (or of what came in
/// the last quarter second, so `berth image log -f` follows closely).
const LOG_CHUNK: usize = 32 * 1024;

/// A build's log as it is written: lines gathered into chunks, one insert
/// per chunk, bounded by [`LOG_HEAD`] and [`LOG_TAIL`].
pub struct BuildLog<'a> {
    state: &'a State,
    build: i64,
    seq: i64,
    pending: String,
    last_write: std::time::Instant,
    kept: usize,
    tail: std::collections::VecDeque<String>,
    tail_bytes: usize,
    cut: u64,
    /// The head is full: lines go to the tail.
    full: bool,
}

impl BuildLog<'_> {
    /// Adds one line (a newline is added).
    pub fn line(&mut self, text: &str) {
        let len = text.len() + 1;
        // Once a line went to the tail, every later one does: order holds.
        if !self.full && self.kept + len <= LOG_HEAD {
            self.kept += len;
            self.pending.push_str(text);
            self.pending.push('\n');
            if self.pending.len() >= LOG_CHUNK
                || self.last_write.elapsed() >= std::time::Duration::from_millis(250)
            {
                self.write();
            }
            return;
        }
        self.full = true;
        self.write();
        self.tail.push_back(format!("{text}\n"));
        self.tail_bytes += len;
        while self.tail_bytes > LOG_TAIL {
            match self.tail.pop_front() {
                Some(old) => {
                    self.tail_bytes -= old.len();
                    self.cut += old.len() as u64;
                }
                None => break,
            }
        }
    }

    fn write(&mut self) {
        self.last_write = std::time::Instant::now();
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        if let Err(e) = self.state.insert_log_chunk(self.build, self.seq, &text) {
            tracing::warn!(build = self.build, "build log: {e}");
        }
        self.seq += 1;
    }

    /// Writes what is pending, and the kept end of a log that outgrew
    /// [`LOG_HEAD`], with what was cut between.
    pub fn finish(mut self) {
        self.write();
        if self.cut > 0 {
            self.pending = format!("[… {} bytes of the log not kept …]\n", self.cut);
        }
        for line in std::mem::take(&mut self.tail) {
            self.pending.push_str(&line);
        }
        self.write();
    }
}

impl Drop for BuildLog<'_> {
    fn drop(&mut self) {
        self.write();
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
        s.finish_build(&first, BuildEnd::Built("sha256:base1"))
            .expect("finish");
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

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn a_huge_log_is_kept_in_chunks_bounded_at_both_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = State::open(dir.path()).expect("open");
        let (id, _) = s.request_build("app", "test").expect("request");
        // 200,000 lines, 20 MB: appending to one column took minutes for
        // 40,000; the 60 s bound is a hang guard, not a measure.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let s = State::open(&path).expect("open");
            let mut log = s.build_log_writer(id);
            log.line("first line");
            for i in 0..200_000 {
                log.line(&format!("{i:08} {}", "x".repeat(90)));
            }
            log.line("last line: the error");
            log.finish();
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the log is written");
        let text = s.build_log(id).expect("read").expect("a build");
        assert!(text.starts_with("first line\n"));
        assert!(
            text.ends_with("last line: the error\n"),
            "{}",
            &text[text.len() - 200..]
        );
        assert!(text.contains("bytes of the log not kept"));
        assert!(text.len() <= LOG_HEAD + LOG_TAIL + 100, "{}", text.len());
        let chunks = s.build_log_chunks(id, -1).expect("chunks");
        assert!(chunks.len() > 10 && chunks.len() < 1000, "{}", chunks.len());
        let after = s.build_log_chunks(id, chunks[5].0).expect("follow");
        assert_eq!(after.len(), chunks.len() - 6);
        let _ = &mut s;
    }
}
