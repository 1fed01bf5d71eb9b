//! The server side of RFC 6455 framing, written for this hub's traffic:
//! thousands of mostly idle tabs that send tiny frames, and frames out that
//! are shared by many tabs.
//!
//! A general WebSocket library keeps a read buffer and a write buffer per
//! connection for its whole life (they grow to the largest frame seen and
//! stay there); here an idle connection holds no buffer at all. Reads go
//! through a stack buffer and keep only the bytes of an unfinished frame;
//! writes go straight from the shared frames to the socket (`writev`, many
//! frames per call) and keep only what the socket did not take.
//!
//! Every method is cancel safe, so a session can wait on the socket, its
//! outbox and its timers in one `select!`.

use std::io::{self, IoSlice, Read};

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::outbox::Frame;

/// What a tab sent.
#[derive(Debug)]
pub enum Incoming {
    Text(String),
    Binary,
    /// Answered with a pong already queued.
    Ping,
    Pong,
    Close,
    /// Nothing came in, but the write buffer is now empty: more can be sent.
    Written,
}

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("connection closed")]
    Eof,
    #[error("frame too large")]
    TooLarge,
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One upgraded connection.
pub struct Conn {
    stream: TcpStream,
    /// Bytes of a frame not yet whole (usually empty and unallocated).
    rbuf: Vec<u8>,
    /// A fragmented message being put together: its bytes and whether it is
    /// text.
    partial: Option<(Vec<u8>, bool)>,
    /// Bytes accepted for sending that the socket has not taken yet.
    wbuf: Vec<u8>,
    max_frame: usize,
}

/// Frames written per `writev` call (two slices each, under IOV_MAX).
const FRAMES_PER_WRITE: usize = 256;

fn header(opcode: u8, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | opcode;
    match len {
        n if n < 126 => {
            out[1] = n as u8;
            2
        }
        n if n <= u16::MAX as usize => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            4
        }
        n => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    }
}

fn append_frame(buf: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let mut h = [0u8; 10];
    let n = header(opcode, payload.len(), &mut h);
    buf.extend_from_slice(&h[..n]);
    buf.extend_from_slice(payload);
}

impl Conn {
    /// `read` holds bytes the HTTP layer read past the upgrade request (a
    /// client may send `hello` in the same packet).
    pub fn new(stream: TcpStream, read: &[u8], max_frame: usize) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            rbuf: read.to_vec(),
            partial: None,
            wbuf: Vec::new(),
            max_frame,
        }
    }

    /// The next message; meanwhile, what waits in the write buffer is
    /// written, and [`Incoming::Written`] says when it all went. Pings are
    /// answered.
    pub async fn recv(&mut self) -> Result<Incoming, WsError> {
        loop {
            if let Some(m) = self.parse()? {
                return Ok(m);
            }
            if self.wbuf.is_empty() {
                self.stream.readable().await?;
            } else {
                // One readiness future for both directions: it is part of
                // every tab's task, so its size is paid per tab.
                let r = self
                    .stream
                    .ready(Interest::READABLE | Interest::WRITABLE)
                    .await?;
                if r.is_writable() && self.write_some()? {
                    return Ok(Incoming::Written);
                }
                if !r.is_readable() {
                    continue;
                }
            }
            let mut tmp = [0u8; 4096];
            let mut got = 0;
            // A read shorter than the buffer drained the socket: say so
            // (`WouldBlock`) so that tokio clears its readiness now, instead
            // of learning it from a second `recv` per frame. Readiness that
            // arrived meanwhile is kept (tokio compares event ticks).
            let read = self.stream.try_io(Interest::READABLE, || {
                let n = (&*socket2::SockRef::from(&self.stream)).read(&mut tmp)?;
                got = n;
                if n > 0 && n < tmp.len() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match read {
                Ok(0) => return Err(WsError::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            self.rbuf.extend_from_slice(&tmp[..got]);
        }
    }

    /// Takes whole frames off the front of the read buffer until one
    /// completes a message.
    fn parse(&mut self) -> Result<Option<Incoming>, WsError> {
        loop {
            let b = &self.rbuf;
            if b.len() < 2 {
                return Ok(None);
            }
            let (fin, rsv, opcode) = (b[0] & 0x80 != 0, b[0] & 0x70, b[0] & 0x0f);
            if rsv != 0 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            if b[1] & 0x80 == 0 {
                return Err(WsError::Protocol("unmasked client frame"));
            }
            let (len, head) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
                    10,
                ),
                126 | 127 => return Ok(None),
                n => (n as u64, 2),
            };
            let control = opcode & 0x08 != 0;
            if control && (len > 125 || !fin) {
                return Err(WsError::Protocol("bad control frame"));
            }
            let sofar = self.partial.as_ref().map_or(0, |(p, _)| p.len() as u64);
            if len + sofar > self.max_frame as u64 {
                return Err(WsError::TooLarge);
            }
            let len = len as usize;
            let total = head + 4 + len;
            if b.len() < total {
                return Ok(None);
            }
            let mask = [b[head], b[head + 1], b[head + 2], b[head + 3]];
            let mut payload = b[head + 4..total].to_vec();
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i & 3];
            }
            self.rbuf.drain(..total);
            if self.rbuf.is_empty() {
                // An idle tab keeps no read buffer.
                self.rbuf = Vec::new();
            }
            let done = |bytes: Vec<u8>, text: bool| {
                if !text {
                    return Ok(Some(Incoming::Binary));
                }
                String::from_utf8(bytes)
                    .map(|s| Some(Incoming::Text(s)))
                    .map_err(|_| WsError::Protocol("text frame is not UTF-8"))
            };
            match opcode {
                0x1 | 0x2 => {
                    if self.partial.is_some() {
                        return Err(WsError::Protocol("new message inside a fragmented one"));
                    }
                    if fin {
                        return done(payload, opcode == 0x1);
                    }
                    self.partial = Some((payload, opcode == 0x1));
                }
                0x0 => {
                    let Some((mut bytes, text)) = self.partial.take() else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    bytes.extend_from_slice(&payload);
                    if fin {
                        return done(bytes, text);
                    }
                    self.partial = Some((bytes, text));
                }
                0x8 => return Ok(Some(Incoming::Close)),
                0x9 => {
                    append_frame(&mut self.wbuf, 0xA, &payload);
                    return Ok(Some(Incoming::Ping));
                }
                0xA => return Ok(Some(Incoming::Pong)),
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }

    /// Sends text frames: as many as the socket takes at once go straight
    /// from `frames`; the rest wait in the write buffer for [`Conn::flush`].
    pub fn send(&mut self, frames: &[Frame]) -> io::Result<()> {
        let mut rest = frames;
        while self.wbuf.is_empty() && !rest.is_empty() {
            let chunk = &rest[..rest.len().min(FRAMES_PER_WRITE)];
            let mut heads = [[0u8; 10]; FRAMES_PER_WRITE];
            let mut head_len = [0usize; FRAMES_PER_WRITE];
            for (i, f) in chunk.iter().enumerate() {
                head_len[i] = header(0x1, f.len(), &mut heads[i]);
            }
            let mut slices = Vec::with_capacity(chunk.len() * 2);
            for (i, f) in chunk.iter().enumerate() {
                slices.push(IoSlice::new(&heads[i][..head_len[i]]));
                slices.push(IoSlice::new(f.as_bytes()));
            }
            let total: usize = slices.iter().map(|s| s.len()).sum();
            let written = match self.stream.try_write_vectored(&slices) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            if written < total {
                // Keep the unwritten tail of this chunk, byte exact.
                let mut skip = written;
                for s in &slices {
                    if skip >= s.len() {
                        skip -= s.len();
                    } else {
                        self.wbuf.extend_from_slice(&s[skip..]);
                        skip = 0;
                    }
                }
            }
            rest = &rest[chunk.len()..];
        }
        for f in rest {
            append_frame(&mut self.wbuf, 0x1, f.as_bytes());
        }
        Ok(())
    }

    /// Whether bytes wait for the socket.
    pub fn pending(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes what waits in the write buffer.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            self.stream.writable().await?;
            self.write_some()?;
        }
        Ok(())
    }

    /// Writes what the socket takes now; true once the buffer is empty.
    fn write_some(&mut self) -> io::Result<bool> {
        match self.stream.try_write(&self.wbuf) {
            Ok(n) => {
                self.wbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if self.wbuf.is_empty() {
            // A burst's buffer is given back.
            self.wbuf = Vec::new();
            return Ok(true);
        }
        Ok(false)
    }

    /// Queues a close frame; [`Conn::flush`] sends it.
    pub fn close(&mut self, code: u16, reason: &str) {
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut payload = Vec::with_capacity(2 + cut);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..cut]);
        append_frame(&mut self.wbuf, 0x8, &payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn masked(opcode_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut f = vec![opcode_byte];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        f
    }

    async fn pair(max: usize) -> (Conn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (Conn::new(server, &[], max), client)
    }

    #[tokio::test]
    async fn fragments_are_joined_and_pings_answered_between_them() {
        let (mut conn, mut client) = pair(1024).await;
        let mut bytes = masked(0x01, b"hel");
        bytes.extend(masked(0x89, b"p"));
        bytes.extend(masked(0x80, "lo ✓".as_bytes()));
        client.write_all(&bytes).await.unwrap();
        assert!(matches!(conn.recv().await.unwrap(), Incoming::Ping));
        assert!(matches!(conn.recv().await.unwrap(), Incoming::Text(t) if t == "hello ✓"));
        conn.flush().await.unwrap();
        let mut pong = [0u8; 3];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8A, 1, b'p']);
    }

    #[tokio::test]
    async fn bad_frames_are_refused() {
        for (bytes, want) in [
            (vec![0x81, 0x01, b'x'], "unmasked"),
            (masked(0xC1, b"x"), "reserved"),
            (masked(0x80, b"x"), "continuation"),
            (masked(0x83, b"x"), "opcode"),
            (masked(0x81, &[0xff, 0xfe]), "UTF-8"),
            (masked(0x09, b"x"), "control"),
        ] {
            let (mut conn, mut client) = pair(1024).await;
            client.write_all(&bytes).await.unwrap();
            let e = conn.recv().await.unwrap_err().to_string();
            assert!(e.contains(want), "{e} should mention {want}");
        }
        let (mut conn, mut client) = pair(100).await;
        client.write_all(&masked(0x81, &[b'a'; 101])).await.unwrap();
        assert!(matches!(conn.recv().await, Err(WsError::TooLarge)));
    }

    #[tokio::test]
    async fn a_batch_arrives_whole_even_when_the_socket_takes_it_in_parts() {
        let (mut conn, mut client) = pair(1024).await;
        let big: Frame = Arc::from("z".repeat(300_000));
        let frames: Vec<Frame> = vec![Arc::from("a"), big.clone(), Arc::from("b")];
        conn.send(&frames).unwrap();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        conn.flush().await.unwrap();
        drop(conn);
        let all = reader.await.unwrap();
        let mut want = Vec::new();
        for f in &frames {
            append_frame(&mut want, 0x1, f.as_bytes());
        }
        assert_eq!(all, want);
    }

    use std::sync::Arc;
}
