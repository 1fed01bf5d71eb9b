//! The Redis key schema of cluster mode: every key and channel name that
//! `store/redis.rs`, `store/commit.lua`, `cluster/presence.lua` and the
//! cluster tasks use, built here and nowhere else.
//!
//! Every key of a tenant carries the hash tag `{<tid>}`, so a tenant lives in
//! one hash slot: its directory batch and its presence batch are each one
//! script call on one Redis Cluster node, and the two share that node.
//! `<tid>` is the tenant id with `%`, `{` and `}` percent-encoded (`%25`,
//! `%7B`, `%7D`): an id such as `}x` would otherwise end the tag early (an
//! empty tag hashes the whole key and scatters the tenant).
//!
//! The table of every key (type, what it holds, who writes it) is in
//! ARCHITECTURE.md, "Redis key schema"; a test below checks that it names
//! every key built here.

/// Set of every tenant id; not tagged, so it may live on any cluster node.
pub const TENANTS_KEY: &str = "presence:tenants";
/// Sorted set: node id → last heartbeat (ms).
pub const NODES_KEY: &str = "presence:nodes";
/// Sorted set: a node that left gracefully (its claim name) → the last
/// lease end it handed off (ms): its registry's tenants are swept until
/// then, as its leases end at their scores.
pub const LEFT_KEY: &str = "presence:left";
/// Set of the tenants that have (or had) webhooks, so the node that owns
/// one's delivery loads it without every node holding every tenant.
/// Added to before a batch that writes a webhook; a tenant found with none
/// is taken out by the owner that holds it.
pub const WEBHOOK_TENANTS_KEY: &str = "presence:webhook_tenants";
/// The registry of node `node` (its claim name): the tenants where it may
/// hold a lease, kept by its operation queue (`cluster::op_queue`), read by
/// the sweep of a dead or departed node. Untagged.
pub fn node_tenants(node: &str) -> String {
    format!("presence:node:{node}:tenants")
}
/// Channel a commit that writes a tenant's record announces the tenant id
/// on, so nodes learn of tenants created elsewhere without polling
/// [`TENANTS_KEY`]. Not tagged and published with plain `PUBLISH`: in a
/// Redis Cluster it reaches every node through the cluster bus, which is
/// fine at the rate tenants are created or renamed.
pub const TENANT_CREATED_CHANNEL: &str = "presence:tenant_created";
/// Separates the two ids of a compound field: team and user in a members
/// field, user and node in a lease member (`'\31'` in the Lua scripts).
/// Ids cannot hold control characters (`directory::valid_id`).
pub(crate) const SEP: char = '\u{1f}';

/// The key `presence:{<tid>}:<suffix>` of a tenant, with the tenant id
/// percent-encoded inside the hash tag.
fn tenant_key(tid: &str, suffix: &str) -> String {
    let tag = tid
        .replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D");
    format!("presence:{{{tag}}}:{suffix}")
}

/// A tenant's channel: every presence transition (and forced offline) of
/// the tenant, from `presence.lua`, and a notice of every directory batch
/// committed for it, from `commit.lua`. Tagged like the tenant's keys, so
/// on a Redis Cluster it is a sharded channel of the tenant's slot
/// (`SPUBLISH` from the scripts, `SSUBSCRIBE` by the nodes holding it):
/// its messages stay on that shard.
pub fn tenant_channel(tid: &str) -> String {
    tenant_key(tid, "notify")
}

/// The directory keys of one tenant (`store/commit.lua`'s `KEYS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirectoryKeys {
    pub tenant: String,
    pub users: String,
    pub teams: String,
    pub members: String,
    pub presence: String,
    pub version: String,
    pub log: String,
    pub webhooks: String,
}

impl DirectoryKeys {
    pub fn new(tid: &str) -> Self {
        let k = |s: &str| tenant_key(tid, s);
        DirectoryKeys {
            tenant: k("tenant"),
            users: k("users"),
            teams: k("teams"),
            members: k("members"),
            presence: k("presence"),
            version: k("version"),
            log: k("log"),
            webhooks: k("webhooks"),
        }
    }

    /// `KEYS[1..8]` of `commit.lua`.
    pub fn in_script_order(&self) -> [&str; 8] {
        [
            &self.tenant,
            &self.users,
            &self.teams,
            &self.members,
            &self.presence,
            &self.version,
            &self.log,
            &self.webhooks,
        ]
    }
}

/// A tenant's webhook delivery keys (`store/redis_webhooks.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebhookKeys {
    pub state: String,
    pub lease: String,
}

impl WebhookKeys {
    pub fn new(tid: &str) -> Self {
        WebhookKeys {
            state: tenant_key(tid, "webhook_state"),
            lease: tenant_key(tid, "webhook_lease"),
        }
    }
}

/// The history keys of one tenant (SPEC §11; `store/redis_history.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryKeys {
    pub state: String,
    pub open: String,
    pub erased: String,
    pub days: String,
    tid: String,
}

impl HistoryKeys {
    pub fn new(tid: &str) -> Self {
        HistoryKeys {
            state: tenant_key(tid, "history_state"),
            open: tenant_key(tid, "history_open"),
            erased: tenant_key(tid, "history_erased"),
            days: tenant_key(tid, "history_days"),
            tid: tid.to_owned(),
        }
    }

    /// The bucket hash of UTC day `day` (days since 1970-01-01).
    pub fn day(&self, day: u32) -> String {
        tenant_key(&self.tid, &format!("history:{day}"))
    }
}

/// The cluster presence keys of one tenant (`cluster/presence.lua`'s `KEYS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceKeys {
    pub leases: String,
    pub state: String,
    pub claims: String,
    pub seq: String,
    pub events: String,
}

impl PresenceKeys {
    pub fn new(tid: &str) -> Self {
        PresenceKeys {
            leases: tenant_key(tid, "leases"),
            state: tenant_key(tid, "state"),
            claims: tenant_key(tid, "claims"),
            seq: tenant_key(tid, "seq"),
            events: tenant_key(tid, "events"),
        }
    }

    /// `KEYS[1..5]` of `presence.lua`.
    pub fn in_script_order(&self) -> [&str; 5] {
        [
            &self.leases,
            &self.state,
            &self.claims,
            &self.seq,
            &self.events,
        ]
    }
}

/// A members field: `<team>\u{1f}<user>`.
pub(crate) fn member_field(team: &str, user: &str) -> String {
    format!("{team}{SEP}{user}")
}

/// A members field split back into team and user.
pub(crate) fn split_member_field(field: &str) -> Option<(&str, &str)> {
    field.split_once(SEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_keys(tid: &str) -> Vec<String> {
        let d = DirectoryKeys::new(tid);
        let p = PresenceKeys::new(tid);
        let w = WebhookKeys::new(tid);
        let h = HistoryKeys::new(tid);
        d.in_script_order()
            .into_iter()
            .chain(p.in_script_order())
            .map(str::to_owned)
            .chain([w.state, w.lease])
            .chain([
                h.state.clone(),
                h.open.clone(),
                h.erased.clone(),
                h.days.clone(),
            ])
            .chain([h.day(0)])
            .chain([tenant_channel(tid)])
            .collect()
    }

    /// The schema as deployed: renaming a key strands every tenant's data in
    /// a running Redis, so it must be a deliberate change of this list.
    #[test]
    fn the_key_schema_is_stable() {
        assert_eq!(
            all_keys("acme"),
            [
                "presence:{acme}:tenant",
                "presence:{acme}:users",
                "presence:{acme}:teams",
                "presence:{acme}:members",
                "presence:{acme}:presence",
                "presence:{acme}:version",
                "presence:{acme}:log",
                "presence:{acme}:webhooks",
                "presence:{acme}:leases",
                "presence:{acme}:state",
                "presence:{acme}:claims",
                "presence:{acme}:seq",
                "presence:{acme}:events",
                "presence:{acme}:webhook_state",
                "presence:{acme}:webhook_lease",
                "presence:{acme}:history_state",
                "presence:{acme}:history_open",
                "presence:{acme}:history_erased",
                "presence:{acme}:history_days",
                "presence:{acme}:history:0",
                "presence:{acme}:notify",
            ]
        );
        assert_eq!(TENANTS_KEY, "presence:tenants");
        assert_eq!(NODES_KEY, "presence:nodes");
        assert_eq!(LEFT_KEY, "presence:left");
        assert_eq!(WEBHOOK_TENANTS_KEY, "presence:webhook_tenants");
        assert_eq!(node_tenants("n1#ab"), "presence:node:n1#ab:tenants");
        assert_eq!(TENANT_CREATED_CHANNEL, "presence:tenant_created");
        assert_eq!(member_field("ops", "ann"), "ops\u{1f}ann");
        assert_eq!(split_member_field("ops\u{1f}ann"), Some(("ops", "ann")));
    }

    #[test]
    fn the_architecture_map_lists_every_key() {
        let map = include_str!("../../../ARCHITECTURE.md");
        let section = map
            .split("\n## Redis key schema\n")
            .nth(1)
            .expect("ARCHITECTURE.md has a Redis key schema section");
        for k in all_keys("acme")
            .iter()
            .map(|k| {
                k.replace("{acme}", "{<tid>}")
                    .replace("history:0", "history:<day>")
            })
            .chain(
                [
                    TENANTS_KEY,
                    NODES_KEY,
                    LEFT_KEY,
                    WEBHOOK_TENANTS_KEY,
                    TENANT_CREATED_CHANNEL,
                ]
                .map(str::to_owned),
            )
            .chain([node_tenants("<node>")])
        {
            assert!(
                section.contains(&format!("| `{k}` |")),
                "{k} is not in the table"
            );
        }
    }

    #[test]
    fn every_key_of_a_tenant_carries_the_same_non_empty_tag() {
        for tid in ["acme", "}x", "{a}", "a%7Db", "%"] {
            let keys = all_keys(tid);
            let tags: Vec<&str> = keys
                .iter()
                .map(|k| {
                    // Redis's rule: from the first `{` to the next `}`.
                    let open = k.find('{').unwrap() + 1;
                    let len = k[open..].find('}').unwrap();
                    &k[open..open + len]
                })
                .collect();
            assert!(!tags[0].is_empty(), "{tid}");
            assert!(tags.iter().all(|t| *t == tags[0]), "{tid}: {tags:?}");
        }
        assert_ne!(
            DirectoryKeys::new("}x").tenant,
            DirectoryKeys::new("%7Dx").tenant,
            "encoding is injective"
        );
    }
}
