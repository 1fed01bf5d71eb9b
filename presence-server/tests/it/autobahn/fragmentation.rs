//! Autobahn section 5, fragmentation: fragmented text messages delivered
//! whole however the octets are chopped, pings answered between fragments,
//! and every misuse of continuation frames failing the connection with
//! 1002 (fragmented control frames, a continuation with no message, a new
//! message inside one).

use super::*;

/// The probe whose id is `parts` joined, one fragment per part.
fn probe_frames(parts: &[&str]) -> Vec<Frame> {
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    fragments(&probe_parts(&parts))
}

/// A control frame with FIN = 0, then a continuation.
async fn fragmented_control(opcode: u8) {
    let (_h, mut ws) = open().await;
    ws.send_all(&[
        Frame::new(opcode, b"fragment1").fin(false),
        Frame::cont(b"fragment2"),
    ]);
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A ping fragmented into 2 frames.
#[tokio::test]
async fn case_5_1() {
    fragmented_control(PING).await;
}

/// A pong fragmented into 2 frames.
#[tokio::test]
async fn case_5_2() {
    fragmented_control(PONG).await;
}

/// A text message in 2 fragments (`fragment1`, `fragment2`) is delivered.
async fn two_fragments(how: Chops) {
    let (_h, mut ws) = open().await;
    ws.send_as(&probe_frames(&["fragment1", "fragment2"]), how);
    ws.expect_reply("fragment1fragment2").await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_5_3() {
    two_fragments(Chops::One).await;
}

#[tokio::test]
async fn case_5_4() {
    two_fragments(Chops::Frames).await;
}

#[tokio::test]
async fn case_5_5() {
    two_fragments(Chops::Octets).await;
}

/// As 5.3 with a ping between the fragments: the pong, then the message.
async fn ping_between(how: Chops) {
    let (_h, mut ws) = open().await;
    let mut frames = probe_frames(&["fragment1", "fragment2"]);
    frames.insert(1, Frame::ping(b"ping payload"));
    ws.send_as(&frames, how);
    ws.expect_pong(b"ping payload").await;
    ws.expect_reply("fragment1fragment2").await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_5_6() {
    ping_between(Chops::One).await;
}

#[tokio::test]
async fn case_5_7() {
    ping_between(Chops::Frames).await;
}

#[tokio::test]
async fn case_5_8() {
    ping_between(Chops::Octets).await;
}

/// A continuation with FIN = `fin` and nothing to continue, then a whole
/// text message (a probe, which must not be answered).
async fn continuation_first(fin: bool, how: Chops) {
    let (_h, mut ws) = open().await;
    ws.send_as(
        &[
            Frame::cont(b"non-continuation payload").fin(fin),
            Frame::text(probe("Hello, world!")),
        ],
        how,
    );
    ws.expect_fail(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_5_9() {
    continuation_first(true, Chops::One).await;
}

#[tokio::test]
async fn case_5_10() {
    continuation_first(true, Chops::Frames).await;
}

#[tokio::test]
async fn case_5_11() {
    continuation_first(true, Chops::Octets).await;
}

#[tokio::test]
async fn case_5_12() {
    continuation_first(false, Chops::One).await;
}

#[tokio::test]
async fn case_5_13() {
    continuation_first(false, Chops::Frames).await;
}

#[tokio::test]
async fn case_5_14() {
    continuation_first(false, Chops::Octets).await;
}

/// A message in 2 fragments (delivered), then a continuation with FIN = 0
/// and nothing to continue, then a text frame: answered, then 1002.
#[tokio::test]
async fn case_5_15() {
    let (_h, mut ws) = open().await;
    let mut frames = probe_frames(&["fragment1", "fragment2"]);
    frames.push(Frame::cont(b"fragment3").fin(false));
    frames.push(Frame::text(probe("fragment4")));
    ws.send_all(&frames);
    ws.expect_reply("fragment1fragment2").await;
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// Twice: a continuation with FIN = `fin` and nothing to continue, then a
/// message in 2 fragments. The first frame fails the connection.
async fn stray_continuation_twice(fin: bool) {
    let (_h, mut ws) = open().await;
    let mut frames = Vec::new();
    for _ in 0..2 {
        frames.push(Frame::cont(b"fragment1").fin(fin));
        frames.extend(probe_frames(&["fragment2", "fragment3"]));
    }
    ws.send_all(&frames);
    ws.expect_fail(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_5_16() {
    stray_continuation_twice(false).await;
}

#[tokio::test]
async fn case_5_17() {
    stray_continuation_twice(true).await;
}

/// A message in 2 fragments whose second frame is a text frame, not a
/// continuation.
#[tokio::test]
async fn case_5_18() {
    let (_h, mut ws) = open().await;
    let parts = probe_parts(&[b"fragment1", b"fragment2"]);
    ws.send_all(&[Frame::text(&parts[0]).fin(false), Frame::text(&parts[1])]);
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A message in 5 fragments: 2 fragments and a ping, whose pong must come
/// before the rest is sent; 1 s later 2 more fragments, a ping and the last
/// fragment: the second pong, then the message.
async fn pings_inside_a_slow_message(how: Chops) {
    let (_h, mut ws) = open().await;
    let mut frames = probe_frames(&[
        "fragment1",
        "fragment2",
        "fragment3",
        "fragment4",
        "fragment5",
    ]);
    let rest = frames.split_off(2);
    frames.push(Frame::ping(b"pongme 1!"));
    ws.send_as(&frames, how);
    ws.expect_pong(b"pongme 1!").await;
    sleep(Duration::from_secs(1)).await;
    let mut frames = rest;
    frames.insert(2, Frame::ping(b"pongme 2!"));
    ws.send_as(&frames, how);
    ws.expect_pong(b"pongme 2!").await;
    ws.expect_reply("fragment1fragment2fragment3fragment4fragment5")
        .await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_5_19() {
    pings_inside_a_slow_message(Chops::One).await;
}

/// 5.19 frame by frame.
#[tokio::test]
async fn case_5_20() {
    pings_inside_a_slow_message(Chops::Frames).await;
}
