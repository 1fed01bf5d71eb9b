//! Autobahn section 9, limits and performance, adapted to the hub's 16 KiB
//! cap on a message (SPEC §9). Every Autobahn message here is larger than
//! the cap, so each case must close with 4008, refused from the header
//! that makes the message too large: the case sends the octets up to and
//! including that header and no more, so a hub that waited for (or
//! buffered) the payload would never answer. Binary cases may instead be
//! refused as binary (1003). 9.7/9.8 (1000 round trips of small messages)
//! fit the cap and run as they are. Then the within-cap equivalents: the
//! largest message delivered whole or in fragments, one octet more
//! refused, and a burst of 1000 messages all answered.

use super::*;

/// A message of `len` octets of `opcode`, sent as fragments of `frag`
/// octets (one frame if `frag >= len`), stopping at the header of the
/// fragment that takes the message over the cap (plus `chop` octets of its
/// payload, for the chopped cases): the hub must close with `codes`.
async fn refused_at_the_cap(opcode: u8, len: usize, frag: usize, chop: usize, codes: &[u16]) {
    let (_h, mut ws) = open().await;
    let frag = frag.min(len);
    let mut sent = 0;
    let mut first = true;
    while sent + frag <= CAP {
        let f = Frame::new(if first { opcode } else { CONT }, vec![b'*'; frag]);
        ws.send(f.fin(false));
        sent += frag;
        first = false;
    }
    let size = frag.min(len - sent);
    let crossing = Frame::new(if first { opcode } else { CONT }, vec![b'*'; chop])
        .fin(sent + size == len)
        .declared(size as u64);
    ws.send(crossing);
    ws.expect_fail_any(codes).await;
}

const TEXT_ONLY: &[u16] = &[TOO_LARGE];
const BINARY_OR_SIZE: &[u16] = &[UNSUPPORTED_DATA, TOO_LARGE];
const MIB: usize = 1 << 20;

/// One test per case: (opcode, message length, fragment size, octets of
/// the crossing frame's payload sent, accepted close codes).
macro_rules! over_the_cap {
    ($($name:ident: $opcode:expr, $len:expr, $frag:expr, $chop:expr, $codes:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            refused_at_the_cap($opcode, $len, $frag, $chop, $codes).await;
        }
    )*};
}

over_the_cap! {
    // 9.1: one text frame of 64 KiB, 256 KiB, 1, 4, 8 and 16 MiB: only the header.
    case_9_1_1: TEXT, 64 << 10, usize::MAX, 0, TEXT_ONLY;
    case_9_1_2: TEXT, 256 << 10, usize::MAX, 0, TEXT_ONLY;
    case_9_1_3: TEXT, MIB, usize::MAX, 0, TEXT_ONLY;
    case_9_1_4: TEXT, 4 * MIB, usize::MAX, 0, TEXT_ONLY;
    case_9_1_5: TEXT, 8 * MIB, usize::MAX, 0, TEXT_ONLY;
    case_9_1_6: TEXT, 16 * MIB, usize::MAX, 0, TEXT_ONLY;
    // 9.2: the same as binary.
    case_9_2_1: BINARY, 64 << 10, usize::MAX, 0, BINARY_OR_SIZE;
    case_9_2_2: BINARY, 256 << 10, usize::MAX, 0, BINARY_OR_SIZE;
    case_9_2_3: BINARY, MIB, usize::MAX, 0, BINARY_OR_SIZE;
    case_9_2_4: BINARY, 4 * MIB, usize::MAX, 0, BINARY_OR_SIZE;
    case_9_2_5: BINARY, 8 * MIB, usize::MAX, 0, BINARY_OR_SIZE;
    case_9_2_6: BINARY, 16 * MIB, usize::MAX, 0, BINARY_OR_SIZE;
    // 9.3: 4 MiB of text in fragments of 64, 256 octets, 1, 4, 16, 64,
    // 256 KiB, 1 and 4 MiB: the fragments that fit, then one header.
    case_9_3_1: TEXT, 4 * MIB, 64, 0, TEXT_ONLY;
    case_9_3_2: TEXT, 4 * MIB, 256, 0, TEXT_ONLY;
    case_9_3_3: TEXT, 4 * MIB, 1 << 10, 0, TEXT_ONLY;
    case_9_3_4: TEXT, 4 * MIB, 4 << 10, 0, TEXT_ONLY;
    case_9_3_5: TEXT, 4 * MIB, 16 << 10, 0, TEXT_ONLY;
    case_9_3_6: TEXT, 4 * MIB, 64 << 10, 0, TEXT_ONLY;
    case_9_3_7: TEXT, 4 * MIB, 256 << 10, 0, TEXT_ONLY;
    case_9_3_8: TEXT, 4 * MIB, MIB, 0, TEXT_ONLY;
    case_9_3_9: TEXT, 4 * MIB, 4 * MIB, 0, TEXT_ONLY;
    // 9.4: the same as binary.
    case_9_4_1: BINARY, 4 * MIB, 64, 0, BINARY_OR_SIZE;
    case_9_4_2: BINARY, 4 * MIB, 256, 0, BINARY_OR_SIZE;
    case_9_4_3: BINARY, 4 * MIB, 1 << 10, 0, BINARY_OR_SIZE;
    case_9_4_4: BINARY, 4 * MIB, 4 << 10, 0, BINARY_OR_SIZE;
    case_9_4_5: BINARY, 4 * MIB, 16 << 10, 0, BINARY_OR_SIZE;
    case_9_4_6: BINARY, 4 * MIB, 64 << 10, 0, BINARY_OR_SIZE;
    case_9_4_7: BINARY, 4 * MIB, 256 << 10, 0, BINARY_OR_SIZE;
    case_9_4_8: BINARY, 4 * MIB, MIB, 0, BINARY_OR_SIZE;
    case_9_4_9: BINARY, 4 * MIB, 4 * MIB, 0, BINARY_OR_SIZE;
    // 9.5: one 1 MiB text frame sent in chops of 64, 128, 256, 512, 1024
    // and 2048 octets: the header and the first chop.
    case_9_5_1: TEXT, MIB, usize::MAX, 64, TEXT_ONLY;
    case_9_5_2: TEXT, MIB, usize::MAX, 128, TEXT_ONLY;
    case_9_5_3: TEXT, MIB, usize::MAX, 256, TEXT_ONLY;
    case_9_5_4: TEXT, MIB, usize::MAX, 512, TEXT_ONLY;
    case_9_5_5: TEXT, MIB, usize::MAX, 1024, TEXT_ONLY;
    case_9_5_6: TEXT, MIB, usize::MAX, 2048, TEXT_ONLY;
    // 9.6: the same as binary.
    case_9_6_1: BINARY, MIB, usize::MAX, 64, BINARY_OR_SIZE;
    case_9_6_2: BINARY, MIB, usize::MAX, 128, BINARY_OR_SIZE;
    case_9_6_3: BINARY, MIB, usize::MAX, 256, BINARY_OR_SIZE;
    case_9_6_4: BINARY, MIB, usize::MAX, 512, BINARY_OR_SIZE;
    case_9_6_5: BINARY, MIB, usize::MAX, 1024, BINARY_OR_SIZE;
    case_9_6_6: BINARY, MIB, usize::MAX, 2048, BINARY_OR_SIZE;
}

/// 9.7: 1000 text messages of `len` octets, each sent once the previous
/// one was answered. Messages shorter than a probe (9.7.1: 0, 9.7.2: 16
/// octets) are the shortest probe.
async fn round_trips(len: usize) {
    let (_h, mut ws) = open().await;
    for i in 0..1000 {
        let tag = i.to_string();
        let p = probe(&tag);
        let msg = if p.len() >= len {
            p
        } else {
            probe_of_len(&tag, len)
        };
        ws.send(Frame::text(msg));
        ws.expect_reply(&tag).await;
    }
    ws.close_normally().await;
}

/// 9.8: the first of 1000 binary messages of `len` octets fails the
/// connection with 1003.
async fn binary_round_trips(len: usize) {
    let (_h, mut ws) = open().await;
    ws.send(Frame::binary(vec![0xfe; len]));
    ws.expect_fail(UNSUPPORTED_DATA).await;
}

#[tokio::test]
async fn case_9_7_1() {
    round_trips(0).await;
}

#[tokio::test]
async fn case_9_7_2() {
    round_trips(16).await;
}

#[tokio::test]
async fn case_9_7_3() {
    round_trips(64).await;
}

#[tokio::test]
async fn case_9_7_4() {
    round_trips(256).await;
}

#[tokio::test]
async fn case_9_7_5() {
    round_trips(1024).await;
}

#[tokio::test]
async fn case_9_7_6() {
    round_trips(4096).await;
}

#[tokio::test]
async fn case_9_8_1() {
    binary_round_trips(0).await;
}

#[tokio::test]
async fn case_9_8_2() {
    binary_round_trips(16).await;
}

#[tokio::test]
async fn case_9_8_3() {
    binary_round_trips(64).await;
}

#[tokio::test]
async fn case_9_8_4() {
    binary_round_trips(256).await;
}

#[tokio::test]
async fn case_9_8_5() {
    binary_round_trips(1024).await;
}

#[tokio::test]
async fn case_9_8_6() {
    binary_round_trips(4096).await;
}

#[tokio::test]
async fn message_of_16384_octets_is_delivered() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe_of_len("cap", CAP)));
    ws.expect_reply("cap").await;
    ws.close_normally().await;
}

/// One octet over the cap, sent whole: 4008.
#[tokio::test]
async fn message_of_16385_octets_is_refused() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe_of_len("cap+1", CAP + 1)));
    ws.expect_fail(TOO_LARGE).await;
}

/// A 16384-octet message in fragments of `frag` octets is delivered.
async fn cap_in_fragments(frag: usize) {
    let (_h, mut ws) = open().await;
    let msg = probe_of_len("fragmented cap", CAP);
    ws.send_all(&fragments(
        &msg.chunks(frag).map(<[u8]>::to_vec).collect::<Vec<_>>(),
    ));
    ws.expect_reply("fragmented cap").await;
    ws.close_normally().await;
}

#[tokio::test]
async fn message_of_16384_octets_in_64_octet_fragments_is_delivered() {
    cap_in_fragments(64).await;
}

#[tokio::test]
async fn message_of_16384_octets_in_256_octet_fragments_is_delivered() {
    cap_in_fragments(256).await;
}

#[tokio::test]
async fn message_of_16384_octets_in_1_kib_fragments_is_delivered() {
    cap_in_fragments(1 << 10).await;
}

#[tokio::test]
async fn message_of_16384_octets_in_4_kib_fragments_is_delivered() {
    cap_in_fragments(4 << 10).await;
}

/// Four 4 KiB fragments and then one more octet: the whole message is
/// over the cap (the limit applies to the message, not the frame).
#[tokio::test]
async fn fragments_adding_up_to_16385_octets_are_refused() {
    let (_h, mut ws) = open().await;
    let msg = probe_of_len("cap+1", CAP + 1);
    ws.send_all(&fragments(
        &msg.chunks(4 << 10).map(<[u8]>::to_vec).collect::<Vec<_>>(),
    ));
    ws.expect_fail(TOO_LARGE).await;
}

/// 1000 messages in one write: every one answered, in order.
#[tokio::test]
async fn burst_of_1000_messages_is_all_answered() {
    let (_h, mut ws) = open().await;
    let frames: Vec<Frame> = (0..1000)
        .map(|i| Frame::text(probe(format!("burst-{i}"))))
        .collect();
    ws.send_all(&frames);
    for i in 0..1000 {
        ws.expect_reply(format!("burst-{i}")).await;
    }
    ws.close_normally().await;
}
