//! `berth signal-event EVENT [ARGS…]`: stops what StopOn lists, runs the
//! event's action folder, starts what StartOn lists. Exit 1 if anything failed.

use crate::api::{Backend, BackendError};
use crate::config::Config;

pub async fn run(config: &Config, event: &str, args: &[String]) -> anyhow::Result<i32> {
    let backend = super::backend::backend(config).await;
    let run = match backend.signal(event.to_string(), args.to_vec()).await {
        Ok(run) => run,
        // As `berth start`: the event's failures and berthd's are the
        // verb's, not reaching the engine is said as by any command.
        Err(e @ (BackendError::Event(_) | BackendError::Client(_))) => {
            eprintln!("berth signal-event: {e}");
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    // The event's own record of what ran and what berth did, as the
    // journal keeps it.
    print!("{}", run.output);
    println!("event {}: {}", run.name, run.result);
    Ok(i32::from(run.result != "ok"))
}
