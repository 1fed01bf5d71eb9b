//! Autobahn section 3, reserved bits: no extension is negotiated, so a
//! frame with any of RSV1–3 set fails the connection with 1002, and what
//! follows it (a ping) is not answered.

use super::*;

/// A probe (answered), the same probe with `rsv` set, then a ping: the
/// first is answered, the second fails the connection, no pong.
async fn after_a_good_message(rsv: u8, how: Chops) {
    let (_h, mut ws) = open().await;
    let tag = format!("rsv-{rsv}");
    let frames = [
        Frame::text(probe(&tag)),
        Frame::text(probe("must not be answered")).rsv(rsv),
        Frame::ping(b""),
    ];
    ws.send_as(&frames, how);
    ws.expect_reply(&tag).await;
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A probe ("Hello, world!" in Autobahn) with RSV = 1.
#[tokio::test]
async fn case_3_1() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe("Hello, world!")).rsv(1));
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A good message, then one with RSV = 2, then a ping.
#[tokio::test]
async fn case_3_2() {
    after_a_good_message(2, Chops::One).await;
}

/// As 3.2 with RSV = 3, frame by frame.
#[tokio::test]
async fn case_3_3() {
    after_a_good_message(3, Chops::Frames).await;
}

/// As 3.2 with RSV = 4, octet by octet.
#[tokio::test]
async fn case_3_4() {
    after_a_good_message(4, Chops::Octets).await;
}

/// A small binary message with RSV = 5: the reserved bits fail it first
/// (1002, not 1003).
#[tokio::test]
async fn case_3_5() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::binary(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff").rsv(5));
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A ping with RSV = 6. (Autobahn's case file describes a ping but sends a
/// binary frame; 3.5 already covers binary, so this one sends the ping.)
#[tokio::test]
async fn case_3_6() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::ping(b"Hello, world!").rsv(6));
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A close frame with RSV = 7: not a valid close, so the hub fails the
/// connection with 1002 (our close is already out: none is sent back).
#[tokio::test]
async fn case_3_7() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::new(CLOSE, b"").rsv(7));
    ws.expect_close_reply(&[Some(PROTOCOL_ERROR)]).await;
}
