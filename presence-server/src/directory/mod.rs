//! The directory of SPEC §3: tenants, users, teams and memberships.
//!
//! [`records`] holds it in memory and applies [`Write`]s; [`ops`] turns an
//! admin request into writes after checking it; [`csv_import`] parses and
//! plans a CSV import; [`batch`] plans a bulk sync from the same operations. All of it is pure: nothing here touches a store, a
//! socket or a clock, so a request that fails changes nothing.
//!
//! May use: the protocol crate, and jiff's bundled time-zone database (a
//! lookup, no I/O).

pub mod batch;
pub mod csv_import;
mod error;
pub mod ops;
mod records;
pub mod webhooks;

pub use error::DirectoryError;
pub use records::{
    valid_id, PresenceRecord, TeamRecord, TenantDir, TenantRecord, UserRecord, WebhookRecord, Write,
};
