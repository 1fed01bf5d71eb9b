//! Opening one connection: a fresh token, the WebSocket upgrade, `hello`,
//! and the `welcome` that says the hub accepted the tab.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use presence_protocol::{ClientMessage, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::token::expiry;
use crate::{ClientOptions, Error, TokenProvider, Welcome};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The status code a close without a frame is reported with (RFC 6455 1005:
/// "no status received").
const NO_STATUS: u16 = 1005;

/// Opens connections: the token, the upgrade, `hello`, `welcome`.
pub(crate) struct Dialer {
    url: String,
    pub tokens: Arc<dyn TokenProvider>,
    pub options: ClientOptions,
    tab: Uuid,
}

/// A welcomed connection.
pub(crate) struct Link {
    pub ws: Ws,
    pub welcome: Welcome,
    /// The token's `exp`, if it has one: when to refresh.
    pub exp: Option<SystemTime>,
}

impl Dialer {
    pub fn new(
        url: String,
        tokens: Arc<dyn TokenProvider>,
        options: ClientOptions,
        tab: Uuid,
    ) -> Dialer {
        Dialer {
            url,
            tokens,
            options,
            tab,
        }
    }

    /// One attempt, bounded by the handshake timeout. A fresh token is
    /// asked for every time: the previous one may have expired while away.
    pub async fn open(&self, idle_ms: u64) -> Result<Link, Error> {
        let token = self
            .tokens
            .token()
            .await
            .map_err(|e| Error::Token(Arc::from(e)))?;
        let exp = expiry(&token);
        let limit = self.options.handshake_timeout;
        tokio::time::timeout(limit, self.handshake(token, idle_ms))
            .await
            .map_err(|_| Error::HandshakeTimeout(limit))?
            .map(|(ws, welcome)| Link { ws, welcome, exp })
    }

    async fn handshake(&self, token: String, idle_ms: u64) -> Result<(Ws, Welcome), Error> {
        let connect = |e| Error::Connect(Arc::new(e));
        let (mut ws, _) = tokio_tungstenite::connect_async(self.url.as_str())
            .await
            .map_err(connect)?;
        let hello = ClientMessage::Hello {
            token,
            tab: self.tab,
            idle_ms,
            client: Some(self.options.client_name.clone()),
        };
        ws.send(text(&hello)).await.map_err(connect)?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return match serde_json::from_str(&t) {
                        Ok(ServerMessage::Welcome {
                            user,
                            tab,
                            idle_timeout_ms,
                            activity_interval_ms,
                            server_time,
                        }) => Ok((
                            ws,
                            Welcome {
                                user,
                                tab,
                                idle_timeout: Duration::from_millis(idle_timeout_ms),
                                activity_interval: Duration::from_millis(activity_interval_ms),
                                server_time_ms: server_time,
                            },
                        )),
                        _ => Err(Error::Protocol(format!("expected welcome, got {t}"))),
                    };
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = close_of(frame);
                    return Err(Error::Closed { code, reason });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(connect(e)),
                None => {
                    return Err(Error::Closed {
                        code: u16::from(CloseCode::Abnormal),
                        reason: "connection dropped before welcome".into(),
                    })
                }
            }
        }
    }
}

pub(crate) fn text(m: &ClientMessage) -> Message {
    // Client messages are strings, numbers and UUIDs: serialising cannot fail.
    Message::text(serde_json::to_string(m).expect("client messages always serialise"))
}

pub(crate) fn close_of(frame: Option<CloseFrame>) -> (u16, String) {
    frame.map_or((NO_STATUS, String::new()), |f| {
        (u16::from(f.code), f.reason.to_string())
    })
}
