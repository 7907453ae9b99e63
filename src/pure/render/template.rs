//! One template as the renderer takes it: its output path, its fragments in
//! order, and the owner, mode and reload command (`.meta.toml`) of the file
//! it makes. Finding templates on disk is the shell's (`templates::tree`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::TemplateError;

/// Owner, mode and reload command of a rendered file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    #[serde(default = "root")]
    pub owner: String,
    #[serde(default = "root")]
    pub group: String,
    /// Octal, e.g. "0640".
    #[serde(default = "mode")]
    pub mode: String,
    /// Run with `sh -c` once per pass if this file (or another with the same command) changed.
    #[serde(default)]
    pub reload: Option<String>,
    /// Remove the output when the template folder is deleted.
    #[serde(default)]
    pub remove_when_deleted: bool,
}

fn root() -> String {
    "root".into()
}

fn mode() -> String {
    "0644".into()
}

/// A `.meta.toml` mode that is not an octal file mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mode {0:?} is not an octal file mode like \"0640\"")]
pub struct ModeError(pub String);

impl Meta {
    /// The permission bits of `mode` ("0640", "640" or "0o640").
    pub fn mode_bits(&self) -> Result<u32, ModeError> {
        let digits = self.mode.trim().trim_start_matches("0o");
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if bits <= 0o7777 && !digits.is_empty() => Ok(bits),
            _ => Err(ModeError(self.mode.clone())),
        }
    }
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            owner: root(),
            group: root(),
            mode: mode(),
            reload: None,
            remove_when_deleted: false,
        }
    }
}

/// One template, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Output path relative to `output_root` (and to the template trees).
    pub path: PathBuf,
    /// Fragment files in render order; a single whole-file override is one fragment.
    pub fragments: Vec<PathBuf>,
    pub meta: Meta,
    /// A `.meta.toml` that could not be used: the template fails with it
    /// rather than writing a file with the wrong owner or mode.
    pub meta_error: Option<TemplateError>,
}
