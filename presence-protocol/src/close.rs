//! WebSocket close codes of SPEC §5.
//!
//! Terminal codes (4001, 4003, 4004) tell a client not to reconnect without a
//! new token or a human; 1012, 1001 and 1013 mean "reconnect, possibly
//! elsewhere", and presence does not change because of them.

/// Unauthenticated: no `hello` in time, bad token, or token expired.
pub const UNAUTHENTICATED: u16 = 4001;
/// The user is deactivated or deleted, or the connection is otherwise forbidden.
pub const FORBIDDEN: u16 = 4003;
/// The user logged out (from this tab or another).
pub const LOGGED_OUT: u16 = 4004;
/// Policy violation: message too large, flood, repeated bad JSON.
pub const POLICY_VIOLATION: u16 = 4008;
/// The user already has the maximum number of tabs open.
pub const TOO_MANY_TABS: u16 = 4029;
/// The node is restarting; reconnect (elsewhere). No presence change.
pub const NODE_RESTARTING: u16 = 1012;
/// Going away.
pub const GOING_AWAY: u16 = 1001;
/// The tab could not keep up with its outbound frames (a slow dashboard); its
/// queue was dropped instead of growing. Reconnect to get a fresh snapshot.
pub const SLOW_CONSUMER: u16 = 1013;
/// The same code (RFC 6455 "Try Again Later") when the hub could not get
/// the tab's tenant ready in time (cluster mode, Redis away): reconnect
/// after a backoff.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// Another connection took over the same tab id (a reload raced its own close).
pub const REPLACED: u16 = 4000;
/// RFC 6455 §7.4.1: a frame that breaks the framing rules.
pub const PROTOCOL_ERROR: u16 = 1002;
/// RFC 6455 §7.4.1: a binary message; the hub takes only text.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// RFC 6455 §7.4.1: text (or a close reason) that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
