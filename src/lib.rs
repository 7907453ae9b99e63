//! berth: runs one server's containers from SME Server style key/value databases.
//!
//! Two layers, one folder each. `pure` is the functional core: it decides,
//! and does no I/O beyond reading the files it is handed (no engine, no
//! clock). `shell` is the imperative shell: it reads the world, asks the
//! core, acts and reports. The crate root re-exports every module, so paths
//! stay short (`crate::plan`, `berth::db`). See ARCHITECTURE.md for the map.

/// The functional core: unit-tested without Docker, fuzzed.
pub mod pure {
    pub mod db;
    pub mod declared;
    pub mod model;
    pub mod plan;
    pub mod policy;
    pub mod poll;
    pub mod recipe;
    pub mod reference;
    pub mod render;
    pub mod schedule;
}

/// The imperative shell: the engine, files, processes, the daemon, the API
/// and the command line; tested against the real engine.
pub mod shell {
    pub mod api;
    pub mod apply;
    pub mod cli;
    pub mod command;
    pub mod config;
    pub mod daemon;
    pub mod engine;
    pub mod events;
    pub mod images;
    pub mod policy_file;
    pub mod pulls;
    pub mod reconcile;
    pub mod registry;
    pub mod safe_fs;
    pub mod state;
    pub mod status;
    pub mod templates;
    pub mod watch;
}

pub use pure::{db, declared, model, plan, policy, poll, recipe, reference, render, schedule};
pub use shell::{
    api, apply, cli, command, config, daemon, engine, events, images, policy_file, pulls,
    reconcile, registry, safe_fs, state, status, templates, watch,
};
