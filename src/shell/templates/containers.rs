//! The containers fragments see. A record that fails validation keeps its
//! container exactly as it is (PRODUCT.md); it keeps its place in generated
//! files too: the last valid view of it is remembered, so a typo in one
//! record's MaxMemory does not take its virtual host away while the
//! container keeps running. Every other record still updates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::db::snapshot::{ReadError, Snapshot};
use crate::declared::{declare, Declared, SpecSettings};
use crate::render::ContainerView;

/// `state_dir/templates.containers.json`: record name → its last valid view.
pub const LAST_VALID: &str = "templates.containers.json";

/// The records `snapshot` declares, or why there are none to show (a
/// `docker_containers` that cannot be read fails the templates using them).
/// Records the host policy refuses are invalid here too: a proxy keeps the
/// view of what runs.
pub fn declared(config: &Config, snapshot: &Snapshot) -> Result<Declared, ReadError> {
    let mut declared = declare(
        snapshot.containers()?,
        snapshot.images()?,
        &SpecSettings::from_config(config),
    );
    crate::policy_file::apply(config, snapshot.images()?, &mut declared);
    Ok(declared)
}

/// Pure: the views of the valid records, plus the last valid view of each
/// record that is invalid now, or may be on a line that does not parse.
/// Returns the views (sorted by name) and what to tell the admin.
pub fn views(
    declared: &Declared,
    last_valid: &BTreeMap<String, ContainerView>,
) -> (Vec<ContainerView>, Vec<String>) {
    let mut out: BTreeMap<String, ContainerView> = declared
        .specs
        .values()
        .map(|s| (s.name.clone(), ContainerView::of(s)))
        .collect();
    let mut warnings = Vec::new();
    for (name, errors) in &declared.failed {
        let first = errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "invalid".into());
        match last_valid.get(name) {
            Some(view) => {
                out.insert(name.clone(), view.clone());
                warnings.push(format!(
                    "{first}; templates keep using its last valid values"
                ));
            }
            None => warnings.push(format!(
                "{first}; not in the templates' containers until it is valid"
            )),
        }
    }
    // A record on a line that does not parse seems deleted; it may not be.
    if !declared.unparsed.is_empty() {
        for (name, view) in last_valid {
            if !declared.is_declared(name) {
                out.insert(name.clone(), view.clone());
                warnings.push(format!(
                    "record {name} is missing while docker_containers has lines that do not parse; templates keep its last valid values"
                ));
            }
        }
    }
    (out.into_values().collect(), warnings)
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(LAST_VALID)
}

/// The remembered views; none when the file is missing or unreadable (then
/// an invalid record is left out, and said so).
pub fn load(state_dir: &Path) -> BTreeMap<String, ContainerView> {
    std::fs::read(path(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Remembers `views` when they differ from what is stored (temp file +
/// rename, so a crash leaves the old or the new file, never half of one).
pub fn save(state_dir: &Path, views: &[ContainerView]) -> Result<(), super::write::SaveError> {
    let wanted: BTreeMap<String, ContainerView> =
        views.iter().map(|v| (v.name.clone(), v.clone())).collect();
    if load(state_dir) == wanted {
        return Ok(());
    }
    super::write::save_json(&path(state_dir), &wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declared::from_text as declared;

    #[test]
    fn an_invalid_record_keeps_its_last_valid_view() {
        let good = declared(
            "app=service|Image|a:1|TCPPort|8080|SubDomain|enabled\nweb=service|Image|b:1|TCPPort|8081\n",
        );
        let (first, warnings) = views(&good, &BTreeMap::new());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].proxy_port, Some(8080));
        let remembered: BTreeMap<String, ContainerView> =
            first.iter().map(|v| (v.name.clone(), v.clone())).collect();

        let broken = declared(
            "app=service|Image|a:1|TCPPort|8080|SubDomain|enabled|MaxMemory|lots\nweb=service|Image|b:1|TCPPort|8082\n",
        );
        let (now, warnings) = views(&broken, &remembered);
        assert_eq!(now.len(), 2);
        assert_eq!(now[0], first[0], "app as it was");
        assert_eq!(now[1].proxy_port, Some(8082), "web updated");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("MaxMemory"), "{warnings:?}");

        let (without, warnings) = views(&broken, &BTreeMap::new());
        assert_eq!(without.len(), 1);
        assert!(warnings[0].contains("not in the templates"), "{warnings:?}");
    }

    #[test]
    fn an_unparsed_line_keeps_a_record_that_seems_deleted() {
        let before = declared("app=service|Image|a:1|TCPPort|8080\n");
        let (first, _) = views(&before, &BTreeMap::new());
        let remembered = first.iter().map(|v| (v.name.clone(), v.clone())).collect();
        let garbled = declared("this line does not parse\n");
        assert!(!garbled.unparsed.is_empty());
        let (now, warnings) = views(&garbled, &remembered);
        assert_eq!(now, first);
        assert_eq!(warnings.len(), 1);
        let deleted = declared("");
        assert!(views(&deleted, &remembered).0.is_empty(), "really deleted");
    }
}
