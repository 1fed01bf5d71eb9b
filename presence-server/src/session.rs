//! One tab's WebSocket connection: the `hello` handshake, then frames in
//! (activity, subscriptions, refresh, logout) and frames out (from the tab's
//! outbox), until the tab, the hub or the token ends it.
//!
//! One task per connection owns the socket; everything the hub wants to tell
//! the tab arrives through the tab's [`Outbox`], so no lock is ever held
//! across a socket write.

use std::sync::Arc;

use presence_protocol::{close, ClientMessage, ErrorCode, ReqId, Roster, ServerMessage};
use tokio::time::{sleep_until, timeout, Instant};
use uuid::Uuid;

use crate::auth::{AuthError, Claims, LEEWAY_SECS};
use crate::hub::{Hub, TenantRef};
use crate::outbox::{Control, Frame, Outbox};
use crate::rate::Bucket;
use crate::tenant::JoinError;
use crate::ws::{Conn, Incoming, WsError};

/// Strikes a tab may accumulate (rate-limited frames cost 1, malformed frames
/// cost [`MALFORMED_COST`]) before it is closed with 4008; they refill at one
/// per second, so only a persistent abuser is closed.
const MALFORMED_COST: f64 = 8.0;

/// How long the close frame may take to leave: a peer that stopped reading
/// must not hold the connection's task forever.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a session ends, as a close frame.
struct Closing(u16, String);

fn closing(code: u16, reason: impl Into<String>) -> Closing {
    Closing(code, reason.into())
}

/// A frame the client sent that we could not accept.
fn bad_frame(text: &str) -> (Option<ReqId>, String) {
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

/// Sends the close frame. A peer that is gone or stopped reading changes
/// nothing: the wait is bounded. The socket is closed right after; the
/// client has its close frame by then, whatever it answers.
async fn send_close(conn: &mut Conn, c: Closing) {
    conn.close(c.0, &c.1);
    let _ = timeout(CLOSE_TIMEOUT, conn.flush()).await;
}

/// Serves one upgraded connection to the end.
pub async fn run(hub: Arc<Hub>, conn: Conn) {
    let alive = hub.session_started();
    serve_tab(hub, conn).await;
    // Only now, with this task's hold on the hub gone: a node that waits
    // for its sessions may then release the hub (and its store).
    drop(alive);
}

async fn serve_tab(hub: Arc<Hub>, mut conn: Conn) {
    // Boxed: the handshake's state lives only while it runs, instead of
    // widening every idle tab's task for its whole life.
    let mut session = match Box::pin(handshake(&hub, &mut conn)).await {
        Ok(s) => s,
        Err(c) => return Box::pin(send_close(&mut conn, c)).await,
    };
    hub.metrics.open_tabs.inc();
    let end = session.serve(&mut conn).await;
    session.out.end();
    session
        .tenant
        .lock()
        .leave(&session.user, session.out.conn, &session.rosters);
    hub.metrics.open_tabs.dec();
    tracing::debug!(user = %session.user, tab = %session.tab, code = end.0, "tab closed");
    Box::pin(send_close(&mut conn, end)).await;
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
    rate: Bucket,
    strikes: Bucket,
}

fn exp_ms(c: &Claims) -> u64 {
    (c.exp + LEEWAY_SECS).saturating_mul(1000)
}

/// Waits for `hello`, authenticates, joins the tenant and sends `welcome`.
async fn handshake(hub: &Arc<Hub>, conn: &mut Conn) -> Result<Session, Closing> {
    let first = timeout(hub.config.hello_timeout, async {
        loop {
            match conn.recv().await {
                Ok(Incoming::Ping | Incoming::Pong | Incoming::Written) => {}
                other => return other,
            }
        }
    })
    .await
    .map_err(|_| closing(close::UNAUTHENTICATED, "no hello within the time limit"))?;
    let text = match first {
        Ok(Incoming::Text(t)) => t,
        Ok(Incoming::Binary) => {
            return Err(closing(
                close::POLICY_VIOLATION,
                "binary frames are not accepted",
            ))
        }
        Err(WsError::TooLarge) => return Err(closing(close::POLICY_VIOLATION, "frame too large")),
        _ => return Err(closing(close::UNAUTHENTICATED, "expected hello")),
    };
    if text.len() > hub.config.max_frame_bytes {
        return Err(closing(close::POLICY_VIOLATION, "frame too large"));
    }
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
        return Err(closing(close::UNAUTHENTICATED, why));
    };
    let claims = hub.verifier.verify(&token).map_err(|e| match e {
        AuthError::Expired => closing(close::UNAUTHENTICATED, "token expired"),
        AuthError::Algorithm | AuthError::Invalid(_) => {
            closing(close::UNAUTHENTICATED, "invalid token")
        }
    })?;
    let tenant = hub
        .tenant(&claims.tid)
        .ok_or_else(|| closing(close::FORBIDDEN, "unknown tenant"))?;
    let out = Outbox::new(hub.next_conn_id(), hub.config.outbound_queue);
    {
        let mut t = tenant.lock();
        // Described before joining, so a refusal leaves no tab registered.
        let user = Hub::welcome_user(&t, &claims.sub)
            .ok_or_else(|| closing(close::FORBIDDEN, "unknown user"))?;
        if hub.is_shutting_down() {
            // Checked under the tenant's lock: `Hub::begin_shutdown` either
            // already told this tenant's tabs, or this tab sees the mark.
            return Err(closing(close::NODE_RESTARTING, "node restarting"));
        }
        t.join(&claims.sub, tab, out.clone(), hub.config.max_tabs_per_user)
            .map_err(|e| match e {
                JoinError::Forbidden => closing(close::FORBIDDEN, "user is not active"),
                JoinError::TooManyTabs => {
                    closing(close::TOO_MANY_TABS, "too many tabs for this user")
                }
            })?;
        let now = hub.now_ms();
        // Queue welcome before the activity so nothing this tab watches can
        // precede it; the transition itself reaches only watchers.
        out.send(&Arc::from(
            ServerMessage::Welcome {
                user,
                tab,
                idle_timeout_ms: hub.config.idle_timeout.as_millis() as u64,
                activity_interval_ms: hub.config.activity_interval.as_millis() as u64,
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
        rate: Bucket::new(hub.config.rate_per_sec, hub.config.rate_burst),
        strikes: Bucket::new(1, hub.config.rate_burst),
    };
    Ok(session)
}

impl Session {
    async fn serve(&mut self, conn: &mut Conn) -> Closing {
        // One timer for the token's life, moved on `refresh`: re-arming it
        // on every frame would cost each activity frame two trips through
        // the runtime's timer wheel.
        let mut armed = self.exp_ms;
        let expiry = sleep_until(self.hub.clock.instant_at(armed));
        tokio::pin!(expiry);
        // One pending wait on the outbox for as long as nothing is queued:
        // a new wait per loop would cost each activity frame a trip through
        // the `Notify`'s lock to register and another to deregister.
        let wake = self.out.wake();
        let queued = wake.notified();
        tokio::pin!(queued);
        let mut frames: Vec<Frame> = Vec::new();
        let mut ctrl: Vec<Control> = Vec::new();
        loop {
            // What the hub queued goes out first, as one write, unless the
            // socket has not taken the previous write yet: then the queue
            // grows, and a queue that overflows ends the session below.
            self.out.take_if(!conn.pending(), &mut frames, &mut ctrl);
            for c in ctrl.drain(..) {
                match c {
                    Control::Close(code, reason) => {
                        if code == close::SLOW_CONSUMER {
                            self.hub.metrics.slow_consumers.inc();
                        }
                        return closing(code, reason);
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
            if !frames.is_empty() {
                self.hub.metrics.frames_out.inc_by(frames.len() as u64);
                if conn.send(&frames).is_err() {
                    return closing(close::GOING_AWAY, "write failed");
                }
                frames = Vec::new();
            }
            if armed != self.exp_ms {
                armed = self.exp_ms;
                expiry.as_mut().reset(self.hub.clock.instant_at(armed));
            }
            tokio::select! {
                biased;
                // Orders from the hub (1012 on shutdown included) arrive here.
                _ = &mut queued => queued.set(wake.notified()),
                _ = &mut expiry => return closing(close::UNAUTHENTICATED, "token expired"),
                msg = conn.recv() => match msg {
                    Ok(Incoming::Text(text)) => {
                        if let Some(c) = self.on_text(&text) {
                            return c;
                        }
                    }
                    Ok(Incoming::Binary) => {
                        self.reject("binary");
                        return closing(close::POLICY_VIOLATION, "binary frames are not accepted");
                    }
                    Ok(Incoming::Ping | Incoming::Pong | Incoming::Written) => {}
                    Ok(Incoming::Close) | Err(WsError::Eof) => return closing(close::GOING_AWAY, "closed by client"),
                    Err(WsError::TooLarge) => {
                        self.reject("too_large");
                        return closing(close::POLICY_VIOLATION, "frame too large");
                    }
                    Err(WsError::Io(e)) => {
                        tracing::debug!(error = %e, "connection failed");
                        return closing(close::GOING_AWAY, "connection failed");
                    }
                    Err(e) => {
                        self.reject("protocol");
                        tracing::debug!(error = %e, "websocket error");
                        return closing(close::POLICY_VIOLATION, "websocket protocol error");
                    }
                },
            }
        }
    }

    fn reject(&self, reason: &str) {
        self.hub
            .metrics
            .rejected_frames
            .with_label_values(&[reason])
            .inc();
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

    /// Handles one text frame; `Some` ends the session.
    fn on_text(&mut self, text: &str) -> Option<Closing> {
        self.hub.metrics.frames_in.inc();
        if text.len() > self.hub.config.max_frame_bytes {
            self.reject("too_large");
            return Some(closing(close::POLICY_VIOLATION, "frame too large"));
        }
        let now = Instant::now();
        if !self.rate.take(1.0, now) {
            self.reject("rate_limited");
            if !self.strikes.take(1.0, now) {
                return Some(closing(close::POLICY_VIOLATION, "too many messages"));
            }
            self.error(None, ErrorCode::RateLimited, "too many messages; slow down");
            return None;
        }
        let msg = match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => m,
            Err(_) => {
                self.reject("malformed");
                let (id, why) = bad_frame(text);
                if !self.strikes.take(MALFORMED_COST, now) {
                    return Some(closing(close::POLICY_VIOLATION, "repeated bad frames"));
                }
                self.error(id, ErrorCode::BadRequest, why);
                return None;
            }
        };
        self.on_message(msg)
    }

    fn on_message(&mut self, msg: ClientMessage) -> Option<Closing> {
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
                    return None;
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
                Err(e) => self.error(
                    None,
                    ErrorCode::Unauthenticated,
                    format!("refresh refused: {e}"),
                ),
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
        None
    }
}
