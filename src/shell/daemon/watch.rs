//! Watches the db folder and both template trees (folders, not files:
//! editors and SME's tools replace files by rename). Each change only makes
//! the next pass come sooner; the loop gathers bursts.
//!
//! notify's inotify watcher is used directly rather than
//! notify-debouncer-full, whose timer thread wakes several times a second
//! even when nothing happens; the loop does the debouncing instead.

use std::path::{Path, PathBuf};

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
}

/// Files that change because berth itself wrote a db, and editor noise.
fn ignored(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".lock")
        || name.ends_with(".berth-tmp")
        || name.ends_with(".swp")
        || name.ends_with('~')
}

impl FolderWatch {
    pub fn start(config: &Config, tx: UnboundedSender<Event>) -> Result<FolderWatch, WatchError> {
        let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
            let Ok(event) = result else { return };
            if event.kind.is_access() {
                return;
            }
            if let Some(path) = event.paths.iter().find(|p| !ignored(p)) {
                let _ = tx.send(Event::FilesChanged(path.display().to_string()));
            }
        })
        .map_err(WatchError::Start)?;
        let mut watch = FolderWatch {
            watcher,
            watched: Vec::new(),
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
