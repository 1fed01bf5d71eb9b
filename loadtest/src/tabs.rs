//! Opening many tabs at once, spread over hubs and source addresses, with
//! a bounded number of handshakes in flight.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::control::{bar, Stop};
use crate::wire::{self, Tab};

/// Handshakes a tab tries again after a 1013 (growing waits, 250 ms more
/// each time: about 25 s in all).
const RETRIES: u64 = 14;

/// Handshakes tried again after a 1013, over the process.
pub static RETRIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where tabs go: hubs and source addresses in turn, with at most
/// `in_flight` handshakes at once.
pub struct Plan {
    pub hubs: Vec<SocketAddr>,
    pub sources: Vec<IpAddr>,
    pub in_flight: usize,
}

pub struct Opened {
    /// In the order of `hellos`; `None` where the run was stopped first.
    pub tabs: Vec<Option<Tab>>,
    pub secs: f64,
}

impl Plan {
    /// Opens one tab per `(hello, extra)`: `extra` (subscriptions) is sent
    /// once `welcome` arrived. Tab `i` goes to hub `i % hubs` from source
    /// `i % sources`.
    pub async fn open(
        &self,
        hellos: Vec<(Vec<u8>, Vec<u8>)>,
        stop: &Stop,
        what: &str,
    ) -> anyhow::Result<Opened> {
        let n = hellos.len();
        let gate = Arc::new(tokio::sync::Semaphore::new(self.in_flight.max(1)));
        let progress = bar(n as u64, what);
        let started = Instant::now();
        let mut handles = Vec::with_capacity(n);
        for (i, (hello, extra)) in hellos.into_iter().enumerate() {
            let hub = self.hubs[i % self.hubs.len()];
            let source = self.sources[i % self.sources.len()];
            let gate = gate.clone();
            let progress = progress.clone();
            let stop = stop.clone();
            handles.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                if stop.stopped() {
                    return Ok(None);
                }
                let mut tab = open_retrying(hub, source, &hello)
                    .await
                    .with_context(|| format!("tab {i} to {hub} from {source}"))?;
                if !extra.is_empty() {
                    use tokio::io::AsyncWriteExt;
                    tab.writer.write_all(&extra).await?;
                }
                progress.inc(1);
                anyhow::Ok(Some(tab))
            }));
        }
        let mut tabs = Vec::with_capacity(n);
        for h in handles {
            tabs.push(h.await??);
        }
        progress.finish_and_clear();
        Ok(Opened {
            tabs,
            secs: started.elapsed().as_secs_f64(),
        })
    }
}

/// Opens a tab; a 1013 at the handshake (the hub could not get the tenant
/// ready in time: cluster mode, loading under a connect storm) is tried
/// again after a backoff, as a browser's SDK does.
pub async fn open_retrying(hub: SocketAddr, source: IpAddr, hello: &[u8]) -> anyhow::Result<Tab> {
    let mut attempt = 0;
    loop {
        match wire::open(hub, source, hello).await {
            Err(e) if wire::close_code(&e) == Some(1013) && attempt < RETRIES => {
                attempt += 1;
                RETRIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(250 * attempt)).await;
            }
            r => return Ok(r?),
        }
    }
}

/// Keeps a tab open, reading and discarding what the hub sends, until the
/// hub closes it or the task is aborted.
pub fn hold(tab: Tab) -> tokio::task::JoinHandle<()> {
    let Tab {
        mut reader, writer, ..
    } = tab;
    tokio::spawn(async move {
        let _keep_open = writer;
        while let Ok(Some(f)) = reader.next().await {
            if matches!(f, wire::Frame::Close(_)) {
                break;
            }
        }
    })
}
