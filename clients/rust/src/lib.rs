//! A typed async client of the presence hub (SPEC §5) for Rust services and
//! tools: one [`Client`] is one tab. It says `hello`, reports interaction,
//! keeps watched rosters current from their snapshot and deltas, refreshes
//! its token before `exp`, and reconnects by itself after a node restart,
//! a network fault or an expired token — but never after a close that needs
//! a human (deactivated, logged out, too many tabs, policy violation).
//!
//! ```no_run
//! # async fn demo() -> Result<(), presence_client::Error> {
//! use presence_client::{Client, ClientOptions, Roster};
//!
//! let client = Client::connect(
//!     "ws://127.0.0.1:7700/v1/ws",
//!     || async { Ok::<_, std::io::Error>(std::env::var("TOKEN").unwrap_or_default()) },
//!     ClientOptions::default(),
//! )
//! .await?;
//! let mut directory = client.watch(Roster::Directory).await?;
//! loop {
//!     let view = directory.changed().await?;
//!     println!("{:?} online", view.stats().map(|s| s.online));
//! }
//! # }
//! ```

mod backoff;
mod client;
mod dial;
mod driver;
mod error;
mod roster;
mod token;

pub use client::{Client, ClientOptions, ConnState, Event, Welcome};
pub use error::Error;
pub use presence_protocol::{Entry, ErrorCode, Roster, Stats, Status, WelcomeUser};
pub use roster::{RosterView, RosterWatch};
pub use token::{BoxError, TokenFuture, TokenProvider};
