//! SME Server's flat-file key/value databases, byte for byte: the `Db` type
//! (one loaded file), its records and the problems found reading it.
//! Knows nothing of Docker or containers.
//!
//! `format` holds the pure text rules, `file` the locked atomic writes
//! ([`update`]), `edit` the changes a write can make, `snapshot` the dbs of
//! one pass, each file read once ([`Snapshot`]).
//!
//! Reading follows SME's reader: blank lines and `#` comments are skipped,
//! a record line is split at its first `=` and nothing is trimmed, so
//! `that key =x` is the key `that key ` (SME's own hash does the same; its
//! `db show` prints such lines oddly, berth prints them as read). Lines
//! that are not records (no `=`, an empty key, bytes that are not UTF-8)
//! are reported as [`ParseProblem`]s and skipped. A key given twice is
//! reported too; the last one wins, as in SME.
//!
//! Writing follows SME's writer: its header, keys in byte order, the
//! records a write changed with their properties sorted, every other record
//! written back exactly as it was read (even odd spellings like `t|p`), and
//! comments dropped. Unlike SME, a line that did not parse is never lost: it
//! is written back verbatim, in its original order, after the records, so
//! an admin's typo survives a `setprop` by someone else. The earlier line
//! of a duplicated key is dropped (it was never in effect, and was reported).

mod edit;
mod file;
pub mod format;
pub mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

pub use file::{lock_path, update};
use format::Line;
pub use snapshot::Snapshot;

/// One record: `key=type|prop|value|…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub rtype: String,
    /// Unescaped, in file order (sorted once a write changed the record),
    /// each name once.
    pub props: Vec<(String, String)>,
    /// The 1-based line it was read from; 0 when it is not from a file.
    pub line: usize,
}

impl Record {
    /// The unescaped value of property `name`.
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A line of a db file that is not a record as written, or a duplicate key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParseProblem {
    pub file: PathBuf,
    pub line: usize,
    /// The line as read (invalid UTF-8 shown with replacement characters).
    pub text: String,
    pub why: String,
}

impl fmt::Display for ParseProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.why)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}: no such db file")]
    Missing(PathBuf),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A write asked for something the format cannot hold (a key with `=`…).
    #[error("{}: {why}", .path.display())]
    Invalid {
        path: PathBuf,
        why: format::NameError,
    },
    #[error("{path}: no record {key:?}")]
    NoRecord { path: PathBuf, key: String },
    /// The db's folder is reached through a link berth does not trust.
    #[error(transparent)]
    Path(#[from] crate::safe_fs::SafeFsError),
}

/// A record and, while no write has touched it, its value text as read,
/// so a write elsewhere in the file changes none of its bytes.
#[derive(Debug, Clone)]
struct Entry {
    record: Record,
    raw: Option<String>,
}

/// One loaded db file.
#[derive(Debug, Clone)]
pub struct Db {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
    problems: Vec<ParseProblem>,
    /// Lines that did not parse, verbatim (bytes: they may not be UTF-8).
    kept_lines: Vec<Vec<u8>>,
    changed: bool,
}

impl Db {
    /// A db with no records, as a missing file reads.
    pub fn empty(path: &Path) -> Db {
        Db {
            path: path.to_path_buf(),
            entries: BTreeMap::new(),
            problems: Vec::new(),
            kept_lines: Vec::new(),
            changed: false,
        }
    }

    /// Reads the file; a missing file is [`DbError::Missing`].
    pub fn load(path: &Path) -> Result<Db, DbError> {
        match file::read(path)? {
            Some(bytes) => Ok(Db::parse_bytes(path, &bytes)),
            None => Err(DbError::Missing(path.to_path_buf())),
        }
    }

    /// Reads the file; a missing file is an empty db.
    pub fn load_or_empty(path: &Path) -> Result<Db, DbError> {
        Ok(match file::read(path)? {
            Some(bytes) => Db::parse_bytes(path, &bytes),
            None => Db::empty(path),
        })
    }

    /// Pure: `text` read as the contents of `path`. Never fails; what does
    /// not parse is in [`Db::problems`].
    pub fn parse(path: &Path, text: &str) -> Db {
        Db::parse_bytes(path, text.as_bytes())
    }

    /// [`Db::parse`] for raw file contents: a line that is not UTF-8 is a
    /// problem (and kept for writing), not a reason to refuse the file.
    pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Db {
        let mut db = Db::empty(path);
        let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        for (index, raw_line) in lines.into_iter().enumerate() {
            let number = index + 1;
            let line = match std::str::from_utf8(raw_line) {
                Ok(line) => line,
                Err(_) => {
                    db.bad_line(number, raw_line, "not valid UTF-8");
                    continue;
                }
            };
            match format::classify(line) {
                Line::Skip => {}
                Line::Bad(why) => db.bad_line(number, raw_line, why),
                Line::Record { key, value } => db.read_record(number, key, value),
            }
        }
        db
    }

    fn bad_line(&mut self, number: usize, raw_line: &[u8], why: &str) {
        self.problems.push(ParseProblem {
            file: self.path.clone(),
            line: number,
            text: String::from_utf8_lossy(raw_line).into_owned(),
            why: format!("{why}; line skipped (kept as is when the db is written)"),
        });
        self.kept_lines.push(raw_line.to_vec());
    }

    fn read_record(&mut self, number: usize, key: &str, value: &str) {
        if let Some(earlier) = self.entries.get(key) {
            self.problems.push(ParseProblem {
                file: self.path.clone(),
                line: number,
                text: format!("{key}={value}"),
                why: format!(
                    "key {key:?} also on line {}; this later line wins (the earlier one is dropped when the db is written)",
                    earlier.record.line
                ),
            });
        }
        let (rtype, props) = format::parse_value(value);
        let key = key.to_string();
        let record = Record {
            key: key.clone(),
            rtype,
            props,
            line: number,
        };
        self.entries.insert(
            key,
            Entry {
                record,
                raw: Some(value.to_string()),
            },
        );
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record, keys in byte order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.entries.values().map(|e| &e.record)
    }

    /// Every key, in byte order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn get(&self, key: &str) -> Option<&Record> {
        self.entries.get(key).map(|e| &e.record)
    }

    /// Lines that did not parse, and duplicate keys, in file order.
    pub fn problems(&self) -> &[ParseProblem] {
        &self.problems
    }

    /// The record's value as the file holds (or will hold) it:
    /// `type|prop|value|…`, escaped.
    pub fn value_text(&self, key: &str) -> Option<String> {
        let entry = self.entries.get(key)?;
        Some(match &entry.raw {
            Some(raw) => raw.clone(),
            None => format::value_text(&entry.record.rtype, &entry.record.props),
        })
    }

    /// Whether anything was changed since the file was read; [`update`]
    /// writes only then, so a no-op leaves the file (and its watchers) alone.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// The whole file: header stamped `updated`, records, then the lines
    /// that did not parse. Exact bytes; see [`Db::serialize`] for text.
    pub fn to_bytes(&self, updated: OffsetDateTime) -> Vec<u8> {
        let mut out = format::header(updated).into_bytes();
        for key in self.entries.keys() {
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(self.value_text(key).unwrap_or_default().as_bytes());
            out.push(b'\n');
        }
        for line in &self.kept_lines {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }

    /// [`Db::to_bytes`] as text (a kept line that is not UTF-8 shows with
    /// replacement characters here; writes use the exact bytes).
    pub fn serialize(&self, updated: OffsetDateTime) -> String {
        String::from_utf8_lossy(&self.to_bytes(updated)).into_owned()
    }
}

/// `name_or_path` as a db path: a path if it contains `/`, else a name
/// under `db_dir`.
pub fn resolve(db_dir: &Path, name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') {
        PathBuf::from(name_or_path)
    } else {
        db_dir.join(name_or_path)
    }
}

/// Editor and package-manager leftovers (and hidden files): never fragments,
/// never event actions.
pub fn is_leftover(name: &str) -> bool {
    name.starts_with('.')
        || [
            ".swp",
            "~",
            ".orig",
            ".rpmsave",
            ".rpmnew",
            ".dpkg-old",
            ".dpkg-new",
            ".dpkg-dist",
            // dpkg's file while it unpacks an upgrade, and its backup.
            ".dpkg-tmp",
            ".dpkg-bak",
            ".rpmorig",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}
