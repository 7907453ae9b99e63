//! berthd's command line, here rather than in the binary so that the
//! packaging's man page and completions are made from the same definition.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "berthd",
    version,
    about = "The berth daemon: watches, reconciles, serves the API",
    long_about = "The berth daemon: watches the db and the engine, runs a reconcile \
pass whenever either changes (and every resync_seconds), serves the API on \
api_socket, runs schedules, builds and the registry watch. systemd starts it \
(berthd.service, Type=notify); SIGHUP reloads the configuration; SIGTERM \
stops berthd and leaves every container running."
)]
pub struct Args {
    /// Config file (default: $BERTH_CONFIG, else /etc/berth/berth.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}
