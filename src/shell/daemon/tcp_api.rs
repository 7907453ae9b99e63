//! The API over TCP, beside the unix socket: on only when `api_listen` is
//! set and the credentials file holds an `api_token`; SIGHUP re-reads both.

use std::sync::{Arc, RwLock};

use super::backend::DaemonBackend;
use crate::config::Config;
use crate::engine::Engine;

/// The API over TCP: on only when `api_listen` is set and the credentials
/// file holds an `api_token` (said, not fatal, when it does not: the
/// containers matter more than the remote API). SIGHUP re-reads both: a
/// new token takes effect at once, a new address restarts the listener.
pub struct TcpApi<E> {
    backend: Arc<DaemonBackend<E>>,
    token: crate::api::SharedToken,
    listening: Option<String>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl<E: Engine + 'static> TcpApi<E> {
    pub fn new(backend: Arc<DaemonBackend<E>>) -> Self {
        TcpApi {
            backend,
            token: Arc::new(RwLock::new(None)),
            listening: None,
            stop: None,
        }
    }

    pub fn configure(&mut self, config: &Config) {
        let token = config.api_listen.as_ref().and_then(|listen| {
            match crate::images::credentials::load(&config.credentials_file) {
                Ok(c) => {
                    let token = c.api_token.filter(|t| !t.is_empty());
                    if token.is_none() {
                        tracing::error!(
                            "api_listen {listen}: not listening: {} has no api_token (a TCP API always needs one)",
                            config.credentials_file.display()
                        );
                    }
                    token
                }
                Err(e) => {
                    tracing::error!("api_listen {listen}: not listening: {e}");
                    None
                }
            }
        });
        let wanted = config.api_listen.clone().filter(|_| token.is_some());
        match self.token.write() {
            Ok(mut t) => *t = token,
            Err(poisoned) => *poisoned.into_inner() = token,
        }
        if wanted == self.listening {
            return;
        }
        self.shutdown();
        self.listening = wanted.clone();
        let Some(listen) = wanted else { return };
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        self.stop = Some(stop_tx);
        let (token, backend) = (self.token.clone(), self.backend.clone());
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tracing::info!("API also on tcp {listen} (token required)");
            if let Err(e) = crate::api::serve_tcp(&listen, token, backend, stopped).await {
                tracing::error!("API over TCP: {e}");
            }
        });
    }

    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}
