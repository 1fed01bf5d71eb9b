//! Delivers the presence operations tenants queue to `presence.lua`: one
//! script call per tenant per round, every tenant's operations in the order
//! they were queued, and a failed call retried (every operation is
//! idempotent), so nothing a tenant queued is lost. A round sends at most
//! [`ROUND_CALLS`] tenants, [`IN_FLIGHT`] calls at a time, users'
//! operations before sweeps ([`Pending::ready`]), so neither a slow answer
//! nor a flood of sweeps keeps a user's transition waiting.
//!
//! Failures are told apart by who they are about:
//! - Redis is unreachable (no answer, a reset connection, a cluster that is
//!   down or loading): every tenant would fail the same way, so the whole
//!   round waits [`OUTAGE_RETRY`] and starts again (what was delivered
//!   stays delivered).
//! - Redis answered this call with an error (a key of the wrong type, a
//!   script error): only this tenant is held back, with exponential backoff
//!   from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`], while every other tenant's
//!   operations go through.
//!
//! A `Flush` is answered once every operation queued before it reached
//! Redis; a tenant whose calls keep failing therefore holds it, and the one
//! caller (shutdown's `cluster::leave`) waits for it with a deadline.
//!
//! The queue also keeps the node's registry (`keys::node_tenants`): the
//! tenants where this node may hold a lease. A tenant is added before the
//! first call that claims in it, and removed only after an `Unregister`
//! with nothing queued before it and no claim after it, so the registry
//! always covers every lease of the node in Redis. The dead-node sweep
//! reads it (`cluster::tasks`), so no node sweeps tenants it never heard of.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use prometheus::{Histogram, IntGauge};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::cluster::keys::node_tenants;
use crate::cluster::ops::{self, ClusterMsg, PresenceOp};
use crate::store::redis_conn::RedisConn;

/// How long the whole queue waits after Redis was unreachable.
pub(crate) const OUTAGE_RETRY: Duration = Duration::from_millis(200);
/// A tenant's first wait after Redis refused its call; doubled per failure.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(200);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At most this many operations go into one script call, so a tenant that
/// queued a long backlog (an outage) is sent in bounded pieces.
const MAX_OPS_PER_CALL: usize = 1_000;

/// One tenant's operations not yet in Redis, oldest first, each with its
/// place in the queue as a whole (for `Flush`).
#[derive(Debug, Default)]
struct TenantOps {
    ops: VecDeque<(u64, PresenceOp)>,
    /// The last wait, while the tenant's calls keep failing.
    backoff: Option<Duration>,
    retry_at: Option<Instant>,
    /// An `Unregister` came after the last claim: once `ops` is empty the
    /// tenant leaves the node's registry.
    unregister: bool,
}

/// Everything queued and not yet delivered; pure (time passed in).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    tenants: HashMap<String, TenantOps>,
    next_seq: u64,
    /// Flushes in arrival order, each with the first place it does not
    /// wait for.
    flushes: VecDeque<(u64, oneshot::Sender<()>)>,
    /// A `Reregister` came: the registry is written again before each
    /// tenant's next claim.
    reregister: bool,
}

impl Pending {
    pub fn push(&mut self, m: ClusterMsg) {
        match m {
            ClusterMsg::Op { tenant, op } => {
                let t = self.tenants.entry(tenant).or_default();
                if matches!(op, PresenceOp::Claim { .. }) {
                    t.unregister = false;
                }
                let ops = &mut t.ops;
                // The heartbeat queues a sweep per tenant every second: while
                // a tenant's calls keep failing, consecutive sweeps become one
                // (the later time, every dead node), so its queue stays
                // bounded by what its users did rather than by the outage's
                // length. Nothing is in flight here (one task pushes and
                // sends), so the merged sweep is delivered whole.
                if let (
                    PresenceOp::Sweep { now, dead, silent },
                    Some((
                        _,
                        PresenceOp::Sweep {
                            now: last,
                            dead: known,
                            silent: late,
                        },
                    )),
                ) = (&op, ops.back_mut())
                {
                    *last = (*last).max(*now);
                    for (node, cutoff) in dead {
                        known.entry(node.clone()).or_insert(*cutoff);
                    }
                    // The latest view of who is late.
                    late.clone_from(silent);
                    return;
                }
                // A cursor raise goes first: operations queued while Redis
                // was away must not take the cursors it lost either, and a
                // counter raised early is never wrong (it only grows). It
                // takes the place of the oldest operation for `Flush`.
                if let PresenceOp::Cursor { at_least } = op {
                    match ops.front_mut() {
                        Some((_, PresenceOp::Cursor { at_least: known })) => {
                            *known = (*known).max(at_least);
                        }
                        Some((oldest, _)) => {
                            let seq = *oldest;
                            ops.push_front((seq, op));
                        }
                        None => {
                            ops.push_front((self.next_seq, op));
                            self.next_seq += 1;
                        }
                    }
                    return;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                ops.push_back((seq, op));
            }
            ClusterMsg::Flush(done) => self.flushes.push_back((self.next_seq, done)),
            ClusterMsg::Reregister => self.reregister = true,
            ClusterMsg::Unregister { tenant } => {
                self.tenants.entry(tenant).or_default().unregister = true;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Operations not yet delivered, over every tenant.
    pub fn len(&self) -> usize {
        self.tenants.values().map(|t| t.ops.len()).sum()
    }

    /// Tenants with operations to send whose backoff (if any) is over, in
    /// the order they are sent: first those with an operation other than a
    /// sweep (what users did, which watchers wait for), then those with
    /// sweeps only; within each, the one waiting longest first.
    ///
    /// A sweep leader on a loaded cluster queues a sweep in every tenant of
    /// every late node each second, thousands of tenants: sent in name
    /// order, its own users' operations waited behind them, and a round cut
    /// short by a timeout started again from the same first names, so a
    /// user's release could wait minutes (the million-tab benchmark).
    pub fn ready(&self, now: Instant) -> Vec<String> {
        let mut out: Vec<(bool, u64, &String)> = self
            .tenants
            .iter()
            .filter(|(_, t)| t.retry_at.is_none_or(|at| at <= now))
            .map(|(id, t)| {
                let sweeps_only = t
                    .ops
                    .iter()
                    .all(|(_, op)| matches!(op, PresenceOp::Sweep { .. }));
                let oldest = t.ops.front().map_or(u64::MAX, |(seq, _)| *seq);
                (sweeps_only, oldest, id)
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, _, id)| id.clone()).collect()
    }

    /// When the first tenant that is backing off may be tried again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.tenants.values().filter_map(|t| t.retry_at).min()
    }

    /// Whether the tenant's next call claims (so the tenant must be in the
    /// node's registry first).
    pub fn claims(&self, tenant: &str) -> bool {
        self.tenants.get(tenant).is_some_and(|t| {
            t.ops
                .iter()
                .take(MAX_OPS_PER_CALL)
                .any(|(_, op)| matches!(op, PresenceOp::Claim { .. }))
        })
    }

    /// The tenant's next call: its oldest operations as the script's JSON,
    /// and how many they are (0: only its unregistration is left).
    pub fn batch(&self, tenant: &str) -> (String, usize) {
        let Some(t) = self.tenants.get(tenant) else {
            return ("[]".into(), 0);
        };
        let ops: Vec<PresenceOp> = t
            .ops
            .iter()
            .take(MAX_OPS_PER_CALL)
            .map(|(_, op)| op.clone())
            .collect();
        (ops::to_json(&ops), ops.len())
    }

    /// The first `n` operations of the tenant reached Redis.
    pub fn delivered(&mut self, tenant: &str, n: usize) {
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.ops.drain(..n.min(t.ops.len()));
            t.backoff = None;
            t.retry_at = None;
            if t.ops.is_empty() && !t.unregister {
                self.tenants.remove(tenant);
            }
        }
        self.answer_flushes();
    }

    /// The tenant left the node's registry (its queue was empty).
    pub fn unregistered(&mut self, tenant: &str) {
        if self.tenants.get(tenant).is_some_and(|t| t.ops.is_empty()) {
            self.tenants.remove(tenant);
        }
    }

    /// Redis refused the tenant's call: it waits, longer each time.
    /// Returns how long.
    pub fn refused(&mut self, tenant: &str, now: Instant) -> Duration {
        let Some(t) = self.tenants.get_mut(tenant) else {
            return Duration::ZERO;
        };
        let wait = t
            .backoff
            .map_or(FIRST_BACKOFF, |d| (d * 2).min(MAX_BACKOFF));
        t.backoff = Some(wait);
        t.retry_at = Some(now + wait);
        wait
    }

    /// Answers every flush whose earlier operations are all delivered.
    pub fn answer_flushes(&mut self) {
        let oldest = self
            .tenants
            .values()
            .filter_map(|t| t.ops.front().map(|(seq, _)| *seq))
            .min();
        while let Some((upto, _)) = self.flushes.front() {
            if oldest.is_some_and(|o| o < *upto) {
                break;
            }
            if let Some((_, done)) = self.flushes.pop_front() {
                // The flusher may have stopped waiting (its deadline passed).
                let _ = done.send(());
            }
        }
    }
}

/// Whether the error says Redis is unreachable (every tenant would fail
/// alike) rather than that it refused this tenant's call.
pub(crate) fn is_outage(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(k) => matches!(
            k,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        ),
        _ => e.is_timeout() || e.is_connection_dropped(),
    }
}

/// What the queue reports to `/metrics`.
pub(crate) struct Gauges {
    /// Operations queued and not yet delivered.
    pub pending: IntGauge,
    /// Each successful call of `presence.lua`.
    pub script_seconds: Histogram,
}

/// Drains the queue until every sender is gone and what they queued is
/// delivered (or, with the hub gone, Redis stopped taking it).
pub(crate) async fn run(
    url: String,
    node: std::sync::Arc<str>,
    mut rx: mpsc::UnboundedReceiver<ClusterMsg>,
    m: Gauges,
) {
    let script = ops::script();
    let conn = crate::cluster::tasks::connect(&url).await;
    let registry = node_tenants(&node);
    // Tenants this task put in the registry (and did not take out).
    let mut registered: HashSet<String> = HashSet::new();
    let mut pending = Pending::default();
    let mut open = true;
    loop {
        while let Ok(m) = rx.try_recv() {
            pending.push(m);
        }
        // Once per round (and per retry while Redis is away), with the
        // channel drained: everything not yet in Redis is in `pending`.
        m.pending.set(pending.len() as i64);
        pending.answer_flushes();
        if std::mem::take(&mut pending.reregister) {
            registered.clear();
        }
        let ready = pending.ready(Instant::now());
        if ready.is_empty() {
            if !open && pending.is_empty() {
                return;
            }
            let retry = pending.next_retry();
            tokio::select! {
                m = rx.recv(), if open => match m {
                    Some(m) => pending.push(m),
                    None => open = false,
                },
                _ = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {}
            }
            continue;
        }
        // A bounded round, then the channel again: what users do next is
        // not kept waiting behind a long round of sweeps.
        let calls: Vec<Call> = ready
            .into_iter()
            .take(ROUND_CALLS)
            .map(|tenant| {
                let (json, n) = pending.batch(&tenant);
                // The registry first: SADD before the first claim's call,
                // SREM once only the unregistration is left.
                let claims = n > 0 && pending.claims(&tenant);
                let registration = if n == 0 {
                    Some("SREM")
                } else if claims && !registered.contains(&tenant) {
                    Some("SADD")
                } else {
                    None
                };
                Call {
                    tenant,
                    json,
                    n,
                    claims,
                    registration,
                }
            })
            .collect();
        let mut results = stream::iter(calls)
            .map(|call| {
                let mut conn = conn.clone();
                let (script, registry) = (&script, &registry);
                async move {
                    let outcome = call.send(script, &mut conn, registry).await;
                    (call, outcome)
                }
            })
            .buffer_unordered(IN_FLIGHT);
        let mut failed = false;
        let mut outage = false;
        while let Some((call, outcome)) = results.next().await {
            let tenant = call.tenant;
            match outcome {
                Outcome::Registry(Err(e)) if is_outage(&e) => {
                    tracing::warn!(error = %e, "redis unreachable for the node's registry; retrying");
                    outage = true;
                }
                Outcome::Registry(Err(e)) => {
                    let wait = pending.refused(&tenant, Instant::now());
                    tracing::warn!(error = %e, tenant, ?wait, "the node's registry refused a tenant; retrying it later");
                    failed = true;
                }
                Outcome::Registry(Ok(())) => {
                    registered.remove(&tenant);
                    pending.unregistered(&tenant);
                }
                Outcome::Script(r, took) => {
                    if call.claims {
                        // Registered before the call, whatever it did.
                        registered.insert(tenant.clone());
                    }
                    match r {
                        Ok(_) => {
                            m.script_seconds.observe(took.as_secs_f64());
                            pending.delivered(&tenant, call.n);
                        }
                        Err(e) if is_outage(&e) => {
                            tracing::warn!(error = %e, "redis unreachable for presence operations; retrying");
                            outage = true;
                        }
                        Err(e) => {
                            let wait = pending.refused(&tenant, Instant::now());
                            tracing::warn!(error = %e, tenant, ?wait, "presence script failed for a tenant; retrying it later");
                            failed = true;
                        }
                    }
                }
            }
            if outage {
                // Every call would fail alike: the calls still in flight
                // are dropped (each is retried whole: operations are
                // idempotent) and the queue waits.
                break;
            }
        }
        drop(results);
        if outage {
            failed = true;
            tokio::time::sleep(OUTAGE_RETRY).await;
        }
        if failed && !open {
            // The hub is gone: nobody will see these operations' effects here,
            // and other nodes' sweeps end the leases they would have set.
            tracing::warn!("the hub stopped; dropping presence operations Redis did not take");
            return;
        }
    }
}

/// Script calls in flight at once: one slow answer (a loaded machine)
/// does not hold up every other tenant's.
const IN_FLIGHT: usize = 32;
/// Tenants sent per round before the channel is read again.
const ROUND_CALLS: usize = 256;

/// One tenant's call of a round.
struct Call {
    tenant: String,
    json: String,
    /// Operations in `json` (0: only the unregistration is left).
    n: usize,
    /// Whether the operations claim (so the tenant is in the registry).
    claims: bool,
    /// `SADD` or `SREM` in the node's registry first, if needed.
    registration: Option<&'static str>,
}

/// How a [`Call`] went: its registry step failed or (with no operations
/// left) was all there was, or the script ran with this result, taking
/// this long.
enum Outcome {
    Registry(redis::RedisResult<()>),
    Script(redis::RedisResult<i64>, Duration),
}

impl Call {
    async fn send(&self, script: &redis::Script, conn: &mut RedisConn, registry: &str) -> Outcome {
        if let Some(cmd) = self.registration {
            let r = registry_call(conn, cmd, registry, &self.tenant).await;
            if r.is_err() || self.n == 0 {
                return Outcome::Registry(r);
            }
        }
        let started = std::time::Instant::now();
        let r = ops::run_script(script, conn, &self.tenant, &self.json).await;
        Outcome::Script(r, started.elapsed())
    }
}

/// `SADD` or `SREM` of `tenant` in the node's registry.
async fn registry_call(
    conn: &mut RedisConn,
    cmd: &str,
    registry: &str,
    tenant: &str,
) -> redis::RedisResult<()> {
    redis::cmd(cmd)
        .arg(registry)
        .arg(tenant)
        .query_async::<i64>(conn)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(tenant: &str, v: u64) -> ClusterMsg {
        ClusterMsg::Op {
            tenant: tenant.into(),
            op: PresenceOp::Floor { u: "ann".into(), v },
        }
    }

    fn flush(p: &mut Pending) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        p.push(ClusterMsg::Flush(tx));
        rx
    }

    fn sweep(tenant: &str, now: u64, dead: &[(&str, u64)]) -> ClusterMsg {
        ClusterMsg::Op {
            tenant: tenant.into(),
            op: PresenceOp::Sweep {
                now,
                dead: dead.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect(),
                silent: Default::default(),
            },
        }
    }

    #[test]
    fn a_cursor_raise_goes_before_what_was_queued_during_the_outage() {
        let mut p = Pending::default();
        p.push(op("t", 1));
        let mut done = flush(&mut p);
        p.push(sweep("t", 1_000, &[]));
        for at_least in [7, 9, 8] {
            p.push(ClusterMsg::Op {
                tenant: "t".into(),
                op: PresenceOp::Cursor { at_least },
            });
        }
        let (json, n) = p.batch("t");
        assert_eq!(n, 3, "{json}");
        let ops: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(ops[0]["op"], "cursor");
        assert_eq!(ops[0]["at_least"], 9, "raises merge into the highest");
        assert_eq!(ops[1]["op"], "floor");
        p.delivered("t", 1);
        assert!(
            done.try_recv().is_err(),
            "the floor queued before the flush is not in Redis yet"
        );
        p.delivered("t", 1);
        assert!(done.try_recv().is_ok(), "everything before the flush is in");
    }

    #[test]
    fn consecutive_sweeps_of_a_failing_tenant_become_one() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.push(op("bad", 1));
        for s in 0..600 {
            let dead: &[(&str, u64)] = if s == 10 { &[("n2", 5_000)] } else { &[] };
            p.push(sweep("bad", 1_000 + s, dead));
            p.refused("bad", t0);
        }
        p.push(sweep("bad", 2_000, &[("n3", 1_500)]));
        let (json, n) = p.batch("bad");
        assert_eq!(n, 2, "{json}");
        let ops: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(ops[1]["now"], 2_000);
        assert_eq!(ops[1]["dead"]["n2"], 5_000, "a dead node seen once is kept");
        assert_eq!(ops[1]["dead"]["n3"], 1_500);
        // A sweep after another kind of operation is not merged across it.
        p.push(op("bad", 2));
        p.push(sweep("bad", 3_000, &[]));
        assert_eq!(p.batch("bad").1, 4);
    }

    #[test]
    fn users_operations_go_before_sweeps_and_the_longest_waiting_first() {
        let mut p = Pending::default();
        // A sweep leader's queue: sweeps in many tenants, then its own
        // users' operations in tenants late in name order.
        for t in ["a", "b", "c"] {
            p.push(sweep(t, 1, &[]));
        }
        p.push(op("z", 1));
        p.push(sweep("y", 1, &[]));
        p.push(op("y", 1));
        p.push(op("x", 1));
        let now = Instant::now();
        assert_eq!(p.ready(now), ["z", "y", "x", "a", "b", "c"]);
        // Delivered sweeps come back behind the ones still waiting.
        p.delivered("a", 1);
        p.push(sweep("a", 2, &[]));
        assert_eq!(p.ready(now), ["z", "y", "x", "b", "c", "a"]);
        // A sweep merged into one that waits keeps its place.
        p.push(sweep("b", 3, &[]));
        assert_eq!(p.ready(now)[3], "b");
    }

    #[test]
    fn a_refused_tenant_backs_off_alone_and_keeps_its_order() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.push(op("bad", 1));
        p.push(op("good", 1));
        p.push(op("bad", 2));
        assert_eq!(p.ready(t0), ["bad", "good"]);
        let mut waits = Vec::new();
        for _ in 0..7 {
            waits.push(p.refused("bad", t0));
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(p.ready(t0), ["good"], "the others go through");
        p.delivered("good", 1);
        assert_eq!(p.next_retry(), Some(t0 + MAX_BACKOFF));
        assert_eq!(p.ready(t0 + MAX_BACKOFF), ["bad"]);
        let (json, n) = p.batch("bad");
        assert_eq!(
            (json.as_str(), n),
            (
                r#"[{"op":"floor","u":"ann","v":1},{"op":"floor","u":"ann","v":2}]"#,
                2
            )
        );
        p.delivered("bad", n);
        assert!(p.is_empty());
        // Delivered once, the backoff starts over.
        p.push(op("bad", 3));
        assert_eq!(p.refused("bad", t0), FIRST_BACKOFF);
    }

    #[test]
    fn a_flush_waits_for_every_earlier_operation_and_no_later_one() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.push(op("a", 1));
        p.push(op("b", 1));
        let mut first = flush(&mut p);
        p.push(op("a", 2));
        let mut second = flush(&mut p);
        p.answer_flushes();
        assert!(first.try_recv().is_err());
        p.refused("a", t0);
        p.delivered("b", 1);
        assert!(first.try_recv().is_err(), "a's first op is not in yet");
        // One call takes a's first op only (its second came after the flush).
        p.delivered("a", 1);
        assert!(first.try_recv().is_ok());
        assert!(second.try_recv().is_err());
        p.delivered("a", 1);
        assert!(second.try_recv().is_ok());
        let mut idle = flush(&mut p);
        p.answer_flushes();
        assert!(idle.try_recv().is_ok(), "nothing queued: answered at once");
    }

    #[test]
    fn a_tenant_leaves_the_registry_after_what_was_queued_and_not_when_claimed_again() {
        let claim = |until| ClusterMsg::Op {
            tenant: "t".into(),
            op: PresenceOp::Claim {
                u: "ann".into(),
                n: "n1".into(),
                until,
                seen: 0,
                now: 0,
            },
        };
        let unregister = || ClusterMsg::Unregister { tenant: "t".into() };
        let mut p = Pending::default();
        p.push(claim(10));
        assert!(p.claims("t"));
        p.push(op("t", 1));
        p.push(unregister());
        assert_eq!(p.batch("t").1, 2, "the operations go first");
        p.delivered("t", 2);
        assert!(!p.claims("t"));
        assert_eq!(p.ready(Instant::now()), ["t"], "then the unregistration");
        assert_eq!(p.batch("t").1, 0);
        p.unregistered("t");
        assert!(p.is_empty());
        // A claim after the unregistration keeps the tenant registered.
        p.push(unregister());
        p.push(claim(20));
        p.delivered("t", 1);
        assert!(p.is_empty(), "nothing left: no unregistration");
    }

    #[test]
    fn a_backlog_goes_out_in_bounded_calls() {
        let mut p = Pending::default();
        for v in 0..(MAX_OPS_PER_CALL as u64 + 5) {
            p.push(op("a", v));
        }
        assert_eq!(p.batch("a").1, MAX_OPS_PER_CALL);
        p.delivered("a", MAX_OPS_PER_CALL);
        assert_eq!(p.batch("a").1, 5);
    }
}
