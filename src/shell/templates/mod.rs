//! Template fragments → config files, the SME way. Nothing here knows what a
//! proxy is: the shipped nginx/Apache templates are data (`templates/`),
//! and any other generated file (firewall rules, a backup list) works alike.
//! Render everything first (pure, in a child process the kernel bounds:
//! `isolated`), then write only the files whose bytes changed (temp file +
//! rename), then run each reload command once.

pub mod containers;
pub mod isolated;
pub mod tree;
pub mod write;

use crate::render;
pub use crate::render::TemplateError;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::db::Snapshot;

/// What a templates pass found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TemplateReport {
    /// Output paths that changed (or would change, without `write`).
    pub changed: Vec<PathBuf>,
    /// Unchanged outputs.
    pub unchanged: Vec<PathBuf>,
    /// Templates that failed, with `fragment:line: why`; their targets are untouched.
    pub failed: Vec<(PathBuf, String)>,
    pub warnings: Vec<String>,
    /// Outputs removed because their template folder was deleted (without
    /// `write`: that would be).
    pub removed: Vec<PathBuf>,
    /// Reload commands run, with their result.
    pub reloads: Vec<(String, Result<(), write::ReloadError>)>,
    /// For `--diff`: output path → (old text, new text).
    #[serde(skip)]
    pub diffs: BTreeMap<PathBuf, (String, String)>,
}

impl TemplateReport {
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.reloads.iter().all(|(_, r)| r.is_ok())
    }
}

/// One templates pass: renders every template against the dbs of
/// `snapshot` (the pass's, read once) and the specs they declare; with
/// `write`, writes what changed, removes outputs of deleted templates that
/// asked for it, and runs each reload command once. This is what berthd
/// calls after each reconcile pass and `berth templates` runs. It never
/// panics and never stops at a failing template, and needs no engine.
pub fn run(config: &Config, snapshot: &Snapshot, write: bool) -> TemplateReport {
    let (templates, tree_warnings) =
        tree::discover(&config.templates_dir, &config.templates_custom_dir);
    let mut warnings = db_warnings(snapshot);
    warnings.extend(tree_warnings);
    let last_valid = containers::load(&config.state_dir);
    let declared = containers::declared(config, snapshot);
    let views = match &declared {
        Ok(declared) => {
            let (views, said) = containers::views(declared, &last_valid);
            warnings.extend(said);
            Ok(views)
        }
        Err(e) => Err(e as &dyn std::fmt::Display),
    };
    if write {
        if let Ok(views) = &views {
            if let Err(e) = containers::save(&config.state_dir, views) {
                warnings.push(e.to_string());
            }
        }
    }
    let context = render::context(snapshot.dbs(), views);
    // The lib's own unit tests have no renderer child to run (their
    // executable is the test harness); the binaries' tests cover it.
    let rendered = if cfg!(test) {
        render::render_all(&templates, &context)
    } else {
        isolated::render_all(&templates, &context)
    };
    let mut report = write::apply(config, &templates, rendered, write);
    warnings.append(&mut report.warnings);
    report.warnings = warnings;
    report
}

/// What fragments cannot see in `db`: a folder that cannot be listed, a
/// file that cannot be read, a line that does not parse.
fn db_warnings(snapshot: &Snapshot) -> Vec<String> {
    if let Some(e) = snapshot.listing_error() {
        return vec![format!("{}: {e}", snapshot.dir().display())];
    }
    snapshot
        .dbs()
        .iter()
        .flat_map(|db| db.problems())
        .map(|p| format!("{p} (line skipped; its record is not in `db`)"))
        .chain(
            snapshot
                .unreadable()
                .iter()
                .map(|e| format!("{e} (not in `db`)")),
        )
        .collect()
}
