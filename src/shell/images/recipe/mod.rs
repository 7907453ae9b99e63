//! One recipe build (`Source recipe`): the manifest read from the record's
//! folder (no link followed inside it) and rendered, the base resolved, then
//! stage by stage: files copied, steps run by exec in a container of the
//! base, each committed as an image labelled with its cache key; a stage
//! whose key state.db says berth committed an image for is not run. The
//! last stage commits what the result runs; its checks run in a throwaway
//! container, and only then is the record's `Tag` moved.
//!
//! A failed step keeps its container as `<record>-failed` until the next
//! build of the record; the tag stays where it was.
//!
//! `load` reads the folder (also what a pass compares with the last
//! build's inputs), `stages` runs a build, `prune` removes unused cache
//! images.

mod load;
mod prune;
mod stages;
#[cfg(test)]
pub(super) mod tests;

pub use load::{context, load, load_with, Loaded};
pub use prune::{prune, Pruned};
pub use stages::build;
