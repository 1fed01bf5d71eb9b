//! `GET /v1/ws`: checks the request, answers `101 Switching Protocols`, and
//! hands the raw TCP stream to a session once hyper lets go of it.
//!
//! The hub does its own framing ([`crate::net::ws`]) on the bare `TcpStream`
//! rather than through a WebSocket library's stream wrapper: that is what
//! lets an idle tab hold no buffers and lets one `writev` carry many shared
//! frames.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;

use crate::api::error::ApiError;
use crate::hub::Hub;
use crate::net::ws::Conn;
use crate::server::ConnectionSlot;

/// RFC 6455 §1.3.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Whether `Sec-WebSocket-Key` is present exactly once and is the base64
/// of 16 bytes (RFC 6455 §4.2.1, §11.3.1).
fn check_key(headers: &HeaderMap) -> Result<&HeaderValue, ApiError> {
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = keys.next().ok_or(ApiError::BadWebSocketKey("missing"))?;
    if keys.next().is_some() {
        return Err(ApiError::BadWebSocketKey("sent more than once"));
    }
    match base64::engine::general_purpose::STANDARD.decode(key.as_bytes()) {
        Ok(nonce) if nonce.len() == 16 => Ok(key),
        Ok(_) => Err(ApiError::BadWebSocketKey("must encode exactly 16 bytes")),
        Err(_) => Err(ApiError::BadWebSocketKey("not base64")),
    }
}

/// `GET /v1/ws`. Every refusal is an [`ApiError`] (SPEC §6 JSON). No
/// extension is negotiated (`permessage-deflate` would cost every tab a
/// compression context) and no subprotocol: the 101 names neither, which
/// RFC 6455 §9.1 lets a server do whatever the client offered.
pub async fn ws(State(hub): State<Arc<Hub>>, mut req: Request) -> Result<Response, ApiError> {
    if hub.is_shutting_down() {
        return Err(ApiError::NodeRestarting);
    }
    let headers = req.headers();
    let allowed = &hub.config.allowed_origins;
    if !allowed.is_empty() {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if !origin.is_some_and(|o| allowed.iter().any(|a| a == o)) {
            return Err(ApiError::OriginNotAllowed);
        }
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(ApiError::NotWebSocket);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Err(ApiError::WebSocketVersion);
    }
    let accept = accept_key(check_key(headers)?.as_bytes());
    // Taken last, so a request refused for its form holds no place.
    let pending_hello = hub
        .pending_hello
        .try_acquire()
        .ok_or(ApiError::TooManyPending)?;
    // The accept loop's place for this TCP connection: the session keeps
    // it, so the connection counts against PRESENCE_MAX_CONNECTIONS until
    // the tab closes, not only until hyper lets go of it.
    let slot = req.extensions().get::<ConnectionSlot>().cloned();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (max_frame, pong_room) = (hub.config.max_frame_bytes, hub.config.write_buffer_bytes);
    // A tracked task of the node: shutdown waits for it (within its
    // deadline), so every tab gets its 1012.
    let tasks = hub.clone();
    tasks.tasks().spawn_session(async move {
        let _slot = slot;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
        };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let stream = parts.io.into_inner();
                let _ = stream.set_nodelay(true);
                let conn = Conn::new(stream, &parts.read_buf, max_frame, pong_room);
                // The bytes read past the request are copied; let go of
                // hyper's read buffer (8 KiB) they point into before the
                // tab settles in for hours.
                drop(parts.read_buf);
                crate::net::session::run(hub, conn, pending_hello).await;
            }
            Err(_) => tracing::error!("upgraded connection is not a TCP stream"),
        }
    });
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_key_must_be_the_base64_of_16_bytes() {
        use axum::http::{header, HeaderMap, HeaderValue};
        let check = |keys: &[&'static str]| {
            let mut h = HeaderMap::new();
            for k in keys {
                h.append(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static(k));
            }
            super::check_key(&h).is_ok()
        };
        assert!(check(&["dGhlIHNhbXBsZSBub25jZQ=="]));
        assert!(!check(&[]));
        assert!(!check(&[""]));
        assert!(!check(&["not base64 at all!"]));
        // 15 bytes, and 16 bytes without their padding.
        assert!(!check(&["AAAAAAAAAAAAAAAAAAAA"]));
        assert!(!check(&["dGhlIHNhbXBsZSBub25jZQ"]));
        assert!(!check(&[
            "dGhlIHNhbXBsZSBub25jZQ==",
            "dGhlIHNhbXBsZSBub25jZQ=="
        ]));
    }
}
