//! The server side of RFC 6455, written for this hub's traffic: thousands
//! of mostly idle tabs that send tiny frames, and frames out that are
//! shared by many tabs.
//!
//! A general WebSocket library keeps a read buffer and a write buffer per
//! connection for its whole life (they grow to the largest frame seen and
//! stay there); here an idle connection holds no buffer at all.
//! [`codec`] is the framing as a pure state machine (bytes in, messages or
//! a typed error out), proven by the Autobahn-style suite in
//! `tests/it/autobahn/`, property tests and a fuzz target; [`conn`] runs it
//! on any `AsyncRead + AsyncWrite` and does the close handshake.

pub mod codec;
pub mod conn;

pub use codec::{CloseFrame, FrameError};
pub use conn::{Conn, ConnError, Incoming};

/// A serialised text message, shared by every tab that receives it: the
/// tenant serialises a delta once and [`Conn`] writes it to each socket
/// from the same bytes.
pub type Frame = std::sync::Arc<str>;
