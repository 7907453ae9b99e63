//! Whether a recipe's inputs changed: berthd asks after every pass. The
//! full answer renders the manifest and reads and hashes every file the
//! recipe copies (up to 256 MiB), so it is remembered against a
//! fingerprint: the folder's metadata (every entry's inode, size, mode,
//! owner, mtime and ctime, no link followed) and the values it renders
//! with. The files are read again only when that fingerprint changes.
//!
//! ctime is set by the kernel on every change and cannot be set back by a
//! file's owner, so a same-size write with its mtime restored still shows.
//! What a timestamp cannot show, a second change within the same tick as
//! the one before the fingerprint, is handled as git handles its "racily
//! clean" entries: an answer is remembered only once every entry is older
//! than [`SETTLED`]. And a remembered answer is trusted for
//! [`TRUSTED_FOR`] at most (a write through a long-lived mapping may reach
//! the metadata late).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::record::{ImageSpec, Source};
use super::{recipe, ImageError};
use crate::config::Config;
use crate::db::Db;
use crate::safe_fs::{self, Dir, Links};

/// Entries a fingerprint walks at most, all folders together; a larger
/// folder is read in full each time (its copy is refused at 10,000
/// entries anyway, unless most of it is never copied).
const ENTRIES: usize = 100_000;
const DEPTH: usize = 32;
/// How old every entry must be before an answer is remembered.
pub const SETTLED: Duration = Duration::from_secs(2);
/// How long a remembered answer is trusted.
const TRUSTED_FOR: Duration = Duration::from_secs(600);

/// The remembered answers, by record.
pub struct InputsMemo {
    known: BTreeMap<String, Known>,
    settled: Duration,
    /// Full reads so far (for the tests).
    reads: usize,
}

struct Known {
    fingerprint: [u8; 32],
    inputs: String,
    at: Instant,
}

impl Default for InputsMemo {
    fn default() -> Self {
        InputsMemo::new(SETTLED)
    }
}

impl InputsMemo {
    /// A memo that remembers an answer once every entry is `settled` old.
    pub fn new(settled: Duration) -> Self {
        InputsMemo {
            known: BTreeMap::new(),
            settled,
            reads: 0,
        }
    }

    /// The inputs hash of the recipe record `spec` as its folder is now
    /// and rendered with `configuration` (the pass's snapshot of it): what
    /// the build records. None when it cannot be read (the build says why).
    pub fn get(&mut self, spec: &ImageSpec, configuration: &Db) -> Option<String> {
        let Source::Recipe { path, .. } = &spec.source else {
            return None;
        };
        let Some(real) = open_folder(path) else {
            self.known.remove(&spec.name);
            return None;
        };
        // One context for the fingerprint and the read, so an answer is
        // never remembered against values it was not rendered with.
        let ctx = recipe::context(spec, configuration).ok()?;
        // Taken before the read: a change during the read then shows as a
        // new fingerprint next time, never as a stale answer.
        let print = fingerprint(&real, &ctx);
        if let (Some((print, _)), Some(k)) = (&print, self.known.get(&spec.name)) {
            if *print == k.fingerprint && k.at.elapsed() < TRUSTED_FOR {
                return Some(k.inputs.clone());
            }
        }
        self.reads += 1;
        let inputs = answer(&spec.name, recipe::load_with(&real, &ctx));
        match (print, &inputs) {
            (Some((fingerprint, newest)), Some(inputs))
                if newest
                    .checked_add(self.settled)
                    .is_some_and(|t| t < SystemTime::now()) =>
            {
                self.known.insert(
                    spec.name.clone(),
                    Known {
                        fingerprint,
                        inputs: inputs.clone(),
                        at: Instant::now(),
                    },
                );
            }
            _ => {
                self.known.remove(&spec.name);
            }
        }
        inputs
    }

    /// Forgets the records `keep` says no to (gone from the db).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.known.retain(|name, _| keep(name));
    }

    /// How many times the files were read in full.
    pub fn reads(&self) -> usize {
        self.reads
    }
}

/// The inputs hash of a recipe record as its files and the configuration
/// db are now, read in full (what [`InputsMemo::get`] remembers).
pub fn inputs_now(config: &Config, spec: &ImageSpec) -> Option<String> {
    let Source::Recipe { path, .. } = &spec.source else {
        return None;
    };
    answer(&spec.name, recipe::load(config, spec, &open_folder(path)?))
}

/// Where the recipe path really leads, as the build opens it (a link on
/// the way, `/srv` → `/data/srv`, is the admin's); then nothing inside is
/// followed. Opened as a handle to a folder only (`O_PATH`,
/// `O_DIRECTORY`): a FIFO put there must not block berthd's loop.
fn open_folder(path: &Path) -> Option<PathBuf> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
        .open(path)
        .ok()?;
    safe_fs::real_path_of(&opened).ok()
}

fn answer(name: &str, loaded: Result<recipe::Loaded, ImageError>) -> Option<String> {
    match loaded {
        Ok(l) => Some(l.inputs),
        Err(e) => {
            tracing::debug!(image = %name, "recipe inputs: {e}");
            None
        }
    }
}

/// The fingerprint of the folder `real` and the render context `ctx`,
/// with the newest mtime or ctime in it; None when the folder is too
/// large or changes under the walk.
fn fingerprint(real: &Path, ctx: &serde_json::Value) -> Option<([u8; 32], SystemTime)> {
    let mut hash = Sha256::new();
    let ctx = ctx.to_string();
    hash.update((ctx.len() as u64).to_le_bytes());
    hash.update(ctx.as_bytes());
    let dir = safe_fs::open_dir(real, Links::Never).ok()?;
    let mut newest = SystemTime::UNIX_EPOCH;
    note(&mut hash, b".", &dir.metadata().ok()?, &mut newest);
    let mut left = ENTRIES;
    walk(&dir, real, &mut hash, &mut left, &mut newest, 0)?;
    Some((hash.finalize().into(), newest))
}

fn walk(
    dir: &Dir,
    path: &Path,
    hash: &mut Sha256,
    left: &mut usize,
    newest: &mut SystemTime,
    depth: usize,
) -> Option<()> {
    if depth > DEPTH {
        return None;
    }
    let mut names = dir.names(left.saturating_add(1)).ok()?;
    *left = left.checked_sub(names.len())?;
    names.sort();
    hash.update((names.len() as u64).to_le_bytes());
    for name in names {
        // Gone since the listing: changing now, so nothing is remembered.
        let meta = dir.stat(&name).ok()??;
        note(hash, name.as_bytes(), &meta, newest);
        if meta.is_dir() {
            let child = path.join(&name);
            let sub = safe_fs::open_dir(&child, Links::Never).ok()?;
            walk(&sub, &child, hash, left, newest, depth + 1)?;
        }
    }
    Some(())
}

fn note(hash: &mut Sha256, name: &[u8], m: &std::fs::Metadata, newest: &mut SystemTime) {
    hash.update((name.len() as u64).to_le_bytes());
    hash.update(name);
    for v in [
        m.dev(),
        m.ino(),
        u64::from(m.mode()),
        u64::from(m.uid()),
        u64::from(m.gid()),
        m.nlink(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
    ] {
        hash.update(v.to_le_bytes());
    }
    let ctime = u64::try_from(m.ctime()).ok().and_then(|s| {
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(
            s,
            m.ctime_nsec().clamp(0, 999_999_999) as u32,
        ))
    });
    // A time in the future (a clock set back) keeps the answer from being
    // remembered until the clock passes it.
    for t in [m.modified().ok(), ctime].into_iter().flatten() {
        *newest = (*newest).max(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::recipe::tests::spec;

    struct Setup {
        _dir: tempfile::TempDir,
        config: Config,
        /// The configuration db as written in `config`'s db folder.
        configuration: Db,
        folder: PathBuf,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("recipe");
        std::fs::create_dir_all(folder.join("conf")).expect("folder");
        std::fs::write(
            folder.join("recipe.toml"),
            "from = \"base:1\"\n[[files]]\nsrc = \"conf\"\ndest = \"/etc/app\"\n[[steps]]\nrun = \"make A={{ vars.a }} H={{ hostname }}\"\n",
        )
        .expect("manifest");
        std::fs::write(folder.join("conf/a.conf"), "a=1\n").expect("file");
        let config = Config {
            db_dir: dir.path().join("db"),
            ..Config::default()
        };
        std::fs::create_dir_all(&config.db_dir).expect("db folder");
        let path = config.db_path("configuration");
        std::fs::write(&path, "DomainName=example.com\nSystemName=app\n").expect("db");
        let configuration = Db::load(&path).expect("configuration");
        Setup {
            _dir: dir,
            config,
            configuration,
            folder,
        }
    }

    /// Past the filesystem's timestamp tick, so the next change shows in
    /// the metadata.
    fn next_tick() {
        std::thread::sleep(Duration::from_millis(30));
    }

    #[test]
    fn an_unchanged_folder_is_not_read_again_and_each_change_is_seen() {
        let s = setup();
        let app = spec(&s.folder, "a=1");
        let mut memo = InputsMemo::new(Duration::ZERO);
        next_tick();
        let first = memo.get(&app, &s.configuration).expect("inputs");
        assert_eq!(Some(&first), inputs_now(&s.config, &app).as_ref());
        assert_eq!(memo.get(&app, &s.configuration), Some(first.clone()));
        assert_eq!(memo.reads(), 1, "nothing changed: not read again");

        // The same size, its mtime put back: the ctime still moves.
        let file = s.folder.join("conf/a.conf");
        let mtime = std::fs::metadata(&file)
            .expect("meta")
            .modified()
            .expect("mtime");
        next_tick();
        std::fs::write(&file, "a=2\n").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
        next_tick();
        let second = memo.get(&app, &s.configuration).expect("inputs");
        assert_ne!(second, first);
        assert_eq!(Some(&second), inputs_now(&s.config, &app).as_ref());

        // A new file in a copied folder, and a db value.
        std::fs::write(s.folder.join("conf/b.conf"), "b\n").expect("write");
        next_tick();
        let third = memo.get(&app, &s.configuration).expect("inputs");
        assert_ne!(third, second);
        let other = spec(&s.folder, "a=2");
        assert_ne!(memo.get(&other, &s.configuration), Some(third.clone()));
        assert_eq!(memo.reads(), 4);
        // The configuration db the pass read: the recipe renders hostname.
        let elsewhere = Db::parse(
            &s.config.db_path("configuration"),
            "DomainName=example.org\nSystemName=app\n",
        );
        assert_ne!(memo.get(&app, &elsewhere), Some(third.clone()));
        assert_eq!(memo.reads(), 5);
    }

    #[test]
    fn a_folder_changed_just_now_is_read_again_until_it_settles() {
        let s = setup();
        let app = spec(&s.folder, "a=1");
        let mut memo = InputsMemo::new(Duration::from_secs(3600));
        let first = memo.get(&app, &s.configuration);
        assert!(first.is_some());
        assert_eq!(memo.get(&app, &s.configuration), first);
        assert_eq!(memo.reads(), 2, "not remembered: changed within the hour");
    }

    /// A pass asks each recipe's inputs on berthd's loop: a FIFO where the
    /// folder should be is no folder, and is never opened for reading
    /// (which would wait for a writer for ever).
    #[test]
    fn inputs_of_a_fifo_where_the_folder_should_be_are_none_at_once() {
        let s = setup();
        let fifo = s.folder.parent().expect("parent").join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert_eq!(inputs_now(&s.config, &spec(&fifo, "a=1")), None);
        assert_eq!(
            InputsMemo::default().get(&spec(&fifo, "a=1"), &s.configuration),
            None
        );
        assert!(inputs_now(&s.config, &spec(&s.folder, "a=1")).is_some());
    }

    /// A link in the folder is fingerprinted as a link: what it leads to
    /// is never read, here or by the build.
    #[test]
    fn a_link_in_the_folder_is_not_followed() {
        let s = setup();
        let outside = s.folder.parent().expect("parent").join("secret");
        std::fs::write(&outside, "x").expect("write");
        std::os::unix::fs::symlink(&outside, s.folder.join("conf/link")).expect("link");
        let app = spec(&s.folder, "a=1");
        let mut memo = InputsMemo::new(Duration::ZERO);
        next_tick();
        let first = memo.get(&app, &s.configuration).expect("inputs");
        std::fs::write(&outside, "changed").expect("write");
        next_tick();
        assert_eq!(memo.get(&app, &s.configuration), Some(first));
        assert_eq!(memo.reads(), 1);
    }
}
