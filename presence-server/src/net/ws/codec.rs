//! RFC 6455 framing as a pure state machine: bytes in, messages or a typed
//! error out; no I/O, no clock, no allocation while nothing is arriving.
//!
//! The decoder is streaming: it takes whatever the socket gave (one byte or
//! many frames), unmasks payload straight into the message being put
//! together, and checks every limit on a frame's header, before its payload
//! arrives. So the size limit holds for the whole message before anything
//! is allocated, a fragment that makes the text invalid UTF-8 fails the
//! connection at once (Autobahn's "fail fast"), and no input can make it
//! index out of bounds or overflow: every length is checked arithmetic on
//! `u64`, and the only buffers are the message (≤ the limit) and one control
//! payload (≤ 125 bytes).

/// A whole message from the client, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    /// A binary message; its bytes are not kept (the hub takes only text).
    Binary,
    /// A ping and its payload, to be echoed in the pong.
    Ping(Vec<u8>),
    Pong,
    /// A close frame: `None` when it had no payload.
    Close(Option<CloseFrame>),
}

/// What a close frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// Why the input cannot be accepted; each maps to one close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("reserved bits set (no extension was negotiated)")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("client frames must be masked")]
    Unmasked,
    #[error("control frames may not be fragmented")]
    FragmentedControl,
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    #[error("payload length not in its shortest encoding")]
    NonMinimalLength,
    #[error("64-bit payload length with its top bit set")]
    LengthTopBit,
    #[error("continuation frame with no message in progress")]
    UnexpectedContinuation,
    #[error("new message while a fragmented one is in progress")]
    ExpectedContinuation,
    #[error("close frame with a 1-byte payload")]
    CloseTooShort,
    #[error("close code {0} may not be sent by a client")]
    BadCloseCode(u16),
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// The message would exceed the limit; `at_least` is what the headers
    /// seen so far add up to.
    #[error("message of at least {at_least} bytes exceeds the limit of {limit} bytes")]
    TooLarge { at_least: u64, limit: usize },
}

impl FrameError {
    /// The close code this error ends the connection with: 1007 for bad
    /// UTF-8 and 1002 for protocol errors (RFC 6455 §7.4.1), and SPEC §9's
    /// 4008 for a message over the size limit.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::InvalidUtf8 | FrameError::InvalidCloseReason => INVALID_PAYLOAD,
            FrameError::TooLarge { .. } => presence_protocol::close::POLICY_VIOLATION,
            FrameError::ReservedBits
            | FrameError::ReservedOpcode(_)
            | FrameError::Unmasked
            | FrameError::FragmentedControl
            | FrameError::ControlTooLong
            | FrameError::NonMinimalLength
            | FrameError::LengthTopBit
            | FrameError::UnexpectedContinuation
            | FrameError::ExpectedContinuation
            | FrameError::CloseTooShort
            | FrameError::BadCloseCode(_) => PROTOCOL_ERROR,
        }
    }
}

use presence_protocol::close::{INVALID_PAYLOAD, PROTOCOL_ERROR};

/// Opcodes (RFC 6455 §5.2).
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Whether a client may send this close code: the codes RFC 6455 §7.4.1
/// and the IANA registry define for use on the wire (1000–1003, 1007–1014)
/// and the ranges for libraries and applications (3000–4999). 1004–1006
/// and 1015 are reserved or must never be sent; 1016–2999 are unassigned.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The header of the frame whose payload is arriving. Lengths are `u32`:
/// a frame is within the message limit (or 125 bytes) once its header is
/// accepted, and every byte here is paid once per tab.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes seen so far, modulo 4: the mask's phase.
    phase: u8,
    /// Payload bytes still to come.
    remaining: u32,
}

/// The streaming decoder of one connection's client frames.
#[derive(Debug)]
pub struct Decoder {
    max_message: u32,
    /// Header bytes of the next frame (2 to 14 of them).
    head: [u8; 14],
    head_len: u8,
    frame: Option<Frame>,
    /// The data message in progress: `Some(true)` text, `Some(false)` binary.
    kind: Option<bool>,
    /// Its bytes so far (text only; a binary message is only counted).
    msg: Vec<u8>,
    msg_len: u32,
    /// How far `msg` is known to be valid UTF-8 (complete code points).
    checked: u32,
    /// The control frame's payload being put together.
    ctrl: Vec<u8>,
    /// A close frame was decoded: what follows it is not part of the
    /// conversation (RFC 6455 §5.5.1) and is skipped.
    closed: bool,
}

impl Decoder {
    /// `max_message` bounds a whole (reassembled) data message (at most
    /// 4 GiB; a larger value is taken as that).
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message: u32::try_from(max_message).unwrap_or(u32::MAX),
            head: [0; 14],
            head_len: 0,
            frame: None,
            kind: None,
            msg: Vec::new(),
            msg_len: 0,
            checked: 0,
            ctrl: Vec::new(),
            closed: false,
        }
    }

    /// The message size limit.
    pub fn limit(&self) -> usize {
        self.max_message as usize
    }

    /// Whether a close frame has been decoded.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Consumes `input` up to the end of the first message it completes.
    ///
    /// Returns how many bytes were consumed and the message, if one was
    /// completed; when none was, all of `input` was consumed and is held
    /// here until the rest arrives. After an error the connection must be
    /// failed: the decoder's state is not meaningful any more. After a
    /// close frame, input is consumed and ignored.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Result<Option<Message>, FrameError>) {
        let mut at = 0;
        loop {
            if self.closed {
                return (input.len(), Ok(None));
            }
            if self.frame.is_none() {
                match self.read_header(&input[at..]) {
                    (n, Ok(true)) => at += n,
                    (n, Ok(false)) => return (at + n, Ok(None)),
                    (n, Err(e)) => return (at + n, Err(e)),
                }
            }
            let n = self.read_payload(&input[at..]);
            at += n;
            match self.end_of_frame() {
                Ok(None) if self.frame.is_some() => return (at, Ok(None)),
                Ok(None) => continue,
                Ok(Some(m)) => return (at, Ok(Some(m))),
                Err(e) => return (at, Err(e)),
            }
        }
    }

    /// Takes header bytes; `Ok(true)` once a whole header is parsed and
    /// accepted. Errors are reported as soon as the bytes that show them
    /// have arrived.
    fn read_header(&mut self, input: &[u8]) -> (usize, Result<bool, FrameError>) {
        let mut at = 0;
        loop {
            let have = self.head_len as usize;
            let need = if have < 2 {
                2
            } else {
                let ext = match self.head[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                2 + ext + 4
            };
            if have == need {
                break;
            }
            let Some(&b) = input.get(at) else {
                return (at, Ok(false));
            };
            self.head[have] = b;
            self.head_len += 1;
            at += 1;
            if self.head_len == 2 {
                if let Err(e) = self.check_first_two() {
                    return (at, Err(e));
                }
            }
            let ext_end = match self.head[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            if self.head_len as usize == ext_end && ext_end > 2 {
                if let Err(e) = self.check_length() {
                    return (at, Err(e));
                }
            }
        }
        let h = &self.head;
        let (len, mask_at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => (
                u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                10,
            ),
            n => (u64::from(n), 2),
        };
        if let Err(e) = self.check_size(len) {
            return (at, Err(e));
        }
        let h = &self.head;
        let frame = Frame {
            opcode: h[0] & 0x0f,
            fin: h[0] & 0x80 != 0,
            mask: [h[mask_at], h[mask_at + 1], h[mask_at + 2], h[mask_at + 3]],
            phase: 0,
            // Within the limit (a u32) or 125 bytes, checked above.
            remaining: u32::try_from(len).unwrap_or(u32::MAX),
        };
        self.head_len = 0;
        if frame.opcode & 0x08 == 0 && frame.opcode != OP_CONTINUATION {
            self.kind = Some(frame.opcode == OP_TEXT);
        }
        self.frame = Some(frame);
        (at, Ok(true))
    }

    /// Bits, opcode, mask and the 7-bit length, against the state.
    fn check_first_two(&self) -> Result<(), FrameError> {
        let (b0, b1) = (self.head[0], self.head[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        let opcode = b0 & 0x0f;
        let fin = b0 & 0x80 != 0;
        match opcode {
            OP_CONTINUATION if self.kind.is_none() => {
                return Err(FrameError::UnexpectedContinuation)
            }
            OP_TEXT | OP_BINARY if self.kind.is_some() => {
                return Err(FrameError::ExpectedContinuation)
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(FrameError::FragmentedControl);
                }
                if b1 & 0x7f > 125 {
                    return Err(FrameError::ControlTooLong);
                }
            }
            other => return Err(FrameError::ReservedOpcode(other)),
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        if b1 & 0x7f < 126 {
            self.check_size(u64::from(b1 & 0x7f))?;
        }
        Ok(())
    }

    /// The extended length, once its bytes are in: shortest form, top bit
    /// clear, and within the limit.
    fn check_length(&self) -> Result<(), FrameError> {
        let h = &self.head;
        let len = match h[1] & 0x7f {
            126 => {
                let n = u64::from(u16::from_be_bytes([h[2], h[3]]));
                if n < 126 {
                    return Err(FrameError::NonMinimalLength);
                }
                n
            }
            _ => {
                let n = u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]);
                if n >> 63 != 0 {
                    return Err(FrameError::LengthTopBit);
                }
                if n <= u64::from(u16::MAX) {
                    return Err(FrameError::NonMinimalLength);
                }
                n
            }
        };
        self.check_size(len)
    }

    /// A data frame of `len` bytes must keep its message within the limit
    /// (control frames are bounded by their 125 bytes and are not part of
    /// the message they may interrupt).
    fn check_size(&self, len: u64) -> Result<(), FrameError> {
        if self.head[0] & 0x08 != 0 {
            return Ok(());
        }
        let total = u64::from(self.msg_len).saturating_add(len);
        if total > u64::from(self.max_message) {
            return Err(FrameError::TooLarge {
                at_least: total,
                limit: self.max_message as usize,
            });
        }
        Ok(())
    }

    /// Unmasks what `input` holds of the current frame's payload into the
    /// message (or the control payload).
    fn read_payload(&mut self, input: &[u8]) -> usize {
        let Some(f) = &mut self.frame else {
            return 0;
        };
        let take = (f.remaining as usize).min(input.len());
        let bytes = &input[..take];
        let phase = usize::from(f.phase);
        let mask = f.mask;
        let unmask = |i: usize, b: &u8| b ^ mask[(phase + i) % 4];
        if f.opcode & 0x08 != 0 {
            self.ctrl
                .extend(bytes.iter().enumerate().map(|(i, b)| unmask(i, b)));
        } else {
            // `take` is within `remaining`, itself within the limit.
            self.msg_len += take as u32;
            if self.kind == Some(true) {
                self.msg
                    .extend(bytes.iter().enumerate().map(|(i, b)| unmask(i, b)));
            }
        }
        f.remaining -= take as u32;
        f.phase = ((phase + take) % 4) as u8;
        take
    }

    /// Checks what arrived of the frame (UTF-8 as it comes) and, once the
    /// frame is whole, completes a message or a control frame.
    fn end_of_frame(&mut self) -> Result<Option<Message>, FrameError> {
        let Some(f) = self.frame else {
            return Ok(None);
        };
        let control = f.opcode & 0x08 != 0;
        let last = f.remaining == 0 && f.fin;
        if !control && self.kind == Some(true) {
            self.check_utf8(last)?;
        }
        if f.remaining > 0 {
            return Ok(None);
        }
        self.frame = None;
        if control {
            let payload = std::mem::take(&mut self.ctrl);
            return match f.opcode {
                OP_PING => Ok(Some(Message::Ping(payload))),
                OP_PONG => Ok(Some(Message::Pong)),
                _ => {
                    let close = parse_close(&payload)?;
                    self.closed = true;
                    Ok(Some(Message::Close(close)))
                }
            };
        }
        if !f.fin {
            return Ok(None);
        }
        let text = self.kind.take() == Some(true);
        self.msg_len = 0;
        self.checked = 0;
        let bytes = std::mem::take(&mut self.msg);
        if !text {
            return Ok(Some(Message::Binary));
        }
        // Checked above, as it arrived.
        String::from_utf8(bytes)
            .map(|s| Some(Message::Text(s)))
            .map_err(|_| FrameError::InvalidUtf8)
    }

    /// Validates the text from where the last check stopped; a code point
    /// cut at the end is fine unless the message ends there.
    fn check_utf8(&mut self, last: bool) -> Result<(), FrameError> {
        // `msg` is within the limit, a u32.
        match std::str::from_utf8(&self.msg[self.checked as usize..]) {
            Ok(_) => self.checked = self.msg.len() as u32,
            Err(e) if e.error_len().is_some() || last => return Err(FrameError::InvalidUtf8),
            Err(e) => self.checked += e.valid_up_to() as u32,
        }
        Ok(())
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_allowed(code) {
                return Err(FrameError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidCloseReason)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// A server frame's header (FIN set, unmasked) for a payload of `len`
/// bytes: the bytes and how many of them are used.
pub fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    out[0] = 0x80 | opcode;
    let used = match len {
        n if n < 126 => {
            out[1] = n as u8;
            2
        }
        n if n <= usize::from(u16::MAX) => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            4
        }
        n => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    };
    (out, used)
}

/// Appends a whole server frame.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let (h, n) = header(opcode, payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// The payload of a close frame: the code and as much of `reason` as fits
/// in a control frame (123 bytes), cut at a character boundary.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A client frame: `first` is the first header byte (FIN, RSV, opcode).
    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    const M: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Feeds everything, collecting messages until the end or an error.
    fn decode_all(d: &mut Decoder, mut input: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (n, r) = d.feed(input);
            input = &input[n..];
            if let Some(m) = r? {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn one(bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        decode_all(&mut Decoder::new(1024), bytes)
    }

    #[test]
    fn a_text_frame_is_one_message() {
        let got = one(&client_frame(0x81, b"hello", M)).unwrap();
        assert_eq!(got, [Message::Text("hello".into())]);
    }

    #[test]
    fn fragments_join_and_controls_may_interrupt_them() {
        let mut b = client_frame(0x01, b"hel", M);
        b.extend(client_frame(0x89, b"p", M));
        b.extend(client_frame(0x80, "lo ✓".as_bytes(), M));
        let got = one(&b).unwrap();
        assert_eq!(
            got,
            [
                Message::Ping(b"p".to_vec()),
                Message::Text("hello ✓".into())
            ]
        );
    }

    #[test]
    fn each_protocol_error_is_named() {
        let long_ping = client_frame(0x89, &[0; 126], M);
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (client_frame(0xC1, b"x", M), FrameError::ReservedBits),
            (client_frame(0x83, b"x", M), FrameError::ReservedOpcode(3)),
            (client_frame(0x8B, b"x", M), FrameError::ReservedOpcode(0xB)),
            (vec![0x81, 0x01, b'x'], FrameError::Unmasked),
            (client_frame(0x09, b"x", M), FrameError::FragmentedControl),
            (long_ping, FrameError::ControlTooLong),
            (
                vec![0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4],
                FrameError::NonMinimalLength,
            ),
            (
                vec![0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                FrameError::NonMinimalLength,
            ),
            (
                vec![0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1],
                FrameError::LengthTopBit,
            ),
            (
                client_frame(0x80, b"x", M),
                FrameError::UnexpectedContinuation,
            ),
            (
                [client_frame(0x01, b"a", M), client_frame(0x81, b"b", M)].concat(),
                FrameError::ExpectedContinuation,
            ),
            (client_frame(0x88, &[3], M), FrameError::CloseTooShort),
            (
                client_frame(0x88, &1005u16.to_be_bytes(), M),
                FrameError::BadCloseCode(1005),
            ),
            (client_frame(0x81, &[0xff], M), FrameError::InvalidUtf8),
            (
                client_frame(0x88, &[0x03, 0xe8, 0xff], M),
                FrameError::InvalidCloseReason,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(one(&bytes), Err(want.clone()), "{bytes:02x?}");
        }
    }

    #[test]
    fn the_length_overflow_of_a_crafted_continuation_is_an_error() {
        // FIN=0 text with 3 bytes, then a continuation declaring 2^64 - 3.
        let mut b = client_frame(0x01, b"abc", M);
        b.extend([0x80, 0x80 | 127]);
        b.extend((u64::MAX - 2).to_be_bytes());
        b.extend(M);
        b.extend(b"xyz");
        assert_eq!(one(&b), Err(FrameError::LengthTopBit));
        let mut b = client_frame(0x01, b"abc", M);
        b.extend([0x80, 0x80 | 127]);
        b.extend((u64::MAX >> 1).to_be_bytes());
        assert!(matches!(one(&b), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn a_message_over_the_limit_is_refused_on_its_header() {
        let mut d = Decoder::new(100);
        // Only the header of a 101-byte frame: refused before any payload.
        let (n, r) = d.feed(&[0x81, 0x80 | 101]);
        assert_eq!(n, 2);
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
        // Fragments count together; an interleaved ping does not.
        let mut d = Decoder::new(100);
        let mut b = client_frame(0x01, &[b'a'; 60], M);
        b.extend(client_frame(0x89, &[0; 100], M));
        b.extend(client_frame(0x80, &[b'a'; 40], M));
        assert_eq!(decode_all(&mut d, &b).unwrap().len(), 2);
        let mut b = client_frame(0x01, &[b'a'; 60], M);
        b.extend(client_frame(0x80, &[b'a'; 41], M));
        assert!(matches!(
            one_with(100, &b),
            Err(FrameError::TooLarge { .. })
        ));
    }

    fn one_with(max: usize, b: &[u8]) -> Result<Vec<Message>, FrameError> {
        decode_all(&mut Decoder::new(max), b)
    }

    #[test]
    fn invalid_utf8_fails_as_soon_as_it_arrives() {
        // ED A0 80 is a surrogate: invalid at its second byte.
        let mut d = Decoder::new(1024);
        let f = client_frame(0x81, &[b'a', 0xED, 0xA0, 0x80, b'b'], M);
        let (_, r) = d.feed(&f[..6 + 1]);
        assert_eq!(r, Ok(None));
        let (n, r) = d.feed(&f[7..9]);
        assert_eq!((n, r), (2, Err(FrameError::InvalidUtf8)));
        // A code point cut between fragments is fine.
        let euro = "€".as_bytes();
        let mut b = client_frame(0x01, &euro[..1], M);
        b.extend(client_frame(0x80, &euro[1..], M));
        assert_eq!(one(&b).unwrap(), [Message::Text("€".into())]);
        // ...unless the message ends there.
        assert_eq!(
            one(&client_frame(0x81, &euro[..2], M)),
            Err(FrameError::InvalidUtf8)
        );
    }

    #[test]
    fn close_frames_are_validated_and_end_the_conversation() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend(b"bye");
        let mut b = client_frame(0x88, &payload, M);
        b.extend(client_frame(0x89, b"ignored", M));
        assert_eq!(
            one(&b).unwrap(),
            [Message::Close(Some(CloseFrame {
                code: 4000,
                reason: "bye".into()
            }))]
        );
        assert_eq!(
            one(&client_frame(0x88, b"", M)).unwrap(),
            [Message::Close(None)]
        );
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2999, 5000, 65535,
        ] {
            assert!(!close_code_allowed(code), "{code}");
        }
        for code in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(close_code_allowed(code), "{code}");
        }
    }

    #[test]
    fn error_close_codes_follow_rfc_6455() {
        assert_eq!(FrameError::Unmasked.close_code(), 1002);
        assert_eq!(FrameError::InvalidUtf8.close_code(), 1007);
        assert_eq!(FrameError::InvalidCloseReason.close_code(), 1007);
        let big = FrameError::TooLarge {
            at_least: 2,
            limit: 1,
        };
        assert_eq!(big.close_code(), 4008);
    }

    #[test]
    fn server_headers_use_the_shortest_length() {
        assert_eq!(&header(OP_TEXT, 5).0[..2], &[0x81, 5]);
        assert_eq!(&header(OP_TEXT, 126).0[..4], &[0x81, 126, 0, 126]);
        let (h, n) = header(OP_TEXT, 70_000);
        assert_eq!(n, 10);
        assert_eq!(&h[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(h[2..10].try_into().unwrap()), 70_000);
        let p = close_payload(1000, &"é".repeat(100));
        assert_eq!(p.len(), 2 + 122);
    }

    /// A message as a client could send it: text in fragments, pings
    /// between them.
    #[derive(Debug, Clone)]
    enum Sent {
        Text(String, Vec<usize>),
        Ping(Vec<u8>),
    }

    fn sent() -> impl Strategy<Value = Sent> {
        prop_oneof![
            (".{0,40}", proptest::collection::vec(0usize..50, 0..4))
                .prop_map(|(s, cuts)| Sent::Text(s, cuts)),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Sent::Ping),
        ]
    }

    fn wire(msgs: &[Sent], mask: [u8; 4]) -> (Vec<u8>, Vec<Message>) {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for m in msgs {
            match m {
                Sent::Ping(p) => {
                    bytes.extend(client_frame(0x89, p, mask));
                    want.push(Message::Ping(p.clone()));
                }
                Sent::Text(s, cuts) => {
                    let b = s.as_bytes();
                    let mut points: Vec<usize> = cuts.iter().map(|c| c % (b.len() + 1)).collect();
                    points.sort_unstable();
                    points.push(b.len());
                    let mut from = 0;
                    for (i, to) in points.iter().enumerate() {
                        let first = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
                        let fin = if i + 1 == points.len() { 0x80 } else { 0 };
                        bytes.extend(client_frame(fin | first, &b[from..*to], mask));
                        from = *to;
                    }
                    want.push(Message::Text(s.clone()));
                }
            }
        }
        (bytes, want)
    }

    proptest! {
        #[test]
        fn messages_survive_any_fragmentation_and_any_chopping(
            msgs in proptest::collection::vec(sent(), 0..6),
            mask in any::<[u8; 4]>(),
            chop in 1usize..20,
        ) {
            let (bytes, want) = wire(&msgs, mask);
            let mut d = Decoder::new(1 << 16);
            let mut got = Vec::new();
            for piece in bytes.chunks(chop) {
                got.extend(decode_all(&mut d, piece).unwrap());
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn any_bytes_end_in_messages_or_a_typed_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            chop in 1usize..40,
            max in 0usize..200,
        ) {
            let mut d = Decoder::new(max);
            let mut held = 0usize;
            for piece in bytes.chunks(chop) {
                match decode_all(&mut d, piece) {
                    Ok(msgs) => {
                        for m in msgs {
                            if let Message::Text(t) = m {
                                prop_assert!(t.len() <= max);
                            }
                        }
                    }
                    Err(_) => break,
                }
                held = held.max(d.msg.len() + d.ctrl.len());
                prop_assert!(d.msg.len() <= max && d.ctrl.len() <= 125);
            }
            prop_assert!(held <= max.max(125));
        }
    }
}
