//! `serve`: runs a hub's router ([`crate::api::app`]) on a listener the
//! caller bound (tests bind 127.0.0.1:0), with the limits of the HTTP edge
//! (open connections, the time and size of a request's headers), and shuts
//! it down.

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
        // limit (`max_header_bytes`) is enforced below it, by `serve`'s
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
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `hub` on `listener` until `shutdown` resolves, then closes every
/// tab with 1012, waits for them up to the grace period, and persists
/// presence.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    warn_if_open_files_below(hub.config.max_connections);
    let background = tokio::spawn(hub.clone().run_background());
    let router = TowerToHyperService::new(crate::api::app(hub.clone()));
    let http = http1(&hub.config);
    let max_header_bytes = hub.config.max_header_bytes;
    let connections = Limit::new(hub.config.max_connections);
    let refusals = Limit::new(MAX_REFUSALS);
    let (stop_http, stopping) = tokio::sync::watch::channel(false);
    // Each HTTP connection holds a receiver; `closed()` says they are all
    // gone, so the hub (and its store) is released when `serve` returns.
    let (http_alive, _) = tokio::sync::watch::channel(());
    let mut closed = hub.shutdown_signal();
    let accepting = async {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: the tabs already
                    // open are served on; try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(permit) = connections.try_acquire() else {
                tracing::debug!("connection limit reached; refusing a connection");
                if let Some(refusing) = refusals.try_acquire() {
                    tokio::spawn(refuse(stream, refusing));
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
            let mut stopping = stopping.clone();
            let alive = http_alive.subscribe();
            tokio::spawn(async move {
                let _alive = alive;
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r {
                        tracing::debug!(error = %e, "http connection ended");
                    },
                    _ = crate::hub::until_true(&mut stopping) => {
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
        _ = crate::hub::until_true(&mut closed) => {}
    }
    tracing::info!("shutting down: closing tabs with 1012");
    hub.begin_shutdown();
    let _ = stop_http.send(true);
    // Sessions are not HTTP connections any more: wait for them (each sends
    // its 1012), bounded by the grace period so a tab that never answers
    // cannot hold the node.
    let grace = hub.config.shutdown_grace;
    if tokio::time::timeout(grace, hub.sessions_drained())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; dropping remaining connections");
    }
    if tokio::time::timeout(grace, http_alive.closed())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; dropping remaining HTTP connections");
    }
    let _ = background.await;
    if let Err(e) = hub.flush_presence().await {
        tracing::warn!(error = %e, "could not persist presence at shutdown");
    }
    Ok(())
}
