//! `berthd`: the daemon. For now it loads and checks its configuration and
//! the declared specs, reports them, and exits; the reconcile loop comes next.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "berthd", version, about = "The berth daemon")]
struct Args {
    /// Config file (default: $BERTH_CONFIG, else /etc/berth/berth.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match berth::config::Config::locate(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(db_dir = %config.db_dir.display(), docker_host = %config.docker_host, "configuration loaded");
    match berth::spec::load(&config) {
        Ok(declared) => {
            for e in declared.errors().chain(declared.warnings.iter()) {
                tracing::warn!(record = %e.record, "{e}");
            }
            tracing::info!(
                valid = declared.specs.len(),
                invalid = declared.failed.len(),
                "records read"
            );
        }
        Err(e) => tracing::warn!("{e}"),
    }
    ExitCode::SUCCESS
}
