//! `/metrics` figures that tell whether tabs leak: open tabs and the tab
//! handles the tenants keep per user.

use std::time::Duration;

use uuid::Uuid;

use crate::support::{token, Tab, TestHub, WAIT};

/// Waits until `/metrics` reports `value` for both tab gauges.
async fn tabs_reach(h: &TestHub, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open = h.metric("presence_open_tabs").await;
        let registered = h.metric("presence_registered_tabs").await;
        if open == Some(value) && registered == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "open {open:?}, registered {registered:?}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn registered_tabs_follow_joins_reloads_and_closes() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann", "bob"]).await;
    tabs_reach(&h, 0.0).await;
    let reloaded = Uuid::new_v4();
    let a1 = Tab::open(h.addr, &token("acme", "ann"), reloaded, 0).await;
    let mut a2 = h.tab("acme", "ann").await;
    let mut b1 = h.tab("acme", "bob").await;
    tabs_reach(&h, 3.0).await;
    // A reload that races its own close: the new connection replaces the
    // old handle instead of adding one.
    let mut again = Tab::open(h.addr, &token("acme", "ann"), reloaded, 0).await;
    tabs_reach(&h, 3.0).await;
    drop(a1);
    let _ = a2.ws.close(None).await;
    let _ = b1.ws.close(None).await;
    tabs_reach(&h, 1.0).await;
    let _ = again.ws.close(None).await;
    tabs_reach(&h, 0.0).await;
}
