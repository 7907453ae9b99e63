//! Why a template's file was not written. Every message starts with the file
//! an admin has to open (the fragment, the `.meta.toml`, the target), and
//! with the line when there is one, so `FILE:LINE:` jumps straight there.

use std::path::PathBuf;

/// One template's failure; its target keeps its previous contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TemplateError {
    /// A fragment that does not parse or does not render (an undefined
    /// value under strict undefined, a failing filter…).
    #[error("{}{}: {message}", fragment.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Fragment {
        fragment: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A fragment that cannot be read (permissions, not UTF-8).
    #[error("{}: cannot read: {message}", fragment.display())]
    Read { fragment: PathBuf, message: String },
    /// A `.meta.toml` that does not parse or holds a bad value; toml's
    /// message carries the line and column.
    #[error("{}: {message}", file.display())]
    Meta { file: PathBuf, message: String },
    /// The renderer process stopped while rendering this template (out of
    /// memory, past its deadline): some fragment makes values without bound.
    #[error("{}: {message}", fragments.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))]
    Stopped {
        fragments: Vec<PathBuf>,
        message: String,
    },
    /// The rendered bytes could not be put in place.
    #[error("{}: {what}: {message}", target.display())]
    Write {
        target: PathBuf,
        what: String,
        message: String,
    },
}

impl TemplateError {
    pub(crate) fn write(target: &std::path::Path, what: &str, e: impl std::fmt::Display) -> Self {
        TemplateError::Write {
            target: target.to_path_buf(),
            what: what.to_string(),
            message: e.to_string(),
        }
    }
}
