//! Wire types of the presence hub: every WebSocket message of SPEC §5 and every
//! admin API body of SPEC §6, as serde types. No I/O lives here, so the hub, the
//! load generator and the Rust client share one definition of the protocol.

pub mod admin;
pub mod client;
pub mod close;
pub mod events;
pub mod history;
pub mod roster;
pub mod server;
pub mod webhooks;

pub use client::{ClientMessage, ReqId};
pub use events::{Event, EventPage, EventsGone, Reason};
pub use roster::{Roster, RosterParseError};
pub use server::{
    Entry, ErrorCode, Membership, MembershipRole, Profile, ServerMessage, Stats, Status, UserState,
    WelcomeUser,
};
pub use webhooks::{
    DeliveryError, DeliveryState, DeliveryStatus, WebhookBatch, WebhookList, WebhookPut,
    WebhookView,
};
