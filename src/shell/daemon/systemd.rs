//! What berthd tells systemd (READY, WATCHDOG, STOPPING), how it logs
//! (journald with fields when there, stderr otherwise), and signals.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;

use super::Event;

pub fn notify_ready() {
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
}

pub fn notify_watchdog() {
    let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
}

/// The one line `systemctl status berthd` shows: one line (a newline
/// would end the assignment), at most 200 characters.
pub fn notify_status(text: &str) {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let _ = sd_notify::notify(false, &[NotifyState::Status(&line)]);
}

pub fn notify_stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// Half the watchdog period systemd asked for, if it asked.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2))
    } else {
        None
    }
}

/// journald (records and actions as fields) when stderr goes to the journal
/// or the journal socket exists; plain stderr otherwise.
pub fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some()
        && std::path::Path::new("/run/systemd/journal/socket").exists();
    if journal {
        // Fields as they are named (RECORD=web, ACTION=create), not
        // prefixed F_, so `journalctl RECORD=web` finds a record's lines.
        if let Ok(layer) = tracing_journald::layer().map(|l| l.with_field_prefix(None)) {
            tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .init();
            return;
        }
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// SIGHUP becomes `Event::Reload`. (SIGTERM and SIGINT are the caller's
/// shutdown future.)
pub fn spawn_signal_relay(tx: UnboundedSender<Event>) {
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send(Event::Reload).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => tracing::error!("cannot listen for SIGHUP: {e}"),
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn terminated() {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        }
        _ => {
            tracing::error!("cannot listen for SIGTERM/SIGINT; stop berthd with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}
