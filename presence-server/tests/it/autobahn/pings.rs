//! Autobahn section 2, pings and pongs: every ping answered with its
//! payload, unsolicited pongs ignored, control frames of more than 125
//! octets refused; plus pings before `hello`, and pings and pongs counted
//! against the tab's frame rate (SPEC §9).

use presence_protocol::close::POLICY_VIOLATION;

use super::*;

/// A ping with `payload`, sent in writes of `chop` octets if given, is
/// answered with a pong carrying the same payload.
async fn pong_for(payload: &[u8], chop: Option<usize>) {
    let (_h, mut ws) = open().await;
    match chop {
        Some(c) => ws.send_chopped(&[Frame::ping(payload)], c),
        None => ws.send(Frame::ping(payload)),
    }
    ws.expect_pong(payload).await;
    ws.close_normally().await;
}

/// 2.1: a ping with no payload.
#[tokio::test]
async fn case_2_1() {
    pong_for(b"", None).await;
}

#[tokio::test]
async fn case_2_2() {
    pong_for(b"Hello, world!", None).await;
}

/// A ping with a small binary, not UTF-8, payload.
#[tokio::test]
async fn case_2_3() {
    pong_for(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", None).await;
}

/// A ping with 125 octets, the most a control frame may carry.
#[tokio::test]
async fn case_2_4() {
    pong_for(&[0xfe; 125], None).await;
}

/// A ping with 126 octets: a protocol error.
#[tokio::test]
async fn case_2_5() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::ping([0xfe; 126]));
    ws.expect_fail(PROTOCOL_ERROR).await;
}

/// A ping with 125 octets, sent octet by octet.
#[tokio::test]
async fn case_2_6() {
    pong_for(&[0xfe; 125], Some(1)).await;
}

/// An unsolicited pong with no payload: nothing in reply.
#[tokio::test]
async fn case_2_7() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::pong(b""));
    ws.close_normally().await;
}

/// An unsolicited pong with a payload: nothing in reply.
#[tokio::test]
async fn case_2_8() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::pong(b"unsolicited pong payload"));
    ws.close_normally().await;
}

/// An unsolicited pong, then a ping: only the ping is answered.
#[tokio::test]
async fn case_2_9() {
    let (_h, mut ws) = open().await;
    ws.send_all(&[
        Frame::pong(b"unsolicited pong payload"),
        Frame::ping(b"ping payload"),
    ]);
    ws.expect_pong(b"ping payload").await;
    ws.close_normally().await;
}

/// Ten pings `payload-0`..`payload-9` back to back, in writes of `chop`
/// octets if given: ten pongs, in order. RFC 6455 §5.5.3 would allow
/// answering only the last, but Autobahn's expected outcome for 2.10 and
/// 2.11 lists all ten, and this suite follows it.
async fn ten_pings(chop: Option<usize>) {
    let (_h, mut ws) = open().await;
    let pings: Vec<Frame> = (0..10)
        .map(|i| Frame::ping(format!("payload-{i}")))
        .collect();
    match chop {
        Some(c) => ws.send_chopped(&pings, c),
        None => ws.send_all(&pings),
    }
    for i in 0..10 {
        ws.expect_pong(format!("payload-{i}")).await;
    }
    ws.close_normally().await;
}

#[tokio::test]
async fn case_2_10() {
    ten_pings(None).await;
}

/// 2.10 sent octet by octet.
#[tokio::test]
async fn case_2_11() {
    ten_pings(Some(1)).await;
}

/// A ping before `hello` is answered, and `hello` still works after it.
#[tokio::test]
async fn ping_before_hello_is_answered() {
    let h = hub_with(suite_config()).await;
    let mut ws = Raw::connect(h.addr, &[]).await;
    ws.send(Frame::ping(b"early"));
    ws.expect_pong(b"early").await;
    ws.hello().await;
    ws.close_normally().await;
}

/// A hub that allows 1 frame/s with bursts of 5: 30 control frames of
/// `opcode` at once exhaust the bucket and the strikes, and the tab is
/// closed with 4008. What comes before the close may be pongs (at most 5)
/// and `rate_limited` errors, nothing else.
async fn control_frames_are_rate_limited(opcode: u8) {
    let config = Config {
        rate_per_sec: 1,
        rate_burst: 5,
        ..suite_config()
    };
    let h = hub_with(config).await;
    let mut ws = Raw::connect(h.addr, &[]).await;
    ws.hello().await;
    let frames: Vec<Frame> = (0..30)
        .map(|i| Frame::new(opcode, format!("flood-{i}")))
        .collect();
    ws.send_all(&frames);
    let mut pongs = 0;
    loop {
        match ws.next().await {
            Got::Pong(_) => pongs += 1,
            Got::Text(t) if json_of(&t)["code"] == "rate_limited" => {}
            Got::Close(Some(POLICY_VIOLATION), _) => break,
            other => panic!("expected pongs, rate_limited errors, then 4008; got {other:?}"),
        }
    }
    assert!(pongs <= 5, "{pongs} pongs with a burst of 5");
    ws.send(Frame::close(POLICY_VIOLATION, b""));
    ws.expect_eof().await;
}

#[tokio::test]
async fn pings_count_against_the_frame_rate() {
    control_frames_are_rate_limited(PING).await;
}

#[tokio::test]
async fn pongs_count_against_the_frame_rate() {
    control_frames_are_rate_limited(PONG).await;
}
