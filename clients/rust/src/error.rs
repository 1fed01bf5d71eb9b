//! The one error type of the client, cloneable so a roster that ended can
//! hand the same reason to every reader.

use std::sync::Arc;
use std::time::Duration;

use presence_protocol::{ErrorCode, Roster};

/// What went wrong, with the data a caller needs to decide what to do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The token provider failed. The hub was not contacted: the caller's
    /// own auth (the ERP session) needs attention, not the network.
    #[error("token provider failed: {0}")]
    Token(Arc<dyn std::error::Error + Send + Sync>),
    /// The hub could not be reached or the WebSocket upgrade failed (a node
    /// that is shutting down answers the upgrade with 503).
    #[error("could not reach the hub: {0}")]
    Connect(Arc<tokio_tungstenite::tungstenite::Error>),
    /// `welcome` did not arrive in time after `hello`.
    #[error("no welcome within {0:?}")]
    HandshakeTimeout(Duration),
    /// The hub sent something this client does not understand; a version
    /// mismatch rather than a transient fault.
    #[error("unexpected frame from the hub: {0}")]
    Protocol(String),
    /// The hub closed the connection with a code that ends this client
    /// (4001 for a token refused at `hello`, 4003, 4004, 4008, 4029), or the
    /// client was closed locally (1000).
    #[error("closed by the hub with {code}: {reason}")]
    Closed { code: u16, reason: String },
    /// The hub refused a subscription, or ended one because the subscriber's
    /// rights changed (`revoked`) or the team is gone (`not_found`).
    #[error("the hub refused {roster}: {message} ({code:?})")]
    Refused {
        roster: Roster,
        code: ErrorCode,
        message: String,
    },
    /// The operation needs a live connection and the client is between two.
    #[error("not connected to the hub")]
    NotConnected,
    /// Every `Client` handle was dropped, so nothing drives the connection.
    #[error("the client has stopped")]
    Stopped,
}

impl Error {
    /// The close code the hub ended the client with, if that is the reason.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Error::Closed { code, .. } => Some(*code),
            _ => None,
        }
    }
}
