//! Autobahn section 4, opcodes: the reserved non-control (3–7) and control
//! (11–15) opcodes fail the connection with 1002, and what follows them (a
//! ping) is not answered.

use super::*;

/// A lone frame with reserved `opcode` and `payload`.
async fn alone(opcode: u8, payload: &[u8]) {
    let (_h, mut ws) = open().await;
    ws.send(Frame::new(opcode, payload));
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A probe (answered), a frame with reserved `opcode` and `payload`, then a
/// ping (not answered).
async fn after_a_good_message(opcode: u8, payload: &[u8], how: Chops) {
    let (_h, mut ws) = open().await;
    let tag = format!("opcode-{opcode}");
    ws.send_as(
        &[
            Frame::text(probe(&tag)),
            Frame::new(opcode, payload),
            Frame::ping(b""),
        ],
        how,
    );
    ws.expect_reply(&tag).await;
    ws.expect_fail(PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn case_4_1_1() {
    alone(3, b"").await;
}

#[tokio::test]
async fn case_4_1_2() {
    alone(4, b"reserved opcode payload").await;
}

/// Opcode 5, empty, between a good message and a ping.
#[tokio::test]
async fn case_4_1_3() {
    after_a_good_message(5, b"", Chops::One).await;
}

/// Opcode 6 with a payload, between a good message and a ping.
#[tokio::test]
async fn case_4_1_4() {
    after_a_good_message(6, b"Hello, world!", Chops::One).await;
}

/// As 4.1.4 with opcode 7, octet by octet.
#[tokio::test]
async fn case_4_1_5() {
    after_a_good_message(7, b"Hello, world!", Chops::Octets).await;
}

#[tokio::test]
async fn case_4_2_1() {
    alone(11, b"").await;
}

#[tokio::test]
async fn case_4_2_2() {
    alone(12, b"reserved opcode payload").await;
}

/// Opcode 13, empty, between a good message and a ping.
#[tokio::test]
async fn case_4_2_3() {
    after_a_good_message(13, b"", Chops::One).await;
}

/// Opcode 14 with a payload, between a good message and a ping.
#[tokio::test]
async fn case_4_2_4() {
    after_a_good_message(14, b"Hello, world!", Chops::One).await;
}

/// As 4.2.4 with opcode 15, octet by octet.
#[tokio::test]
async fn case_4_2_5() {
    after_a_good_message(15, b"Hello, world!", Chops::Octets).await;
}
