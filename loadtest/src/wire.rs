//! A deliberately small WebSocket client, written for the load generator
//! rather than borrowed from the hub's stack: it pipelines the upgrade
//! request and `hello` in one write, sends pre-built frames, and parses only
//! what the scenarios read. That keeps the generator cheap enough to share
//! two cores with the hub it measures, and independent of the hub's code.
//!
//! Client frames are masked (RFC 6455 §5.3) with an all-zero key, which is a
//! valid key and leaves the payload bytes unchanged, so a frame can be built
//! once and sent by every tab.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// A text frame as a client sends it: FIN + text opcode, the mask bit, the
/// length, a zero masking key, the payload.
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x81);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The answer to a ping: a pong with its payload, masked.
pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    let n = payload.len().min(125);
    let mut f = vec![0x8A, 0x80 | n as u8, 0, 0, 0, 0];
    f.extend_from_slice(&payload[..n]);
    f
}

/// A close frame with status 1000, masked like every client frame.
pub fn close_frame() -> Vec<u8> {
    vec![0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]
}

/// The hub closed the connection with this code (carried inside an
/// `io::Error`; see [`close_code`]).
#[derive(Debug)]
pub struct Closed(pub u16);

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "closed by the hub with {}", self.0)
    }
}

impl std::error::Error for Closed {}

/// The close code, if the hub ended the connection with a close frame.
pub fn close_code(e: &io::Error) -> Option<u16> {
    e.get_ref()?.downcast_ref::<Closed>().map(|c| c.0)
}

/// One frame from the hub.
#[derive(Debug)]
pub enum Frame {
    Text(Vec<u8>),
    Close(u16),
    /// A ping, with its payload, already answered by the reader (as a
    /// browser does), so a tab that only reads is kept by the hub.
    Ping(Vec<u8>),
    /// Pong or binary: nothing a scenario reads.
    Other,
}

/// Reads frames from the hub's side of a connection.
pub struct Reader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
}

impl Reader {
    /// The next whole frame, or `None` at end of stream.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = parse(&self.buf[self.start..])? {
                if let Frame::Ping(p) = &frame {
                    self.pong(p);
                }
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Ok(Some(frame));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let n = self.rd.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// Answers a ping from the reading side, with one non-blocking write on
    /// the socket the writer half also uses: the scenarios' frames are
    /// small and each goes out in one write, so the pong cannot land inside
    /// one of them; if the socket is full the pong is skipped and the next
    /// ping is answered. Every scenario's tabs are then kept by the hub,
    /// whichever task holds their writer.
    fn pong(&self, payload: &[u8]) {
        let _ = self.rd.as_ref().try_write(&pong_frame(payload));
    }

    /// The next text frame; a close or the end of the stream is an error
    /// naming the close code.
    pub async fn text(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.next().await? {
                Some(Frame::Text(t)) => return Ok(t),
                Some(Frame::Close(code)) => return Err(io::Error::other(Closed(code))),
                Some(Frame::Ping(_) | Frame::Other) => {}
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }
}

/// Parses one server frame (unmasked, unfragmented: the hub sends whole
/// text frames) from the front of `b`.
fn parse(b: &[u8]) -> io::Result<Option<(Frame, usize)>> {
    if b.len() < 2 {
        return Ok(None);
    }
    let opcode = b[0] & 0x0f;
    if b[1] & 0x80 != 0 {
        return Err(io::Error::other("the hub sent a masked frame"));
    }
    let (len, head) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (
            u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
            10,
        ),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if b.len() < head + len {
        return Ok(None);
    }
    let payload = &b[head..head + len];
    let frame = match opcode {
        0x1 => Frame::Text(payload.to_vec()),
        0x8 => Frame::Close(if len >= 2 {
            u16::from_be_bytes([payload[0], payload[1]])
        } else {
            1005
        }),
        0x9 => Frame::Ping(payload.to_vec()),
        _ => Frame::Other,
    };
    Ok(Some((frame, head + len)))
}

/// A connected, authenticated tab.
pub struct Tab {
    pub reader: Reader,
    pub writer: OwnedWriteHalf,
    /// The `welcome` frame's text.
    pub welcome: Vec<u8>,
}

/// Connects from `source`, upgrades, sends `hello` in the same write as the
/// upgrade request, and waits for `welcome`.
pub async fn open(hub: SocketAddr, source: IpAddr, hello: &[u8]) -> io::Result<Tab> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(hub).await?;
    open_on(stream, hub, hello).await
}

async fn open_on(stream: TcpStream, hub: SocketAddr, hello: &[u8]) -> io::Result<Tab> {
    stream.set_nodelay(true)?;
    let (rd, mut writer) = stream.into_split();
    let mut req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {hub}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(&text_frame(hello));
    writer.write_all(&req).await?;
    let mut reader = Reader {
        rd,
        buf: Vec::with_capacity(2048),
        start: 0,
    };
    // The response head, then frames.
    let end = loop {
        if let Some(i) = reader.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if reader.buf.len() > 8192 {
            return Err(io::Error::other("response head too long"));
        }
        reader.buf.reserve(2048);
        if reader.rd.read_buf(&mut reader.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    };
    if !reader.buf.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&reader.buf[..end]);
        let line = head.lines().next().unwrap_or_default().to_owned();
        return Err(io::Error::other(format!("upgrade refused: {line}")));
    }
    reader.start = end;
    let welcome = reader.text().await?;
    if !welcome.starts_with(br#"{"type":"welcome""#) {
        return Err(io::Error::other(format!(
            "expected welcome, got {}",
            String::from_utf8_lossy(&welcome)
        )));
    }
    Ok(Tab {
        reader,
        writer,
        welcome,
    })
}

/// How a held tab ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The hub sent a close frame with this code.
    Closed(u16),
    /// The connection ended without one (reset, end of stream, failed write).
    Dropped,
}

/// Keeps a tab open on as little memory as it can: no read buffer while
/// idle (a few bytes kept only when a frame arrived split), pings answered,
/// everything else dropped. When `go` fires, `frame` is written once (a
/// user who interacts once, then goes idle). Ends when the hub closes the
/// tab (saying how) or the task is aborted.
pub async fn hold_lean(
    tab: Tab,
    go: Option<tokio::sync::watch::Receiver<bool>>,
    frame: &'static [u8],
) -> Ended {
    let Tab {
        reader, mut writer, ..
    } = tab;
    let Reader { mut rd, buf, start } = reader;
    let mut pending: Vec<u8> = buf[start..].to_vec();
    drop(buf);
    let mut go = go;
    loop {
        let mut chunk = [0u8; 256];
        let n = tokio::select! {
            r = rd.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return Ended::Dropped,
                Ok(n) => n,
            },
            changed = async {
                match go.as_mut() {
                    Some(g) => g.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if changed.is_ok() && writer.write_all(frame).await.is_err() {
                    return Ended::Dropped;
                }
                go = None;
                continue;
            }
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Ok(Some((f, len))) = parse(&pending[used..]) {
            used += len;
            match f {
                Frame::Ping(p) if writer.write_all(&pong_frame(&p)).await.is_err() => {
                    return Ended::Dropped
                }
                Frame::Close(code) => return Ended::Closed(code),
                _ => {}
            }
        }
        if used == pending.len() {
            pending = Vec::new();
        } else {
            pending.drain(..used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_parser_once_unmasked() {
        for n in [0usize, 5, 125, 126, 300, 70_000] {
            let payload = vec![b'x'; n];
            let f = text_frame(&payload);
            // The server's view: the same frame without mask bit and key.
            let mut server = vec![f[0], f[1] & 0x7f];
            let head = match n {
                n if n < 126 => 2,
                n if n <= u16::MAX as usize => 4,
                _ => 10,
            };
            server.extend_from_slice(&f[2..head]);
            server.extend_from_slice(&f[head + 4..]);
            let (frame, used) = parse(&server).unwrap().unwrap();
            assert_eq!(used, server.len());
            assert!(matches!(frame, Frame::Text(t) if t == payload));
            assert!(parse(&server[..server.len() - 1]).unwrap().is_none() || n == 0);
        }
    }

    #[test]
    fn pings_are_read_with_their_payload_and_pongs_echo_it() {
        let (frame, used) = parse(&[0x89, 2, b'h', b'i', 0x81]).unwrap().unwrap();
        assert_eq!(used, 4);
        assert!(matches!(frame, Frame::Ping(p) if p == b"hi"));
        assert_eq!(pong_frame(b"hi"), vec![0x8A, 0x82, 0, 0, 0, 0, b'h', b'i']);
    }

    #[test]
    fn a_close_code_survives_inside_an_io_error() {
        let e = io::Error::other(Closed(4008));
        assert_eq!(close_code(&e), Some(4008));
        assert_eq!(e.to_string(), "closed by the hub with 4008");
        assert_eq!(close_code(&io::Error::other("other")), None);
    }
}
