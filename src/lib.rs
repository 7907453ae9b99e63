//! berth: runs one server's containers from SME Server style key/value databases.
//!
//! The functional core (`db` format, `spec`, `plan`) does no I/O beyond reading
//! files it is given; the imperative shell (`engine`, `apply`, `cli`, the
//! binaries) observes, acts and reports. See ARCHITECTURE.md for the map.

pub mod api;
pub mod apply;
pub mod cli;
pub mod command;
pub mod config;
pub mod daemon;
pub mod db;
pub mod engine;
pub mod events;
pub mod images;
pub mod plan;
pub mod reconcile;
pub mod safe_fs;
pub mod schedule;
pub mod spec;
pub mod state;
pub mod status;
pub mod templates;
