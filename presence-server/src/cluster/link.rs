//! A tenant's side of cluster presence: what its local engine's transitions
//! become (claims, renewals and releases sent to Redis), and how the global
//! view is updated from the events Redis publishes back.
//!
//! The local engine stays the pure rule of SPEC §2 applied to this node's
//! tabs; "online somewhere" is the OR over nodes, kept by
//! `cluster/presence.lua`. No Redis call happens here: operations go into an
//! unbounded queue drained by the cluster task, so the tenant lock is never
//! held across I/O.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use presence_protocol::{Reason, Status};
use tokio::sync::mpsc;

use crate::cluster::ops::{ClusterMsg, PresenceEvent, PresenceOp};
use crate::presence::engine::{Transition, UserPresence};

/// The shared part of every tenant's link: who we are and where ops go.
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    pub node: Arc<str>,
    pub ops: mpsc::UnboundedSender<ClusterMsg>,
    /// How far beyond the local deadline a claim's lease reaches; a claim is
    /// renewed when the deadline has moved past `lease - renew_ms`, so an
    /// active user costs one Redis operation per `renew_ms`.
    pub renew_ms: u64,
    /// Whether Redis answers (operations and the event subscription). While
    /// it does not, tenants show their own tabs' transitions provisionally.
    pub up: Arc<AtomicBool>,
}

impl ClusterHandle {
    /// A handle for the tenants of node `node` and the queue the operation
    /// task drains. Redis counts as down until the event task has joined.
    pub fn new(node: &str, idle_timeout: Duration) -> (Self, mpsc::UnboundedReceiver<ClusterMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        // One renewal per active user per 20 s at most, and at least three
        // per idle timeout so short test timeouts still renew in time.
        let renew_ms = (idle_timeout.as_millis() as u64 / 3).clamp(1, 20_000);
        let handle = ClusterHandle {
            node: Arc::from(node),
            ops: tx,
            renew_ms,
            up: Arc::new(AtomicBool::new(false)),
        };
        (handle, rx)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }
}

pub struct ClusterLink {
    tenant: String,
    handle: ClusterHandle,
    /// The global presence of users, as the events told it.
    view: HashMap<String, UserPresence>,
    /// Lease end of each claim this node holds.
    leases: HashMap<String, u64>,
    /// Users whose view this node changed on its own during an outage.
    provisional: HashSet<String>,
}

impl ClusterLink {
    pub fn new(tenant: String, handle: ClusterHandle) -> Self {
        ClusterLink {
            tenant,
            handle,
            view: HashMap::new(),
            leases: HashMap::new(),
            provisional: HashSet::new(),
        }
    }

    fn send(&self, op: PresenceOp) {
        // The receiver lives as long as the hub; a send after shutdown has
        // nowhere to go and nothing to do.
        let _ = self.handle.ops.send(ClusterMsg::Op {
            tenant: self.tenant.clone(),
            op,
        });
    }

    pub fn is_up(&self) -> bool {
        self.handle.is_up()
    }

    /// Shows a local transition without Redis (see `presence::source`).
    pub fn provisional(
        &mut self,
        user: &str,
        status: Status,
        at: u64,
    ) -> Option<Transition<String>> {
        let p = self.view.entry(user.to_owned()).or_default();
        if p.status == status {
            return None;
        }
        p.status = status;
        p.since = at;
        p.v += 1;
        self.provisional.insert(user.to_owned());
        Some(Transition {
            user: user.to_owned(),
            status,
            at,
            v: p.v,
        })
    }

    /// Queues a raise of the tenant's cursor counter to `at_least` (see
    /// [`PresenceOp::Cursor`]); nothing when no event was seen yet.
    pub fn raise_cursor(&self, at_least: u64) {
        if at_least > 0 {
            self.send(PresenceOp::Cursor { at_least });
        }
    }

    /// Queues a `floor` for every provisionally shown user.
    pub fn send_floors(&mut self) {
        for u in std::mem::take(&mut self.provisional) {
            let v = self.presence(&u).v;
            self.send(PresenceOp::Floor { u, v });
        }
    }

    pub fn presence(&self, user: &str) -> UserPresence {
        self.view.get(user).copied().unwrap_or_default()
    }

    /// After a local proof: claim on a local online, renew when the local
    /// deadline has moved far enough into the lease.
    pub fn after_activity(&mut self, user: &str, local: &UserPresence, deadline: u64, now: u64) {
        if local.status != Status::Online {
            return;
        }
        let renew = self.handle.renew_ms;
        let due = self
            .leases
            .get(user)
            .is_none_or(|lease| deadline + renew > *lease);
        if due {
            let until = deadline + 2 * renew;
            self.leases.insert(user.to_owned(), until);
            self.send(PresenceOp::Claim {
                u: user.to_owned(),
                n: self.handle.node.clone(),
                until,
                seen: local.last_seen,
                now,
            });
        }
    }

    /// The local engine expired the user on this node.
    pub fn local_offline(&mut self, t: &Transition<String>, seen: u64) {
        self.leases.remove(&t.user);
        self.send(PresenceOp::Release {
            u: t.user.clone(),
            n: self.handle.node.clone(),
            at: t.at,
            seen,
        });
    }

    /// Offline everywhere at once; `close` (0 = none) closes the user's tabs
    /// on every node; `why` is what the feed says.
    pub fn force_offline(&mut self, user: &str, at: u64, close: u16, why: Reason) {
        self.leases.remove(user);
        self.send(PresenceOp::Force {
            u: user.to_owned(),
            at,
            close,
            why,
        });
    }

    /// The claim was removed in Redis (forced offline).
    pub fn forget_claim(&mut self, user: &str) {
        self.leases.remove(user);
    }

    /// Re-sends every claim this node holds (after Redis came back), with
    /// each user's current deadline.
    pub fn reclaim(&mut self, local: impl Iterator<Item = (String, UserPresence, u64)>, now: u64) {
        self.leases.clear();
        for (user, p, deadline) in local {
            self.after_activity(&user, &p, deadline, now);
        }
    }

    /// Graceful shutdown: every claim's lease is cut to the user's exact local
    /// deadline, so a user whose tab reconnects to another node and keeps
    /// interacting sees no transition, and one who does not goes offline on
    /// time.
    pub fn hand_off(&mut self, local: impl Iterator<Item = (String, UserPresence, u64)>, now: u64) {
        for (user, p, deadline) in local {
            self.send(PresenceOp::Claim {
                u: user.clone(),
                n: self.handle.node.clone(),
                until: deadline,
                seen: p.last_seen,
                now,
            });
            self.leases.insert(user, deadline);
        }
    }

    /// Applies a published event; returns the transition to show watchers
    /// when it is newer than what this node knew.
    pub fn apply(&mut self, ev: &PresenceEvent) -> Option<Transition<String>> {
        let p = self.view.entry(ev.u.clone()).or_default();
        p.last_seen = p.last_seen.max(ev.seen);
        if ev.v <= p.v {
            return None;
        }
        p.status = if ev.s == 1 {
            Status::Online
        } else {
            Status::Offline
        };
        p.since = ev.since;
        p.v = ev.v;
        Some(Transition {
            user: ev.u.clone(),
            status: p.status,
            at: ev.since,
            v: ev.v,
        })
    }
}
