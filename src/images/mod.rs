//! Images: declared in `docker_images`, built from git + Dockerfile,
//! imported from a rootfs or loaded from a saved tar, queued in state.db,
//! built by a fixed pool of workers, and rebuilt when their base moves.

pub mod build;
pub mod credentials;
pub mod spec;
pub mod worker;

use std::collections::BTreeMap;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::state::{State, StateError};

pub use spec::{DeclaredImages, ImageSpec, Source};

/// Reads `docker_images` (a missing db declares no images).
pub fn load(config: &Config) -> Result<DeclaredImages, DbError> {
    Ok(spec::declare(&Db::load_or_empty(
        &config.db_path("docker_images"),
    )?))
}

/// The image records an image's build waits for: its base, if the base is
/// itself declared here (so chains build level by level).
pub fn waits_on(
    images: &DeclaredImages,
    lineage: &[crate::state::Lineage],
    name: &str,
) -> Vec<String> {
    let Some(base_ref) = lineage
        .iter()
        .find(|l| l.image == name)
        .and_then(|l| l.base_ref.as_deref())
    else {
        return Vec::new();
    };
    images
        .specs
        .values()
        .filter(|s| s.tag == base_ref)
        .map(|s| s.name.clone())
        .collect()
}

/// What a lineage check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LineageReport {
    /// Images queued for rebuild (AutoRebuild yes), with the reason.
    pub queued: Vec<(String, String)>,
    /// Images newly marked outdated (AutoRebuild no).
    pub outdated: Vec<String>,
}

/// Dynamic inheritance: every image whose recorded base ID differs from
/// what its base tag names now is queued (AutoRebuild yes) or marked
/// outdated. `tags` is the engine's tag → ID map from the pass's observe.
pub fn check_lineage(
    state: &mut State,
    images: &DeclaredImages,
    tags: &BTreeMap<String, String>,
) -> Result<LineageReport, StateError> {
    let mut report = LineageReport::default();
    for l in state.lineage()? {
        let (Some(base_ref), Some(base_id)) = (&l.base_ref, &l.base_id) else {
            continue;
        };
        let Some(spec) = images.specs.get(&l.image) else {
            continue;
        };
        let Some(now_id) = tags.get(base_ref) else {
            continue;
        };
        if now_id == base_id {
            continue;
        }
        let why = format!("base {base_ref} moved to {}", crate::plan::short(now_id));
        if spec.auto_rebuild {
            let (_, merged) = state.request_build(&l.image, &why)?;
            if !merged {
                report.queued.push((l.image.clone(), why));
            }
        } else if state.mark_outdated(&l.image)? {
            report.outdated.push(l.image.clone());
        }
    }
    Ok(report)
}

/// Runs the configured notification command for an image event, if any.
pub fn notify(config: &Config, image: &str, event: &str) {
    let Some(command) = &config.image_notify_command else {
        return;
    };
    let result = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("BERTH_IMAGE", image)
        .env("BERTH_IMAGE_EVENT", event)
        .status();
    match result {
        Ok(s) if s.success() => {}
        Ok(s) => tracing::warn!(image, "image_notify_command exited with {s}"),
        Err(e) => tracing::warn!(image, "image_notify_command: {e}"),
    }
}
