//! Autobahn section 1, framing: text and binary messages of every length
//! encoding (7-bit, 16-bit, 64-bit), plus the framing rules of RFC 6455
//! §5.2 that Autobahn does not exercise (masking, minimal lengths, the
//! 64-bit length's top bit).

use super::*;

/// A text message of `len` octets is delivered, then the clean close.
async fn text_delivered(len: usize, tag: &str) {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe_of_len(tag, len)));
    ws.expect_reply(tag).await;
    ws.close_normally().await;
}

/// A text message of `len` octets ('*'), sent in writes of `chop` octets,
/// is over the cap: 4008, whatever the client is still sending.
async fn text_too_large(len: usize, chop: Option<usize>) {
    let (_h, mut ws) = open().await;
    let f = Frame::text(vec![b'*'; len]);
    match chop {
        Some(c) => ws.send_chopped(&[f], c),
        None => ws.send(f),
    }
    ws.expect_fail(TOO_LARGE).await;
}

/// A binary message of `len` octets of 0xfe is refused with `codes`.
async fn binary_refused(len: usize, chop: Option<usize>, codes: &[u16]) {
    let (_h, mut ws) = open().await;
    let f = Frame::binary(vec![0xfe; len]);
    match chop {
        Some(c) => ws.send_chopped(&[f], c),
        None => ws.send(f),
    }
    ws.expect_fail_any(codes).await;
}

/// 1.1.1: an empty text message. Not a command, so the hub's answer is
/// `bad_request` (adapted: Autobahn expects an empty echo).
#[tokio::test]
async fn case_1_1_1() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(b""));
    ws.expect_error("bad_request").await;
    ws.close_normally().await;
}

#[tokio::test]
async fn case_1_1_2() {
    text_delivered(125, "1.1.2").await;
}

/// 126 octets: the first length that needs the 16-bit encoding.
#[tokio::test]
async fn case_1_1_3() {
    text_delivered(126, "1.1.3").await;
}

#[tokio::test]
async fn case_1_1_4() {
    text_delivered(127, "1.1.4").await;
}

#[tokio::test]
async fn case_1_1_5() {
    text_delivered(128, "1.1.5").await;
}

/// 65535 octets: over the 16 KiB cap (adapted: 4008, not an echo).
#[tokio::test]
async fn case_1_1_6() {
    text_too_large(65_535, None).await;
}

/// 65536 octets, the 64-bit encoding: over the cap, 4008.
#[tokio::test]
async fn case_1_1_7() {
    text_too_large(65_536, None).await;
}

/// 65536 octets sent in chops of 997: over the cap, 4008.
#[tokio::test]
async fn case_1_1_8() {
    text_too_large(65_536, Some(997)).await;
}

/// 1.2.1–1.2.5: binary messages of 0, 125, 126, 127 and 128 octets:
/// 1003, the hub takes only text (adapted: Autobahn expects an echo).
#[tokio::test]
async fn case_1_2_1() {
    binary_refused(0, None, &[UNSUPPORTED_DATA]).await;
}

#[tokio::test]
async fn case_1_2_2() {
    binary_refused(125, None, &[UNSUPPORTED_DATA]).await;
}

#[tokio::test]
async fn case_1_2_3() {
    binary_refused(126, None, &[UNSUPPORTED_DATA]).await;
}

#[tokio::test]
async fn case_1_2_4() {
    binary_refused(127, None, &[UNSUPPORTED_DATA]).await;
}

#[tokio::test]
async fn case_1_2_5() {
    binary_refused(128, None, &[UNSUPPORTED_DATA]).await;
}

/// 1.2.6–1.2.8: binary and over the cap (65535, 65536, 65536 in chops of
/// 997): refused as binary (1003) or as too large (4008).
#[tokio::test]
async fn case_1_2_6() {
    binary_refused(65_535, None, &[UNSUPPORTED_DATA, TOO_LARGE]).await;
}

#[tokio::test]
async fn case_1_2_7() {
    binary_refused(65_536, None, &[UNSUPPORTED_DATA, TOO_LARGE]).await;
}

#[tokio::test]
async fn case_1_2_8() {
    binary_refused(65_536, Some(997), &[UNSUPPORTED_DATA, TOO_LARGE]).await;
}

/// RFC 6455 §5.1: a client frame must be masked.
#[tokio::test]
async fn unmasked_client_frame_is_a_protocol_error() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe("unmasked")).unmasked());
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// RFC 6455 §5.2: the minimal number of octets must encode the length;
/// 126 (16 bits) for a 60-octet payload is refused.
#[tokio::test]
async fn length_16_bits_for_a_short_payload_is_a_protocol_error() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe("wide16")).wide16());
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// 127 (64 bits) for a 200-octet payload is refused.
#[tokio::test]
async fn length_64_bits_for_a_medium_payload_is_a_protocol_error() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe_of_len("wide64", 200)).wide64());
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
/// Only the header is sent.
#[tokio::test]
async fn length_with_the_top_bit_set_is_a_protocol_error() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(b"").declared((1 << 63) | 5));
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A 3-octet text fragment, then a continuation announcing 2^64−3 octets
/// (their sum wraps a u64) with a few octets of it: refused for the top
/// bit, and the tab is cleaned up.
#[tokio::test]
async fn continuation_whose_length_wraps_is_a_protocol_error() {
    let (h, mut ws) = open().await;
    ws.send_all(&[
        Frame::text(b"{\"t").fin(false),
        Frame::cont(b"abcd").declared(u64::MAX - 2),
    ]);
    ws.expect_fail(PROTOCOL_ERROR).await;
    no_tab_left(&h).await;
}
