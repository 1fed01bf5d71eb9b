//! The WebSocket edge seen from real clients (tokio-tungstenite over
//! loopback): crafted frames cannot crash or leak a tab, every close the hub
//! sends arrives even while the client is still sending, the client's own
//! close is echoed, pings are bounded, and a peer that stopped answering is
//! found and freed (SPEC §9).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use presence_protocol::{close, ErrorCode, ServerMessage};
use presence_server::Config;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use crate::support::*;

/// Bytes written to the tab's socket as they are, past the WebSocket
/// library (which would refuse to send them).
async fn write_raw(t: &mut Tab, bytes: &[u8]) {
    t.ws.flush().await.unwrap();
    match t.ws.get_mut() {
        MaybeTlsStream::Plain(s) => s.write_all(bytes).await.unwrap(),
        _ => unreachable!("tests speak plain ws://"),
    }
}

/// A masked client frame header for a payload of `len` bytes in the 64-bit
/// form, and `payload` after it (which may be shorter than `len`).
fn frame64(first: u8, len: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first, 0x80 | 127];
    f.extend(len.to_be_bytes());
    f.extend([0, 0, 0, 0]);
    f.extend(payload);
    f
}

#[tokio::test]
async fn a_crafted_continuation_length_closes_with_1002_and_leaks_no_tab() {
    // The attack that panicked the session: a 3-byte first fragment, then a
    // continuation whose 64-bit length (2^64 - 3) wraps the size check.
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let mut attack = vec![0x01, 0x83, 0, 0, 0, 0, b'a', b'b', b'c'];
    attack.extend(frame64(0x80, u64::MAX - 2, b"xyz"));
    // More attempts than the user may have tabs: each must be freed.
    for _ in 0..33 {
        let mut t = h.tab("acme", "ann").await;
        write_raw(&mut t, &attack).await;
        let c = t.closed().await;
        assert_eq!(c.code, close::PROTOCOL_ERROR, "{c:?}");
    }
    open_tabs_within(&h, 0.0, WAIT).await;
    // A length with the top bit clear is over the size limit instead.
    let mut t = h.tab("acme", "ann").await;
    let mut big = vec![0x01, 0x83, 0, 0, 0, 0, b'a', b'b', b'c'];
    big.extend(frame64(0x80, u64::MAX >> 1, b"xyz"));
    write_raw(&mut t, &big).await;
    assert_eq!(t.closed().await.code, close::POLICY_VIOLATION);
    // The user can still open a tab, and only that one is counted.
    let _t = h.tab("acme", "ann").await;
    open_tabs_within(&h, 1.0, WAIT).await;
}

/// Sends `frame` in bursts of 500 on the tab's socket until it fails, and
/// returns what the tab read meanwhile: messages, then the close. The
/// bursts keep the hub's receive buffer full, which is what turned a close
/// into a reset before the hub lingered for the client's close.
async fn read_while_sending(
    t: Tab,
    frame: &str,
    during: impl std::future::Future<Output = ()>,
) -> (Vec<ServerMessage>, Option<(u16, String)>) {
    let (mut tx, mut rx) = t.ws.split();
    let frame = frame.to_owned();
    let sender = tokio::spawn(async move {
        loop {
            for _ in 0..500 {
                if tx.feed(Message::Text(frame.clone().into())).await.is_err() {
                    return;
                }
            }
            if tx.flush().await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    let reader = async {
        // A busy page reads late: what the hub sent must still be there,
        // not destroyed by a reset answering the frames still coming in.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut got = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, rx.next())
                .await
                .expect("hub said nothing in time");
            match next {
                Some(Ok(Message::Text(s))) => got.push(serde_json::from_str(&s).unwrap()),
                Some(Ok(Message::Close(Some(f)))) => {
                    return (got, Some((u16::from(f.code), f.reason.to_string())))
                }
                Some(Ok(_)) => {}
                // A reset or an EOF without a close frame: what this test
                // exists to rule out.
                Some(Err(_)) | None => return (got, None),
            }
        }
    };
    let (out, ()) = tokio::join!(reader, during);
    sender.abort();
    out
}

fn activity() -> String {
    json!({"type": "activity", "idle_ms": 0}).to_string()
}

/// A frame the hub answers (with `not_found`), so a tab that sends it and
/// reads late has replies waiting on its way when the hub closes it.
fn probe() -> String {
    json!({"type": "unsubscribe", "id": "p", "roster": "directory"}).to_string()
}

#[tokio::test]
async fn a_flooding_tab_reads_its_rate_limited_errors_and_then_4008() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let t = h.tab("acme", "ann").await;
    let (got, close) = read_while_sending(t, &activity(), async {}).await;
    let limited = got
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }
            )
        })
        .count();
    assert!(limited > 0, "no rate_limited error arrived: {got:?}");
    let (code, reason) = close.expect("the close frame was lost (reset)");
    assert_eq!(code, close::POLICY_VIOLATION);
    assert_eq!(reason, "too many messages");
}

/// A hub that lets a tab send as fast as it can.
fn unthrottled() -> Config {
    Config {
        rate_per_sec: 10_000,
        rate_burst: 10_000,
        ..test_config()
    }
}

#[tokio::test]
async fn a_tab_still_sending_when_its_user_is_deactivated_gets_4003() {
    let h = TestHub::with_config(unthrottled()).await;
    h.seed("acme", &["ann"]).await;
    let t = h.tab("acme", "ann").await;
    let admin = h.admin();
    let (_, close) = read_while_sending(t, &probe(), async {
        admin
            .ok(
                "POST",
                "/v1/tenants/acme/users/deactivate",
                json!({"ids": ["ann"]}),
            )
            .await;
    })
    .await;
    assert_eq!(
        close.expect("the close frame was lost (reset)").0,
        close::FORBIDDEN
    );
}

#[tokio::test]
async fn a_tab_still_sending_at_shutdown_gets_1012() {
    let mut h = TestHub::with_config(unthrottled()).await;
    h.seed("acme", &["ann"]).await;
    let t = h.tab("acme", "ann").await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stopping = async {
        // Stop once the sender is surely busy.
        let _ = tokio::time::timeout(Duration::from_millis(50), rx).await;
        h.stop().await;
    };
    let (_, close) = read_while_sending(t, &probe(), stopping).await;
    drop(tx);
    assert_eq!(
        close.expect("the close frame was lost (reset)").0,
        close::NODE_RESTARTING
    );
}

#[tokio::test]
async fn the_client_s_close_code_is_echoed() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    for code in [1000u16, 1001, 3000, 4321] {
        let mut t = h.tab("acme", "ann").await;
        t.ws.close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        let c = t.closed().await;
        assert_eq!(c.code, code, "{c:?}");
    }
    open_tabs_within(&h, 0.0, WAIT).await;
}

#[tokio::test]
async fn a_ping_storm_counts_against_the_frame_rate_and_ends_in_4008() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let mut t = h.tab("acme", "ann").await;
    ping_storm_until_4008(&mut t, b"storm").await;
    open_tabs_within(&h, 0.0, WAIT).await;
}

#[tokio::test]
async fn pings_before_hello_count_against_the_frame_rate_too() {
    let h = TestHub::start().await;
    let mut t = Tab {
        ws: raw_connect(h.addr).await,
        welcome: None,
        tab: uuid::Uuid::new_v4(),
    };
    ping_storm_until_4008(&mut t, b"early").await;
}

/// Sends 500 pings as fast as the socket takes them (or until it is gone)
/// and asserts the hub ends the connection with 4008.
async fn ping_storm_until_4008(t: &mut Tab, payload: &[u8]) {
    for _ in 0..500 {
        if t.ws
            .feed(Message::Ping(payload.to_vec().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = t.ws.flush().await;
    let c = t.closed().await;
    assert_eq!(c.code, close::POLICY_VIOLATION, "{c:?}");
}

fn lively_config() -> Config {
    Config {
        ping_interval: Duration::from_millis(300),
        pong_timeout: Duration::from_millis(300),
        max_tabs_per_user: 1,
        ..test_config()
    }
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed_and_its_tab_slot_freed() {
    let h = TestHub::with_config(lively_config()).await;
    h.seed("acme", &["ann"]).await;
    // A tab whose client stops reading: its library answers no ping.
    let mut gone = h.tab("acme", "ann").await;
    open_tabs_within(&h, 0.0, WAIT).await;
    // The one slot of this user is free again.
    let _next = h.tab("acme", "ann").await;
    assert_pinged_then_closed_for_no_pong(&mut gone).await;
}

/// Reads (answering pings, as the library does) until `until`; the pings
/// counted, failing on anything else: the tab was not kept.
async fn pings_until_kept(t: &mut Tab, until: tokio::time::Instant) -> usize {
    let mut pings = 0;
    while let Ok(m) = tokio::time::timeout_at(until, t.ws.next()).await {
        match m {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("the tab was not kept: {other:?}"),
        }
    }
    pings
}

/// A machine so loaded that the hub runs a tab's task late (a connect
/// storm of a million tabs on two cores) must not cost the tab: its pong
/// came in time and sits in the socket when the hub's long-expired timer
/// finally runs. Here the one thread of the runtime, which runs the hub
/// too, is blocked for three pong timeouts right after the client wrote
/// its pong; the blocking is the stall under test, not a wait.
#[tokio::test(flavor = "current_thread")]
async fn a_pong_that_came_in_time_keeps_the_tab_when_the_hub_runs_late() {
    let c = lively_config();
    let h = TestHub::with_config(c.clone()).await;
    h.seed("acme", &["ann"]).await;
    let mut t = h.tab("acme", "ann").await;
    match tokio::time::timeout(WAIT, t.ws.next()).await {
        Ok(Some(Ok(Message::Ping(_)))) => {}
        other => panic!("expected the hub's ping: {other:?}"),
    }
    // The library queued the pong; this writes it to the socket.
    t.ws.flush().await.unwrap();
    std::thread::sleep(c.pong_timeout * 3);
    // Kept: over the next rounds it is pinged, never closed.
    let pings = pings_until_kept(
        &mut t,
        tokio::time::Instant::now() + (c.ping_interval + c.pong_timeout) * 3,
    )
    .await;
    assert!(pings >= 2, "{pings} pings after the stall");
    assert_eq!(h.metric("presence_open_tabs").await, Some(1.0));
}

#[tokio::test]
async fn a_peer_that_answers_pings_stays_open_while_silent() {
    let h = TestHub::with_config(lively_config()).await;
    h.seed("acme", &["ann"]).await;
    let mut t = h.tab("acme", "ann").await;
    // Reading answers each ping (the library does it); the tab says nothing
    // else for many ping intervals.
    let pings = pings_until_kept(
        &mut t,
        tokio::time::Instant::now() + Duration::from_millis(2_000),
    )
    .await;
    assert!(pings >= 3, "{pings} pings in 2 s at a 300 ms interval");
    assert_eq!(h.metric("presence_open_tabs").await, Some(1.0));
    // And it is still a working tab.
    t.send_text(r#"{"type":"unsubscribe","id":"x","roster":"directory"}"#)
        .await;
    let reply = t.recv().await;
    assert!(
        matches!(
            reply,
            ServerMessage::Error {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{reply:?}"
    );
}
