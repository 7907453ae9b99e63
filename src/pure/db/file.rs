//! Db files on disk: plain reads, and writes that hold an exclusive `flock`
//! on `<db>.lock`, re-read under it, and replace the file by rename so a
//! reader sees the old file or the new one, never half of one.
//!
//! The temp file has an unpredictable name in the db's folder and is opened
//! `O_EXCL|O_NOFOLLOW`; the folder is reached following only links root
//! (or the writer) owns, and the lock file is never opened through a link
//! (see `crate::safe_fs`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid};
use time::OffsetDateTime;

use super::{Db, DbError};
use crate::safe_fs::{self, Links, Owner};

/// Lock `<path>.lock`, re-read the db (a missing file is an empty db), let
/// `f` change it, and if `f` returned Ok and changed something, write the
/// whole file atomically. Returns `f`'s value; on `f`'s error nothing is
/// written.
pub fn update<T, E: From<DbError>>(
    path: &Path,
    f: impl FnOnce(&mut Db) -> Result<T, E>,
) -> Result<T, E> {
    let _lock = lock(path)?;
    let mut db = Db::load_or_empty(path)?;
    let value = f(&mut db)?;
    if db.is_changed() {
        write_atomic(path, &db.to_bytes(local_now()))?;
    }
    Ok(value)
}

/// The lock file of a db: `<path>.lock`, as SME's tools use.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The file's bytes, or None when it does not exist.
pub(super) fn read(path: &Path) -> Result<Option<Vec<u8>>, DbError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DbError::Io {
            path: path.to_path_buf(),
            error: source,
        }),
    }
}

/// Held until dropped; closing the file releases the lock.
fn lock(path: &Path) -> Result<Flock<File>, DbError> {
    let lock_path = lock_path(path);
    let io_error = |source: io::Error| DbError::Io {
        path: lock_path.clone(),
        error: source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        // A link planted at the lock's name is not followed (and not locked).
        .custom_flags(libc_o_nofollow())
        .open(&lock_path)
        .map_err(io_error)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(locked) => return Ok(locked),
            // A signal interrupted the wait: wait again.
            Err((unlocked, Errno::EINTR)) => file = unlocked,
            Err((_, errno)) => return Err(io_error(errno.into())),
        }
    }
}

/// Temp file, fsync, rename over `path`, fsync the folder. Keeps the mode
/// (and, when allowed, the owner) of the file it replaces.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DbError> {
    let io_error = |source: io::Error| DbError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    let (folder, name) = safe_fs::parent_and_name(path)?;
    let dir = safe_fs::open_dir(&folder, Links::Trusted)?;
    let (mode, owner) = match fs::symlink_metadata(path) {
        // Only root may give a file away; others keep their own
        // ownership, which is what SME's tools do too.
        Ok(meta) if meta.is_file() => (
            meta.mode() & 0o7777,
            Owner::IfAllowed(Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid())),
        ),
        Ok(_) => (0o644, Owner::Writer),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (0o644, Owner::Writer),
        Err(e) => return Err(io_error(e)),
    };
    dir.write_file(&name, bytes, mode, owner).map_err(io_error)
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Local time for the header, as SME stamps it; UTC when the local offset
/// cannot be known safely (the `time` crate refuses in threaded processes).
fn local_now() -> OffsetDateTime {
    OffsetDateTime::now_local().unwrap_or_else(|_| OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_planted_at_the_lock_or_temp_names_are_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("configuration");
        std::fs::write(&db, "a=b\n").expect("write");
        let victim = dir.path().join("victim");
        // The temp name the old writer used, linked to a file it must not write.
        std::fs::write(&victim, "precious").expect("write");
        std::os::unix::fs::symlink(&victim, dir.path().join(".configuration.berth-tmp"))
            .expect("link");
        update(&db, |d: &mut Db| d.set_prop("a", "p", "1")).expect("update");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious"
        );
        assert!(std::fs::read_to_string(&db)
            .expect("db")
            .contains("a=b|p|1"));
        // A dangling link at the lock's name would have made a file as root.
        let created = dir.path().join("created-through-the-lock");
        std::fs::remove_file(lock_path(&db)).expect("rm lock");
        std::os::unix::fs::symlink(&created, lock_path(&db)).expect("link");
        let refused = update(&db, |d: &mut Db| d.set_prop("a", "p", "2"));
        assert!(refused.is_err());
        assert!(!created.exists());
    }

    #[test]
    fn lock_file_sits_next_to_the_db() {
        assert_eq!(
            lock_path(Path::new("/db/configuration")),
            Path::new("/db/configuration.lock")
        );
    }
}
