//! Messages a tab sends to the hub.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Roster;

/// A request id chosen by the client, echoed in the reply. Numbers and strings
/// are both accepted because browser code uses either.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReqId {
    Num(u64),
    Str(String),
}

/// Client → hub frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Must be the first frame of a connection.
    Hello {
        token: String,
        tab: Uuid,
        idle_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Proof of interaction `idle_ms` milliseconds ago.
    Activity {
        idle_ms: u64,
    },
    Subscribe {
        id: ReqId,
        roster: Roster,
    },
    Unsubscribe {
        id: ReqId,
        roster: Roster,
    },
    /// Replaces a token that is about to expire.
    Refresh {
        token: String,
    },
    Logout,
}

impl ClientMessage {
    /// The request id, for error replies to a frame that parsed.
    pub fn req_id(&self) -> Option<&ReqId> {
        match self {
            ClientMessage::Subscribe { id, .. } | ClientMessage::Unsubscribe { id, .. } => Some(id),
            _ => None,
        }
    }
}
