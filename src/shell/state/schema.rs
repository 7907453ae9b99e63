//! Schema migrations of state.db, numbered by SQLite's `user_version`.
//! Append a migration; never edit one that has shipped.

use std::path::Path;

use rusqlite::Connection;

use super::StateError;

const MIGRATIONS: &[&str] = &[
    // 1: the journal.
    "CREATE TABLE passes (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        trigger TEXT NOT NULL,
        actions INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        problems INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        pass_id INTEGER REFERENCES passes(id),
        at TEXT NOT NULL,
        finished_at TEXT,
        record TEXT NOT NULL,
        action TEXT NOT NULL,
        reason TEXT NOT NULL,
        result TEXT NOT NULL,
        error TEXT
    );
    CREATE INDEX actions_by_record ON actions(record, id);",
    // 2: start/stop overrides (the latest console or signalled event of each
    // record) and the journal of signalled events.
    "CREATE TABLE overrides (
        record TEXT PRIMARY KEY,
        run INTEGER NOT NULL,
        at TEXT NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        trigger TEXT NOT NULL,
        result TEXT NOT NULL,
        output TEXT NOT NULL
    );",
    // 3: the build queue and each image's lineage.
    "CREATE TABLE builds (
        id INTEGER PRIMARY KEY,
        image TEXT NOT NULL,
        state TEXT NOT NULL,
        trigger TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        retry_of INTEGER,
        base_ref TEXT,
        base_id TEXT,
        result_id TEXT,
        error TEXT,
        log TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX builds_by_state ON builds(state, id);
    CREATE TABLE lineage (
        image TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        base_ref TEXT,
        base_id TEXT,
        built_at TEXT NOT NULL,
        outdated INTEGER NOT NULL DEFAULT 0
    );",
    // 4: build logs in chunks (appending to one text column rewrote it
    // whole for every line), the indexes pruning needs, and berth's latest
    // start of each record (crash-loop back-off).
    "CREATE TABLE build_logs (
        build_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (build_id, seq)
    );
    CREATE INDEX passes_by_start ON passes(started_at);
    CREATE INDEX events_by_at ON events(at);
    CREATE TABLE starts (
        record TEXT PRIMARY KEY,
        container_id TEXT NOT NULL,
        at TEXT NOT NULL,
        quick INTEGER NOT NULL
    );",
    // 5: updates applied in place, by container ID: the container's labels
    // still name the spec it was created with (`label_hash`), but it runs
    // `spec_hash`. Only the updatable values are kept, none of them secret.
    "CREATE TABLE updates (
        container_id TEXT PRIMARY KEY,
        label_hash TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        memory INTEGER,
        nano_cpus INTEGER,
        restart TEXT NOT NULL,
        restart_max_retries INTEGER,
        at TEXT NOT NULL
    );",
    // 6: rollouts. A recreate keeps the old container (`_berth-old`)
    // while the new one is on probation; the latest rollback of each
    // record keeps the (spec hash, image ID) not to try again. Hashes and
    // IDs only: nothing secret.
    "CREATE TABLE probations (
        record TEXT PRIMARY KEY,
        new_id TEXT,
        old_id TEXT NOT NULL,
        old_spec_hash TEXT,
        new_spec_hash TEXT,
        old_image_id TEXT,
        new_image_id TEXT,
        started_at TEXT NOT NULL
    );
    CREATE TABLE rollbacks (
        record TEXT PRIMARY KEY,
        spec_hash TEXT NOT NULL,
        image_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
    );",
    // 7: what each watched image reference's registry said last (`Update`
    // notify/auto): when, the tag's digest, whether that is an update, the
    // error, a `Retry-After`, the digest already notified and the
    // docker_containers records using it (what status shows). No secret.
    "CREATE TABLE registry_checks (
        reference TEXT PRIMARY KEY,
        checked_at TEXT NOT NULL,
        remote_digest TEXT,
        update_available INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        not_before TEXT,
        notified_digest TEXT,
        records TEXT NOT NULL DEFAULT ''
    );",
    // 8: recipe builds: a build asked with --no-cache, and the hash of the
    // inputs a recipe build was made from (its rendered manifest, files
    // and tool folders), kept with the lineage so a pass sees a change;
    // the step cache: the image berth itself committed for a stage's key
    // (a label alone is anyone's to copy).
    "ALTER TABLE builds ADD COLUMN no_cache INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE builds ADD COLUMN inputs TEXT;
    ALTER TABLE lineage ADD COLUMN inputs TEXT;
    CREATE TABLE recipe_cache (
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        record TEXT NOT NULL,
        made_at TEXT NOT NULL
    );
    CREATE INDEX recipe_cache_by_image ON recipe_cache(image_id);",
];

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    let sql = |source| StateError::Sqlite {
        path: path.to_path_buf(),
        error: source,
    };
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known,
        });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        // Two processes opening a new state.db at once (berthd starting,
        // a `berth` command): the write lock first, then the version
        // read again, so a migration another one made is not made twice.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        let now: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
    }
    Ok(())
}
