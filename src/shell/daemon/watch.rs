//! Watches the db folder and both template trees (folders, not files:
//! editors and SME's tools replace files by rename). Each change only makes
//! the next pass come sooner; the loop gathers bursts. A change says whether
//! the file is whole ([`Event::FilesChanged`]: renamed into place, closed
//! by its writer, removed) or may be mid-write ([`Event::FileWriting`]), so
//! the loop's leading-edge pass never reads a file cut short.
//!
//! notify's inotify watcher is used directly rather than
//! notify-debouncer-full, whose timer thread wakes several times a second
//! even when nothing happens; the loop does the debouncing instead.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::Event;
use crate::config::Config;

/// The watcher could not start, or not watch a folder. (notify's error is
/// in the message, not a `source`, so it is printed once.)
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch files: {0}")]
    Start(notify::Error),
    #[error("cannot watch {}: {why}", path.display())]
    Folder { path: PathBuf, why: notify::Error },
}

pub struct FolderWatch {
    watcher: RecommendedWatcher,
    watched: Vec<PathBuf>,
    /// The recipe folders of `docker_images` (`Source recipe`), as the
    /// last pass declared them.
    recipes: Vec<PathBuf>,
}

/// Files that change because berth itself wrote a db, and editor noise.
fn ignored(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".lock")
        || name.ends_with(".berth-tmp")
        || name.ends_with(".swp")
        || name.ends_with('~')
}

/// What the loop is told of one inotify event, in order.
fn classify(event: &notify::Event) -> Vec<Event> {
    let named = |p: &PathBuf| (!ignored(p)).then(|| p.display().to_string());
    let first = || event.paths.iter().find_map(named);
    match event.kind {
        // Reads (every pass opens the dbs) are no change.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
            first().map(Event::FilesChanged).into_iter().collect()
        }
        EventKind::Access(_) => Vec::new(),
        // From and to, when both are in a watched folder: a temp file
        // renamed into place is done with; a file moved aside (an editor's
        // backup) is to be written again under its name.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            let from = event.paths.first().and_then(named);
            match event.paths.get(1).and_then(named) {
                Some(to) => from
                    .map(Event::FilesChanged)
                    .into_iter()
                    .chain([Event::FilesChanged(to)])
                    .collect(),
                None => from.map(Event::FileWriting).into_iter().collect(),
            }
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::From))
        | EventKind::Modify(ModifyKind::Data(_))
        | EventKind::Create(CreateKind::File) => {
            first().map(Event::FileWriting).into_iter().collect()
        }
        _ => first().map(Event::FilesChanged).into_iter().collect(),
    }
}

impl FolderWatch {
    pub fn start(config: &Config, tx: UnboundedSender<Event>) -> Result<FolderWatch, WatchError> {
        let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            let Ok(event) = result else { return };
            for change in classify(&event) {
                let _ = tx.send(change);
            }
        })
        .map_err(WatchError::Start)?;
        let mut watch = FolderWatch {
            watcher,
            watched: Vec::new(),
            recipes: Vec::new(),
        };
        watch.rewatch(config)?;
        Ok(watch)
    }

    /// Watches the folders `config` names (after a reload, the new ones).
    pub fn rewatch(&mut self, config: &Config) -> Result<(), WatchError> {
        for old in self.watched.drain(..) {
            let _ = self.watcher.unwatch(&old);
        }
        let folders = [
            (&config.db_dir, RecursiveMode::NonRecursive),
            (&config.templates_dir, RecursiveMode::Recursive),
            (&config.templates_custom_dir, RecursiveMode::Recursive),
        ];
        for (folder, mode) in folders {
            if !folder.is_dir() {
                // A folder that appears later is seen at the next resync.
                tracing::debug!("not watching {}: no such folder", folder.display());
                continue;
            }
            self.watcher
                .watch(folder, mode)
                .map_err(|why| WatchError::Folder {
                    path: folder.clone(),
                    why,
                })?;
            self.watched.push(folder.clone());
        }
        Ok(())
    }
}

impl FolderWatch {
    /// Watches the recipe folders `folders` (each pass's), not their
    /// subfolders: an edit of a manifest or of a file beside it brings the
    /// next pass, whose lineage check sees the change; one deeper is seen
    /// at the next pass, at most `resync_seconds` away. Not recursive: a
    /// recursive watch follows links, and a link planted in a recipe folder
    /// would have berthd watch whatever it leads to.
    pub fn watch_recipes(&mut self, mut folders: Vec<PathBuf>) {
        folders.sort();
        folders.dedup();
        if folders == self.recipes {
            return;
        }
        for old in self.recipes.drain(..) {
            let _ = self.watcher.unwatch(&old);
        }
        for folder in folders {
            match self.watcher.watch(&folder, RecursiveMode::NonRecursive) {
                Ok(()) => self.recipes.push(folder),
                Err(e) => tracing::debug!("not watching {}: {e}", folder.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{DataChange, MetadataKind, RemoveKind};

    use super::*;

    fn told(kind: EventKind, paths: &[&str]) -> Vec<String> {
        let mut event = notify::Event::new(kind);
        for p in paths {
            event = event.add_path(PathBuf::from(p));
        }
        classify(&event)
            .into_iter()
            .map(|e| match e {
                Event::FilesChanged(p) => format!("whole {p}"),
                Event::FileWriting(p) => format!("writing {p}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// The real watcher on a real folder: `berth db`'s write is told only
    /// as whole; a file written in place is mid-write until it is closed.
    #[test]
    fn real_writes_are_told_whole_only_when_they_are() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("db")).expect("db dir");
        let config_path = dir.path().join("berth.toml");
        std::fs::write(
            &config_path,
            "db_dir = \"db\"\nstate_dir = \"state\"\ntemplates_dir = \"t\"\n\
             templates_custom_dir = \"tc\"\n",
        )
        .expect("config");
        let config = Config::locate(Some(&config_path)).expect("config");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _watch = FolderWatch::start(&config, tx).expect("watch");
        let db = config.db_dir.join("docker_containers");
        let mut told = || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut seen = Vec::new();
            while let Ok(event) = rx.try_recv() {
                seen.push(match event {
                    Event::FilesChanged(p) if Path::new(&p) == db => "whole",
                    Event::FileWriting(p) if Path::new(&p) == db => "writing",
                    other => panic!("{other:?}"),
                });
            }
            seen
        };

        crate::db::update(&db, |d| {
            d.set_record("app", "service", [("Image", "img:1")])
        })
        .expect("berth db's write");
        let seen = told();
        assert!(
            !seen.is_empty() && seen.iter().all(|e| *e == "whole"),
            "{seen:?}"
        );

        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&db)
            .expect("open");
        file.write_all(b"app=service|Ima").expect("write");
        let seen = told();
        assert!(
            !seen.is_empty() && seen.iter().all(|e| *e == "writing"),
            "{seen:?}"
        );
        file.write_all(b"ge|img:2\n").expect("write");
        drop(file);
        assert_eq!(told().last(), Some(&"whole"), "closed by its writer");
    }

    #[test]
    fn a_file_is_whole_only_once_renamed_into_place_closed_or_removed() {
        let db = "/db/docker_containers";
        let tmp = "/db/.docker_containers.berth-tmp";
        let rename = |mode| EventKind::Modify(ModifyKind::Name(mode));
        // berth db: the temp file's own events say nothing.
        assert!(told(EventKind::Create(CreateKind::File), &[tmp]).is_empty());
        assert!(told(rename(RenameMode::From), &[tmp]).is_empty());
        assert_eq!(told(rename(RenameMode::To), &[db]), [format!("whole {db}")]);
        assert_eq!(
            told(rename(RenameMode::Both), &[tmp, db]),
            [format!("whole {db}")]
        );
        // A temp file of another tool renamed into place: both done with.
        assert_eq!(
            told(rename(RenameMode::Both), &["/db/sedAb12", db]),
            ["whole /db/sedAb12".to_string(), format!("whole {db}")]
        );
        // An editor moving the original aside, then writing it anew.
        assert_eq!(
            told(rename(RenameMode::Both), &[db, "/db/docker_containers~"]),
            [format!("writing {db}")]
        );
        assert_eq!(
            told(rename(RenameMode::From), &[db]),
            [format!("writing {db}")]
        );
        assert_eq!(
            told(EventKind::Create(CreateKind::File), &[db]),
            [format!("writing {db}")]
        );
        // Written in place: mid-write until its writer closes it.
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(told(data, &[db]), [format!("writing {db}")]);
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(told(closed, &[db]), [format!("whole {db}")]);
        let mode = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any));
        assert_eq!(told(mode, &[db]), [format!("whole {db}")]);
        let removed = EventKind::Remove(RemoveKind::File);
        assert_eq!(told(removed, &[db]), [format!("whole {db}")]);
        // Reads, a pass's own included, are no change.
        for read in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(told(read, &[db]).is_empty());
        }
    }
}
