//! One tab's WebSocket connection: the `hello` handshake, then frames in
//! (activity, subscriptions, refresh, logout) and frames out (from the tab's
//! outbox), until the tab, the hub, the token or the network ends it.
//!
//! One task per connection owns the socket; everything the hub wants to tell
//! the tab arrives through the tab's [`Outbox`], so no lock is ever held
//! across a socket write. Every way a session can end is an [`End`], and
//! [`End::close`] is the one place that turns it into what goes on the wire.

use std::borrow::Cow;
use std::sync::Arc;

use presence_protocol::{close, ClientMessage, ErrorCode, ReqId, Roster, ServerMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, timeout, Instant};
use uuid::Uuid;

use crate::auth::{AuthError, Claims, LEEWAY_SECS};
use crate::hub::{Hub, TenantRef};
use crate::metrics::Stamp;
use crate::net::limit::Permit;
use crate::net::outbox::{Control, Frame, Outbox};
use crate::net::rate::{Bucket, Rate};
use crate::net::ws::{CloseFrame, Conn, ConnError, FrameError, Incoming};
use crate::presence::tenant::JoinError;

/// Strikes a tab may accumulate (rate-limited frames cost 1, malformed frames
/// cost [`MALFORMED_COST`]) before it is closed with 4008; they refill at one
/// per second, so only a persistent abuser is closed.
const MALFORMED_COST: f32 = 8.0;

/// Every way a session ends.
#[derive(Debug)]
enum End {
    // The client.
    /// It sent its close frame (validated by the codec): echoed.
    ClientClosed(Option<CloseFrame>),
    /// It vanished: TCP closed or failed without a close frame.
    Vanished,
    /// It answered no ping: its peer is gone.
    PingTimeout,
    /// It sent something that is not RFC 6455, bad UTF-8, or a message
    /// over the size limit.
    Frame(FrameError),
    /// A binary message: the hub takes only text.
    Binary,
    /// Over the frame rate for longer than its strikes allow.
    TooManyMessages,
    /// Malformed JSON, over and over.
    RepeatedBadFrames,

    // The handshake.
    NoHello,
    NotHello(String),
    BadToken(AuthError),
    UnknownTenant,
    /// Cluster mode: the tenant could not be loaded in time (Redis away).
    TenantUnavailable,
    UnknownUser,
    NotActive,
    TooManyTabs,
    /// The node began to stop before the tab joined.
    Restarting,

    // The token.
    TokenExpired,

    // The hub, through the tab's outbox: logout (4004), deactivation
    // (4003), a newer connection of the tab (4000), shutdown (1012), a full
    // queue (1013), or a close decided by another node. These carry their
    // code already: the cluster passes it between nodes as a number.
    Ordered(u16, &'static str),
}

/// What ending a session sends.
enum Wire {
    /// Our close frame, then the linger for the client's.
    Close(u16, Cow<'static, str>),
    /// The echo of the client's close.
    Echo(Option<CloseFrame>),
    /// Nothing: there is nobody to tell.
    Nothing,
}

impl End {
    fn close(self) -> Wire {
        use Wire::Close;
        match self {
            End::ClientClosed(theirs) => Wire::Echo(theirs),
            End::Vanished => Wire::Nothing,
            End::PingTimeout => Close(close::GOING_AWAY, "no answer to ping".into()),
            End::Frame(e) => Close(e.close_code(), e.to_string().into()),
            End::Binary => Close(
                close::UNSUPPORTED_DATA,
                "binary frames are not accepted".into(),
            ),
            End::TooManyMessages => Close(close::POLICY_VIOLATION, "too many messages".into()),
            End::RepeatedBadFrames => Close(close::POLICY_VIOLATION, "repeated bad frames".into()),
            End::NoHello => Close(
                close::UNAUTHENTICATED,
                "no hello within the time limit".into(),
            ),
            End::NotHello(why) => Close(close::UNAUTHENTICATED, why.into()),
            End::BadToken(e) => Close(close::UNAUTHENTICATED, token_refusal(&e).into()),
            End::UnknownTenant => Close(close::FORBIDDEN, "unknown tenant".into()),
            End::TenantUnavailable => {
                Close(close::TRY_AGAIN_LATER, "tenant unavailable; retry".into())
            }
            End::UnknownUser => Close(close::FORBIDDEN, "unknown user".into()),
            End::NotActive => Close(close::FORBIDDEN, "user is not active".into()),
            End::TooManyTabs => Close(close::TOO_MANY_TABS, "too many tabs for this user".into()),
            End::Restarting => Close(close::NODE_RESTARTING, "node restarting".into()),
            End::TokenExpired => Close(close::UNAUTHENTICATED, "token expired".into()),
            End::Ordered(code, reason) => Close(code, reason.into()),
        }
    }

    /// The label of `presence_rejected_frames_total`, for ends caused by
    /// what the client sent.
    fn rejected(&self) -> Option<&'static str> {
        match self {
            End::Frame(FrameError::TooLarge { .. }) => Some("too_large"),
            End::Frame(FrameError::InvalidUtf8 | FrameError::InvalidCloseReason) => {
                Some("invalid_utf8")
            }
            End::Frame(_) => Some("protocol"),
            End::Binary => Some("binary"),
            _ => None,
        }
    }
}

impl From<ConnError> for End {
    fn from(e: ConnError) -> End {
        match e {
            ConnError::Eof => End::Vanished,
            ConnError::Frame(f) => End::Frame(f),
            ConnError::Io(e) => {
                tracing::debug!(error = %e, "connection failed");
                End::Vanished
            }
        }
    }
}

/// What a client is told about a refused token: whether it expired, and
/// nothing more. How the check failed (signature, claims, algorithm) goes
/// to the log only, so a refusal neither leaks the verifier's internals nor
/// helps anyone forge a token.
fn token_refusal(e: &AuthError) -> &'static str {
    match e {
        AuthError::Expired => "token expired",
        AuthError::Algorithm(_) | AuthError::Invalid(_) => "invalid token",
    }
}

/// Logs why a token was refused, with the verifier's cause.
fn log_refusal(e: &AuthError, during: &'static str) {
    tracing::debug!(error = e as &dyn std::error::Error, during, "token refused");
}

/// A frame the client sent that we could not accept: the request id it
/// carried, if any, and what was wrong with it.
pub(crate) fn bad_frame(text: &str) -> (Option<ReqId>, String) {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, format!("malformed JSON: {e}")),
    };
    let id = value
        .get("id")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let known = [
        "hello",
        "activity",
        "subscribe",
        "unsubscribe",
        "refresh",
        "logout",
    ];
    let message = match value.get("type").and_then(|t| t.as_str()) {
        None => "missing \"type\"".to_owned(),
        Some(t) if !known.contains(&t) => format!("unknown message type {t:?}"),
        Some(t) => match serde_json::from_value::<ClientMessage>(value.clone()) {
            Err(e) => format!("bad {t:?} message: {e}"),
            Ok(_) => format!("bad {t:?} message"),
        },
    };
    (id, message)
}

/// Serves one upgraded connection to the end. `pending_hello` is the
/// upgrade's place under `PRESENCE_MAX_PENDING_HELLO`, given back as soon as
/// the handshake ends (welcome or refusal).
///
/// Shutdown reaches the session without a future of its own in the idle
/// task (see `tasks::Tasks::spawn_session`): a joined tab is told 1012
/// through its outbox, a handshake in progress ends in 1012 when the node
/// begins to stop, and the close handshake is cut when the node's time for
/// connections is over.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    hub: Arc<Hub>,
    mut conn: Conn<S>,
    pending_hello: Permit,
) {
    let linger = hub.config.close_linger;
    // Boxed: the handshake's state lives only while it runs, instead of
    // widening every idle tab's task for its whole life.
    let outcome = Box::pin(async {
        tokio::select! {
            outcome = handshake(&hub, &mut conn) => outcome,
            _ = hub.stopping() => Err(End::Restarting),
        }
    })
    .await;
    drop(pending_hello);
    let end = match outcome {
        Ok((session, limits)) => {
            let mut joined = Joined(session);
            let end = joined.0.serve(&mut conn, limits).await;
            tracing::debug!(user = %joined.0.user, tab = %joined.0.tab, end = ?end, "tab closed");
            drop(joined);
            end
        }
        Err(end) => end,
    };
    if let Some(label) = end.rejected() {
        reject(&hub, label);
    }
    Box::pin(async {
        tokio::select! {
            _ = finish(&mut conn, end, linger) => {}
            _ = hub.tasks().cut() => {}
        }
    })
    .await;
}

/// Says goodbye on the wire as `end` requires.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    end: End,
    linger: std::time::Duration,
) {
    match end.close() {
        Wire::Close(code, reason) => {
            conn.close(code, &reason, linger).await;
        }
        Wire::Echo(theirs) => conn.answer_close(theirs.as_ref(), linger).await,
        Wire::Nothing => {}
    }
}

fn reject(hub: &Hub, reason: &str) {
    debug_assert!(
        crate::metrics::REJECT_REASONS.contains(&reason),
        "{reason} is missing from metrics::REJECT_REASONS"
    );
    hub.metrics
        .rejected_frames
        .with_label_values(&[reason])
        .inc();
}

/// A tab registered in its tenant. Dropping it unregisters the tab, so
/// nothing (not even a panic in the session) can leave a dead tab in the
/// user's list or in the open-tabs count.
struct Joined(Session);

impl Drop for Joined {
    fn drop(&mut self) {
        let s = &self.0;
        s.out.end();
        s.tenant.lock().leave(&s.user, s.out.conn, &s.rosters);
        s.hub.metrics.open_tabs.dec();
    }
}

struct Session {
    hub: Arc<Hub>,
    tenant: TenantRef,
    tid: String,
    user: String,
    tab: Uuid,
    out: Outbox,
    rosters: Vec<Roster>,
    /// Token expiry, ms since the epoch.
    exp_ms: u64,
}

/// The frame rate of one tab: every frame costs a token of `rate`; a frame
/// over the rate costs a strike, and a malformed one several.
struct Limits {
    rate: Bucket,
    strikes: Bucket,
}

/// The rates of a tab's frames and of its strikes (which refill at one per
/// second, so only a persistent abuser runs out).
fn rates(hub: &Hub) -> (Rate, Rate) {
    let c = &hub.config;
    (
        Rate {
            per_sec: c.rate_per_sec,
            capacity: c.rate_burst,
        },
        Rate {
            per_sec: 1,
            capacity: c.rate_burst,
        },
    )
}

impl Limits {
    fn new(hub: &Hub) -> Limits {
        let (rate, strikes) = rates(hub);
        Limits {
            rate: Bucket::new(rate),
            strikes: Bucket::new(strikes),
        }
    }

    /// Counts one frame: `Ok(true)` within the rate, `Ok(false)` over it
    /// (the frame is dropped), `Err` once the strikes are used up.
    fn frame(&mut self, hub: &Hub, now: Instant) -> Result<bool, End> {
        let (rate, strikes) = rates(hub);
        if self.rate.take(rate, 1.0, now) {
            return Ok(true);
        }
        if self.strikes.take(strikes, 1.0, now) {
            Ok(false)
        } else {
            Err(End::TooManyMessages)
        }
    }

    /// Charges a malformed frame; false once the strikes are used up.
    fn malformed(&mut self, hub: &Hub, now: Instant) -> bool {
        self.strikes.take(rates(hub).1, MALFORMED_COST, now)
    }
}

fn exp_ms(c: &Claims) -> u64 {
    (c.exp + LEEWAY_SECS).saturating_mul(1000)
}

/// Waits for `hello`, authenticates, joins the tenant and sends `welcome`.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    hub: &Arc<Hub>,
    conn: &mut Conn<S>,
) -> Result<(Session, Limits), End> {
    let mut limits = Limits::new(hub);
    let first = timeout(hub.config.hello_timeout, async {
        loop {
            match conn.recv().await? {
                Incoming::Written => {}
                Incoming::Ping(payload) => {
                    if limits.frame(hub, Instant::now())? {
                        conn.pong(&payload);
                    }
                }
                Incoming::Pong => {
                    limits.frame(hub, Instant::now())?;
                }
                Incoming::Text(t) => return Ok(t),
                Incoming::Binary => return Err(End::Binary),
                Incoming::Close(theirs) => return Err(End::ClientClosed(theirs)),
            }
        }
    })
    .await
    .map_err(|_| End::NoHello)?;
    let text = first?;
    hub.metrics.frames_in.inc();
    let Ok(ClientMessage::Hello {
        token,
        tab,
        idle_ms,
        ..
    }) = serde_json::from_str(&text)
    else {
        let (_, why) = bad_frame(&text);
        let why = if why.starts_with("bad \"hello\"") {
            why
        } else {
            "the first frame must be hello".into()
        };
        return Err(End::NotHello(why));
    };
    let claims = hub.verifier.verify(&token).map_err(|e| {
        log_refusal(&e, "hello");
        End::BadToken(e)
    })?;
    // Cluster mode: the tenant may not be held here yet; the tab waits for
    // its load (bounded) rather than being refused.
    let tenant = tokio::time::timeout(hub.config.tenant_load_timeout, hub.resident(&claims.tid))
        .await
        .map_err(|_| End::TenantUnavailable)?
        .map_err(|e| {
            tracing::warn!(tenant = %claims.tid, error = %e, "cannot load the tenant for a tab");
            End::TenantUnavailable
        })?
        .ok_or(End::UnknownTenant)?;
    let out = Outbox::new(hub.next_conn_id(), hub.config.outbound_queue);
    {
        let mut t = tenant.lock();
        // Described before joining, so a refusal leaves no tab registered.
        let user = t.dir.welcome_user(&claims.sub).ok_or(End::UnknownUser)?;
        if hub.is_shutting_down() {
            // Checked under the tenant's lock: `Hub::begin_shutdown` either
            // already told this tenant's tabs, or this tab sees the mark.
            return Err(End::Restarting);
        }
        t.join(
            &claims.sub,
            tab,
            out.clone(),
            hub.config.max_tabs_per_user,
            hub.now_ms(),
        )
        .map_err(|e| match e {
            JoinError::Forbidden => End::NotActive,
            JoinError::TooManyTabs => End::TooManyTabs,
        })?;
        // Counted under the lock that registered the tab; `Joined`
        // undoes both.
        hub.metrics.open_tabs.inc();
        let now = hub.now_ms();
        // Queue welcome before the activity so nothing this tab watches can
        // precede it; the transition itself reaches only watchers.
        out.send(&Arc::from(
            ServerMessage::Welcome {
                user,
                tab,
                idle_timeout_ms: hub.config.idle_timeout.as_millis() as u64,
                activity_interval_ms: hub.config.activity_interval().as_millis() as u64,
                server_time: now,
            }
            .to_json(),
        ));
        t.activity(&claims.sub, now, idle_ms, &hub.metrics);
    }
    let session = Session {
        hub: hub.clone(),
        tenant,
        tid: claims.tid.clone(),
        user: claims.sub.clone(),
        tab,
        out,
        rosters: Vec::new(),
        exp_ms: exp_ms(&claims),
    };
    Ok((session, limits))
}

/// Whether the peer is still there: a tab silent on the wire for the ping
/// interval is pinged, and one that then stays silent for the pong timeout
/// is gone. Browsers answer pings by themselves, so this costs a page
/// nothing, and it works through proxies, which pass pings on.
struct Liveness {
    /// When the tab last sent a whole frame.
    heard: Instant,
    /// Whether a ping of ours, sent a ping interval after `heard`, waits for
    /// an answer (any frame is one).
    pinged: bool,
    /// The wait for that answer is over: the tab is closed unless a frame
    /// is already readable. A task woken late (a saturated machine) would
    /// otherwise close a tab whose pong sat in the socket all along.
    last_call: bool,
}

impl Session {
    /// When the session's one timer must fire next: the token's expiry, the
    /// next ping, or the end of the wait for a pong.
    fn wake_at(&self, live: &Liveness) -> Instant {
        let c = &self.hub.config;
        let mut check = live.heard + c.ping_interval;
        if live.pinged {
            check += c.pong_timeout;
        }
        self.hub.clock.instant_at(self.exp_ms).min(check)
    }

    /// Writes what the hub queued for the tab, as one write, unless the
    /// socket has not taken the previous write yet (then the queue grows,
    /// and a queue that overflows orders the tab closed). Returns whether
    /// frames were left for another round; an order from the hub ends the
    /// session. Not async, so its buffers are no part of the tab's task.
    fn write_queued<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> Result<bool, End> {
        let mut frames: Vec<Frame> = Vec::new();
        let mut oldest: Option<Stamp> = None;
        let mut ctrl: Vec<Control> = Vec::new();
        let budget = self.hub.config.write_buffer_bytes;
        let more = self
            .out
            .take_if(!conn.pending(), budget, &mut frames, &mut oldest, &mut ctrl);
        for c in ctrl {
            match c {
                Control::Close(code, reason) => {
                    if code == close::SLOW_CONSUMER {
                        self.hub.metrics.slow_consumers.inc();
                    }
                    return Err(End::Ordered(code, reason));
                }
                Control::Ended {
                    roster,
                    code,
                    message,
                } => {
                    self.rosters.retain(|r| r != &roster);
                    frames.push(Arc::from(
                        ServerMessage::Error {
                            id: None,
                            code,
                            message,
                            roster: Some(roster),
                        }
                        .to_json(),
                    ));
                }
            }
        }
        if frames.is_empty() {
            return Ok(false);
        }
        self.hub.metrics.frames_out.inc_by(frames.len() as u64);
        if conn.send(&frames).is_err() {
            return Err(End::Vanished);
        }
        // Handed to the socket: written, or kept in the write buffer that is
        // written before anything more is taken from the outbox.
        if let Some(stamp) = oldest {
            self.hub.metrics.delivered(stamp);
        }
        // Frames left behind by the budget are taken as soon as the socket
        // has taken these.
        Ok(more && !conn.pending())
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        mut limits: Limits,
    ) -> End {
        let mut live = Liveness {
            heard: Instant::now(),
            pinged: false,
            last_call: false,
        };
        // One timer for the token's expiry and the liveness checks, moved
        // only when it fires or on `refresh`: re-arming it on every frame
        // would cost each activity frame two trips through the runtime's
        // timer wheel.
        let mut armed_exp = self.exp_ms;
        let timer = sleep_until(self.wake_at(&live));
        tokio::pin!(timer);
        // One pending wait on the outbox for as long as nothing is queued:
        // a new wait per loop would cost each activity frame a trip through
        // the `Notify`'s lock to register and another to deregister.
        let wake = self.out.wake();
        let queued = wake.notified();
        tokio::pin!(queued);
        loop {
            match self.write_queued(conn) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(end) => return end,
            }
            if armed_exp != self.exp_ms {
                armed_exp = self.exp_ms;
                timer.as_mut().reset(self.wake_at(&live));
            }
            tokio::select! {
                biased;
                // Orders from the hub (1012 on shutdown included) arrive here.
                _ = &mut queued => queued.set(wake.notified()),
                _ = &mut timer, if !live.last_call => {
                    let now = Instant::now();
                    if now >= self.hub.clock.instant_at(self.exp_ms) {
                        return End::TokenExpired;
                    }
                    let c = &self.hub.config;
                    let ping_at = live.heard + c.ping_interval;
                    if live.pinged && now >= ping_at + c.pong_timeout {
                        // Closed by the branch after `recv`, unless that
                        // reads a frame first. The yield lets the runtime
                        // poll the socket's readiness and renews the task's
                        // budget, so `recv` sees what has arrived.
                        live.last_call = true;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    if !live.pinged && now >= ping_at {
                        conn.ping(b"");
                        live.pinged = true;
                    }
                    timer.as_mut().reset(self.wake_at(&live));
                }
                msg = conn.recv() => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => return e.into(),
                    };
                    if matches!(msg, Incoming::Written) {
                        continue;
                    }
                    let now = Instant::now();
                    live.heard = now;
                    live.pinged = false;
                    live.last_call = false;
                    let within = match limits.frame(&self.hub, now) {
                        Ok(within) => within,
                        Err(end) => {
                            reject(&self.hub, "rate_limited");
                            return end;
                        }
                    };
                    match msg {
                        Incoming::Text(text) => {
                            self.hub.metrics.frames_in.inc();
                            if !within {
                                reject(&self.hub, "rate_limited");
                                self.error(None, ErrorCode::RateLimited, "too many messages; slow down");
                                continue;
                            }
                            if let Some(end) = self.on_text(&text, &mut limits, now) {
                                return end;
                            }
                        }
                        Incoming::Binary => return End::Binary,
                        Incoming::Close(theirs) => return End::ClientClosed(theirs),
                        Incoming::Ping(payload) if within => conn.pong(&payload),
                        Incoming::Ping(_) | Incoming::Pong | Incoming::Written => {
                            if !within {
                                reject(&self.hub, "rate_limited");
                            }
                        }
                    }
                }
                () = std::future::ready(()), if live.last_call => return End::PingTimeout,
            }
        }
    }

    fn reply(&self, msg: ServerMessage) {
        self.out.send(&Arc::from(msg.to_json()));
    }

    fn error(&self, id: Option<ReqId>, code: ErrorCode, message: impl Into<String>) {
        self.reply(ServerMessage::Error {
            id,
            code,
            message: message.into(),
            roster: None,
        });
    }

    /// Handles one text frame within the rate; `Some` ends the session.
    fn on_text(&mut self, text: &str, limits: &mut Limits, now: Instant) -> Option<End> {
        let msg = match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => m,
            Err(_) => {
                reject(&self.hub, "malformed");
                let (id, why) = bad_frame(text);
                if !limits.malformed(&self.hub, now) {
                    return Some(End::RepeatedBadFrames);
                }
                self.error(id, ErrorCode::BadRequest, why);
                return None;
            }
        };
        self.on_message(msg);
        None
    }

    fn on_message(&mut self, msg: ClientMessage) {
        let hub = &self.hub;
        match msg {
            ClientMessage::Activity { idle_ms } => {
                self.tenant
                    .lock()
                    .activity(&self.user, hub.now_ms(), idle_ms, &hub.metrics);
            }
            ClientMessage::Subscribe { id, roster } => {
                let already = self.rosters.contains(&roster);
                if !already && self.rosters.len() >= hub.config.max_subscriptions {
                    self.error(
                        Some(id),
                        ErrorCode::LimitExceeded,
                        format!(
                            "at most {} subscriptions per tab",
                            hub.config.max_subscriptions
                        ),
                    );
                    return;
                }
                let res =
                    self.tenant
                        .lock()
                        .watch(&self.user, &self.out, id.clone(), roster.clone());
                match res {
                    Ok(()) if !already => self.rosters.push(roster),
                    Ok(()) => {}
                    Err((code, message)) => self.error(Some(id), code, message),
                }
            }
            ClientMessage::Unsubscribe { id, roster } => {
                if self.tenant.lock().unwatch(&roster, self.out.conn) {
                    self.rosters.retain(|r| r != &roster);
                    self.reply(ServerMessage::Unsubscribed { id, roster });
                } else {
                    self.error(
                        Some(id),
                        ErrorCode::NotFound,
                        format!("not subscribed to {roster}"),
                    );
                }
            }
            ClientMessage::Refresh { token } => match hub.verifier.verify(&token) {
                Ok(c) if c.sub == self.user && c.tid == self.tid => self.exp_ms = exp_ms(&c),
                Ok(_) => self.error(None, ErrorCode::Forbidden, "token is for another user"),
                Err(e) => {
                    log_refusal(&e, "refresh");
                    self.error(
                        None,
                        ErrorCode::Unauthenticated,
                        format!("refresh refused: {}", token_refusal(&e)),
                    )
                }
            },
            ClientMessage::Logout => {
                // Closes every tab of the user, this one included, via the outboxes.
                self.tenant
                    .lock()
                    .logout(&self.user, hub.now_ms(), &hub.metrics);
            }
            ClientMessage::Hello { .. } => {
                self.error(None, ErrorCode::BadRequest, "already authenticated")
            }
        }
    }
}
