//! Autobahn section 7, close handling: a valid client close is echoed
//! with its code and then the hub closes TCP; nothing sent after a close
//! is processed; a close frame that is malformed (1 octet, more than 125,
//! a reason that is not UTF-8) or carries a code that may not be sent
//! fails the connection (1002, 1007). Plus the hub's side: it lingers for
//! the client's close, discarding input, so its close frame is never lost
//! to a reset.

use super::*;

/// 7.1.1: a message (answered), then a close 1000: echoed.
#[tokio::test]
async fn case_7_1_1() {
    let (_h, mut ws) = open().await;
    ws.send_all(&[
        Frame::text(probe("Hello World!")),
        Frame::close(NORMAL, b""),
    ]);
    ws.expect_reply("Hello World!").await;
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// Two close frames: one echo; the second close is ignored.
#[tokio::test]
async fn case_7_1_2() {
    let (_h, mut ws) = open().await;
    ws.send_all(&[Frame::close(NORMAL, b""), Frame::new(CLOSE, b"")]);
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// A close, then a ping: no pong.
#[tokio::test]
async fn case_7_1_3() {
    let (_h, mut ws) = open().await;
    ws.send_all(&[Frame::close(NORMAL, b""), Frame::ping(b"")]);
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// A close, then a message: not answered.
#[tokio::test]
async fn case_7_1_4() {
    let (_h, mut ws) = open().await;
    ws.send_all(&[
        Frame::close(NORMAL, b""),
        Frame::text(probe("Hello World!")),
    ]);
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// The first fragment of a message, a close, then the last fragment: the
/// close is echoed and the message never completes.
#[tokio::test]
async fn case_7_1_5() {
    let (_h, mut ws) = open().await;
    let mut frames = fragments(&probe_parts(&[b"fragment1", b"fragment2"]));
    frames.insert(1, Frame::close(NORMAL, b""));
    ws.send_all(&frames);
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// A 256 KiB text message, a small message, a close and a ping, back to
/// back. Adapted: the first message is over the cap, so the hub closes
/// with 4008 from its header, while the rest is still coming, and nothing
/// after it is processed. (Our close is already out: none is sent back.)
#[tokio::test]
async fn case_7_1_6() {
    let (_h, mut ws) = open().await;
    let big: Vec<u8> = b"BAsd7&jh23"
        .iter()
        .copied()
        .cycle()
        .take(256 << 10)
        .collect();
    ws.send_all(&[
        Frame::text(big),
        Frame::text(probe("Hello World!")),
        Frame::close(NORMAL, b""),
        Frame::ping(b""),
    ]);
    ws.expect_close_reply(&[Some(TOO_LARGE)]).await;
}

/// 7.1.6 within the cap: a 16 KiB message, a small one, a close and a
/// ping, back to back: both answered, in order, the close echoed, no pong.
#[tokio::test]
async fn case_7_1_6_within_cap() {
    let (_h, mut ws) = open().await;
    ws.send_all(&[
        Frame::text(probe_of_len("16 KiB", CAP)),
        Frame::text(probe("Hello World!")),
        Frame::close(NORMAL, b""),
        Frame::ping(b""),
    ]);
    ws.expect_reply("16 KiB").await;
    ws.expect_reply("Hello World!").await;
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// 7.3.1: a close with no payload: answered with an empty close or 1000.
#[tokio::test]
async fn case_7_3_1() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::new(CLOSE, b""));
    ws.expect_close_reply(&[None, Some(NORMAL)]).await;
}

/// A close with a 1-octet payload: 1002.
#[tokio::test]
async fn case_7_3_2() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::new(CLOSE, b"*"));
    ws.expect_close_reply(&[Some(PROTOCOL_ERROR)]).await;
}

/// A close with just the code 1000.
#[tokio::test]
async fn case_7_3_3() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::close(NORMAL, b""));
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// A close with 1000 and a reason.
#[tokio::test]
async fn case_7_3_4() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::close(NORMAL, b"Hello World!"));
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// A close with 1000 and a reason of 123 octets, the most that fits.
#[tokio::test]
async fn case_7_3_5() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::close(NORMAL, [b'*'; 123]));
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// A close with 1000 and a reason of 124 octets: a 126-octet control
/// frame, 1002.
#[tokio::test]
async fn case_7_3_6() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::close(NORMAL, [b'*'; 124]));
    ws.expect_close_reply(&[Some(PROTOCOL_ERROR)]).await;
}

/// A close with 1000 and a reason that is not UTF-8 ("κόσμε", a
/// surrogate, "edited"): 1007 (Autobahn also accepts 1002).
#[tokio::test]
async fn case_7_5_1() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::close(
        NORMAL,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
    ));
    ws.expect_close_reply(&[Some(INVALID_PAYLOAD)]).await;
}

/// A close with a code a client may send: echoed with that code
/// (Autobahn also accepts 1000).
async fn echoed(code: u16) {
    let (_h, mut ws) = open().await;
    ws.send(Frame::close(code, b""));
    ws.expect_close_reply(&[Some(code)]).await;
}

/// A close with a code no endpoint may send: 1002.
async fn refused(code: u16) {
    let (_h, mut ws) = open().await;
    ws.send(Frame::close(code, b""));
    ws.expect_close_reply(&[Some(PROTOCOL_ERROR)]).await;
}

/// One test per close code: `echoed` or `refused`.
macro_rules! close_codes {
    ($($name:ident: $kind:ident $code:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            $kind($code).await;
        }
    )*};
}

close_codes! {
    // 7.7: valid codes.
    case_7_7_1: echoed 1000;
    case_7_7_2: echoed 1001;
    case_7_7_3: echoed 1002;
    case_7_7_4: echoed 1003;
    case_7_7_5: echoed 1007;
    case_7_7_6: echoed 1008;
    case_7_7_7: echoed 1009;
    case_7_7_8: echoed 1010;
    case_7_7_9: echoed 1011;
    case_7_7_10: echoed 3000;
    case_7_7_11: echoed 3999;
    case_7_7_12: echoed 4000;
    case_7_7_13: echoed 4999;
    // 7.9: invalid codes (reserved, or only for an endpoint to report).
    case_7_9_1: refused 0;
    case_7_9_2: refused 999;
    case_7_9_3: refused 1004;
    case_7_9_4: refused 1005;
    case_7_9_5: refused 1006;
    case_7_9_6: refused 1016;
    case_7_9_7: refused 1100;
    case_7_9_8: refused 2000;
    case_7_9_9: refused 2999;
    // 7.13: codes past the registry (Autobahn: informational).
    case_7_13_1: refused 5000;
    case_7_13_2: refused 65535;
    // Registered codes Autobahn's lists leave out (IANA registry).
    close_code_1012_is_echoed: echoed 1012;
    close_code_1013_is_echoed: echoed 1013;
    close_code_1014_is_echoed: echoed 1014;
    close_code_1015_is_refused: refused 1015;
}

/// A close before `hello` is echoed like any other.
#[tokio::test]
async fn close_before_hello_is_echoed() {
    let h = hub_with(suite_config()).await;
    let mut ws = Raw::connect(h.addr, &[]).await;
    ws.send(Frame::close(NORMAL, b"bye"));
    ws.expect_close_reply(&[Some(NORMAL)]).await;
}

/// When the hub fails a connection it keeps reading, and discards, until
/// the client's close: the client may go on sending for a while (pings,
/// messages: none answered), and the close frame it got is not destroyed
/// by a reset; once the client's close arrives, TCP is closed cleanly.
#[tokio::test]
async fn hub_discards_input_until_the_clients_close() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::new(3, b""));
    match ws.next().await {
        Got::Close(Some(PROTOCOL_ERROR), _) => {}
        other => panic!("expected close 1002, got {other:?}"),
    }
    for i in 0..5 {
        ws.send_all(&[
            Frame::ping(b"late"),
            Frame::text(probe(format!("late-{i}"))),
        ]);
        ws.pause(Duration::from_millis(20));
    }
    ws.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(ws.write_error(), None, "the hub reset the connection");
    ws.send(Frame::close(PROTOCOL_ERROR, b""));
    ws.expect_eof().await;
}

/// A client that never answers the hub's close still sees TCP closed
/// after the hub's linger.
#[tokio::test]
async fn hub_closes_tcp_after_its_linger() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::new(3, b""));
    match ws.next().await {
        Got::Close(Some(PROTOCOL_ERROR), _) => {}
        other => panic!("expected close 1002, got {other:?}"),
    }
    ws.expect_eof().await;
}
