//! One upgraded connection: the [`Decoder`] fed from the socket, frames
//! written straight from the shared outbox frames, and the close handshake.
//!
//! Generic over `AsyncRead + AsyncWrite`, so it runs on a `TcpStream` in the
//! hub and on `tokio::io::duplex` in tests. It holds no buffer while idle:
//! each read goes through a stack buffer that exists only inside one poll
//! (not in the task's state, which every tab pays for its whole life), and
//! only the bytes of an unfinished message are kept. Writes go from the
//! shared frames to the socket with one vectored write; what the socket
//! does not take is kept byte exact until it does.
//!
//! Every method is cancel safe, so a session can wait on the socket, its
//! outbox and its timers in one `select!`.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::codec::{self, CloseFrame, Decoder, FrameError, Message};
use super::Frame;

/// What a tab sent, or what the socket did.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    /// A ping and its payload: answer it with [`Conn::pong`] (or not, if
    /// it is over the frame rate).
    Ping(Vec<u8>),
    Pong,
    /// The client's close frame; it must be answered with
    /// [`Conn::answer_close`].
    Close(Option<CloseFrame>),
    /// Nothing came in, but the write buffer is now empty: more can be sent.
    Written,
}

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer closed TCP without a close frame.
    #[error("connection closed")]
    Eof,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Frames written per vectored write (two slices each, under IOV_MAX).
const FRAMES_PER_WRITE: usize = 256;

/// Bytes read per `read` call, on the stack of one poll.
const READ_CHUNK: usize = 4096;

/// How a close handshake the hub started ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lingered {
    /// The client answered with its close frame.
    Answered,
    /// The client closed TCP (or failed it) without answering.
    Dropped,
    /// The linger ran out first.
    TimedOut,
}

pub struct Conn<S> {
    io: S,
    dec: Decoder,
    /// Bytes read past the last message (usually empty and unallocated).
    rbuf: Vec<u8>,
    /// Bytes accepted for sending that the socket has not taken yet.
    wbuf: Vec<u8>,
    /// Pongs are owed only while the write buffer is below this: a peer
    /// that pings without reading cannot grow it.
    pong_room: u32,
    /// The client sent something that is not RFC 6455: what follows cannot
    /// be decoded reliably any more.
    failed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// `read` holds bytes the HTTP layer read past the upgrade request (a
    /// client may send `hello` in the same packet); `max_message` bounds a
    /// client message; `pong_room` bounds what pongs may add to a write
    /// buffer the peer is not draining.
    pub fn new(io: S, read: &[u8], max_message: usize, pong_room: usize) -> Conn<S> {
        Conn {
            io,
            dec: Decoder::new(max_message),
            rbuf: read.to_vec(),
            wbuf: Vec::new(),
            pong_room: u32::try_from(pong_room).unwrap_or(u32::MAX),
            failed: false,
        }
    }

    /// The next message; meanwhile, what waits in the write buffer is
    /// written, and [`Incoming::Written`] says when it all went. Pings are
    /// answered.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read are consumed into the decoder, or kept.
    pub async fn recv(&mut self) -> Result<Incoming, ConnError> {
        if !self.rbuf.is_empty() {
            let mut held = std::mem::take(&mut self.rbuf);
            let (n, r) = self.dec.feed(&held);
            held.drain(..n);
            if !held.is_empty() {
                self.rbuf = held;
            }
            match r {
                Err(e) => {
                    self.failed = true;
                    return Err(e.into());
                }
                Ok(Some(m)) => return Ok(self.incoming(m)),
                Ok(None) => {}
            }
        }
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Incoming, ConnError>> {
        if !self.wbuf.is_empty() {
            match self.poll_write_buf(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(Incoming::Written)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        }
        loop {
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Ready(Ok(())) => {}
            }
            let got = buf.filled();
            if got.is_empty() {
                return Poll::Ready(Err(ConnError::Eof));
            }
            let (n, r) = self.dec.feed(got);
            match r {
                Err(e) => {
                    self.failed = true;
                    return Poll::Ready(Err(e.into()));
                }
                Ok(None) => {}
                Ok(Some(m)) => {
                    self.rbuf.extend_from_slice(&got[n..]);
                    return Poll::Ready(Ok(self.incoming(m)));
                }
            }
        }
    }

    fn incoming(&mut self, m: Message) -> Incoming {
        match m {
            Message::Text(t) => Incoming::Text(t),
            Message::Binary => Incoming::Binary,
            Message::Ping(payload) => Incoming::Ping(payload),
            Message::Pong => Incoming::Pong,
            Message::Close(c) => Incoming::Close(c),
        }
    }

    /// Writes the write buffer until it is empty or the socket is full.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.wbuf.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // A burst's buffer is given back.
        self.wbuf = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// A vectored write of what the socket takes right now, without waiting.
    fn write_now(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        // A waker that does nothing: this is an attempt, not a wait. The
        // next `recv` polls the write side with the task's own waker.
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.io).poll_write_vectored(&mut cx, slices) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(0),
        }
    }

    /// Sends text frames: as many as the socket takes at once go straight
    /// from `frames`; the rest wait in the write buffer, which `recv` and
    /// `flush` write.
    pub fn send(&mut self, frames: &[Frame]) -> io::Result<()> {
        let mut rest = frames;
        while self.wbuf.is_empty() && !rest.is_empty() {
            let chunk = &rest[..rest.len().min(FRAMES_PER_WRITE)];
            let mut heads = [([0u8; 10], 0usize); FRAMES_PER_WRITE];
            for (h, f) in heads.iter_mut().zip(chunk) {
                *h = codec::header(codec::OP_TEXT, f.len());
            }
            let mut slices = Vec::with_capacity(chunk.len() * 2);
            for ((h, n), f) in heads.iter().zip(chunk) {
                slices.push(IoSlice::new(&h[..*n]));
                slices.push(IoSlice::new(f.as_bytes()));
            }
            let total: usize = slices.iter().map(|s| s.len()).sum();
            let written = match self.write_now(&slices) {
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
            codec::encode(codec::OP_TEXT, f.as_bytes(), &mut self.wbuf);
        }
        Ok(())
    }

    /// Queues the pong for a ping; `recv` writes it. RFC 6455 §5.5.3 lets an
    /// endpoint answer only the latest of pings it has not answered yet, so
    /// a pong is skipped when the peer has left `pong_room` bytes unread: a
    /// peer that pings without reading cannot grow the write buffer.
    pub fn pong(&mut self, payload: &[u8]) {
        if self.wbuf.len() < self.pong_room as usize {
            codec::encode(codec::OP_PONG, payload, &mut self.wbuf);
        }
    }

    /// Queues a ping; `recv` writes it.
    pub fn ping(&mut self, payload: &[u8]) {
        codec::encode(
            codec::OP_PING,
            &payload[..payload.len().min(125)],
            &mut self.wbuf,
        );
    }

    /// Whether bytes wait for the socket.
    pub fn pending(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes what waits in the write buffer.
    ///
    /// # Cancel safety
    /// Cancel safe: what was written is gone from the buffer, the rest stays.
    pub async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_buf(cx)).await
    }

    /// Answers the client's close frame by echoing its code (an empty close
    /// with an empty one), then closes TCP. The client sent its close, so
    /// nothing more is in flight and no reset can destroy the answer; a
    /// peer that does not take it within `linger` is dropped.
    pub async fn answer_close(&mut self, theirs: Option<&CloseFrame>, linger: Duration) {
        let payload = theirs.map_or_else(Vec::new, |c| codec::close_payload(c.code, ""));
        codec::encode(codec::OP_CLOSE, &payload, &mut self.wbuf);
        let _ = tokio::time::timeout(linger, async {
            self.flush().await?;
            poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await
        })
        .await;
    }

    /// The hub closes: sends the close frame, then reads and discards what
    /// the client still sends until its close frame, its EOF or `linger`,
    /// and only then closes TCP. Closing at once would leave the client's
    /// unread frames in our receive buffer, and Linux answers that with a
    /// reset that destroys the close frame (and any error frame) before the
    /// client reads it: the client would see 1006 instead of our code.
    ///
    /// Nothing is answered meanwhile: after its close frame an endpoint
    /// sends nothing more (RFC 6455 §5.5.1).
    pub async fn close(&mut self, code: u16, reason: &str, linger: Duration) -> Lingered {
        codec::encode(
            codec::OP_CLOSE,
            &codec::close_payload(code, reason),
            &mut self.wbuf,
        );
        let outcome = tokio::time::timeout(linger, poll_fn(|cx| self.poll_linger(cx)))
            .await
            .unwrap_or(Lingered::TimedOut);
        let _ = tokio::time::timeout(
            linger,
            poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)),
        )
        .await;
        outcome
    }

    /// Writes our close frame while reading the client's frames until its
    /// close; done when both happened (or the peer is gone).
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<Lingered> {
        let written = match self.poll_write_buf(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(_)) => return Poll::Ready(Lingered::Dropped),
            Poll::Pending => false,
        };
        // Pending is returned only when the write is pending, so the task is
        // woken when the socket takes more.
        let answered = || {
            if written {
                Poll::Ready(Lingered::Answered)
            } else {
                Poll::Pending
            }
        };
        if self.dec.closed() {
            return answered();
        }
        let mut held = std::mem::take(&mut self.rbuf);
        loop {
            if self.failed {
                held.clear();
            }
            while !held.is_empty() {
                let (n, r) = self.dec.feed(&held);
                held.drain(..n);
                match r {
                    Err(_) => {
                        self.failed = true;
                        held.clear();
                    }
                    Ok(Some(Message::Close(_))) => return answered(),
                    Ok(_) => {}
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Lingered::Dropped),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    return Poll::Ready(Lingered::Dropped)
                }
                Poll::Ready(Ok(())) if self.failed => {
                    // The stream lost its frame boundaries at the bad frame.
                    // The client's close, sent in answer to ours, most likely
                    // starts a read of its own: look for it there.
                    if starts_with_close(buf.filled(), self.dec.limit()) {
                        return answered();
                    }
                }
                Poll::Ready(Ok(())) => held.extend_from_slice(buf.filled()),
            }
        }
    }
}

/// Whether `bytes`, decoded from a frame boundary, hold a close frame.
fn starts_with_close(mut bytes: &[u8], limit: usize) -> bool {
    let mut dec = Decoder::new(limit);
    while !bytes.is_empty() {
        match dec.feed(bytes) {
            (_, Ok(Some(Message::Close(_)))) => return true,
            (n, Ok(_)) => bytes = &bytes[n..],
            (_, Err(_)) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    const M: [u8; 4] = [1, 2, 3, 4];

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut f = vec![first, 0x80 | payload.len() as u8];
        f.extend_from_slice(&M);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ M[i % 4]));
        f
    }

    fn pair(max: usize) -> (Conn<DuplexStream>, DuplexStream) {
        let (a, b) = duplex(1 << 16);
        (Conn::new(a, &[], max, 1 << 16), b)
    }

    /// Reads one unmasked server frame: (first byte, payload).
    async fn server_frame(c: &mut DuplexStream) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        c.read_exact(&mut h).await.unwrap();
        let len = match h[1] {
            126 => c.read_u16().await.unwrap() as usize,
            127 => c.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut p = vec![0; len];
        c.read_exact(&mut p).await.unwrap();
        (h[0], p)
    }

    #[tokio::test]
    async fn pings_are_answered_between_fragments() {
        let (mut conn, mut client) = pair(1024);
        let mut bytes = masked(0x01, b"hel");
        bytes.extend(masked(0x89, b"p"));
        bytes.extend(masked(0x80, "lo ✓".as_bytes()));
        client.write_all(&bytes).await.unwrap();
        assert_eq!(conn.recv().await.unwrap(), Incoming::Ping(b"p".to_vec()));
        conn.pong(b"p");
        assert_eq!(conn.recv().await.unwrap(), Incoming::Text("hello ✓".into()));
        conn.flush().await.unwrap();
        assert_eq!(server_frame(&mut client).await, (0x8A, b"p".to_vec()));
    }

    #[tokio::test]
    async fn bytes_from_the_upgrade_are_decoded_first() {
        let (a, _b) = duplex(64);
        let mut conn = Conn::new(a, &masked(0x81, b"hi"), 1024, 1024);
        assert_eq!(conn.recv().await.unwrap(), Incoming::Text("hi".into()));
    }

    #[tokio::test]
    async fn a_batch_arrives_whole_even_when_the_socket_takes_it_in_parts() {
        let (a, mut client) = duplex(1000);
        let mut conn = Conn::new(a, &[], 1024, 1024);
        let big: Frame = Arc::from("z".repeat(300_000));
        let frames: Vec<Frame> = vec![Arc::from("a"), big.clone(), Arc::from("b")];
        conn.send(&frames).unwrap();
        assert!(conn.pending());
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
            codec::encode(codec::OP_TEXT, f.as_bytes(), &mut want);
        }
        assert_eq!(all, want);
    }

    #[tokio::test]
    async fn a_peer_that_pings_without_reading_cannot_grow_the_write_buffer() {
        let (a, mut client) = duplex(64);
        let mut conn = Conn::new(a, &[], 1024, 500);
        let ping = masked(0x89, &[7; 100]);
        let writer = tokio::spawn(async move {
            for _ in 0..200 {
                client.write_all(&ping).await.unwrap();
            }
            client
        });
        for _ in 0..200 {
            match conn.recv().await.unwrap() {
                Incoming::Ping(p) => conn.pong(&p),
                Incoming::Written => {}
                other => panic!("{other:?}"),
            }
            assert!(conn.wbuf.len() < 500 + 102);
        }
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn protocol_errors_surface_as_typed_errors() {
        let (mut conn, mut client) = pair(1024);
        client.write_all(&[0x81, 0x01, b'x']).await.unwrap();
        assert!(matches!(
            conn.recv().await,
            Err(ConnError::Frame(FrameError::Unmasked))
        ));
        let (mut conn, client) = pair(1024);
        drop(client);
        assert!(matches!(conn.recv().await, Err(ConnError::Eof)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_hub_s_close_waits_for_the_client_s_and_reads_what_it_still_sends() {
        let (mut conn, mut client) = pair(1024);
        // The client is still sending when the hub closes.
        client.write_all(&masked(0x81, b"late")).await.unwrap();
        let hub = tokio::spawn(async move {
            let how = conn
                .close(4008, "too many messages", Duration::from_secs(1))
                .await;
            (how, conn)
        });
        let (first, payload) = server_frame(&mut client).await;
        assert_eq!(first, 0x88);
        assert_eq!(&payload[..2], &4008u16.to_be_bytes());
        assert_eq!(&payload[2..], b"too many messages");
        client
            .write_all(&masked(0x88, &4008u16.to_be_bytes()))
            .await
            .unwrap();
        let (how, _conn) = hub.await.unwrap();
        assert_eq!(how, Lingered::Answered);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing after the close frame");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_answers_the_close_is_dropped_after_the_linger() {
        let (mut conn, _client) = pair(1024);
        let t0 = tokio::time::Instant::now();
        let how = conn.close(1012, "", Duration::from_secs(1)).await;
        assert_eq!(how, Lingered::TimedOut);
        assert!(t0.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_client_close_is_echoed() {
        let (mut conn, mut client) = pair(1024);
        let mut p = 3001u16.to_be_bytes().to_vec();
        p.extend(b"done");
        client.write_all(&masked(0x88, &p)).await.unwrap();
        let Incoming::Close(theirs) = conn.recv().await.unwrap() else {
            panic!("expected a close")
        };
        conn.answer_close(theirs.as_ref(), Duration::from_secs(1))
            .await;
        assert_eq!(
            server_frame(&mut client).await,
            (0x88, 3001u16.to_be_bytes().to_vec())
        );
    }
}
