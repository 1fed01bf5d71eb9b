//! Autobahn sections 12 and 13, permessage-deflate (RFC 7692), which the
//! hub does not offer: one case per kind of offer Autobahn makes (its
//! default offer for 12, the seven offer sets of 13), each checking that
//! the offer is declined cleanly (101 without `Sec-WebSocket-Extensions`),
//! that uncompressed messages are delivered, and that a compressed message
//! (RSV1 set) then fails the connection with 1002. The full matrices of
//! message sizes and test data are out of scope.

use super::*;

/// `text` as a permessage-deflate payload: one final stored DEFLATE block,
/// without the 00 00 FF FF tail that RFC 7692 §7.2.1 removes.
fn deflated(text: &[u8]) -> Vec<u8> {
    let n = u16::try_from(text.len()).expect("one stored block");
    let mut out = vec![0x01];
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(!n).to_le_bytes());
    out.extend_from_slice(text);
    out
}

async fn offer_refused(offer: &str) {
    let h = hub_with(suite_config()).await;
    let mut ws = Raw::connect(h.addr, &[("Sec-WebSocket-Extensions", offer)]).await;
    let accepted: Vec<_> = ws
        .headers
        .iter()
        .filter(|(k, _)| k == "sec-websocket-extensions")
        .collect();
    assert!(
        accepted.is_empty(),
        "the hub accepted {accepted:?} for {offer:?}"
    );
    ws.hello().await;
    ws.send(Frame::text(probe("plain")));
    ws.expect_reply("plain").await;
    ws.send(Frame::text(deflated(&probe("compressed"))).rsv(4));
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// Autobahn's client offer, whose parameters 13.x add to.
const DEFAULT: &str = "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// The bare offer, with no parameter (RFC 7692 §5).
#[tokio::test]
async fn case_12_1_1_refused() {
    offer_refused("permessage-deflate").await;
}

#[tokio::test]
async fn case_13_1_1_refused() {
    offer_refused(DEFAULT).await;
}

#[tokio::test]
async fn case_13_2_1_refused() {
    offer_refused(&format!("{DEFAULT}; server_no_context_takeover")).await;
}

#[tokio::test]
async fn case_13_3_1_refused() {
    offer_refused(&format!("{DEFAULT}; server_max_window_bits=8")).await;
}

#[tokio::test]
async fn case_13_4_1_refused() {
    offer_refused(&format!("{DEFAULT}; server_max_window_bits=15")).await;
}

#[tokio::test]
async fn case_13_5_1_refused() {
    offer_refused(&format!(
        "{DEFAULT}; server_no_context_takeover; server_max_window_bits=8"
    ))
    .await;
}

#[tokio::test]
async fn case_13_6_1_refused() {
    offer_refused(&format!(
        "{DEFAULT}; server_no_context_takeover; server_max_window_bits=15"
    ))
    .await;
}

/// Three offers in order of preference, as 13.7 makes them.
#[tokio::test]
async fn case_13_7_1_refused() {
    offer_refused(&format!(
        "{DEFAULT}; server_no_context_takeover; server_max_window_bits=8, \
         {DEFAULT}; server_no_context_takeover, {DEFAULT}"
    ))
    .await;
}
