//! Bounds and the operator's hand on a run: a stop signal raised by Ctrl-C
//! or by the run's time limit, and progress bars while it runs.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

/// Raised once: Ctrl-C or the time limit. Scenarios stop what they are
/// doing and report what they measured so far, marked partial.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    pub fn install(limit: Duration) -> Stop {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_ok() {
                        eprintln!("\ninterrupted: stopping, with a partial report");
                    }
                }
                _ = tokio::time::sleep(limit) => {
                    eprintln!("\ntime limit of {limit:?} reached: stopping, with a partial report");
                }
            }
            let _ = tx.send(true);
        });
        Stop(rx)
    }

    /// A stop raised only by hand, through the returned sender: the end of
    /// one phase of a run.
    pub fn manual() -> (watch::Sender<bool>, Stop) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop(rx))
    }

    pub fn stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when the run must stop.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                // The signal task is gone: never stop on its account.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Sleeps for `d`; false when the run was stopped first.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.wait() => false,
        }
    }
}

/// A bar counting `len` things, drawn on stderr (hidden when stderr is not
/// a terminal).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec}, {elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_message(what.to_owned());
    b
}

/// A bar for a timed phase, in seconds.
pub fn timer(secs: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(secs);
    b.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} s")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_message(what.to_owned());
    b
}
