//! Events past their tenant's retention go: each trim removes, per tenant,
//! the oldest events whose `at` is older than the retention (a prefix of
//! the feed, so cursors still held stay contiguous). Idempotent, so in
//! cluster mode every node may run it.

use crate::directory::TenantRecord;
use crate::hub::Hub;
use crate::store::StoreError;

/// Trims every held tenant's feed once; returns how many events went.
pub async fn trim(hub: &Hub) -> Result<u64, StoreError> {
    let now = hub.now_ms();
    let mut removed = 0;
    for (tid, t) in hub.tenants_snapshot() {
        let rec = t.lock().dir.tenant.clone();
        removed += trim_tenant(hub, &tid, &rec, now).await?;
    }
    Ok(removed)
}

/// Trims the feed of `tid` (whose record is `rec`); returns how many
/// events went.
pub(crate) async fn trim_tenant(
    hub: &Hub,
    tid: &str,
    rec: &TenantRecord,
    now: u64,
) -> Result<u64, StoreError> {
    let before = now.saturating_sub(hub.event_retention_s(rec).saturating_mul(1_000));
    let mut removed = 0;
    // One call removes a bounded batch; go on until nothing is left.
    loop {
        let n = hub.store().trim_events(tid, before).await?;
        removed += n;
        if n == 0 {
            return Ok(removed);
        }
    }
}
