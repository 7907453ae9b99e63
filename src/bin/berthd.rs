//! `berthd`: the daemon systemd starts at boot. Runs until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    if let Some(code) = berth::templates::isolated::serve_if_asked() {
        return code;
    }
    let args = berth::daemon::args::Args::parse();
    berth::daemon::systemd::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(berth::daemon::run(
        args.config,
        berth::daemon::systemd::terminated(),
    ));
    // A blocking task still running (an event action that was killed, a
    // reload) must not keep berthd from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
