//! The application's handle on one tab: connect, report interaction, watch
//! rosters, log out. A background task (the driver) owns the socket; this
//! handle only sends it commands, so every method is cheap and the handle
//! can be cloned into whatever reports activity.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use presence_protocol::{ErrorCode, Roster, WelcomeUser};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::dial::Dialer;
use crate::driver::{Command, Driver};
use crate::{Error, RosterWatch, TokenProvider};

/// How a [`Client`] behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The tab id; keep it to make a restarted process the same tab (as a
    /// browser keeps it in `sessionStorage` across reloads). Default is a
    /// new random id, kept across this client's reconnections.
    pub tab: Option<Uuid>,
    /// Sent in `hello` so operators can tell clients apart in logs.
    /// Default is `presence-client/<version>`.
    pub client_name: String,
    /// Whether connecting is itself proof of interaction (a person just
    /// opened the page). A service that watches rosters on nobody's behalf
    /// sets it to false so it does not show its user online. Default is true.
    pub interacted_at_connect: bool,
    /// How long connecting, `hello` and `welcome` may take together before
    /// the attempt counts as failed. Default is 10 s.
    pub handshake_timeout: Duration,
    /// The first reconnection delay after a failure (1012 and 4001
    /// reconnect at once the first time). Default is 200 ms.
    pub backoff_min: Duration,
    /// The longest delay between two reconnection attempts. Default is 30 s.
    pub backoff_max: Duration,
    /// The most a token is refreshed ahead of its `exp` (short tokens are
    /// refreshed a quarter of their remaining life early). Default is 60 s.
    pub refresh_margin: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tab: None,
            client_name: concat!("presence-client/", env!("CARGO_PKG_VERSION")).into(),
            interacted_at_connect: true,
            handshake_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            refresh_margin: Duration::from_secs(60),
        }
    }
}

/// What the hub said when it accepted the current connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub user: WelcomeUser,
    pub tab: Uuid,
    /// The hub's presence margin: interaction older than this is no proof.
    pub idle_timeout: Duration,
    /// How often the hub wants interaction reported while it happens.
    pub activity_interval: Duration,
    /// The hub's clock at `welcome` (ms since the Unix epoch), to compare
    /// `since`/`at` of entries without trusting the local clock.
    pub server_time_ms: u64,
}

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Connected,
    /// Lost; `attempt` counts the retries since the last `welcome`.
    Reconnecting {
        attempt: u32,
    },
    /// Terminal: nothing will reconnect this client.
    Disconnected {
        code: u16,
        reason: String,
    },
}

/// Things that happened to the connection, for logs and UI banners.
#[derive(Debug, Clone)]
pub enum Event {
    /// The connection ended (`code` is `None` when the socket dropped
    /// without a close frame); the next attempt starts after `delay`.
    Reconnecting {
        code: Option<u16>,
        reason: String,
        attempt: u32,
        delay: Duration,
    },
    /// A new connection was welcomed; watched rosters are being
    /// re-subscribed and will be replaced by fresh snapshots.
    Reconnected { welcome: Arc<Welcome> },
    /// A fresh token was sent with `refresh`.
    TokenRefreshed { expires_at: Option<SystemTime> },
    /// The hub answered an error not tied to a subscription (a refused
    /// `refresh`, `rate_limited`).
    Rejected { code: ErrorCode, message: String },
    /// Terminal: 4003, 4004, 4008, 4029, a fresh token refused at `hello`
    /// (4001), or a local close (1000). No reconnection follows.
    Disconnected { code: u16, reason: String },
}

/// What the handle shares with the driver.
pub(crate) struct Shared {
    pub tab: Uuid,
    pub welcome: Mutex<Arc<Welcome>>,
    pub state: watch::Sender<ConnState>,
    pub events: broadcast::Sender<Event>,
}

/// A connection to the hub as one tab. Clones share the connection; when
/// the last clone is dropped the connection is closed (the hub then keeps
/// the user online until the idle timeout, as for a closed browser tab).
#[derive(Clone)]
pub struct Client {
    cmds: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tab", &self.shared.tab)
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

impl Client {
    /// Connects to `url` (`ws://host:port/v1/ws`) and returns once the hub
    /// sent `welcome`. From then on the client reconnects by itself.
    ///
    /// # Errors
    /// The first attempt is not retried: a wrong URL, an unreachable hub or
    /// a refused token are the caller's to see, not to be hidden behind
    /// retries. [`Error::Closed`] carries the hub's close code.
    pub async fn connect(
        url: impl Into<String>,
        tokens: impl TokenProvider,
        options: ClientOptions,
    ) -> Result<Client, Error> {
        let tab = options.tab.unwrap_or_else(Uuid::new_v4);
        let interacted = options.interacted_at_connect.then(Instant::now);
        let dialer = Dialer::new(url.into(), Arc::new(tokens), options, tab);
        let link = dialer.open(crate::driver::idle_ms(interacted)).await?;
        let (state, _) = watch::channel(ConnState::Connected);
        let (events, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            tab,
            welcome: Mutex::new(Arc::new(link.welcome.clone())),
            state,
            events,
        });
        let (cmds, rx) = mpsc::unbounded_channel();
        let driver = Driver::new(dialer, rx, shared.clone(), interacted);
        tokio::spawn(driver.run(link));
        Ok(Client { cmds, shared })
    }

    /// The tab id, the same across reconnections.
    pub fn tab(&self) -> Uuid {
        self.shared.tab
    }

    /// The `welcome` of the current (or last) connection.
    pub fn welcome(&self) -> Arc<Welcome> {
        // Only ever locked to swap or clone an Arc: it cannot be poisoned by
        // a panic holding it.
        self.shared.welcome.lock().expect("welcome lock").clone()
    }

    /// Follows the connection state.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.shared.state.subscribe()
    }

    /// Events from now on (earlier ones are not replayed).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Reports that a person interacted with this tab `idle_ms` ago. While
    /// disconnected the interaction is remembered and carried by the next
    /// `hello`, so a reconnection within the margin causes no flap. Call it
    /// about once per [`Welcome::activity_interval`] while interaction goes
    /// on: each call is one frame, and the hub rate-limits frames.
    ///
    /// # Errors
    /// The client ended ([`Error::Closed`]) or was dropped.
    pub fn activity(&self, idle_ms: u64) -> Result<(), Error> {
        let at = Instant::now().checked_sub(Duration::from_millis(idle_ms));
        self.cmds
            .send(Command::Activity { idle_ms, at })
            .map_err(|_| self.why_gone())
    }

    /// Subscribes to `roster` and returns once the first snapshot arrived.
    /// Watching a roster that is already watched shares its subscription.
    ///
    /// # Errors
    /// [`Error::Refused`] when the hub refuses the subscription (e.g.
    /// `forbidden` for a standard user asking for `directory`).
    pub async fn watch(&self, roster: Roster) -> Result<RosterWatch, Error> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Command::Watch {
                roster: roster.clone(),
                reply,
            })
            .map_err(|_| self.why_gone())?;
        let view = rx.await.map_err(|_| self.why_gone())??;
        Ok(RosterWatch::new(roster, view, self.cmds.downgrade()))
    }

    /// Logs the user out: the hub turns them offline at once and closes
    /// every tab of theirs, this one included, with 4004.
    ///
    /// # Errors
    /// [`Error::NotConnected`] while reconnecting (the hub cannot be told);
    /// [`Error::Closed`] when the connection ended with another code first.
    pub async fn logout(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Command::Logout { reply })
            .map_err(|_| self.why_gone())?;
        rx.await.map_err(|_| self.why_gone())?
    }

    /// Closes the connection without logging out and stops reconnecting.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.cmds.send(Command::Close { reply }).is_ok() {
            // The driver answers after the close frame went out; a driver
            // that ended meanwhile has closed already.
            let _ = rx.await;
        }
    }

    /// Waits until the client ends for good and returns the close code and
    /// reason (see [`Event::Disconnected`]).
    pub async fn disconnected(&self) -> (u16, String) {
        let mut state = self.shared.state.subscribe();
        let ended = state
            .wait_for(|s| matches!(s, ConnState::Disconnected { .. }))
            .await;
        match ended.as_deref() {
            Ok(ConnState::Disconnected { code, reason }) => (*code, reason.clone()),
            // The sender lives in `Shared`, which `self` holds.
            _ => unreachable!("the state sender outlives every Client"),
        }
    }

    fn why_gone(&self) -> Error {
        match &*self.shared.state.borrow() {
            ConnState::Disconnected { code, reason } => Error::Closed {
                code: *code,
                reason: reason.clone(),
            },
            _ => Error::Stopped,
        }
    }
}
