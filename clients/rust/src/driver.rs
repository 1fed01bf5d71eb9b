//! The task behind a [`Client`](crate::Client): owns the socket, applies
//! frames to the watched rosters, refreshes the token and reconnects when
//! the close code allows it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use presence_protocol::{ClientMessage, ReqId, Roster, ServerMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::{self, After, Backoff};
use crate::client::{ConnState, Event, Shared};
use crate::dial::{close_of, text, Dialer, Link, Ws};
use crate::token::{expiry, refresh_delay, TokenFuture};
use crate::{Error, RosterView};

/// `idle_ms` that proves nothing (the hub ignores reports at or beyond its
/// idle timeout); small enough for any JSON reader to take as an integer.
const NO_PROOF_IDLE_MS: u64 = u32::MAX as u64;

/// How long to wait before asking a failing token provider again while the
/// current token is still valid.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

/// How long a local close waits for the hub's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The `idle_ms` to report for an interaction at `at`.
pub(crate) fn idle_ms(at: Option<Instant>) -> u64 {
    at.map_or(NO_PROOF_IDLE_MS, |t| t.elapsed().as_millis() as u64)
}

/// What a [`Client`](crate::Client) asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Activity {
        idle_ms: u64,
        /// `None` when `idle_ms` reaches before the process's clock began:
        /// no proof then.
        at: Option<Instant>,
    },
    Watch {
        roster: Roster,
        reply: oneshot::Sender<Result<watch::Receiver<RosterView>, Error>>,
    },
    Unwatch {
        roster: Roster,
        reply: Option<oneshot::Sender<()>>,
    },
    Logout {
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// One watched roster.
struct Slot {
    view: watch::Sender<RosterView>,
    /// `RosterWatch` handles given out; the subscription ends with the last.
    handles: usize,
    /// `watch` calls waiting for the first snapshot.
    waiters: Vec<oneshot::Sender<Result<watch::Receiver<RosterView>, Error>>>,
}

/// Why a connection ended.
enum Ended {
    /// The application closed the client or dropped every handle.
    Local,
    /// A close frame (or `None`: the socket dropped without one).
    Hub { code: Option<u16>, reason: String },
}

fn lost(e: impl std::fmt::Display) -> Ended {
    Ended::Hub {
        code: None,
        reason: e.to_string(),
    }
}

pub(crate) struct Driver {
    dialer: Dialer,
    cmds: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    rosters: BTreeMap<Roster, Slot>,
    /// Subscribe requests of the current connection awaiting their reply.
    pending: HashMap<u64, Roster>,
    /// Subscriptions of the current connection that got their snapshot: the
    /// hub may send a fresh one with the same id (after a large directory
    /// write), which replaces the view.
    live: HashMap<u64, Roster>,
    next_req: u64,
    last_interaction: Option<Instant>,
    logout: Option<oneshot::Sender<Result<(), Error>>>,
    closers: Vec<oneshot::Sender<()>>,
    backoff: Backoff,
}

impl Driver {
    pub fn new(
        dialer: Dialer,
        cmds: mpsc::UnboundedReceiver<Command>,
        shared: Arc<Shared>,
        last_interaction: Option<Instant>,
    ) -> Driver {
        let backoff = Backoff {
            min: dialer.options.backoff_min,
            max: dialer.options.backoff_max,
        };
        Driver {
            dialer,
            cmds,
            shared,
            rosters: BTreeMap::new(),
            pending: HashMap::new(),
            live: HashMap::new(),
            next_req: 0,
            last_interaction,
            logout: None,
            closers: Vec::new(),
            backoff,
        }
    }

    /// Serves `link`, then every connection after it, until a terminal
    /// close or the application ends the client.
    pub async fn run(mut self, mut link: Link) {
        loop {
            let (mut code, mut reason) = match self.session(&mut link).await {
                Ended::Local => return self.finish(1000, "closed by the client".into()),
                Ended::Hub { code, reason } => (code, reason),
            };
            for slot in self.rosters.values() {
                slot.view.send_modify(RosterView::lost);
            }
            let mut after = backoff::after_close(code);
            let mut attempt = 0;
            link = loop {
                if after == After::Stop {
                    // `None` never maps to Stop; 1006 is "abnormal closure".
                    let code = code.unwrap_or(u16::from(CloseCode::Abnormal));
                    return self.finish(code, reason);
                }
                let delay = if after == After::Now && attempt == 0 {
                    Duration::ZERO
                } else {
                    self.backoff.delay(attempt, &mut rand::rng())
                };
                attempt += 1;
                tracing::debug!(?code, %reason, attempt, ?delay, "reconnecting");
                self.shared
                    .state
                    .send_replace(ConnState::Reconnecting { attempt });
                self.emit(Event::Reconnecting {
                    code,
                    reason: reason.clone(),
                    attempt,
                    delay,
                });
                if !self.wait_offline(delay).await {
                    return self.finish(1000, "closed by the client".into());
                }
                match self.dialer.open(idle_ms(self.last_interaction)).await {
                    Ok(l) => break l,
                    Err(Error::Closed { code: c, reason: r }) => {
                        after = backoff::after_refused_hello(c);
                        (code, reason) = (Some(c), r);
                    }
                    Err(e) => {
                        after = After::Backoff;
                        (code, reason) = (None, e.to_string());
                    }
                }
            };
            let welcome = Arc::new(link.welcome.clone());
            // Never held across an await; see `Client::welcome`.
            *self.shared.welcome.lock().expect("welcome lock") = welcome.clone();
            self.shared.state.send_replace(ConnState::Connected);
            self.emit(Event::Reconnected { welcome });
        }
    }

    fn emit(&self, e: Event) {
        // No receiver is fine: events are for whoever listens.
        let _ = self.shared.events.send(e);
    }

    /// Ends the client for good: every waiter and roster learns why.
    fn finish(mut self, code: u16, reason: String) {
        let why = Error::Closed {
            code,
            reason: reason.clone(),
        };
        for (_, slot) in std::mem::take(&mut self.rosters) {
            slot.view.send_modify(|v| v.end(why.clone()));
            for w in slot.waiters {
                let _ = w.send(Err(why.clone()));
            }
        }
        if let Some(reply) = self.logout.take() {
            let res = if code == presence_protocol::close::LOGGED_OUT {
                Ok(())
            } else {
                Err(why.clone())
            };
            let _ = reply.send(res);
        }
        tracing::debug!(code, %reason, "client ended");
        // The event first: whoever wakes on the terminal state finds it
        // already sent.
        self.emit(Event::Disconnected {
            code,
            reason: reason.clone(),
        });
        self.shared
            .state
            .send_replace(ConnState::Disconnected { code, reason });
        // Replying last: `Client::close` returns once the state is terminal.
        for c in self.closers.drain(..) {
            let _ = c.send(());
        }
    }

    /// Sleeps `delay` while serving commands that need no connection.
    /// Returns false when the application ended the client meanwhile.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = sleep_until(until) => return true,
                cmd = self.cmds.recv() => match cmd {
                    None => return false,
                    Some(Command::Close { reply }) => {
                        self.closers.push(reply);
                        return false;
                    }
                    Some(Command::Logout { reply }) => {
                        let _ = reply.send(Err(Error::NotConnected));
                    }
                    Some(Command::Activity { at, .. }) => self.interacted(at),
                    Some(Command::Watch { roster, reply }) => {
                        // Subscribed when the next connection is welcomed.
                        self.slot(roster, reply);
                    }
                    Some(Command::Unwatch { roster, reply }) => {
                        self.release(&roster);
                        if let Some(r) = reply {
                            let _ = r.send(());
                        }
                    }
                },
            }
        }
    }

    fn interacted(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.last_interaction = Some(self.last_interaction.map_or(at, |l| l.max(at)));
        }
    }

    /// Registers a `watch` call; returns true when a subscription must be
    /// sent (the roster was not watched yet).
    fn slot(
        &mut self,
        roster: Roster,
        reply: oneshot::Sender<Result<watch::Receiver<RosterView>, Error>>,
    ) -> bool {
        match self.rosters.get_mut(&roster) {
            Some(slot) if slot.view.borrow().snapshots() > 0 => {
                slot.handles += 1;
                let _ = reply.send(Ok(slot.view.subscribe()));
                false
            }
            Some(slot) => {
                slot.waiters.push(reply);
                false
            }
            None => {
                let (view, _) = watch::channel(RosterView::new(roster.clone()));
                self.rosters.insert(
                    roster,
                    Slot {
                        view,
                        handles: 0,
                        waiters: vec![reply],
                    },
                );
                true
            }
        }
    }

    /// Drops one handle; returns true when the roster is no longer watched
    /// and the hub should be told.
    fn release(&mut self, roster: &Roster) -> bool {
        let Some(slot) = self.rosters.get_mut(roster) else {
            return false;
        };
        slot.handles = slot.handles.saturating_sub(1);
        if slot.handles > 0 || !slot.waiters.is_empty() {
            return false;
        }
        self.rosters.remove(roster);
        self.pending.retain(|_, r| r != roster);
        self.live.retain(|_, r| r != roster);
        true
    }

    fn req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    async fn subscribe(&mut self, ws: &mut Ws, roster: Roster) -> Result<(), Ended> {
        let id = self.req();
        self.pending.insert(id, roster.clone());
        let m = ClientMessage::Subscribe {
            id: ReqId::Num(id),
            roster,
        };
        ws.send(text(&m)).await.map_err(lost)
    }

    /// Serves one welcomed connection until it ends.
    async fn session(&mut self, link: &mut Link) -> Ended {
        self.pending.clear();
        self.live.clear();
        let watched: Vec<Roster> = self.rosters.keys().cloned().collect();
        for roster in watched {
            if let Err(e) = self.subscribe(&mut link.ws, roster).await {
                return e;
            }
        }
        let margin = self.dialer.options.refresh_margin;
        let refresh_at =
            |exp: SystemTime| Instant::now() + refresh_delay(exp, SystemTime::now(), margin);
        let mut next_refresh = link.exp.map(refresh_at);
        let mut refreshing: Option<TokenFuture> = None;
        // Stands in for "never" when no refresh is scheduled (the branch is
        // disabled then, but its future is still built).
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            let res = tokio::select! {
                frame = link.ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        self.on_frame(&t);
                        Ok(())
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = close_of(frame);
                        Err(Ended::Hub { code: Some(code), reason })
                    }
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(lost(e)),
                    None => Err(lost("connection dropped")),
                },
                cmd = self.cmds.recv() => self.on_command(cmd, &mut link.ws).await,
                _ = sleep_until(next_refresh.unwrap_or(far)), if next_refresh.is_some() && refreshing.is_none() => {
                    next_refresh = None;
                    refreshing = Some(self.dialer.tokens.token());
                    Ok(())
                }
                token = async { refreshing.as_mut().expect("guarded by is_some").await }, if refreshing.is_some() => {
                    refreshing = None;
                    match token {
                        Ok(token) => {
                            let exp = expiry(&token);
                            next_refresh = exp.map(refresh_at);
                            self.emit(Event::TokenRefreshed { expires_at: exp });
                            link.ws.send(text(&ClientMessage::Refresh { token })).await.map_err(lost)
                        }
                        Err(e) => {
                            // The hub closes with 4001 at expiry if this keeps
                            // failing; reconnecting then asks the provider again.
                            tracing::warn!(error = %e, "token provider failed; retrying the refresh");
                            next_refresh = Some(Instant::now() + REFRESH_RETRY);
                            Ok(())
                        }
                    }
                }
            };
            if let Err(end) = res {
                return end;
            }
        }
    }

    async fn on_command(&mut self, cmd: Option<Command>, ws: &mut Ws) -> Result<(), Ended> {
        let Some(cmd) = cmd else {
            close_locally(ws).await;
            return Err(Ended::Local);
        };
        match cmd {
            Command::Activity {
                idle_ms: reported,
                at,
            } => {
                self.interacted(at);
                // Queued commands are late: measure from the interaction.
                let idle_ms = at.map_or(reported, |at| idle_ms(Some(at)));
                ws.send(text(&ClientMessage::Activity { idle_ms }))
                    .await
                    .map_err(lost)
            }
            Command::Watch { roster, reply } => {
                if self.slot(roster.clone(), reply) {
                    self.subscribe(ws, roster).await?;
                }
                Ok(())
            }
            Command::Unwatch { roster, reply } => {
                if self.release(&roster) {
                    let id = ReqId::Num(self.req());
                    ws.send(text(&ClientMessage::Unsubscribe { id, roster }))
                        .await
                        .map_err(lost)?;
                }
                if let Some(r) = reply {
                    let _ = r.send(());
                }
                Ok(())
            }
            Command::Logout { reply } => {
                // Answered when the hub's 4004 ends the connection.
                self.logout = Some(reply);
                ws.send(text(&ClientMessage::Logout)).await.map_err(lost)
            }
            Command::Close { reply } => {
                self.closers.push(reply);
                close_locally(ws).await;
                Err(Ended::Local)
            }
        }
    }

    fn on_frame(&mut self, text: &str) {
        let msg: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                // A newer hub may send frames this version does not know;
                // skipping them keeps the connection useful.
                tracing::debug!(error = %e, frame = text, "ignoring an unknown frame");
                return;
            }
        };
        match msg {
            ServerMessage::Snapshot {
                id,
                roster,
                users,
                stats,
            } => {
                let ReqId::Num(n) = id else { return };
                if self.live.get(&n) == Some(&roster) {
                    if let Some(slot) = self.rosters.get_mut(&roster) {
                        slot.view.send_modify(|v| v.reset(users, stats));
                    }
                    return;
                }
                if self.pending.get(&n) != Some(&roster) {
                    return;
                }
                self.pending.remove(&n);
                self.live.insert(n, roster.clone());
                let Some(slot) = self.rosters.get_mut(&roster) else {
                    return;
                };
                slot.view.send_modify(|v| v.reset(users, stats));
                for w in slot.waiters.drain(..) {
                    if w.send(Ok(slot.view.subscribe())).is_ok() {
                        slot.handles += 1;
                    }
                }
            }
            ServerMessage::Presence { ref roster, .. }
            | ServerMessage::User { ref roster, .. }
            | ServerMessage::UserRemoved { ref roster, .. }
            | ServerMessage::Stats { ref roster, .. } => {
                if let Some(slot) = self.rosters.get(roster) {
                    slot.view.send_if_modified(|v| v.apply(msg));
                }
            }
            ServerMessage::Error {
                id,
                code,
                message,
                roster,
            } => {
                let refused = match id {
                    Some(ReqId::Num(n)) => self.pending.remove(&n),
                    _ => None,
                };
                match refused.or(roster) {
                    Some(roster) => self.refused(roster, code, message),
                    None => self.emit(Event::Rejected { code, message }),
                }
            }
            ServerMessage::Welcome { .. } | ServerMessage::Unsubscribed { .. } => {}
        }
    }

    /// The hub refused a subscription or ended one: waiting `watch` calls
    /// get the error, handles see the roster ended.
    fn refused(&mut self, roster: Roster, code: presence_protocol::ErrorCode, message: String) {
        self.live.retain(|_, r| r != &roster);
        let Some(slot) = self.rosters.remove(&roster) else {
            return;
        };
        let why = Error::Refused {
            roster,
            code,
            message,
        };
        for w in slot.waiters {
            let _ = w.send(Err(why.clone()));
        }
        slot.view.send_modify(|v| v.end(why));
    }
}

/// Sends a normal close and waits briefly for the hub's reply, so the hub
/// sees a clean close instead of a reset; bounded as a whole, since a hub
/// that stopped reading must not keep the client from ending.
async fn close_locally(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "closed by the client".into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while ws.next().await.is_some() {}
        }
    })
    .await;
}
