//! Db files on disk: plain reads, and writes that hold an exclusive `flock`
//! on `<db>.lock`, re-read under it, and replace the file by rename so a
//! reader sees the old file or the new one, never half of one.
//!
//! The temp file is `.<name>.berth-tmp` in the db's folder (a fixed name is
//! safe: only the lock holder writes it; a leftover from a crash is removed
//! by the next write).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use time::OffsetDateTime;

use super::{Db, DbError};

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
            source,
        }),
    }
}

/// Held until dropped; closing the file releases the lock.
fn lock(path: &Path) -> Result<Flock<File>, DbError> {
    let lock_path = lock_path(path);
    let io_error = |source: io::Error| DbError::Io {
        path: lock_path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
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
        source,
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name() else {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        )));
    };
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(".berth-tmp");
    let temp = folder.join(temp_name);

    let old = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(e)),
    };
    let result = write_temp(&temp, bytes, old.as_ref())
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| File::open(&folder)?.sync_all());
    if result.is_err() {
        // Best effort: the next write removes a leftover anyway.
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io_error)
}

fn write_temp(temp: &Path, bytes: &[u8], old: Option<&fs::Metadata>) -> io::Result<()> {
    match fs::remove_file(temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mode = old.map_or(0o644, |m| m.mode() & 0o7777);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)?;
    if let Some(old) = old {
        // The umask may have narrowed the mode given to open().
        file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))?;
        let mine = file.metadata()?;
        if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
            // Only root may give a file away; others keep their own
            // ownership, which is what SME's tools do too.
            let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
            // chown clears set-id bits: put the mode back.
            file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))?;
        }
    }
    file.write_all(bytes)?;
    file.sync_all()
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
    fn lock_file_sits_next_to_the_db() {
        assert_eq!(
            lock_path(Path::new("/db/configuration")),
            Path::new("/db/configuration.lock")
        );
    }
}
