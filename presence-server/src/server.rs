//! [`run`]: runs a hub's router ([`crate::api::app`]) on a listener the
//! caller bound (tests bind 127.0.0.1:0), with the limits of the HTTP edge
//! (open connections, the time and size of a request's headers), and shuts
//! the node down within one deadline, `PRESENCE_SHUTDOWN_GRACE_MS`.
//!
//! Every task of the node is spawned through the hub's [`crate::tasks::Tasks`]
//! (HTTP connections here, sessions in `net::upgrade`, the background
//! duties, the cluster's tasks), so that shutdown can wait for them and drop
//! what is left when the deadline passes.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use futures_util::future::{ready, Either};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::api::error::ApiError;
use crate::config::Config;
use crate::hub::Hub;
use crate::net::limit::{Limit, Permit};

/// A TCP connection's place under `PRESENCE_MAX_CONNECTIONS`, held by its
/// hyper connection task and, once upgraded, by its session (the upgrade
/// finds it in the request's extensions): one socket holds one place from
/// `accept` to close, whatever speaks on it.
#[derive(Clone)]
pub struct ConnectionSlot {
    _permit: Arc<Permit>,
}

/// How long a connection refused for the connection limit is kept to
/// deliver its 503: what the client sends meanwhile is read and dropped, so
/// that closing does not reset the connection and destroy the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refused connections lingering at once. Beyond it a connection is closed
/// without an answer: under a flood, refusals must not become the resource
/// that runs out.
const MAX_REFUSALS: usize = 1024;

/// Answers a connection over the limit with a JSON 503 before hyper or the
/// router see it, then closes it.
async fn refuse(mut stream: TcpStream, _refusing: Permit) {
    let answer = ApiError::TooManyConnections.http1_response();
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// The size of a request line and its headers as sent, give or take
/// optional whitespace: hyper keeps only the parsed request.
fn head_bytes<B>(req: &hyper::Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri
            .authority()
            .map_or(0, |a| "http://".len() + a.as_str().len());
    let line = req.method().as_str().len() + " ".len() + target + " HTTP/1.1\r\n".len();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + "\r\n".len())
        .sum();
    line + fields + "\r\n".len()
}

/// hyper's HTTP/1.1 settings for every connection.
fn http1(config: &Config) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // Also how long an idle keep-alive connection waits for its next
        // request: hyper starts this timer whenever it waits for a head.
        .header_read_timeout(config.header_read_timeout)
        // A memory backstop only: hyper answers a head that outgrows its
        // read buffer with an empty-bodied 431 and closes. The documented
        // limit (`max_header_bytes`) is enforced below it, by `run`'s
        // service, which can answer with SPEC §6's JSON.
        .max_buf_size((4 * config.max_header_bytes).max(64 * 1024));
    http
}

/// Warns when the soft limit on open files is below
/// `PRESENCE_MAX_CONNECTIONS`: the process would run out of descriptors
/// (and `accept` fail) before the limit answered anyone with a 503.
fn warn_if_open_files_below(max_connections: usize) {
    if let Some(files) = open_files_limit() {
        if files < max_connections as u64 {
            tracing::warn!(
                rlimit_nofile = files,
                max_connections,
                "RLIMIT_NOFILE ({files}) is lower than PRESENCE_MAX_CONNECTIONS \
                 ({max_connections}): past about {files} open connections, accept \
                 fails instead of answering 503; raise it (ulimit -n, systemd \
                 LimitNOFILE=) or lower PRESENCE_MAX_CONNECTIONS"
            );
        }
    }
}

/// The soft `RLIMIT_NOFILE`, from `/proc/self/limits`; `None` when unlimited
/// or not on Linux. Read from procfs rather than `getrlimit(2)`: the
/// workspace denies unsafe code, and this needs no extra crate.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The most of the shutdown deadline kept for persisting presence and
/// leaving the cluster: a few round trips to the store and Redis.
const PERSIST_RESERVE_MAX: Duration = Duration::from_secs(1);

/// How the shutdown deadline (`grace`) is split: the time tabs and HTTP
/// connections get to close (the drain), then what is kept for persisting
/// presence and leaving the cluster, a quarter of the deadline but at most
/// [`PERSIST_RESERVE_MAX`]. The drain ends early when the last connection
/// closes, and persisting starts then.
pub(crate) fn drain_budget(grace: Duration) -> Duration {
    grace - (grace / 4).min(PERSIST_RESERVE_MAX)
}

/// Warns when a tab's close handshake (`PRESENCE_CLOSE_LINGER_MS`) does not
/// fit in the drain part of the deadline: tabs that do not answer their
/// 1012 are then dropped before their linger ends.
fn warn_if_linger_exceeds_drain(config: &Config) {
    let drain = drain_budget(config.shutdown_grace);
    if config.close_linger > drain {
        tracing::warn!(
            close_linger_ms = config.close_linger.as_millis() as u64,
            drain_ms = drain.as_millis() as u64,
            "PRESENCE_CLOSE_LINGER_MS is longer than the time PRESENCE_SHUTDOWN_GRACE_MS \
             leaves tabs to close at shutdown: tabs that do not answer their 1012 are \
             dropped before their linger ends"
        );
    }
}

/// Serves `hub` on `listener` until `shutdown` resolves (or the hub is told
/// to stop, [`Hub::begin_shutdown`]), then shuts down within
/// `config.shutdown_grace` ([`stop`]) and returns with no task of the node
/// left.
///
/// # Errors
/// The listener failed.
pub async fn run(
    hub: Arc<Hub>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    warn_if_open_files_below(hub.config.max_connections);
    warn_if_linger_exceeds_drain(&hub.config);
    hub.spawn(hub.clone().run_background());
    if hub.cluster_handle().is_none() {
        // A single node's feed: events committed before their deltas go.
        hub.spawn(crate::feed::committer::run(hub.clone()));
    }
    hub.spawn(crate::webhook::supervisor::run(hub.clone()));
    hub.spawn(crate::history::keeper::run(hub.clone()));
    let router = TowerToHyperService::new(crate::api::app(hub.clone()));
    let http = http1(&hub.config);
    let max_header_bytes = hub.config.max_header_bytes;
    let connections = Limit::new(hub.config.max_connections);
    let refusals = Limit::new(MAX_REFUSALS);
    let accepting = async {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: the tabs already
                    // open are served on; try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(permit) = connections.try_acquire() else {
                tracing::debug!("connection limit reached; refusing a connection");
                if let Some(refusing) = refusals.try_acquire() {
                    hub.tasks().spawn_connection(refuse(stream, refusing));
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let slot = ConnectionSlot {
                _permit: Arc::new(permit),
            };
            let router = router.clone();
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                if head_bytes(&req) > max_header_bytes {
                    return Either::Left(ready(Ok::<_, Infallible>(
                        ApiError::HeadersTooLarge {
                            limit: max_header_bytes,
                        }
                        .into_response(),
                    )));
                }
                req.extensions_mut().insert(slot.clone());
                Either::Right(router.call(req))
            });
            // HTTP/1.1 only: browsers and the ERP backend speak it, and
            // the WebSocket upgrade needs it.
            let conn = http
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            let node = hub.clone();
            hub.tasks().spawn_connection(async move {
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r {
                        tracing::debug!(error = %e, "http connection ended");
                    },
                    _ = node.stopping() => {
                        // An idle keep-alive connection closes now, one
                        // with a request in flight once it is answered.
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
    };
    tokio::select! {
        _ = accepting => {}
        _ = shutdown => {}
        // The hub may also be told to stop directly.
        _ = hub.stopping() => {}
    }
    // New connections are refused from now on, not left in the backlog.
    drop(listener);
    stop(&hub).await;
    Ok(())
}

/// Shuts the node down within `config.shutdown_grace`, from now:
/// 1. every tab is told 1012 and HTTP connections close gracefully; they
///    get the drain part of the deadline ([`drain_budget`]) to finish, and
///    those left are dropped;
/// 2. presence is persisted and, in cluster mode, the node leaves the
///    cluster (hand-off of its leases, queued operations flushed, removal
///    from `presence:nodes`), together, until the deadline;
/// 3. every task still running is dropped.
async fn stop(hub: &Arc<Hub>) {
    let grace = hub.config.shutdown_grace;
    let began = Instant::now();
    let (drained_by, deadline) = (began + drain_budget(grace), began + grace);
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: closing tabs with 1012"
    );
    hub.begin_shutdown();
    if !hub.tasks().drain(drained_by).await {
        tracing::warn!("time for closing tabs is over; dropped the connections left");
    }
    let persist = async {
        if let Err(e) = hub.flush_presence().await {
            tracing::warn!(error = %e, "could not persist presence at shutdown");
        }
    };
    let finished = tokio::time::timeout_at(
        deadline,
        futures_util::future::join(persist, leave_cluster(hub)),
    )
    .await;
    if finished.is_err() {
        tracing::warn!(
            "shutdown deadline passed before presence was persisted and the cluster left"
        );
    }
    hub.tasks().abort_and_wait().await;
}

/// Cluster mode: leaves the cluster ([`crate::cluster::leave`]).
async fn leave_cluster(hub: &Hub) {
    if hub.cluster_handle().is_none() {
        return;
    }
    match hub.cluster_url() {
        Some(url) => crate::cluster::leave(hub, url).await,
        None => {
            tracing::warn!("cluster mode without a Redis URL (Hub::set_cluster_url): not leaving")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_keeps_a_quarter_and_at_most_a_second_for_persisting() {
        let ms = Duration::from_millis;
        assert_eq!(drain_budget(ms(1_500)), ms(1_125));
        assert_eq!(drain_budget(ms(5_000)), ms(4_000));
        assert_eq!(drain_budget(ms(20_000)), ms(19_000));
        assert_eq!(drain_budget(ms(0)), ms(0));
    }
}
