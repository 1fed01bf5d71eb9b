//! Autobahn section 6, UTF-8 handling: valid text delivered however it is
//! fragmented (on code points or inside them), invalid text failing the
//! connection with 1007, detected as soon as the octets received make the
//! text invalid (6.4, "fail fast"), and the UTF-8 decoder test vectors of
//! Markus Kuhn's UTF-8-test.txt as Autobahn arranges them (6.5–6.23).
//!
//! The case's text is the probe's id: the answer carries it back, so it
//! arrived intact, and fragments end at the same octets of the text as
//! Autobahn's do.

use super::*;

/// "κόσμε", 11 octets of 2- and 3-octet code points.
const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
const HELLO: &str = "Hello-µ@ßöäüàá-UTF-8!!";

/// `message` sent as text frames of one octet each.
fn octet_fragments(message: &[u8]) -> Vec<Frame> {
    fragments(&message.chunks(1).map(<[u8]>::to_vec).collect::<Vec<_>>())
}

/// 6.1.1: an empty text message. Not a command: answered `bad_request`
/// (adapted: Autobahn expects an empty echo).
#[tokio::test]
async fn case_6_1_1() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(b""));
    ws.expect_error("bad_request").await;
    ws.close_normally().await;
}

/// 3 empty fragments: an empty message, answered `bad_request`.
#[tokio::test]
async fn case_6_1_2() {
    let (_h, mut ws) = open().await;
    ws.send_all(&fragments(&[vec![], vec![], vec![]]));
    ws.expect_error("bad_request").await;
    ws.close_normally().await;
}

/// 3 fragments, the first and last empty, the whole probe in the middle.
#[tokio::test]
async fn case_6_1_3() {
    let (_h, mut ws) = open().await;
    let middle = probe("middle frame payload");
    ws.send_all(&fragments(&[vec![], middle, vec![]]));
    ws.expect_reply("middle frame payload").await;
    ws.close_normally().await;
}

/// Valid UTF-8 in one fragment.
#[tokio::test]
async fn case_6_2_1() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe(HELLO)));
    ws.expect_reply(HELLO).await;
    ws.close_normally().await;
}

/// Valid UTF-8 in 2 fragments split on a code point boundary
/// ("Hello-µ@ßöä" | "üàá-UTF-8!!").
#[tokio::test]
async fn case_6_2_2() {
    let (_h, mut ws) = open().await;
    let parts = probe_parts(&["Hello-µ@ßöä".as_bytes(), "üàá-UTF-8!!".as_bytes()]);
    ws.send_all(&fragments(&parts));
    ws.expect_reply(HELLO).await;
    ws.close_normally().await;
}

/// Valid UTF-8 in fragments of 1 octet, most ending inside a code point.
#[tokio::test]
async fn case_6_2_3() {
    let (_h, mut ws) = open().await;
    ws.send_all(&octet_fragments(&probe(HELLO)));
    ws.expect_reply(HELLO).await;
    ws.close_normally().await;
}

/// "κόσμε" in fragments of 1 octet.
#[tokio::test]
async fn case_6_2_4() {
    let (_h, mut ws) = open().await;
    ws.send_all(&octet_fragments(&probe(KOSME)));
    ws.expect_reply(std::str::from_utf8(KOSME).unwrap()).await;
    ws.close_normally().await;
}

/// "κόσμε", a UTF-16 surrogate (ED A0 80, invalid at its 2nd octet), "edited".
const KOSME_SURROGATE: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";

/// Invalid UTF-8 in one fragment.
#[tokio::test]
async fn case_6_3_1() {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe(KOSME_SURROGATE)));
    ws.expect_fail(INVALID_PAYLOAD).await;
}

/// Invalid UTF-8 in fragments of 1 octet.
#[tokio::test]
async fn case_6_3_2() {
    let (_h, mut ws) = open().await;
    ws.send_all(&octet_fragments(&probe(KOSME_SURROGATE)));
    ws.expect_fail(INVALID_PAYLOAD).await;
}

/// How long a valid prefix is left alone to prove the hub does not fail it
/// (Autobahn waits 1 s).
const VALID_PREFIX_WAIT: Duration = Duration::from_millis(500);
/// How soon the octets that make the text invalid must fail it: before the
/// rest of the message is sent (Autobahn's wait).
const FAIL_FAST: Duration = Duration::from_secs(1);

/// Fail fast: the probe with the 3 parts of the case's text in its id, in
/// 3 fragments (`frames`) or 3 chops of one frame. The first (valid) part
/// is accepted; the second makes the text invalid and must be refused
/// with 1007 before the third is sent.
async fn fail_fast(parts: [&[u8]; 3], one_frame: bool) {
    let (_h, mut ws) = open().await;
    let pieces = probe_parts(&parts);
    let chunks: Vec<Vec<u8>> = if one_frame {
        let bytes = Frame::text(pieces.concat()).bytes();
        let head = bytes.len() - pieces.iter().map(Vec::len).sum::<usize>();
        let (a, b) = (
            head + pieces[0].len(),
            head + pieces[0].len() + pieces[1].len(),
        );
        vec![
            bytes[..a].to_vec(),
            bytes[a..b].to_vec(),
            bytes[b..].to_vec(),
        ]
    } else {
        fragments(&pieces).iter().map(Frame::bytes).collect()
    };
    ws.send_raw(&chunks[0]);
    ws.expect_silence(VALID_PREFIX_WAIT).await;
    ws.send_raw(&chunks[1]);
    ws.expect_fail_within(INVALID_PAYLOAD, FAIL_FAST).await;
}

/// "κόσμε" | F4 90 80 80 (U+110000, out of range, invalid at its 2nd
/// octet) | "edited", as 3 fragments.
#[tokio::test]
async fn case_6_4_1() {
    fail_fast([KOSME, b"\xf4\x90\x80\x80", b"edited"], false).await;
}

/// As 6.4.1 cut right after the invalid octet: "κόσμε" F4 | 90 | 80 80
/// "edited", as 3 fragments.
#[tokio::test]
async fn case_6_4_2() {
    fail_fast(
        [
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4",
            b"\x90",
            b"\x80\x80edited",
        ],
        false,
    )
    .await;
}

/// 6.4.1's text in one frame sent in 3 chops: the frame's payload must be
/// checked as it arrives, before the frame is whole.
#[tokio::test]
async fn case_6_4_3() {
    fail_fast([KOSME, b"\xf4\x90\x80\x80", b"edited"], true).await;
}

/// 6.4.2's text in one frame sent in 3 chops.
#[tokio::test]
async fn case_6_4_4() {
    fail_fast(
        [
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4",
            b"\x90",
            b"\x80\x80edited",
        ],
        true,
    )
    .await;
}

/// Valid UTF-8 in one message: delivered, and the id comes back intact.
async fn valid(text: &[u8]) {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe(text)));
    ws.expect_reply(std::str::from_utf8(text).expect("a valid case"))
        .await;
    ws.close_normally().await;
}

/// Invalid UTF-8 in one message: 1007.
async fn invalid(text: &[u8]) {
    let (_h, mut ws) = open().await;
    ws.send(Frame::text(probe(text)));
    ws.expect_fail(INVALID_PAYLOAD).await;
}

/// One test per case: `valid` octets are delivered, `invalid` ones fail
/// the connection with 1007.
macro_rules! utf8_cases {
    ($($name:ident: $kind:ident $text:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            $kind($text).await;
        }
    )*};
}

utf8_cases! {
    // 6.5 Some valid UTF-8 sequences
    case_6_5_1: valid b"hello$world";
    case_6_5_2: valid b"hello\xc2\xa2world";
    case_6_5_3: valid b"hello\xe2\x82\xacworld";
    case_6_5_4: valid b"hello\xf0\xa4\xad\xa2world";
    case_6_5_5: valid b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    // 6.6 All prefixes of a valid UTF-8 string that contains multi-byte code points
    case_6_6_1: invalid b"\xce";
    case_6_6_2: valid b"\xce\xba";
    case_6_6_3: invalid b"\xce\xba\xe1";
    case_6_6_4: invalid b"\xce\xba\xe1\xbd";
    case_6_6_5: valid b"\xce\xba\xe1\xbd\xb9";
    case_6_6_6: invalid b"\xce\xba\xe1\xbd\xb9\xcf";
    case_6_6_7: valid b"\xce\xba\xe1\xbd\xb9\xcf\x83";
    case_6_6_8: invalid b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce";
    case_6_6_9: valid b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc";
    case_6_6_10: invalid b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce";
    case_6_6_11: valid b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    // 6.7 First possible sequence of a certain length
    case_6_7_1: valid b"\x00";
    case_6_7_2: valid b"\xc2\x80";
    case_6_7_3: valid b"\xe0\xa0\x80";
    case_6_7_4: valid b"\xf0\x90\x80\x80";
    // 6.8 First possible sequence length 5/6 (invalid codepoints)
    case_6_8_1: invalid b"\xf8\x88\x80\x80\x80";
    case_6_8_2: invalid b"\xfc\x84\x80\x80\x80\x80";
    // 6.9 Last possible sequence of a certain length
    case_6_9_1: valid b"\x7f";
    case_6_9_2: valid b"\xdf\xbf";
    case_6_9_3: valid b"\xef\xbf\xbf";
    case_6_9_4: valid b"\xf4\x8f\xbf\xbf";
    // 6.10 Last possible sequence length 4/5/6 (invalid codepoints)
    case_6_10_1: invalid b"\xf7\xbf\xbf\xbf";
    case_6_10_2: invalid b"\xfb\xbf\xbf\xbf\xbf";
    case_6_10_3: invalid b"\xfd\xbf\xbf\xbf\xbf\xbf";
    // 6.11 Other boundary conditions
    case_6_11_1: valid b"\xed\x9f\xbf";
    case_6_11_2: valid b"\xee\x80\x80";
    case_6_11_3: valid b"\xef\xbf\xbd";
    case_6_11_4: valid b"\xf4\x8f\xbf\xbf";
    case_6_11_5: invalid b"\xf4\x90\x80\x80";
    // 6.12 Unexpected continuation bytes
    case_6_12_1: invalid b"\x80";
    case_6_12_2: invalid b"\xbf";
    case_6_12_3: invalid b"\x80\xbf";
    case_6_12_4: invalid b"\x80\xbf\x80";
    case_6_12_5: invalid b"\x80\xbf\x80\xbf";
    case_6_12_6: invalid b"\x80\xbf\x80\xbf\x80";
    case_6_12_7: invalid b"\x80\xbf\x80\xbf\x80\xbf";
    case_6_12_8: invalid b"\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf\xb0\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xbb\xbc\xbd\xbe";
    // 6.13 Lonely start characters
    case_6_13_1: invalid b"\xc0 \xc1 \xc2 \xc3 \xc4 \xc5 \xc6 \xc7 \xc8 \xc9 \xca \xcb \xcc \xcd \xce \xcf \xd0 \xd1 \xd2 \xd3 \xd4 \xd5 \xd6 \xd7 \xd8 \xd9 \xda \xdb \xdc \xdd \xde ";
    case_6_13_2: invalid b"\xe0 \xe1 \xe2 \xe3 \xe4 \xe5 \xe6 \xe7 \xe8 \xe9 \xea \xeb \xec \xed \xee ";
    case_6_13_3: invalid b"\xf0 \xf1 \xf2 \xf3 \xf4 \xf5 \xf6 ";
    case_6_13_4: invalid b"\xf8 \xf9 \xfa ";
    case_6_13_5: invalid b"\xfc ";
    // 6.14 Sequences with last continuation byte missing
    case_6_14_1: invalid b"\xc0";
    case_6_14_2: invalid b"\xe0\x80";
    case_6_14_3: invalid b"\xf0\x80\x80";
    case_6_14_4: invalid b"\xf8\x80\x80\x80";
    case_6_14_5: invalid b"\xfc\x80\x80\x80\x80";
    case_6_14_6: invalid b"\xdf";
    case_6_14_7: invalid b"\xef\xbf";
    case_6_14_8: invalid b"\xf7\xbf\xbf";
    case_6_14_9: invalid b"\xfb\xbf\xbf\xbf";
    case_6_14_10: invalid b"\xfd\xbf\xbf\xbf\xbf";
    // 6.15 Concatenation of incomplete sequences
    case_6_15_1: invalid b"\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf";
    // 6.16 Impossible bytes
    case_6_16_1: invalid b"\xfe";
    case_6_16_2: invalid b"\xff";
    case_6_16_3: invalid b"\xfe\xfe\xff\xff";
    // 6.17 Examples of an overlong ASCII character
    case_6_17_1: invalid b"\xc0\xaf";
    case_6_17_2: invalid b"\xe0\x80\xaf";
    case_6_17_3: invalid b"\xf0\x80\x80\xaf";
    case_6_17_4: invalid b"\xf8\x80\x80\x80\xaf";
    case_6_17_5: invalid b"\xfc\x80\x80\x80\x80\xaf";
    // 6.18 Maximum overlong sequences
    case_6_18_1: invalid b"\xc1\xbf";
    case_6_18_2: invalid b"\xe0\x9f\xbf";
    case_6_18_3: invalid b"\xf0\x8f\xbf\xbf";
    case_6_18_4: invalid b"\xf8\x87\xbf\xbf\xbf";
    case_6_18_5: invalid b"\xfc\x83\xbf\xbf\xbf\xbf";
    // 6.19 Overlong representation of the NUL character
    case_6_19_1: invalid b"\xc0\x80";
    case_6_19_2: invalid b"\xe0\x80\x80";
    case_6_19_3: invalid b"\xf0\x80\x80\x80";
    case_6_19_4: invalid b"\xf8\x80\x80\x80\x80";
    case_6_19_5: invalid b"\xfc\x80\x80\x80\x80\x80";
    // 6.20 Single UTF-16 surrogates
    case_6_20_1: invalid b"\xed\xa0\x80";
    case_6_20_2: invalid b"\xed\xad\xbf";
    case_6_20_3: invalid b"\xed\xae\x80";
    case_6_20_4: invalid b"\xed\xaf\xbf";
    case_6_20_5: invalid b"\xed\xb0\x80";
    case_6_20_6: invalid b"\xed\xbe\x80";
    case_6_20_7: invalid b"\xed\xbf\xbf";
    // 6.21 Paired UTF-16 surrogates
    case_6_21_1: invalid b"\xed\xa0\x80\xed\xb0\x80";
    case_6_21_2: invalid b"\xed\xa0\x80\xed\xbf\xbf";
    case_6_21_3: invalid b"\xed\xad\xbf\xed\xb0\x80";
    case_6_21_4: invalid b"\xed\xad\xbf\xed\xbf\xbf";
    case_6_21_5: invalid b"\xed\xae\x80\xed\xb0\x80";
    case_6_21_6: invalid b"\xed\xae\x80\xed\xbf\xbf";
    case_6_21_7: invalid b"\xed\xaf\xbf\xed\xb0\x80";
    case_6_21_8: invalid b"\xed\xaf\xbf\xed\xbf\xbf";
    // 6.22 Non-character code points (valid UTF-8)
    case_6_22_1: valid b"\xef\xbf\xbe";
    case_6_22_2: valid b"\xef\xbf\xbf";
    case_6_22_3: valid b"\xf0\x9f\xbf\xbe";
    case_6_22_4: valid b"\xf0\x9f\xbf\xbf";
    case_6_22_5: valid b"\xf0\xaf\xbf\xbe";
    case_6_22_6: valid b"\xf0\xaf\xbf\xbf";
    case_6_22_7: valid b"\xf0\xbf\xbf\xbe";
    case_6_22_8: valid b"\xf0\xbf\xbf\xbf";
    case_6_22_9: valid b"\xf1\x8f\xbf\xbe";
    case_6_22_10: valid b"\xf1\x8f\xbf\xbf";
    case_6_22_11: valid b"\xf1\x9f\xbf\xbe";
    case_6_22_12: valid b"\xf1\x9f\xbf\xbf";
    case_6_22_13: valid b"\xf1\xaf\xbf\xbe";
    case_6_22_14: valid b"\xf1\xaf\xbf\xbf";
    case_6_22_15: valid b"\xf1\xbf\xbf\xbe";
    case_6_22_16: valid b"\xf1\xbf\xbf\xbf";
    case_6_22_17: valid b"\xf2\x8f\xbf\xbe";
    case_6_22_18: valid b"\xf2\x8f\xbf\xbf";
    case_6_22_19: valid b"\xf2\x9f\xbf\xbe";
    case_6_22_20: valid b"\xf2\x9f\xbf\xbf";
    case_6_22_21: valid b"\xf2\xaf\xbf\xbe";
    case_6_22_22: valid b"\xf2\xaf\xbf\xbf";
    case_6_22_23: valid b"\xf2\xbf\xbf\xbe";
    case_6_22_24: valid b"\xf2\xbf\xbf\xbf";
    case_6_22_25: valid b"\xf3\x8f\xbf\xbe";
    case_6_22_26: valid b"\xf3\x8f\xbf\xbf";
    case_6_22_27: valid b"\xf3\x9f\xbf\xbe";
    case_6_22_28: valid b"\xf3\x9f\xbf\xbf";
    case_6_22_29: valid b"\xf3\xaf\xbf\xbe";
    case_6_22_30: valid b"\xf3\xaf\xbf\xbf";
    case_6_22_31: valid b"\xf3\xbf\xbf\xbe";
    case_6_22_32: valid b"\xf3\xbf\xbf\xbf";
    case_6_22_33: valid b"\xf4\x8f\xbf\xbe";
    case_6_22_34: valid b"\xf4\x8f\xbf\xbf";
    // 6.23 Unicode specials (i.e. replacement char)
    case_6_23_1: valid b"\xef\xbf\xb9";
    case_6_23_2: valid b"\xef\xbf\xba";
    case_6_23_3: valid b"\xef\xbf\xbb";
    case_6_23_4: valid b"\xef\xbf\xbc";
    case_6_23_5: valid b"\xef\xbf\xbd";
    case_6_23_6: valid b"\xef\xbf\xbe";
    case_6_23_7: valid b"\xef\xbf\xbf";
}
