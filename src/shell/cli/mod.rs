//! The `berth` admin command: argument parsing here, one file per verb.

pub mod apply;
pub mod backend;
pub mod db;
pub mod docs;
pub mod history;
pub mod image;
pub mod outcome;
pub mod plan;
pub mod signal_event;
pub mod start_stop;
pub mod status;
pub mod templates;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Runs this server's containers from the docker_containers db"
)]
pub struct Cli {
    /// Config file (default: $BERTH_CONFIG, else /etc/berth/berth.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// SME's db verbs on a db under db_dir (or a path): keys, print, show, get, set, setprop, …
    #[command(disable_help_flag = true)]
    Db {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// What `apply` would do now, each action with its reason.
    Plan {
        #[arg(long)]
        json: bool,
        /// Evaluate schedules and start/stop events at TIME (03:00,
        /// "2026-11-23 03:00", or RFC 3339) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// One reconcile pass now.
    Apply {
        /// Remove the containers of deleted records even when that is all of
        /// them, or more than mass_removal_share (held back otherwise).
        #[arg(long)]
        allow_mass_removal: bool,
    },
    /// Console start: runs NAME (and what it links to) until the next stop event.
    Start { name: String },
    /// Console stop: stops NAME (and what links to it) until the next start event.
    Stop { name: String },
    /// Runs an event: StopOn containers stop, the actions in events_dir/EVENT/ run, StartOn containers start.
    #[command(name = "signal-event")]
    SignalEvent {
        event: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// What the templates would change (a list, or --diff), or --apply to write them.
    Templates {
        #[arg(long)]
        diff: bool,
        #[arg(long)]
        apply: bool,
    },
    /// Images: build, builds, log, list, import, load, save, push.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// The journal of actions (or of signalled events), newest first.
    History {
        /// Only this record.
        name: Option<String>,
        /// Signalled events instead of actions.
        #[arg(long)]
        events: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Declared against actual state of each record.
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Writes the man pages and completions into DIR (for the packages).
    #[command(name = "generate-docs", hide = true)]
    GenerateDocs { dir: PathBuf },
}

/// Parses the command line, runs the verb, maps the result to an exit code:
/// 0 done, 1 something failed (named on stderr), 2 usage or config error.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Command::GenerateDocs { dir } = &cli.command {
        return match docs::write(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::locate(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match cli.command {
        Command::Db { args } => {
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            db::run(
                &config.db_dir,
                &args,
                &mut stdout.lock(),
                &mut stderr.lock(),
            )
        }
        Command::Plan { json, at } => with_runtime(plan::run(&config, json, at.as_deref())),
        Command::Apply { allow_mass_removal } => {
            with_runtime(apply::run(&config, allow_mass_removal))
        }
        Command::History {
            name,
            events,
            limit,
            json,
        } => {
            if events {
                with_runtime(history::run_events(&config, limit, json))
            } else {
                with_runtime(history::run(&config, name.as_deref(), limit, json))
            }
        }
        Command::Templates { diff, apply } => templates::run(&config, diff, apply),
        Command::Image { command } => with_runtime(image::run(&config, command)),
        Command::Start { name } => with_runtime(start_stop::run(&config, &name, true)),
        Command::Stop { name } => with_runtime(start_stop::run(&config, &name, false)),
        Command::SignalEvent { event, args } => {
            with_runtime(signal_event::run(&config, &event, &args))
        }
        Command::Status { name, json } => with_runtime(status::run(&config, name.as_deref(), json)),
        Command::GenerateDocs { .. } => 0,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn with_runtime(fut: impl std::future::Future<Output = anyhow::Result<i32>>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(fut) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {}", error_text(&e));
            1
        }
    }
}

/// An error and its causes on one line. berth's errors say a cause either
/// in their own text or as their `source()`, never both, so each is
/// said once.
pub fn error_text(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use super::error_text;
    use crate::api::BackendError;
    use crate::db::DbError;
    use crate::declared::LoadError;
    use crate::events::EventError;
    use crate::reconcile::PassError;

    #[test]
    fn a_cause_is_said_once_through_every_wrapper() {
        let io = DbError::Io {
            path: PathBuf::from("/db/docker_containers"),
            error: io::Error::other("disk on fire"),
        };
        let e = BackendError::from(EventError::Pass(PassError::Declared(LoadError::Db(io))));
        assert_eq!(
            error_text(&anyhow::Error::from(e)),
            "/db/docker_containers: disk on fire"
        );
        let config = crate::config::ConfigError::Read {
            path: PathBuf::from("/etc/berth/berth.toml"),
            error: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            error_text(&anyhow::Error::from(config).context("berth.toml")),
            "berth.toml: /etc/berth/berth.toml: cannot read: permission denied"
        );
    }
}
