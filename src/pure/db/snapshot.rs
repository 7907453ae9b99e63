//! One pass's view of the db folder: every db file read once, at the start
//! of a pass, then handed to reconcile, the image lineage check and the
//! templates, so the three see the same bytes and no file is read twice.
//!
//! Reading never fails as a whole: what could not be read is kept beside
//! what could, and each reader decides what it means (a missing
//! `docker_containers` fails a reconcile pass, never "every record
//! deleted"; the templates only say it). Lines that do not parse stay in
//! each [`Db`]'s problems, so "no removal on doubt" holds as before.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Db, DbError};

/// The db every container record is in; required for a reconcile pass.
pub const CONTAINERS: &str = "docker_containers";
/// The db of image records; a missing one declares no images.
pub const IMAGES: &str = "docker_images";
/// The server's settings (`DomainName`, `SystemName`, …); a missing one is
/// empty.
pub const CONFIGURATION: &str = "configuration";

/// A db file of the snapshot that could not be read. Cloneable, so each
/// reader of one snapshot gets the same error to report.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct ReadError(Arc<DbError>);

impl ReadError {
    pub fn db_error(&self) -> &DbError {
        &self.0
    }
}

/// Where one of the named dbs came from.
#[derive(Debug, Clone)]
enum Slot {
    /// `dbs[i]`.
    Listed(usize),
    /// Read by its path (the folder could not be listed, or the name is not
    /// a plain file: reading it says why).
    Alone(Db),
    Failed(ReadError),
}

/// The parsed dbs of one pass. See the module documentation.
#[derive(Debug, Clone)]
pub struct Snapshot {
    dir: PathBuf,
    /// Every db file of the folder that could be read, by path.
    dbs: Vec<Db>,
    /// Db files of the folder that could not be read.
    unreadable: Vec<ReadError>,
    /// Why the folder could not be listed.
    listing: Option<Arc<std::io::Error>>,
    containers: Slot,
    images: Slot,
    configuration: Slot,
    /// How many files were read to make it.
    reads: usize,
}

/// Not a db: lock files, hidden files, editor and package-manager leftovers
/// (the names the template tree skips too, so fragments' `db` is the same
/// set of files it always was).
fn is_db_name(name: &str) -> bool {
    !name.ends_with(".lock") && !crate::db::is_leftover(name)
}

impl Snapshot {
    /// Reads every db file of `dir` once.
    pub fn read(dir: &Path) -> Snapshot {
        let mut snapshot = Snapshot {
            dir: dir.to_path_buf(),
            dbs: Vec::new(),
            unreadable: Vec::new(),
            listing: None,
            containers: Slot::Failed(ReadError(Arc::new(DbError::Missing(dir.join(CONTAINERS))))),
            images: Slot::Alone(Db::empty(&dir.join(IMAGES))),
            configuration: Slot::Alone(Db::empty(&dir.join(CONFIGURATION))),
            reads: 0,
        };
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.filter_map(Result::ok) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let is_file = std::fs::metadata(entry.path())
                        .map(|m| m.is_file())
                        .unwrap_or(false);
                    if !is_file || !is_db_name(&name) {
                        continue;
                    }
                    snapshot.reads += 1;
                    match Db::load(&entry.path()) {
                        Ok(db) => snapshot.dbs.push(db),
                        Err(e) => snapshot.unreadable.push(ReadError(Arc::new(e))),
                    }
                }
            }
            Err(e) => snapshot.listing = Some(Arc::new(e)),
        }
        snapshot.dbs.sort_by(|a, b| a.path().cmp(b.path()));
        snapshot.containers = snapshot.find(CONTAINERS, true);
        snapshot.images = snapshot.find(IMAGES, false);
        snapshot.configuration = snapshot.find(CONFIGURATION, false);
        snapshot
    }

    /// The db named `name` as the listing read it, else read by its path
    /// (so a missing or odd file gives the error it always gave). A
    /// missing file is an error when `required`, else an empty db.
    fn find(&mut self, name: &str, required: bool) -> Slot {
        let path = self.dir.join(name);
        if let Some(i) = self.dbs.iter().position(|d| d.path() == path) {
            return Slot::Listed(i);
        }
        let failed = self.unreadable.iter().find(|e| match e.db_error() {
            DbError::Io { path: p, .. } | DbError::Missing(p) => *p == path,
            _ => false,
        });
        if let Some(e) = failed {
            return Slot::Failed(e.clone());
        }
        // Listed and absent: missing, without another look.
        let read = if self.listing.is_none() && !path.exists() {
            Err(DbError::Missing(path.clone()))
        } else {
            self.reads += 1;
            Db::load(&path)
        };
        match read {
            Ok(db) => Slot::Alone(db),
            Err(DbError::Missing(_)) if !required => Slot::Alone(Db::empty(&path)),
            Err(e) => Slot::Failed(ReadError(Arc::new(e))),
        }
    }

    fn slot<'a>(&'a self, slot: &'a Slot) -> Result<&'a Db, ReadError> {
        match slot {
            Slot::Listed(i) => Ok(&self.dbs[*i]),
            Slot::Alone(db) => Ok(db),
            Slot::Failed(e) => Err(e.clone()),
        }
    }

    /// `docker_containers`: a missing file is [`DbError::Missing`].
    pub fn containers(&self) -> Result<&Db, ReadError> {
        self.slot(&self.containers)
    }

    /// `docker_images`: a missing file is an empty db.
    pub fn images(&self) -> Result<&Db, ReadError> {
        self.slot(&self.images)
    }

    /// `configuration`: a missing file is an empty db; one that cannot be
    /// read is an error (never taken for an empty one: a recipe would
    /// render `hostname` as "").
    pub fn configuration(&self) -> Result<&Db, ReadError> {
        self.slot(&self.configuration)
    }

    /// Every db file of the folder that could be read, sorted by path.
    pub fn dbs(&self) -> &[Db] {
        &self.dbs
    }

    /// Db files of the folder that could not be read.
    pub fn unreadable(&self) -> &[ReadError] {
        &self.unreadable
    }

    /// Why the folder could not be listed (then [`Snapshot::dbs`] is empty).
    pub fn listing_error(&self) -> Option<&std::io::Error> {
        self.listing.as_deref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many files were read to make this snapshot: each at most once.
    pub fn reads(&self) -> usize {
        self.reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_is_read_once_and_the_named_dbs_come_from_the_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONTAINERS), "app=service|Image|a:1\n").expect("db");
        std::fs::write(dir.path().join("configuration"), "x=y\n").expect("db");
        std::fs::write(dir.path().join("configuration.lock"), "").expect("lock");
        std::fs::write(dir.path().join(".hidden"), "").expect("hidden");
        let s = Snapshot::read(dir.path());
        assert_eq!(
            s.reads(),
            2,
            "two dbs, docker_images missing: no extra read"
        );
        assert_eq!(s.dbs().len(), 2);
        assert!(s.containers().expect("containers").get("app").is_some());
        assert_eq!(s.images().expect("empty").records().count(), 0);
        assert!(s.configuration().expect("configuration").get("x").is_some());
        assert!(s.unreadable().is_empty() && s.listing_error().is_none());
    }

    /// A configuration db berth cannot read is an error, not an empty db;
    /// a missing one is empty.
    #[test]
    fn an_unreadable_configuration_is_an_error_and_a_missing_one_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Snapshot::read(dir.path());
        assert_eq!(s.configuration().expect("empty").records().count(), 0);
        std::fs::create_dir(dir.path().join(CONFIGURATION)).expect("a folder");
        let s = Snapshot::read(dir.path());
        assert!(s.configuration().is_err());
        assert!(s.images().is_ok());
    }

    #[test]
    fn a_missing_containers_db_is_the_error_it_always_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Snapshot::read(dir.path());
        let e = s.containers().expect_err("missing");
        assert!(matches!(e.db_error(), DbError::Missing(_)));
        assert_eq!(
            e.to_string(),
            format!("{}: no such db file", dir.path().join(CONTAINERS).display())
        );
        let gone = Snapshot::read(&dir.path().join("nope"));
        assert!(gone.listing_error().is_some());
        assert!(gone.containers().is_err());
    }
}
