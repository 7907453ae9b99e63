//! `berth image prune`: the recipe cache images berth committed that
//! nothing uses.

use std::collections::BTreeMap;

use crate::engine::{Engine, EngineError};
use crate::images::ImageError;
use crate::recipe::{self, LABEL_RECIPE};
use crate::state::State;

/// What `berth image prune` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub removed: Vec<String>,
    /// Kept: tagged, used by a container, or a parent of a kept image.
    pub kept: usize,
}

/// Removes recipe cache images no tag and no container uses: images this
/// berth's builds committed (state.db's cache, never an image that only
/// carries the label), untagged, run by no container (stopped ones too),
/// and no kept image is built on; removed without force. Newest first
/// (children before parents), again while a round removes something; at
/// most as many rounds as images.
pub async fn prune<E: Engine>(
    engine: &E,
    state: &State,
    dry_run: bool,
) -> Result<Pruned, ImageError> {
    let mut images = engine.images_labelled(LABEL_RECIPE, None).await?;
    let ours: std::collections::HashSet<String> = state.cached_images()?.into_iter().collect();
    // What state.db remembers of images that are gone is forgotten.
    let listed: std::collections::HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
    if !dry_run {
        for gone in ours.iter().filter(|id| !listed.contains(id.as_str())) {
            state.forget_cached_image(gone)?;
        }
    }
    let used: std::collections::HashSet<String> = engine
        .observe()
        .await?
        .containers
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    // What a kept image was committed on is its cache: kept too (the
    // engine would let an untagged parent go).
    let parent: BTreeMap<&str, &str> = images
        .iter()
        .map(|i| {
            let p = i
                .labels
                .get(recipe::LABEL_PARENT)
                .map_or(i.parent.as_str(), String::as_str);
            (i.id.as_str(), p)
        })
        .collect();
    let mut keep: std::collections::HashSet<String> = std::collections::HashSet::new();
    for i in images
        .iter()
        .filter(|i| !i.tags.is_empty() || used.contains(&i.id))
    {
        let mut at = i.id.as_str();
        // Bounded by the number of images: a chain never loops, and if
        // an engine said it did, this stops.
        for _ in 0..=images.len() {
            if !keep.insert(at.to_string()) {
                break;
            }
            match parent.get(at) {
                Some(p) if !p.is_empty() => at = p,
                _ => break,
            }
        }
    }
    let (mut candidates, tagged): (Vec<_>, Vec<_>) = images
        .into_iter()
        .filter(|i| ours.contains(&i.id))
        .partition(|i| !keep.contains(&i.id));
    let mut out = Pruned {
        kept: tagged.len(),
        ..Pruned::default()
    };
    if dry_run {
        out.removed = candidates.into_iter().map(|i| i.id).collect();
        return Ok(out);
    }
    for _ in 0..candidates.len().max(1) {
        let mut left = Vec::new();
        let before = out.removed.len();
        for image in candidates {
            match engine.remove_image_id(&image.id).await {
                Ok(()) => {
                    state.forget_cached_image(&image.id)?;
                    out.removed.push(image.id);
                }
                Err(EngineError::Conflict(_)) => left.push(image),
                Err(e) => return Err(e.into()),
            }
        }
        let progress = out.removed.len() - before;
        candidates = left;
        if candidates.is_empty() || progress == 0 {
            break;
        }
    }
    out.kept += candidates.len();
    Ok(out)
}
