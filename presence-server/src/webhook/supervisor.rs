//! Which webhooks this node delivers: for every tenant with webhooks it
//! takes (or renews) the tenant's lease, and runs one [`Deliverer`] per
//! webhook while it holds it. A lease not renewed within its TTL stops the
//! tenant's deliverers here before another node can take it, so at most one
//! node delivers a tenant's webhooks at a time (SPEC §10); a node that
//! stops gives its leases back, so the next one takes over at once.
//!
//! In cluster mode a node holds only the tenants it serves
//! (`cluster::residency`): every [`DISCOVER`] it loads the tenants with
//! webhooks that it owns (rendezvous hashing over the live nodes), so every
//! tenant's webhooks have a node trying to deliver them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::webhook::deliverer::Deliverer;
use crate::webhook::target::PolicyResolver;

/// How often webhooks added or removed are noticed without a wake-up
/// (another node's `PUT` arrives through the directory log).
const SCAN: Duration = Duration::from_millis(500);
/// Cluster mode: how often the tenants with webhooks are listed.
const DISCOVER: Duration = Duration::from_secs(5);

struct TenantRun {
    /// Cancels every deliverer of the tenant (lease lost or no webhooks).
    token: CancellationToken,
    /// The lease holds until then unless renewed.
    held_until: Instant,
    renewed_at: Instant,
    /// Webhook id → (generation, its deliverer's token).
    webhooks: HashMap<String, (String, CancellationToken)>,
}

/// The delivery client: no redirects (a 3xx could point anywhere, the
/// policy included), the configured timeout, and the policy's resolver.
fn client(hub: &Hub) -> reqwest::Client {
    let w = &hub.config.webhooks;
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(w.timeout)
        .connect_timeout(w.timeout)
        .user_agent(concat!("presence-hub/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(PolicyResolver(Arc::new(w.allowed_hosts.clone()))))
        .build()
        // Fails only when the TLS backend cannot start: nothing to deliver with.
        .expect("the webhook HTTP client builds")
}

/// Runs until the node begins to stop, then stops every deliverer and
/// gives the leases back.
pub(crate) async fn run(hub: Arc<Hub>) {
    let holder = format!("{}/{}", hub.config.node_id, uuid::Uuid::new_v4());
    let client = client(&hub);
    let lease = hub.config.webhooks.lease;
    let renew = lease / 3;
    let mut runs: HashMap<String, TenantRun> = HashMap::new();
    let mut tick = tokio::time::interval(SCAN.min(renew));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut discovered: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hub.webhooks_changed() => {}
            _ = hub.stopping() => break,
        }
        if discovered.is_none_or(|at| at.elapsed() >= DISCOVER) {
            discovered = Some(Instant::now());
            discover(&hub).await;
        }
        let mut seen = Vec::new();
        for (tid, t) in hub.tenants_snapshot() {
            let hooks: Vec<(String, String)> = t
                .lock()
                .dir
                .webhooks
                .values()
                .map(|w| (w.id.clone(), w.generation.clone()))
                .collect();
            if hooks.is_empty() {
                continue;
            }
            seen.push(tid.clone());
            let now = Instant::now();
            let due = runs.get(&tid).is_none_or(|r| now >= r.renewed_at + renew);
            if due {
                match hub.store().lease_webhooks(&tid, &holder, lease).await {
                    Ok(true) => {
                        if !runs.contains_key(&tid) {
                            if let Some(r) = hub.residency() {
                                // Named again (an owner that found none may
                                // have taken the name out as this was written).
                                let _ = r.mark_webhook_tenant(&tid, true).await;
                            }
                        }
                        let r = runs.entry(tid.clone()).or_insert_with(|| TenantRun {
                            token: CancellationToken::new(),
                            held_until: now,
                            renewed_at: now,
                            webhooks: HashMap::new(),
                        });
                        // Counted from before the call: the lease may
                        // have been set as the call left.
                        r.held_until = now + lease;
                        r.renewed_at = now;
                    }
                    Ok(false) => {
                        if let Some(r) = runs.remove(&tid) {
                            tracing::info!(tenant = %tid, "webhook lease taken by another node");
                            r.token.cancel();
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %tid, error = %e, "cannot renew the webhook lease");
                    }
                }
            }
            let Some(r) = runs.get_mut(&tid) else {
                continue;
            };
            // Stop a little before the lease could end elsewhere.
            if Instant::now() + renew / 2 >= r.held_until {
                tracing::warn!(tenant = %tid, "webhook lease not renewed in time; delivery paused");
                r.token.cancel();
                runs.remove(&tid);
                continue;
            }
            r.webhooks.retain(|id, (generation, token)| {
                let keep = hooks.iter().any(|(i, g)| i == id && g == generation);
                if !keep {
                    token.cancel();
                }
                keep
            });
            for (id, generation) in hooks {
                if r.webhooks.contains_key(&id) {
                    continue;
                }
                let token = r.token.child_token();
                r.webhooks
                    .insert(id.clone(), (generation.clone(), token.clone()));
                let d = Deliverer {
                    hub: hub.clone(),
                    client: client.clone(),
                    tenant: tid.clone(),
                    id,
                    generation,
                    stop: token,
                };
                hub.spawn(d.run());
            }
        }
        // Tenants whose last webhook went (or that left the node).
        let gone: Vec<String> = runs.keys().filter(|t| !seen.contains(t)).cloned().collect();
        for tid in gone {
            if let Some(r) = runs.remove(&tid) {
                r.token.cancel();
                let _ = hub.store().release_webhooks(&tid, &holder).await;
            }
        }
    }
    for (tid, r) in runs {
        r.token.cancel();
        let _ = hub.store().release_webhooks(&tid, &holder).await;
    }
}

/// Cluster mode: loads the tenants with webhooks this node owns; takes out
/// of the list the ones it finds without any (a webhook written since is
/// seen here through directory sync, and named again when its lease is
/// taken).
async fn discover(hub: &Hub) {
    let Some(r) = hub.residency() else {
        return;
    };
    let tenants = match r.webhook_tenants().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the tenants with webhooks");
            return;
        }
    };
    for tid in tenants {
        if !crate::cluster::owner::is_owner(hub, &tid) {
            continue;
        }
        let none = match hub.resident(&tid).await {
            Ok(Some(t)) => t.lock().dir.webhooks.is_empty(),
            Ok(None) => true,
            Err(e) => {
                tracing::warn!(tenant = %tid, error = %e, "cannot load a tenant with webhooks");
                continue;
            }
        };
        if none {
            let _ = r.mark_webhook_tenant(&tid, false).await;
        }
    }
}
