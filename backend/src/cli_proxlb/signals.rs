//! SIGHUP → reload before the next run; SIGTERM/SIGINT → stop (sleeps end at once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub(super) struct Signals {
    reload: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
}

pub(super) enum Slept {
    Done,
    Stop,
}

impl Slept {
    pub fn is_stop(&self) -> bool {
        matches!(self, Slept::Stop)
    }
}

impl Signals {
    pub fn install() -> Signals {
        let reload = Arc::new(AtomicBool::new(false));
        let (tx, stop) = watch::channel(false);
        let tx = Arc::new(tx);
        let on_int = tx.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("SIGINT: stopping");
                on_int.send_replace(true);
            }
        });
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut hup) = signal(SignalKind::hangup()) {
                let flag = reload.clone();
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: the configuration is reloaded before the next run");
                        flag.store(true, Ordering::SeqCst);
                    }
                });
            }
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::spawn(async move {
                    if term.recv().await.is_some() {
                        tracing::info!("SIGTERM: stopping");
                        tx.send_replace(true);
                    }
                });
            }
        }
        Signals { reload, stop }
    }

    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once a stop signal arrived (at once if one already did).
    pub async fn stopped(&self) {
        let mut rx = self.stop.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Sleeps `d`, or less if a stop signal arrives.
    pub async fn sleep(&self, d: Duration) -> Slept {
        if d.is_zero() {
            return if self.stopping() { Slept::Stop } else { Slept::Done };
        }
        tokio::select! {
            () = tokio::time::sleep(d) => Slept::Done,
            () = self.stopped() => Slept::Stop,
        }
    }
}
