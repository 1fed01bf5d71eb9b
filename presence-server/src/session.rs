//! One tab's WebSocket connection: the `hello` handshake, then frames in
//! (activity, subscriptions, refresh, logout) and frames out (from the tab's
//! outbox), until the tab, the hub or the token ends it.
//!
//! One task per connection owns the socket; everything the hub wants to tell
//! the tab arrives through the tab's [`Outbox`], so no lock is ever held
//! across a socket write.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use presence_protocol::{close, ClientMessage, ErrorCode, ReqId, Roster, ServerMessage};
use tokio::time::{sleep_until, timeout, Instant};
use uuid::Uuid;

use crate::auth::{AuthError, Claims, LEEWAY_SECS};
use crate::hub::{Hub, TenantRef};
use crate::outbox::{Control, Inbox, Outbox};
use crate::rate::Bucket;
use crate::tenant::JoinError;

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

async fn send_close(socket: &mut WebSocket, c: Closing) {
    let frame = CloseFrame {
        code: c.0,
        reason: c.1.into(),
    };
    // The peer may already be gone or have stopped reading; a failed or
    // timed-out close changes nothing.
    let _ = timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// Serves one upgraded connection to the end.
pub async fn run(hub: Arc<Hub>, mut socket: WebSocket) {
    let _alive = hub.session_started();
    let c = match handshake(&hub, &mut socket).await {
        Ok(s) => s,
        Err(c) => return send_close(&mut socket, c).await,
    };
    let (mut session, inbox) = c;
    hub.metrics.open_tabs.inc();
    let end = session.serve(&mut socket, inbox).await;
    session
        .tenant
        .lock()
        .leave(&session.user, session.out.conn, &session.rosters);
    hub.metrics.open_tabs.dec();
    tracing::debug!(user = %session.user, tab = %session.tab, code = end.0, "tab closed");
    send_close(&mut socket, end).await;
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
async fn handshake(hub: &Arc<Hub>, socket: &mut WebSocket) -> Result<(Session, Inbox), Closing> {
    let first = timeout(hub.config.hello_timeout, socket.recv())
        .await
        .map_err(|_| closing(close::UNAUTHENTICATED, "no hello within the time limit"))?;
    let text = match first {
        Some(Ok(Message::Text(t))) => t,
        Some(Ok(Message::Binary(_))) => {
            return Err(closing(
                close::POLICY_VIOLATION,
                "binary frames are not accepted",
            ))
        }
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
    let (out, inbox) = Outbox::new(hub.next_conn_id(), hub.config.outbound_queue);
    {
        let mut t = tenant.lock();
        // Described before joining, so a refusal leaves no tab registered.
        let user = Hub::welcome_user(&t, &claims.sub)
            .ok_or_else(|| closing(close::FORBIDDEN, "unknown user"))?;
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
    Ok((session, inbox))
}

impl Session {
    async fn serve(&mut self, socket: &mut WebSocket, mut inbox: Inbox) -> Closing {
        let mut shutdown = self.hub.shutdown_signal();
        loop {
            let expiry = sleep_until(self.hub.clock.instant_at(self.exp_ms));
            tokio::select! {
                biased;
                _ = crate::hub::until_true(&mut shutdown) => {
                    return closing(close::NODE_RESTARTING, "node restarting");
                }
                ctrl = inbox.ctrl.recv() => match ctrl {
                    Some(Control::Close(code, reason)) => return closing(code, reason),
                    Some(Control::Ended { roster, code, message }) => {
                        self.rosters.retain(|r| r != &roster);
                        self.reply(ServerMessage::Error { id: None, code, message, roster: Some(roster) });
                    }
                    None => return closing(close::GOING_AWAY, "hub gone"),
                },
                frame = inbox.frames.recv() => {
                    let Some(frame) = frame else { return closing(close::GOING_AWAY, "hub gone") };
                    // A peer that stopped reading blocks this write; the
                    // queue then fills, and that must still end the session.
                    tokio::select! {
                        sent = socket.send(Message::Text(frame.as_ref().into())) => {
                            if sent.is_err() {
                                return closing(close::GOING_AWAY, "write failed");
                            }
                        }
                        _ = self.out.overflowed() => {
                            return closing(close::SLOW_CONSUMER, "too slow to keep up");
                        }
                    }
                    self.hub.metrics.frames_out.inc();
                }
                _ = expiry => return closing(close::UNAUTHENTICATED, "token expired"),
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(c) = self.on_text(&text) {
                            return c;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        self.reject("binary");
                        return closing(close::POLICY_VIOLATION, "binary frames are not accepted");
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return closing(close::GOING_AWAY, "closed by client"),
                    Some(Err(e)) => {
                        self.reject("protocol");
                        tracing::debug!(error = %e, "websocket error");
                        return closing(close::POLICY_VIOLATION, "websocket protocol error or frame too large");
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
