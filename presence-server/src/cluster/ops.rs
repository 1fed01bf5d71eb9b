//! The contract with `cluster/presence.lua`: the operations a node sends,
//! the events the script publishes, the state it stores per user, and the
//! one call that hands a tenant's batch to the script (keys from
//! `cluster::keys`). Both sides are pinned by golden tests: the JSON of each
//! operation here, and the script run on a real Redis in
//! `tests/it/cluster_script.rs`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use presence_protocol::Reason;
use redis::Script;
use serde::{Deserialize, Serialize};

use crate::cluster::keys::{tenant_channel, PresenceKeys};
use crate::store::redis_conn::RedisConn;

/// One operation of `cluster/presence.lua`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PresenceOp {
    /// This node has proof of the user until `until` (the lease end).
    Claim {
        u: String,
        n: Arc<str>,
        until: u64,
        seen: u64,
        now: u64,
    },
    /// This node's proof ended at `at` (its local deadline).
    Release {
        u: String,
        n: Arc<str>,
        at: u64,
        seen: u64,
    },
    /// Offline everywhere at `at`; `close` (0 = none) closes the user's
    /// tabs on every node; `why` is the feed's reason (logout, deactivated,
    /// deleted).
    Force {
        u: String,
        at: u64,
        close: u16,
        why: Reason,
    },
    /// Ends the leases due at `now`, and those of dead nodes at their
    /// cutoff. A due lease of a dead node, or of one whose heartbeat is
    /// late (`silent`), ends as `node_lost` in the feed; any other as
    /// `idle`.
    Sweep {
        now: u64,
        dead: HashMap<String, u64>,
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        silent: BTreeSet<String>,
    },
    /// Raise the user's `v` above `v` and republish their state (after an
    /// outage in which a node showed transitions of its own).
    Floor { u: String, v: u64 },
    /// Raise the tenant's cursor counter to at least `at_least`, the
    /// highest cursor this node saw published: after Redis lost its last
    /// writes, no cursor a consumer may already have read is handed to
    /// another event.
    Cursor { at_least: u64 },
}

/// A global transition (or forced offline) published by the script.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceEvent {
    pub t: String,
    pub u: String,
    /// 1 online, 0 offline.
    pub s: u8,
    pub since: u64,
    pub v: u64,
    pub seen: u64,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub close: u16,
    /// The event's place in the tenant's feed (`presence:{tid}:events`);
    /// 0 for a state republished without an event (resync).
    #[serde(default)]
    pub cursor: u64,
    /// Why it happened; absent on a state republished without an event.
    #[serde(default)]
    pub reason: Option<Reason>,
    /// A forced offline: when it was asked (ms, the asking node's clock).
    /// A node keeps proof and tabs newer than it (a tab opened right after
    /// a logout elsewhere); 0 otherwise.
    #[serde(default)]
    pub at: u64,
}

impl PresenceEvent {
    /// Why it happened, as the feed says it; a state without a reason (a
    /// resync) is told as what its status implies.
    pub fn why(&self) -> Reason {
        self.reason
            .unwrap_or(match (self.s, self.force, self.close) {
                (1, _, _) => Reason::Activity,
                (_, true, presence_protocol::close::LOGGED_OUT) => Reason::Logout,
                (_, true, _) => Reason::Deactivated,
                _ => Reason::Idle,
            })
    }
}

/// What the script stores per user in the tenant's `state` hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct StoredState {
    pub s: u8,
    pub since: u64,
    pub v: u64,
    pub seen: u64,
}

impl StoredState {
    /// The state as the event a node applies when it catches up (resync).
    pub fn into_event(self, tenant: &str, user: String) -> PresenceEvent {
        PresenceEvent {
            t: tenant.to_owned(),
            u: user,
            s: self.s,
            since: self.since,
            v: self.v,
            seen: self.seen,
            force: false,
            close: 0,
            cursor: 0,
            reason: None,
            at: 0,
        }
    }
}

/// What tenants (and shutdown) ask of the operation queue.
#[derive(Debug)]
pub enum ClusterMsg {
    /// Run this operation of `presence.lua` for the tenant.
    Op { tenant: String, op: PresenceOp },
    /// Answer once every operation queued before this one reached Redis.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// This node holds no claim in the tenant any more (it evicts it):
    /// once everything queued for it is in Redis, take the tenant out of
    /// the node's registry (`keys::node_tenants`), unless a claim came
    /// after this.
    Unregister { tenant: String },
    /// The node's registry was lost (the others took this node for dead):
    /// write it again before each tenant's next claim.
    Reregister,
}

/// `presence.lua`, loaded once per task (EVALSHA, with a fallback to EVAL
/// when Redis does not know the script yet).
pub fn script() -> Script {
    Script::new(include_str!("presence.lua"))
}

/// The operations as the script's `ARGV[3]` receives them.
pub fn to_json(ops: &[PresenceOp]) -> String {
    // Plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_string(ops).expect("presence ops serialise")
}

/// Runs one tenant's batch (`to_json` of its operations, in order);
/// returns how many events the script published on the tenant's channel
/// (`keys::tenant_channel`).
///
/// # Errors
/// Whatever Redis answers: an outage, or an error of the script itself
/// (such as a key of the wrong type).
pub async fn run_script(
    script: &Script,
    conn: &mut RedisConn,
    tenant: &str,
    ops_json: &str,
) -> redis::RedisResult<i64> {
    let keys = PresenceKeys::new(tenant);
    let mut call = script.prepare_invoke();
    for k in keys.in_script_order() {
        call.key(k);
    }
    call.arg(tenant)
        .arg(tenant_channel(tenant))
        .arg(ops_json)
        .arg(conn.publish_command());
    call.invoke_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON `presence.lua` reads, field by field (see its header): a
    /// rename here must be a rename there.
    #[test]
    fn every_operation_serialises_as_the_script_reads_it() {
        let n: Arc<str> = Arc::from("node-a#1");
        let golden = [
            (
                PresenceOp::Claim {
                    u: "ann".into(),
                    n: n.clone(),
                    until: 10_000,
                    seen: 900,
                    now: 1_000,
                },
                r#"{"op":"claim","u":"ann","n":"node-a#1","until":10000,"seen":900,"now":1000}"#,
            ),
            (
                PresenceOp::Release {
                    u: "ann".into(),
                    n,
                    at: 2_000,
                    seen: 1_800,
                },
                r#"{"op":"release","u":"ann","n":"node-a#1","at":2000,"seen":1800}"#,
            ),
            (
                PresenceOp::Force {
                    u: "bob".into(),
                    at: 2_500,
                    close: 4004,
                    why: Reason::Logout,
                },
                r#"{"op":"force","u":"bob","at":2500,"close":4004,"why":"logout"}"#,
            ),
            (
                PresenceOp::Sweep {
                    now: 20_000,
                    dead: HashMap::from([("node-c#3".to_owned(), 19_000)]),
                    silent: BTreeSet::from(["node-d#4".to_owned()]),
                },
                r#"{"op":"sweep","now":20000,"dead":{"node-c#3":19000},"silent":["node-d#4"]}"#,
            ),
            (
                PresenceOp::Sweep {
                    now: 20_000,
                    dead: HashMap::new(),
                    silent: BTreeSet::new(),
                },
                r#"{"op":"sweep","now":20000,"dead":{}}"#,
            ),
            (
                PresenceOp::Floor {
                    u: "cyd".into(),
                    v: 3,
                },
                r#"{"op":"floor","u":"cyd","v":3}"#,
            ),
            (
                PresenceOp::Cursor { at_least: 42 },
                r#"{"op":"cursor","at_least":42}"#,
            ),
        ];
        for (op, want) in &golden {
            assert_eq!(serde_json::to_string(op).unwrap(), *want);
        }
        let batch: Vec<PresenceOp> = golden.iter().map(|(op, _)| op.clone()).collect();
        let want = format!(
            "[{}]",
            golden.iter().map(|(_, j)| *j).collect::<Vec<_>>().join(",")
        );
        assert_eq!(to_json(&batch), want, "a batch is a JSON array");
    }

    #[test]
    fn an_event_and_a_stored_state_parse_from_the_scripts_json() {
        let ev: PresenceEvent = serde_json::from_str(
            r#"{"t":"acme","u":"ann","s":1,"since":5,"v":2,"seen":4,"force":true,"close":4004}"#,
        )
        .unwrap();
        assert_eq!(
            ev,
            PresenceEvent {
                t: "acme".into(),
                u: "ann".into(),
                s: 1,
                since: 5,
                v: 2,
                seen: 4,
                force: true,
                close: 4004,
                cursor: 0,
                reason: None,
                at: 0,
            }
        );
        let st: StoredState = serde_json::from_str(r#"{"s":0,"since":7,"v":3,"seen":6}"#).unwrap();
        assert_eq!(
            st.into_event("acme", "bob".into()),
            PresenceEvent {
                t: "acme".into(),
                u: "bob".into(),
                s: 0,
                since: 7,
                v: 3,
                seen: 6,
                force: false,
                close: 0,
                cursor: 0,
                reason: None,
                at: 0,
            }
        );
    }
}
