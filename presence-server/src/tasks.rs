//! Every task a node runs, and how it ends. [`Tasks`] spawns and tracks
//! them (tokio-util's `TaskTracker`) and holds the tokens that stop them
//! (`CancellationToken`), so that `server::run` can keep one shutdown
//! deadline: when it returns, no task of the node is left.
//!
//! Shutdown has three moments, in this order:
//! - **stopping**: the node begins to stop. The accept loop ends, tabs are
//!   told 1012, HTTP connections close gracefully, and the duties that only
//!   serve a running node (expiry, heartbeat, event follower, directory
//!   sync) end.
//! - **cut**: the time of tabs and HTTP connections is over; those still
//!   open are dropped.
//! - **abort**: the deadline; every task still running is dropped, among
//!   them the cluster's operation queue, which runs until then so that the
//!   hand-off reaches Redis.
//!
//! May use: nothing of the crate (it is below the hub).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// How long dropped tasks get to be polled once more and go: dropping a
/// task's future happens at its next poll, which is as soon as a worker
/// thread is free.
const SETTLE: Duration = Duration::from_millis(100);

/// The node's tasks: connections (HTTP and tabs) and duties (everything
/// else), and the tokens of the three moments of shutdown.
pub struct Tasks {
    stopping: CancellationToken,
    /// Whether [`Tasks::begin_stop`] was called, so exactly one caller does
    /// what starting to stop takes.
    begun: AtomicBool,
    /// A child of `abort`: aborting cuts connections too.
    cut: CancellationToken,
    abort: CancellationToken,
    connections: TaskTracker,
    duties: TaskTracker,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    pub fn new() -> Tasks {
        let abort = CancellationToken::new();
        Tasks {
            stopping: CancellationToken::new(),
            begun: AtomicBool::new(false),
            cut: abort.child_token(),
            abort,
            connections: TaskTracker::new(),
            duties: TaskTracker::new(),
        }
    }

    /// Runs `fut` as a duty of the node: until it ends, or until the
    /// shutdown deadline drops it. A duty that must end when the node
    /// begins to stop selects on [`Tasks::stopping`] itself.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.duties
            .spawn(self.abort.clone().run_until_cancelled_owned(fut));
    }

    /// Runs an HTTP connection (or a refusal): dropped when the time of
    /// connections is over. It reacts to [`Tasks::stopping`] itself.
    pub(crate) fn spawn_connection<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.connections
            .spawn(self.cut.clone().run_until_cancelled_owned(fut));
    }

    /// Runs a tab's session. Tracked, but not wrapped in a cancellation
    /// future: an idle tab's task would carry one for hours (see
    /// ARCHITECTURE.md, "Memory per tab"). A session ends by itself once
    /// stopping begins: a joined tab is told 1012 through its outbox, the
    /// handshake watches [`Tasks::stopping`], and the close handshake
    /// watches [`Tasks::cut`]; all of these wait only in boxed futures that
    /// exist while they run.
    pub(crate) fn spawn_session<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.connections.spawn(fut);
    }

    /// Resolves once the node begins to stop.
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.stopping.cancelled()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Resolves once connections still open are to be dropped.
    pub(crate) fn cut(&self) -> WaitForCancellationFuture<'_> {
        self.cut.cancelled()
    }

    /// Marks the node as stopping. True for the first caller only.
    pub(crate) fn begin_stop(&self) -> bool {
        if self.begun.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.stopping.cancel();
        true
    }

    /// Waits until every connection ended, or until `until`; then drops
    /// those left. Returns whether they all ended by themselves.
    pub(crate) async fn drain(&self, until: Instant) -> bool {
        self.connections.close();
        if tokio::time::timeout_at(until, self.connections.wait())
            .await
            .is_ok()
        {
            return true;
        }
        self.cut.cancel();
        let _ = tokio::time::timeout(SETTLE, self.connections.wait()).await;
        false
    }

    /// Drops every task still running and waits (briefly) until they are
    /// gone, so that what they held (the hub, its store) is released.
    pub(crate) async fn abort_and_wait(&self) {
        self.abort_all();
        self.duties.close();
        self.connections.close();
        let gone = tokio::time::timeout(SETTLE, async {
            self.duties.wait().await;
            self.connections.wait().await;
        })
        .await;
        if gone.is_err() {
            tracing::warn!(
                duties = self.duties.len(),
                connections = self.connections.len(),
                "tasks still running after the shutdown deadline"
            );
        }
    }

    /// Drops every duty and connection at once, without the graceful path:
    /// what the deadline does, and how a test makes a node die. Sessions
    /// already told to close go at their next step; a joined tab that was
    /// not told keeps its session until its socket ends.
    pub fn abort_all(&self) {
        self.abort.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_duty_runs_until_the_deadline_drops_it() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        assert!(tasks.begin_stop());
        assert!(!tasks.begin_stop(), "only the first caller begins");
        tasks.stopping().await;
        tasks.abort_and_wait().await;
        // The duty's future was dropped, and with it the sender.
        assert!(rx.await.is_err());
        assert!(tasks.duties.is_empty());
    }

    #[tokio::test]
    async fn connections_left_at_the_end_of_the_drain_are_dropped() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn_connection(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        tasks.spawn_connection(async {});
        let until = Instant::now() + Duration::from_millis(20);
        assert!(!tasks.drain(until).await);
        assert!(rx.await.is_err());
        assert!(tasks.connections.is_empty());
    }

    #[tokio::test]
    async fn a_drain_that_ends_by_itself_cuts_nothing() {
        let tasks = Tasks::new();
        tasks.spawn_connection(tokio::time::sleep(Duration::from_millis(5)));
        assert!(tasks.drain(Instant::now() + Duration::from_secs(5)).await);
        assert!(!tasks.cut.is_cancelled());
    }
}
