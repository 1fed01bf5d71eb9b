//! One simulated tab: a WebSocket from a chosen source address, `hello`,
//! and the `welcome` that proves it was accepted.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use presence_protocol::{ClientMessage, ServerMessage};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

pub type Ws = WebSocketStream<TcpStream>;

/// Connects from `source` (port chosen by the kernel) and says hello.
pub async fn open(hub: SocketAddr, source: IpAddr, token: &str) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("bind {source}"))?;
    let stream = socket
        .connect(hub)
        .await
        .with_context(|| format!("connect {hub}"))?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{hub}/v1/ws"), stream).await?;
    let hello = ClientMessage::Hello {
        token: token.to_owned(),
        tab: Uuid::new_v4(),
        idle_ms: 0,
        client: Some("loadtest/0.1".into()),
    };
    ws.send(Message::Text(serde_json::to_string(&hello)?.into()))
        .await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) => match serde_json::from_str(&t)? {
            ServerMessage::Welcome { .. } => Ok(ws),
            other => bail!("expected welcome, got {other:?}"),
        },
        other => bail!("expected welcome, got {other:?}"),
    }
}
