//! The suite's raw WebSocket client: builds any client frame (wrong ones
//! included), sends octets in chosen chops with pauses, and reads the hub's
//! frames exactly as they come, close payloads and TCP's end included.
//! Every read has a deadline, so a hub that hangs fails the case.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, timeout_at, Instant};
use uuid::Uuid;

use super::NORMAL;
use crate::support::token;

pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// How long the hub may take to answer a frame before the case fails.
pub const ANSWER: Duration = Duration::from_secs(3);
/// How long the hub may take to close TCP once the close frames are
/// exchanged, or once it sent its own and lingers (~1 s) for ours.
pub const CLOSE_TCP: Duration = Duration::from_secs(3);
/// Autobahn's `sync = True`: each frame leaves on its own before the next.
const SYNC_PAUSE: Duration = Duration::from_millis(5);

/// A client frame, field by field, so that any field can be wrong.
#[derive(Debug, Clone)]
pub struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: Vec<u8>,
    masked: bool,
    length: Length,
}

#[derive(Debug, Clone, Copy)]
enum Length {
    /// The shortest encoding of the payload's length (RFC 6455 §5.2).
    Minimal,
    /// 126 and 16 bits, whatever the length.
    Wide16,
    /// 127 and 64 bits, whatever the length.
    Wide64,
    /// The header announces this many octets; the payload given follows.
    Declared(u64),
}

impl Frame {
    pub fn new(opcode: u8, payload: impl AsRef<[u8]>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.as_ref().to_vec(),
            masked: true,
            length: Length::Minimal,
        }
    }

    pub fn text(payload: impl AsRef<[u8]>) -> Frame {
        Frame::new(TEXT, payload)
    }

    pub fn binary(payload: impl AsRef<[u8]>) -> Frame {
        Frame::new(BINARY, payload)
    }

    pub fn cont(payload: impl AsRef<[u8]>) -> Frame {
        Frame::new(CONT, payload)
    }

    pub fn ping(payload: impl AsRef<[u8]>) -> Frame {
        Frame::new(PING, payload)
    }

    pub fn pong(payload: impl AsRef<[u8]>) -> Frame {
        Frame::new(PONG, payload)
    }

    /// A close frame with a code and a reason (which may be anything).
    pub fn close(code: u16, reason: impl AsRef<[u8]>) -> Frame {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_ref());
        Frame::new(CLOSE, p)
    }

    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    /// Sets RSV1–3 to the 3 bits of `rsv`.
    pub fn rsv(mut self, rsv: u8) -> Frame {
        self.rsv = rsv;
        self
    }

    pub fn unmasked(mut self) -> Frame {
        self.masked = false;
        self
    }

    pub fn wide16(mut self) -> Frame {
        self.length = Length::Wide16;
        self
    }

    pub fn wide64(mut self) -> Frame {
        self.length = Length::Wide64;
        self
    }

    /// The header announces `len` octets of which only the payload given
    /// is sent (so far).
    pub fn declared(mut self, len: u64) -> Frame {
        self.length = Length::Declared(len);
        self
    }

    /// The octets on the wire, masked with a fresh random key.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out =
            vec![(u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.opcode & 0x0f)];
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let len = match self.length {
            Length::Declared(n) => n,
            _ => self.payload.len() as u64,
        };
        match self.length {
            Length::Wide16 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            Length::Wide64 => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
            Length::Minimal | Length::Declared(_) => match len {
                n if n < 126 => out.push(mask_bit | n as u8),
                n if n <= u64::from(u16::MAX) => {
                    out.push(mask_bit | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(mask_bit | 127);
                    out.extend_from_slice(&n.to_be_bytes());
                }
            },
        }
        if self.masked {
            let key: [u8; 4] = rand::random();
            out.extend_from_slice(&key);
            out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// How the frames of a case leave the client.
#[derive(Debug, Clone, Copy)]
pub enum Chops {
    /// Back to back, in one write.
    One,
    /// Frame by frame (Autobahn's `sync = True`).
    Frames,
    /// Octet by octet (Autobahn's `chopsize = 1`).
    Octets,
}

/// What the hub sent: one whole message, a control frame, or the end.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    /// The code (none for an empty close) and the reason.
    Close(Option<u16>, String),
    /// TCP closed by the hub (FIN).
    Eof,
    /// The connection failed: a reset or another I/O error.
    Reset(String),
    /// Nothing within the time allowed.
    Timeout,
}

/// Something for the writer task to do, in order.
enum Write {
    Bytes(Vec<u8>),
    Pause(Duration),
}

/// A raw WebSocket client over TCP: sends any octets, reads the hub's
/// frames exactly as they come.
///
/// Writes go through a task of their own, so a case can go on reading
/// while the hub refuses a large frame and the client is still sending it.
pub struct Raw {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    tx: mpsc::UnboundedSender<Write>,
    /// The first write that failed; later writes are dropped.
    write_error: Arc<Mutex<Option<String>>>,
    /// The headers of the upgrade response, names in lower case.
    pub headers: Vec<(String, String)>,
}

fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

async fn writer(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Write>,
    error: Arc<Mutex<Option<String>>>,
) {
    while let Some(op) = rx.recv().await {
        match op {
            Write::Bytes(b) => {
                if error.lock().unwrap().is_some() {
                    continue;
                }
                let res = match timeout(ANSWER, w.write_all(&b)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("write stalled: the hub stopped reading".to_owned()),
                };
                if let Err(e) = res {
                    *error.lock().unwrap() = Some(e);
                }
            }
            Write::Pause(d) => sleep(d).await,
        }
    }
}

impl Raw {
    /// Connects and upgrades with extra request headers; panics unless the
    /// hub answers 101 with the right `Sec-WebSocket-Accept`.
    pub async fn connect(addr: SocketAddr, extra: &[(&str, &str)]) -> Raw {
        let stream = timeout(ANSWER, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let mut req = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let (mut rd, mut w) = stream.into_split();
        w.write_all(req.as_bytes()).await.expect("send upgrade");
        let mut buf = Vec::new();
        let deadline = Instant::now() + ANSWER;
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(buf.len() < 16 * 1024, "upgrade response too long");
            let mut tmp = [0u8; 4096];
            let n = timeout_at(deadline, rd.read(&mut tmp))
                .await
                .expect("no upgrade response in time")
                .expect("read upgrade response");
            assert!(n > 0, "connection closed during the upgrade");
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8(buf[..end].to_vec()).expect("response head is text");
        let rest = buf[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default().to_owned();
        assert!(
            status.starts_with("HTTP/1.1 101"),
            "upgrade refused: {head}"
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let accept = headers
            .iter()
            .find(|(k, _)| k == "sec-websocket-accept")
            .map(|(_, v)| v.as_str());
        assert_eq!(accept, Some(accept_for(&key).as_str()), "{head}");
        let (tx, rx) = mpsc::unbounded_channel();
        let write_error = Arc::new(Mutex::new(None));
        tokio::spawn(writer(w, rx, write_error.clone()));
        Raw {
            rd,
            buf: rest,
            tx,
            write_error,
            headers,
        }
    }

    /// Says `hello` as ann of acme and waits for `welcome`.
    pub async fn hello(&mut self) {
        let hello = json!({
            "type": "hello",
            "token": token("acme", "ann"),
            "tab": Uuid::new_v4(),
            "idle_ms": 0,
        });
        self.send(Frame::text(hello.to_string()));
        match self.next().await {
            Got::Text(t) if json_of(&t)["type"] == "welcome" => {}
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    fn queue(&self, w: Write) {
        // The writer ends only when this client is dropped.
        if self.tx.send(w).is_err() {
            panic!("writer task gone");
        }
    }

    /// Sends frames back to back, in one write.
    pub fn send_all(&self, frames: &[Frame]) {
        self.queue(Write::Bytes(frames.iter().flat_map(Frame::bytes).collect()));
    }

    pub fn send(&self, frame: Frame) {
        self.send_all(&[frame]);
    }

    /// Sends frames one by one, each leaving before the next (Autobahn's
    /// `sync = True`: frame-wise chops).
    pub fn send_sync(&self, frames: &[Frame]) {
        for f in frames {
            self.queue(Write::Bytes(f.bytes()));
            self.queue(Write::Pause(SYNC_PAUSE));
        }
    }

    /// Sends the frames' octets in writes of `chop` octets (Autobahn's
    /// `chopsize`).
    pub fn send_chopped(&self, frames: &[Frame], chop: usize) {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::bytes).collect();
        self.send_raw_chopped(&bytes, chop);
    }

    pub fn send_as(&self, frames: &[Frame], how: Chops) {
        match how {
            Chops::One => self.send_all(frames),
            Chops::Frames => self.send_sync(frames),
            Chops::Octets => self.send_chopped(frames, 1),
        }
    }

    /// Sends octets exactly as given.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.queue(Write::Bytes(bytes.to_vec()));
    }

    pub fn send_raw_chopped(&self, bytes: &[u8], chop: usize) {
        for c in bytes.chunks(chop) {
            self.queue(Write::Bytes(c.to_vec()));
            if chop == 1 {
                // Octet-wise: let each octet leave alone.
                self.queue(Write::Pause(Duration::from_micros(200)));
            }
        }
    }

    pub fn pause(&self, d: Duration) {
        self.queue(Write::Pause(d));
    }

    /// Whether a write failed (the hub closed while we were sending).
    pub fn write_error(&self) -> Option<String> {
        self.write_error.lock().unwrap().clone()
    }

    /// Reads more octets before `deadline`.
    async fn fill(&mut self, deadline: Instant) -> Result<(), Got> {
        let mut tmp = [0u8; 16 * 1024];
        match timeout_at(deadline, self.rd.read(&mut tmp)).await {
            Err(_) => Err(Got::Timeout),
            Ok(Ok(0)) => Err(Got::Eof),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(Got::Reset(e.to_string())),
        }
    }

    /// One frame of the hub's, checked against what RFC 6455 allows a
    /// server to send: (fin, opcode, payload).
    async fn frame(&mut self, deadline: Instant) -> Result<(bool, u8, Vec<u8>), Got> {
        loop {
            let b = &self.buf;
            if b.len() >= 2 {
                assert_eq!(b[0] & 0x70, 0, "server frame with reserved bits: {b:02x?}");
                assert_eq!(
                    b[1] & 0x80,
                    0,
                    "server frames must not be masked (RFC 6455 §5.1)"
                );
                let (len, head) = match b[1] & 0x7f {
                    126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
                    127 if b.len() >= 10 => (
                        u64::from_be_bytes(b[2..10].try_into().expect("8 octets")),
                        10,
                    ),
                    126 | 127 => (u64::MAX, 0),
                    n => (u64::from(n), 2),
                };
                if head > 0 {
                    assert!(len < 1 << 24, "server frame of {len} octets");
                    let total = head + len as usize;
                    if b.len() >= total {
                        let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0f);
                        let payload = b[head..total].to_vec();
                        self.buf.drain(..total);
                        return Ok((fin, opcode, payload));
                    }
                }
            }
            self.fill(deadline).await?;
        }
    }

    /// The hub's next message or control frame within `within`; pings from
    /// the hub are answered and skipped.
    pub async fn next_within(&mut self, within: Duration) -> Got {
        let deadline = Instant::now() + within;
        let mut partial: Option<(u8, Vec<u8>)> = None;
        loop {
            let (fin, opcode, payload) = match self.frame(deadline).await {
                Ok(f) => f,
                Err(end) => {
                    assert!(
                        partial.is_none(),
                        "connection ended inside a message: {end:?}"
                    );
                    return end;
                }
            };
            let whole = match opcode {
                CLOSE => {
                    assert!(fin, "fragmented close frame");
                    return close_of(&payload);
                }
                PING => {
                    assert!(fin && payload.len() <= 125, "bad ping from the hub");
                    self.send(Frame::pong(&payload));
                    continue;
                }
                PONG => {
                    assert!(fin && payload.len() <= 125, "bad pong from the hub");
                    return Got::Pong(payload);
                }
                TEXT | BINARY => {
                    assert!(partial.is_none(), "new message inside a fragmented one");
                    partial = Some((opcode, payload));
                    fin
                }
                CONT => {
                    let p = partial
                        .as_mut()
                        .expect("continuation from the hub with no message");
                    p.1.extend_from_slice(&payload);
                    fin
                }
                other => panic!("hub sent opcode {other:#x}"),
            };
            if whole {
                let (opcode, bytes) = partial.take().expect("a message in progress");
                return if opcode == TEXT {
                    Got::Text(String::from_utf8(bytes).expect("hub sent text that is not UTF-8"))
                } else {
                    Got::Binary(bytes)
                };
            }
        }
    }

    pub async fn next(&mut self) -> Got {
        self.next_within(ANSWER).await
    }

    /// The probe tagged `tag` was answered (so the message was delivered).
    pub async fn expect_reply(&mut self, tag: impl AsRef<str>) {
        let tag = tag.as_ref();
        match self.next().await {
            Got::Text(t) => {
                let v = json_of(&t);
                assert!(
                    v["type"] == "error" && v["code"] == "not_found" && v["id"] == tag,
                    "expected the answer to probe {tag:?}, got {t}"
                );
            }
            other => panic!("expected the answer to probe {tag:?}, got {other:?}"),
        }
    }

    /// An `error` frame with this code, and no `id`.
    pub async fn expect_error(&mut self, code: &str) {
        match self.next().await {
            Got::Text(t) => {
                let v = json_of(&t);
                assert!(
                    v["type"] == "error" && v["code"] == code,
                    "expected a {code} error, got {t}"
                );
            }
            other => panic!("expected a {code} error, got {other:?}"),
        }
    }

    pub async fn expect_pong(&mut self, payload: impl AsRef<[u8]>) {
        let want = payload.as_ref();
        match self.next().await {
            Got::Pong(p) if p == want => {}
            other => panic!("expected a pong with {want:02x?}, got {other:?}"),
        }
    }

    /// Nothing arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        match self.next_within(d).await {
            Got::Timeout => {}
            other => panic!("expected nothing for {d:?}, got {other:?}"),
        }
    }

    /// The hub fails the connection: its close frame carries one of
    /// `codes`; we answer with a close frame and the hub closes TCP.
    pub async fn expect_fail_any(&mut self, codes: &[u16]) {
        let code = self.expect_close_code(codes, ANSWER).await;
        self.send(Frame::close(code, b""));
        self.expect_eof().await;
    }

    pub async fn expect_fail(&mut self, code: u16) {
        self.expect_fail_any(&[code]).await;
    }

    /// Like [`Raw::expect_fail`], but the close must arrive within `within`.
    pub async fn expect_fail_within(&mut self, code: u16, within: Duration) {
        self.expect_close_code(&[code], within).await;
        self.send(Frame::close(code, b""));
        self.expect_eof().await;
    }

    /// The hub's answer to a close this client already sent: a close frame
    /// with one of `codes` (`None`: an empty close), then TCP closed. No
    /// close is sent back: ours is already out.
    pub async fn expect_close_reply(&mut self, codes: &[Option<u16>]) {
        match self.next().await {
            Got::Close(code, _) if codes.contains(&code) => {}
            other => panic!("expected a close with {codes:?}, got {other:?}"),
        }
        self.expect_eof().await;
    }

    async fn expect_close_code(&mut self, codes: &[u16], within: Duration) -> u16 {
        match self.next_within(within).await {
            Got::Close(Some(c), _) if codes.contains(&c) => c,
            other => panic!("expected the hub to close with {codes:?}, got {other:?}"),
        }
    }

    /// The hub closes TCP, cleanly, and sends nothing more.
    pub async fn expect_eof(&mut self) {
        match self.next_within(CLOSE_TCP).await {
            Got::Eof => {}
            other => panic!("expected the hub to close TCP (FIN), got {other:?}"),
        }
    }

    /// The clean end of a case: close 1000, echoed, then TCP closed.
    pub async fn close_normally(&mut self) {
        self.send(Frame::close(NORMAL, b""));
        self.expect_close_reply(&[Some(NORMAL)]).await;
    }
}

fn close_of(payload: &[u8]) -> Got {
    match payload {
        [] => Got::Close(None, String::new()),
        [_] => panic!("hub sent a close frame with a 1-octet payload"),
        [a, b, reason @ ..] => Got::Close(
            Some(u16::from_be_bytes([*a, *b])),
            String::from_utf8(reason.to_vec()).expect("hub's close reason is UTF-8"),
        ),
    }
}

pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("hub sent {text:?}, not JSON: {e}"))
}
