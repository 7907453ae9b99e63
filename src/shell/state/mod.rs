//! berth's own memory in `state_dir/state.db` (SQLite): the journal of
//! passes and actions, runtime overrides, the updates berth applied in
//! place (a container's labels cannot say those), rollouts on probation
//! or rolled back (`rollout`), and what registries said of watched image
//! tags (`registry`). Never the source of truth for what runs: that is
//! always observed from the engine.

mod builds;
mod registry;
mod rollout;
mod schema;

pub use builds::{Build, BuildEnd, BuildLog, Lineage, LineageView};
pub use registry::RegistryCheck;

use std::path::{Path, PathBuf};
use std::sync::{MutexGuard, PoisonError};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {error}")]
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },
    #[error("{path}: cannot create folder: {error}")]
    Folder {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: schema version {found} is newer than this berth knows ({known})")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

pub struct State {
    /// Behind a mutex so `&State` can be held across an await in a future
    /// that moves between threads (a pass journals as it goes).
    conn: std::sync::Mutex<Connection>,
    path: PathBuf,
}

/// One journalled action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: i64,
    pub pass_id: Option<i64>,
    pub at: String,
    pub record: String,
    pub action: String,
    pub reason: String,
    /// started, ok, failed, or interrupted (berthd was killed while it ran;
    /// the next pass observes and finishes the job).
    pub result: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassEntry {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub trigger: String,
    pub actions: i64,
    pub failures: i64,
    pub problems: i64,
}

/// One run of a signalled event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRun {
    pub at: String,
    pub name: String,
    pub args: Vec<String>,
    /// `berth signal-event`, `api`.
    pub trigger: String,
    /// ok or failed (an action failed, or a container did not start/stop).
    pub result: String,
    /// What each action printed, and what berth did.
    pub output: String,
}

/// `state_dir`, made 0700, or narrowed to 0700 when it is ours and wider
/// (an older berth made it 0755).
fn private_folder(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.mode() & 0o077 != 0 && meta.uid() == nix::unistd::Uid::effective().as_raw() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// state.db (created 0600 if missing, never through a link) and its WAL
/// files, narrowed to 0600: SQLite gives the WAL files the db's mode.
/// Existing files are changed by path, never opened here: closing any
/// descriptor of a SQLite file drops the locks the process's other
/// connections hold on it.
fn private_files(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let me = nix::unistd::Uid::effective().as_raw();
    let narrow = |path: &std::ffi::OsStr| -> std::io::Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a symbolic link; berth keeps its state only in real files",
            )),
            Ok(meta) if meta.mode() & 0o077 != 0 && meta.uid() == me => std::fs::set_permissions(
                path,
                std::fs::Permissions::from_mode(meta.mode() & 0o7700),
            ),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    };
    if !db.exists() {
        // No connection can hold a lock on a file that did not exist.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(db)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    narrow(db.as_os_str())?;
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        narrow(&name)?;
    }
    Ok(())
}

/// RFC 3339 UTC, to the millisecond: sorts as text.
pub fn timestamp(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

pub(crate) fn now() -> String {
    timestamp(std::time::SystemTime::now())
}

impl State {
    /// The connection. A panic while it was held leaves nothing half done
    /// that SQLite would not roll back, so a poisoned lock is still used.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens (creating if needed) `state_dir/state.db` and migrates it.
    /// The folder is made (or narrowed to) 0700: the journal names records
    /// and errors, and build logs may show what a build printed.
    pub fn open(state_dir: &Path) -> Result<State, StateError> {
        private_folder(state_dir).map_err(|source| StateError::Folder {
            path: state_dir.to_path_buf(),
            error: source,
        })?;
        Self::open_file(&state_dir.join("state.db"))
    }

    pub fn open_file(path: &Path) -> Result<State, StateError> {
        let sql = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            error: source,
        };
        private_files(path).map_err(|source| StateError::Folder {
            path: path.to_path_buf(),
            error: source,
        })?;
        let conn = Connection::open(path).map_err(sql)?;
        // WAL + synchronous NORMAL: a kill -9 loses at most the last
        // transaction, never corrupts the journal; readers never block the daemon.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        let mut state = State {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
        };
        schema::migrate(
            state.conn.get_mut().unwrap_or_else(PoisonError::into_inner),
            path,
        )?;
        Ok(state)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Sqlite {
            path: self.path.clone(),
            error: source,
        }
    }

    pub fn begin_pass(&self, trigger: &str) -> Result<i64, StateError> {
        self.conn()
            .execute(
                "INSERT INTO passes (started_at, trigger) VALUES (?1, ?2)",
                params![now(), trigger],
            )
            .map_err(self.err())?;
        Ok(self.conn().last_insert_rowid())
    }

    pub fn finish_pass(
        &self,
        pass_id: i64,
        actions: usize,
        failures: usize,
        problems: usize,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE passes SET finished_at = ?1, actions = ?2, failures = ?3, problems = ?4 WHERE id = ?5",
                params![now(), actions as i64, failures as i64, problems as i64, pass_id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Written before the engine is asked, so a crash mid-action leaves a trace.
    pub fn action_started(
        &self,
        pass_id: Option<i64>,
        record: &str,
        action: &str,
        reason: &str,
    ) -> Result<i64, StateError> {
        self.conn()
            .execute(
                "INSERT INTO actions (pass_id, at, record, action, reason, result) VALUES (?1, ?2, ?3, ?4, ?5, 'started')",
                params![pass_id, now(), record, action, reason],
            )
            .map_err(self.err())?;
        Ok(self.conn().last_insert_rowid())
    }

    pub fn action_finished(&self, id: i64, error: Option<&str>) -> Result<(), StateError> {
        let result = if error.is_some() { "failed" } else { "ok" };
        self.conn()
            .execute(
                "UPDATE actions SET result = ?1, error = ?2, finished_at = ?3 WHERE id = ?4",
                params![result, error, now(), id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Actions left `started` by a daemon that was killed mid-pass become
    /// `interrupted`; returns how many. The next pass observes and finishes.
    pub fn mark_interrupted(&self) -> Result<usize, StateError> {
        self.conn()
            .execute(
                "UPDATE actions SET result = 'interrupted' WHERE result = 'started'",
                [],
            )
            .map_err(self.err())
    }

    /// Records a console or signalled start/stop; it replaces the record's
    /// previous one (only the latest event counts).
    pub fn set_override(
        &self,
        record: &str,
        event: &crate::schedule::RunEvent,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO overrides (record, run, at, source) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(record) DO UPDATE SET run = ?2, at = ?3, source = ?4",
                params![record, event.run, event.at.to_rfc3339(), event.source],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The latest console/signalled event of every record.
    pub fn overrides(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::schedule::RunEvent>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT record, run, at, source FROM overrides")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (record, run, at, source) = row.map_err(self.err())?;
            // A row whose time does not parse is ignored, not fatal.
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&at) {
                let at = at.with_timezone(&chrono::Utc);
                out.insert(record, crate::schedule::RunEvent { run, at, source });
            }
        }
        Ok(out)
    }

    /// Records that berth (tried to) start `container_id` for `record`
    /// now, counting quick restarts of the same container.
    pub fn record_start(&self, record: &str, container_id: &str) -> Result<(), StateError> {
        let previous = self.starts()?.remove(record);
        let next = crate::plan::restarts::StartRecord::next(
            previous.as_ref(),
            container_id,
            chrono::Utc::now(),
        );
        self.conn()
            .execute(
                "INSERT INTO starts (record, container_id, at, quick) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(record) DO UPDATE SET container_id = ?2, at = ?3, quick = ?4",
                params![record, next.container_id, next.at.to_rfc3339(), next.quick],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// berth stopped the record's container itself: its next start is a
    /// fresh one.
    pub fn forget_start(&self, record: &str) -> Result<(), StateError> {
        self.conn()
            .execute("DELETE FROM starts WHERE record = ?1", params![record])
            .map_err(self.err())?;
        Ok(())
    }

    /// Records that the engine accepted an in-place update of
    /// `container_id`. Written only after it did: a crash before this
    /// leaves the old hash in sight, and the next pass updates again
    /// (the same values; harmless) and records it then.
    pub fn record_update(
        &self,
        container_id: &str,
        applied: &crate::model::AppliedUpdate,
    ) -> Result<(), StateError> {
        let u = &applied.update;
        self.conn()
            .execute(
                "INSERT INTO updates (container_id, label_hash, spec_hash, memory, nano_cpus, restart, restart_max_retries, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(container_id) DO UPDATE SET label_hash = ?2, spec_hash = ?3,
                   memory = ?4, nano_cpus = ?5, restart = ?6, restart_max_retries = ?7, at = ?8",
                params![
                    container_id,
                    applied.label_hash,
                    applied.spec_hash,
                    u.memory,
                    u.nano_cpus,
                    u.restart,
                    u.restart_max_retries,
                    chrono::Utc::now().to_rfc3339()
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The updates applied in place, by container ID.
    pub fn updates(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::model::AppliedUpdate>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT container_id, label_hash, spec_hash, memory, nano_cpus, restart, restart_max_retries FROM updates",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    crate::model::AppliedUpdate {
                        label_hash: r.get(1)?,
                        spec_hash: r.get(2)?,
                        update: crate::model::ContainerUpdate {
                            memory: r.get(3)?,
                            nano_cpus: r.get(4)?,
                            restart: r.get(5)?,
                            restart_max_retries: r.get(6)?,
                        },
                    },
                ))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Forgets the in-place updates of these containers (gone, or
    /// recreated since); nothing to do is no write.
    pub fn forget_updates(&self, container_ids: &[String]) -> Result<(), StateError> {
        if container_ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.err())?;
        for id in container_ids {
            tx.execute("DELETE FROM updates WHERE container_id = ?1", params![id])
                .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())
    }

    /// berth's latest start of each record's container.
    pub fn starts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::plan::restarts::StartRecord>, StateError>
    {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT record, container_id, at, quick FROM starts")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (record, container_id, at, quick) = row.map_err(self.err())?;
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&at) {
                out.insert(
                    record,
                    crate::plan::restarts::StartRecord {
                        container_id,
                        at: at.with_timezone(&chrono::Utc),
                        quick,
                    },
                );
            }
        }
        Ok(out)
    }

    pub fn record_event(&self, run: &EventRun) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO events (at, name, args, trigger, result, output) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    run.at,
                    run.name,
                    serde_json::to_string(&run.args).unwrap_or_default(),
                    run.trigger,
                    run.result,
                    run.output
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn event_history(&self, limit: usize) -> Result<Vec<EventRun>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT at, name, args, trigger, result, output FROM events ORDER BY id DESC LIMIT ?1")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                let args: String = r.get(2)?;
                Ok(EventRun {
                    at: r.get(0)?,
                    name: r.get(1)?,
                    args: serde_json::from_str(&args).unwrap_or_default(),
                    trigger: r.get(3)?,
                    result: r.get(4)?,
                    output: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Newest first; `record` narrows to one record.
    pub fn history(
        &self,
        record: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, pass_id, at, record, action, reason, result, error FROM actions
                 WHERE ?1 IS NULL OR record = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![record, limit as i64], |r| {
                Ok(JournalEntry {
                    id: r.get(0)?,
                    pass_id: r.get(1)?,
                    at: r.get(2)?,
                    record: r.get(3)?,
                    action: r.get(4)?,
                    reason: r.get(5)?,
                    result: r.get(6)?,
                    error: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn passes(&self, limit: usize) -> Result<Vec<PassEntry>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, started_at, finished_at, trigger, actions, failures, problems
                 FROM passes ORDER BY id DESC LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(PassEntry {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    trigger: r.get(3)?,
                    actions: r.get(4)?,
                    failures: r.get(5)?,
                    problems: r.get(6)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Removes what is older than `days` from the journal (passes and
    /// actions), signalled events and finished builds (with their logs),
    /// always keeping the newest `keep` of each. Returns the rows removed.
    pub fn prune(&mut self, days: u64, keep: usize) -> Result<usize, StateError> {
        let cutoff = timestamp(
            std::time::SystemTime::now()
                .checked_sub(std::time::Duration::from_secs(days.saturating_mul(86_400)))
                .unwrap_or(std::time::UNIX_EPOCH),
        );
        let sql = self.err();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(&sql)?;
        let mut removed = 0;
        for (table, time, extra) in [
            ("actions", "at", ""),
            ("passes", "started_at", ""),
            ("events", "at", ""),
            (
                "builds",
                "requested_at",
                "AND state NOT IN ('queued', 'running')",
            ),
        ] {
            removed += tx
                .execute(
                    &format!(
                        "DELETE FROM {table} WHERE {time} < ?1 {extra}
                         AND id <= (SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET ?2)"
                    ),
                    params![cutoff, keep as i64],
                )
                .map_err(&sql)?;
        }
        tx.execute(
            "DELETE FROM build_logs WHERE build_id NOT IN (SELECT id FROM builds)",
            [],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(removed)
    }

    /// The error of the record's latest action, if that action failed.
    pub fn last_error(&self, record: &str) -> Result<Option<String>, StateError> {
        self.conn()
            .query_row(
                "SELECT error FROM actions WHERE record = ?1 AND result != 'started' ORDER BY id DESC LIMIT 1",
                params![record],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trip_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = State::open(dir.path()).expect("open");
            let pass = s.begin_pass("start").expect("pass");
            let a = s
                .action_started(Some(pass), "web", "create", "no container yet")
                .expect("a");
            s.action_finished(a, None).expect("finish");
            let b = s
                .action_started(Some(pass), "db", "start", "status enabled")
                .expect("b");
            s.action_finished(b, Some("port taken")).expect("finish");
            s.action_started(Some(pass), "cut", "stop", "status disabled")
                .expect("c");
            s.finish_pass(pass, 3, 1, 0).expect("finish pass");
        }
        let s = State::open(dir.path()).expect("reopen migrates nothing twice");
        let all = s.history(None, 10).expect("history");
        assert_eq!(
            all.iter().map(|e| e.result.as_str()).collect::<Vec<_>>(),
            vec!["started", "failed", "ok"]
        );
        assert_eq!(
            s.history(Some("db"), 10).expect("h")[0].error.as_deref(),
            Some("port taken")
        );
        assert_eq!(
            s.last_error("db").expect("e").as_deref(),
            Some("port taken")
        );
        assert_eq!(s.last_error("web").expect("e"), None);
        assert_eq!(
            s.last_error("cut").expect("e"),
            None,
            "an unfinished action is not an error"
        );
        let passes = s.passes(5).expect("passes");
        assert_eq!((passes[0].actions, passes[0].failures), (3, 1));
    }

    #[test]
    fn the_state_folder_and_db_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        // An older berth left it world-readable.
        std::fs::create_dir(&state_dir).expect("mkdir");
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::write(state_dir.join("state.db"), "").expect("touch");
        std::fs::set_permissions(
            state_dir.join("state.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let s = State::open(&state_dir).expect("open");
        s.begin_pass("test").expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&state_dir), 0o700);
        assert_eq!(mode(&state_dir.join("state.db")), 0o600);
        assert_eq!(mode(&state_dir.join("state.db-wal")), 0o600);
        let fresh = dir.path().join("fresh/state");
        State::open(&fresh).expect("open");
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join("state.db")), 0o600);
    }

    #[test]
    fn pruning_removes_old_rows_but_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = State::open(dir.path()).expect("open");
        for i in 0..10 {
            let pass = s.begin_pass("test").expect("pass");
            s.action_started(Some(pass), &format!("r{i}"), "create", "why")
                .expect("action");
        }
        // Old rows: the first seven are a year old.
        s.conn()
            .execute(
                "UPDATE actions SET at = '2000-01-01T00:00:00.000Z' WHERE id <= 7",
                [],
            )
            .expect("age");
        s.conn()
            .execute(
                "UPDATE passes SET started_at = '2000-01-01T00:00:00.000Z' WHERE id <= 7",
                [],
            )
            .expect("age");
        // Keep the newest 5: of the 7 old ones, the 2 among them are kept.
        let removed = s.prune(30, 5).expect("prune");
        assert_eq!(removed, 10, "5 actions and 5 passes");
        let left: Vec<String> = s
            .history(None, 100)
            .expect("history")
            .into_iter()
            .map(|e| e.record)
            .collect();
        assert_eq!(left, vec!["r9", "r8", "r7", "r6", "r5"]);
        assert_eq!(s.prune(30, 5).expect("again"), 0);
    }

    #[test]
    fn timestamps_sort_as_text() {
        let a = timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500));
        assert_eq!(a, "1970-01-01T00:00:01.500Z");
    }
}
