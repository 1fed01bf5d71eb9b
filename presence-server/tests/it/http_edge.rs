//! The HTTP edge (SPEC §6, §9): the WebSocket upgrade's checks, the limits
//! on connections, on sockets that have not said `hello`, on headers and
//! bodies, and the JSON shape of every error the stack produces, as a raw
//! HTTP/1.1 client on a socket sees them.

use std::time::{Duration, Instant};

use presence_protocol::{close, ClientMessage};
use presence_server::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::support::*;

/// A response as a raw client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header fields, names lower-cased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status and SPEC §6's `{"error":{"code","message"}}`.
    fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        v
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response head and its `Content-Length` body (none for a 101).
async fn read_answer(s: &mut TcpStream) -> Answer {
    timeout(WAIT, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.expect("read the response");
            assert!(
                n > 0,
                "closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = buf[head_end..].to_vec();
        while body.len() < len {
            let n = s.read(&mut chunk).await.expect("read the body");
            assert!(n > 0, "closed in the body");
            body.extend_from_slice(&chunk[..n]);
        }
        Answer {
            status: status.parse().unwrap(),
            headers,
            body,
        }
    })
    .await
    .expect("no response in time")
}

/// Sends `raw` on a new connection and reads the response.
async fn exchange(h: &TestHub, raw: &[u8]) -> (TcpStream, Answer) {
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let a = read_answer(&mut s).await;
    (s, a)
}

/// Waits for the hub to close the connection (EOF or reset); how long it took.
async fn closed_by_hub(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    timeout(WAIT, async {
        let mut sink = [0u8; 4096];
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the hub kept the connection open");
    start.elapsed()
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request to `/v1/ws` with `headers` (each `"Name: value"`).
fn upgrade_request(headers: &[&str]) -> Vec<u8> {
    let mut r = String::from("GET /v1/ws HTTP/1.1\r\nHost: hub\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn proper_upgrade(key: &str) -> Vec<u8> {
    upgrade_request(&[
        "Upgrade: websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {key}"),
        "Sec-WebSocket-Version: 13",
    ])
}

#[tokio::test]
async fn an_upgrade_whose_key_is_not_16_bytes_of_base64_gets_400_json() {
    let h = TestHub::start().await;
    for key in [
        "",
        "not base64!",
        "AAAAAAAAAAAAAAAAAAAA",
        "dGhlIHNhbXBsZSBub25jZQ",
    ] {
        let (_, a) = exchange(&h, &proper_upgrade(key)).await;
        let v = a.assert_error(400, "bad_request");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Sec-WebSocket-Key"),
            "{key:?}: {v}"
        );
    }
    let missing = upgrade_request(&[
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ]);
    exchange(&h, &missing)
        .await
        .1
        .assert_error(400, "bad_request");
    let (_, a) = exchange(&h, &proper_upgrade(KEY)).await;
    assert_eq!(a.status, 101, "{a:?}");
    assert_eq!(
        a.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[tokio::test]
async fn every_426_names_websocket_and_the_version_one_names_13() {
    let h = TestHub::start().await;
    let (_, a) = exchange(&h, b"GET /v1/ws HTTP/1.1\r\nHost: hub\r\n\r\n").await;
    a.assert_error(426, "upgrade_required");
    assert_eq!(a.header("upgrade"), Some("websocket"), "{a:?}");
    let v12 = upgrade_request(&[
        "Upgrade: websocket",
        "Connection: Upgrade",
        &format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 12",
    ]);
    let (_, a) = exchange(&h, &v12).await;
    a.assert_error(426, "upgrade_required");
    assert_eq!(a.header("upgrade"), Some("websocket"), "{a:?}");
    assert_eq!(a.header("sec-websocket-version"), Some("13"), "{a:?}");
}

#[tokio::test]
async fn an_upgrade_from_a_foreign_origin_gets_403_json() {
    let h = TestHub::with_config(Config {
        allowed_origins: vec!["https://erp.example".into()],
        ..test_config()
    })
    .await;
    let mut req = proper_upgrade(KEY);
    req.truncate(req.len() - 2);
    req.extend_from_slice(b"Origin: https://evil.example\r\n\r\n");
    exchange(&h, &req).await.1.assert_error(403, "forbidden");
}

#[tokio::test]
async fn an_offered_permessage_deflate_is_not_negotiated() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let mut req = h.url().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert!(
        resp.headers().get("sec-websocket-extensions").is_none(),
        "{:?}",
        resp.headers()
    );
    // Plain frames work on it.
    let mut tab = Tab {
        ws,
        welcome: None,
        tab: Uuid::new_v4(),
    };
    tab.send(&ClientMessage::Hello {
        token: token("acme", "ann"),
        tab: tab.tab,
        idle_ms: 0,
        client: None,
    })
    .await;
    assert!(
        matches!(
            tab.recv().await,
            presence_protocol::ServerMessage::Welcome { .. }
        ),
        "no welcome"
    );
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n";

/// Tries `/healthz` on fresh connections until one is served, which must
/// happen within `WAIT` (a place is freed asynchronously, when the hub
/// notices the connection that held it is gone). Returns that connection,
/// still open.
async fn served_again(h: &TestHub) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, a) = exchange(h, HEALTHZ).await;
        if a.status == 200 {
            return s;
        }
        a.assert_error(503, "too_many_connections");
        assert!(Instant::now() < deadline, "no place freed in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tenant `acme` with user `ann`, written straight to the hub: an admin API
/// call would hold a connection of its own for a while.
async fn seed_without_http(h: &TestHub) {
    h.hub
        .put_tenant(
            "acme",
            &presence_protocol::admin::TenantPut {
                user_limit: 10,
                event_retention_s: None,
                time_zone: None,
                history_retention_days: None,
            },
        )
        .await
        .unwrap();
    let ann = presence_protocol::admin::UserPut {
        name: Some("Ann".into()),
        email: Some("ann@x.test".into()),
        ..Default::default()
    };
    h.hub
        .write("acme", |d| {
            Ok((presence_server::put_user(d, "ann", &ann)?, ()))
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_connection_over_the_limit_gets_a_json_503_and_is_closed() {
    let h = TestHub::with_config(Config {
        max_connections: 2,
        ..test_config()
    })
    .await;
    seed_without_http(&h).await;
    // One tab (upgraded: hyper is done with it, the session holds its
    // place) and one idle HTTP connection. The hub accepts in order, so
    // both are counted before the next one is.
    let tab = h.tab("acme", "ann").await;
    let (idle, a) = exchange(&h, HEALTHZ).await;
    assert_eq!(a.status, 200);

    let (mut third, a) = exchange(&h, HEALTHZ).await;
    a.assert_error(503, "too_many_connections");
    assert_eq!(a.header("connection"), Some("close"));
    closed_by_hub(&mut third).await;
    // The WebSocket endpoint is refused the same way, before routing.
    let (mut fourth, a) = exchange(&h, &proper_upgrade(KEY)).await;
    a.assert_error(503, "too_many_connections");
    closed_by_hub(&mut fourth).await;

    drop(idle);
    let _held = served_again(&h).await;
    // The tab still holds its place.
    exchange(&h, HEALTHZ)
        .await
        .1
        .assert_error(503, "too_many_connections");
    drop(tab);
    served_again(&h).await;
}

#[tokio::test]
async fn upgrades_beyond_the_pending_hello_limit_get_503_until_a_handshake_ends() {
    let h = TestHub::with_config(Config {
        max_pending_hello: 1,
        ..test_config()
    })
    .await;
    seed_without_http(&h).await;
    // Upgraded, no hello yet: the only place.
    let (ws, _) = tokio_tungstenite::connect_async(h.url()).await.unwrap();
    let (_, a) = exchange(&h, &proper_upgrade(KEY)).await;
    a.assert_error(503, "too_many_pending");

    // Its welcome ends its handshake (the place is given back before the
    // welcome is written), so the next upgrade is accepted.
    let mut first = Tab {
        ws,
        welcome: None,
        tab: Uuid::new_v4(),
    };
    first
        .send(&ClientMessage::Hello {
            token: token("acme", "ann"),
            tab: first.tab,
            idle_ms: 0,
            client: None,
        })
        .await;
    first.recv().await;
    // A refusal ends a handshake too.
    let (ws, _) = tokio_tungstenite::connect_async(h.url()).await.unwrap();
    let mut refused = Tab {
        ws,
        welcome: None,
        tab: Uuid::new_v4(),
    };
    exchange(&h, &proper_upgrade(KEY))
        .await
        .1
        .assert_error(503, "too_many_pending");
    refused
        .send(&ClientMessage::Hello {
            token: "not-a-token".into(),
            tab: refused.tab,
            idle_ms: 0,
            client: None,
        })
        .await;
    assert_eq!(refused.closed().await.code, close::UNAUTHENTICATED);
    let (_, a) = exchange(&h, &proper_upgrade(KEY)).await;
    assert_eq!(a.status, 101, "{a:?}");
}

#[tokio::test]
async fn headers_over_the_limit_get_431() {
    let h = TestHub::start().await;
    // Over the documented 16 KiB: our JSON answer.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let (mut s, a) = exchange(&h, big.as_bytes()).await;
    let v = a.assert_error(431, "headers_too_large");
    assert_eq!(v["error"]["details"]["limit"], 16 * 1024);
    closed_by_hub(&mut s).await;
    // Past hyper's memory backstop: hyper's own (empty) answer.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Big: {}\r\n\r\n",
        "a".repeat(72 * 1024)
    );
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // The hub may answer and close before it has read it all.
    let _ = s.write_all(huge.as_bytes()).await;
    assert_eq!(read_answer(&mut s).await.status, 431);
    // Just under the limit is served.
    let fits = format!(
        "GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Big: {}\r\n\r\n",
        "a".repeat(15 * 1024)
    );
    assert_eq!(exchange(&h, fits.as_bytes()).await.1.status, 200);
}

#[tokio::test]
async fn a_stalled_request_is_disconnected_after_the_header_read_timeout() {
    let configured = Duration::from_millis(300);
    let h = TestHub::with_config(Config {
        header_read_timeout: configured,
        ..test_config()
    })
    .await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /heal").await.unwrap();
    let waited = closed_by_hub(&mut s).await;
    assert!(
        waited >= configured - Duration::from_millis(50),
        "{waited:?}"
    );
    // A kept-alive connection that sends nothing more is closed too.
    let (mut s, a) = exchange(&h, HEALTHZ).await;
    assert_eq!(a.status, 200);
    closed_by_hub(&mut s).await;
}

/// Starts a POST with `content_length` announced and sends only `sent`
/// bytes of the body.
async fn start_upload(
    h: &TestHub,
    path: &str,
    headers: &[&str],
    content_length: usize,
    sent: usize,
) -> TcpStream {
    let mut head =
        format!("POST {path} HTTP/1.1\r\nHost: hub\r\nContent-Length: {content_length}\r\n");
    for x in headers {
        head.push_str(x);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b'x'; sent]).await.unwrap();
    s
}

#[tokio::test]
async fn an_unauthenticated_upload_is_refused_before_its_body_is_read() {
    let h = TestHub::start().await;
    h.seed("acme", &[]).await;
    let ten_mib = 10 << 20;
    for (path, content_type, auth) in [
        ("/v1/tenants/acme/users/import", "text/csv", None),
        (
            "/v1/tenants/acme/users/import",
            "text/csv",
            Some("Authorization: Bearer wrong-key-0123456789"),
        ),
        (
            "/v1/tenants/acme/users/deactivate",
            "application/json",
            None,
        ),
    ] {
        let mut headers = vec![format!("Content-Type: {content_type}")];
        headers.extend(auth.map(str::to_owned));
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        // 64 KiB of 10 MiB: a hub that read the body first would wait for
        // the rest and never answer.
        let mut s = start_upload(&h, path, &headers, ten_mib, 64 << 10).await;
        read_answer(&mut s)
            .await
            .assert_error(401, "unauthenticated");
        // And it does not go on reading: sending the rest fails.
        let sent = timeout(WAIT, async {
            let chunk = vec![b'x'; 64 << 10];
            let mut sent = 64 << 10;
            while sent < ten_mib {
                if s.write_all(&chunk).await.is_err() {
                    return Some(sent);
                }
                sent += chunk.len();
            }
            None
        })
        .await
        .expect("the hub neither read nor closed");
        assert!(sent.is_some(), "{path}: the hub took all 10 MiB");
    }
}

#[tokio::test]
async fn bodies_need_their_content_type() {
    let h = TestHub::start().await;
    h.seed("acme", &[]).await;
    let a = h.admin();
    let user = br#"{"name":"Ann","email":"ann@x.test"}"#.to_vec();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "text/csv",
    ] {
        let r = a
            .raw("PUT", "/v1/tenants/acme/users/ann", ct, user.clone())
            .await;
        assert_eq!(r.0, 415, "{ct}: {}", r.1);
        assert_eq!(r.1["error"]["code"], "unsupported_media_type", "{}", r.1);
    }
    // None at all.
    let resp = reqwest::Client::new()
        .put(format!("http://{}/v1/tenants/acme/users/ann", h.addr))
        .bearer_auth(ADMIN_KEY)
        .body(user.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let (s, _) = a.call("GET", "/v1/tenants/acme/users/ann", None).await;
    assert_eq!(s, 404, "a refused body created the user");
    // Any +json type, with parameters, is JSON.
    let r = a
        .raw(
            "PUT",
            "/v1/tenants/acme/users/ann",
            "application/merge-patch+json; charset=utf-8",
            user,
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    // A CSV import sent as JSON imports nothing.
    let r = a
        .raw(
            "POST",
            "/v1/tenants/acme/users/import",
            "application/json",
            b"id;name;email\nbob;Bob;bob@x.test\n".to_vec(),
        )
        .await;
    assert_eq!(r.0, 415, "{}", r.1);
    assert_eq!(r.1["error"]["code"], "unsupported_media_type");
    let (s, _) = a.call("GET", "/v1/tenants/acme/users/bob", None).await;
    assert_eq!(s, 404, "a refused import created a user");
    // Bad JSON with the right type is a bad request.
    let r = a
        .raw(
            "PUT",
            "/v1/tenants/acme/users/cid",
            "application/json",
            b"{\"name\":".to_vec(),
        )
        .await;
    assert_eq!(r.0, 400, "{}", r.1);
    assert_eq!(r.1["error"]["code"], "bad_request");
}

#[tokio::test]
async fn bodies_over_their_limit_get_413_json() {
    let h = TestHub::with_config(Config {
        max_body_bytes: 1000,
        max_import_bytes: 4000,
        ..test_config()
    })
    .await;
    h.seed("acme", &[]).await;
    let a = h.admin();
    let ids: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let body = serde_json::to_vec(&json!({ "ids": ids })).unwrap();
    assert!(body.len() > 1000);
    let r = a
        .raw(
            "POST",
            "/v1/tenants/acme/users/deactivate",
            "application/json",
            body,
        )
        .await;
    assert_eq!(r.0, 413, "{}", r.1);
    assert_eq!(r.1["error"]["code"], "payload_too_large");
    assert_eq!(r.1["error"]["details"]["limit"], 1000);
    let csv: String = std::iter::once("id;name;email\n".to_owned())
        .chain((0..200).map(|i| format!("u{i};User {i};u{i}@x.test\n")))
        .collect();
    assert!(csv.len() > 4000);
    let r = a
        .raw(
            "POST",
            "/v1/tenants/acme/users/import",
            "text/csv",
            csv.into_bytes(),
        )
        .await;
    assert_eq!(r.0, 413, "{}", r.1);
    assert_eq!(r.1["error"]["code"], "payload_too_large");
    let (_, page) = a.call("GET", "/v1/tenants/acme/users", None).await;
    assert_eq!(page["users"], json!([]));

    // Without a Content-Length (chunked), refused at the chunk that crosses it.
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /v1/tenants/acme/users/deactivate HTTP/1.1\r\nHost: hub\r\n\
         Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..2 {
        s.write_all(format!("320\r\n{}\r\n", " ".repeat(0x320)).as_bytes())
            .await
            .unwrap();
    }
    read_answer(&mut s)
        .await
        .assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn framework_errors_have_the_json_shape() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let auth = format!("Authorization: Bearer {ADMIN_KEY}");
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: hub\r\n{auth}\r\n\r\n");

    exchange(&h, get("/no/such/route").as_bytes())
        .await
        .1
        .assert_error(404, "not_found");
    let (_, a) = exchange(&h, b"DELETE /healthz HTTP/1.1\r\nHost: hub\r\n\r\n").await;
    a.assert_error(405, "method_not_allowed");
    assert!(
        a.header("allow").is_some_and(|m| m.contains("GET")),
        "{a:?}"
    );
    let post_stats = format!(
        "POST /v1/tenants/acme/stats HTTP/1.1\r\nHost: hub\r\n{auth}\r\nContent-Length: 0\r\n\r\n"
    );
    exchange(&h, post_stats.as_bytes())
        .await
        .1
        .assert_error(405, "method_not_allowed");
    // Not UTF-8 once percent-decoded, in the tenant and in the user id.
    for path in ["/v1/tenants/%FF/users/ann", "/v1/tenants/acme/users/%FF%FE"] {
        exchange(&h, get(path).as_bytes())
            .await
            .1
            .assert_error(400, "bad_request");
    }
    // A query string that does not deserialise.
    exchange(&h, get("/v1/tenants/acme/users?limit=1&limit=2").as_bytes())
        .await
        .1
        .assert_error(400, "bad_request");
}

/// A tenant's export as an ERP writes it: every column, quoted names, long
/// away messages.
fn export(users: usize) -> String {
    let mut csv = String::from("id;name;nickname;email;phone;profile;available;away_message\n");
    for i in 0..users {
        csv.push_str(&format!(
            "{i:08};\"Silva; Maria {i}\";Maria {i};maria.silva.{i}@empresa.example.com.br;\
             +55 11 9{i:08};standard;{};Em férias até 15/08. Para assuntos urgentes, fale com \
             a equipe de atendimento pelo ramal 4321 ou pelo e-mail atendimento@empresa.example.\n",
            if i % 7 == 0 { "false" } else { "true" },
        ));
    }
    csv
}

#[tokio::test]
async fn a_csv_import_larger_than_the_old_2_mib_limit_imports() {
    let h = TestHub::start().await;
    let a = h.admin();
    a.ok("PUT", "/v1/tenants/big", json!({"user_limit": 20_000}))
        .await;
    let csv = export(12_000);
    assert!(csv.len() > 2 << 20, "{} bytes", csv.len());
    let r = a
        .raw(
            "POST",
            "/v1/tenants/big/users/import",
            "text/csv; charset=utf-8",
            csv.into_bytes(),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        (&r.1["created"], &r.1["errors"]),
        (&json!(12_000), &json!([]))
    );
    let u = a
        .ok("GET", "/v1/tenants/big/users/00011999", Value::Null)
        .await;
    assert_eq!(u["name"], "Silva; Maria 11999");
    assert_eq!(u["phone"], "+55 11 900011999");
    let stats = a.ok("GET", "/v1/tenants/big/stats", Value::Null).await;
    assert_eq!(stats["offline"], 12_000);
}

/// Runs the binary under `ulimit -Sn 256` with `PRESENCE_MAX_CONNECTIONS`,
/// until it has served one request (so `serve` has started), then stops it
/// and returns everything it logged.
fn log_of_a_run_with_256_files(max_connections: &str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -Sn 256 && exec "$0""#)
        .arg(crate::hub_process::BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PRESENCE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("NO_COLOR", "1")
        .env("PRESENCE_LISTEN", "127.0.0.1:0")
        .env("PRESENCE_JWT_SECRET", SECRET)
        .env("PRESENCE_ADMIN_KEY", ADMIN_KEY)
        .env("PRESENCE_DATA_DIR", dir.path())
        .env("PRESENCE_MAX_CONNECTIONS", max_connections)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the hub under sh");
    let (tx, rx) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let addr = loop {
        let line = rx
            .recv_timeout(crate::hub_process::PROCESS_WAIT)
            .expect("the hub did not start");
        if let Some(i) = line.find("addr=") {
            let rest: String = line[i + 5..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',')
                .collect();
            break rest.parse::<std::net::SocketAddr>().unwrap();
        }
    };
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    crate::hub_process::send_signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + crate::hub_process::PROCESS_WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the hub did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap()
}

#[test]
fn a_connection_limit_above_the_open_files_limit_is_warned_about_at_start_up() {
    let log = log_of_a_run_with_256_files("100000");
    let warning = log
        .lines()
        .find(|l| l.contains("RLIMIT_NOFILE"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("256") && warning.contains("100000"),
        "{warning}"
    );
    let log = log_of_a_run_with_256_files("200");
    assert!(!log.contains("RLIMIT_NOFILE"), "{log}");
}
