//! A webhook receiver for the tests: a real HTTP/1.1 server on 127.0.0.1
//! (hyper) that records every delivery, and can be told to fail the next
//! requests, to answer slowly, to go away (its port closed, connections
//! cut) and to come back on the same port. Signatures are checked by
//! Python's `hmac`, independently of the hub's code.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::WAIT;

/// The secret every test webhook is created with.
pub const HOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub signature: String,
    pub body: Vec<u8>,
    /// What the receiver answered (0: it was cut before answering).
    pub answered: u16,
    pub events: Vec<Value>,
    /// When the request arrived and when it was answered.
    pub started: Instant,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    got: Vec<Delivery>,
    /// The next this many requests are answered 500.
    fail_next: u32,
    /// Every answer waits this long first.
    delay: Duration,
    /// Requests that arrived, answered or not yet.
    started: usize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Receiver {
            addr: listener.local_addr().unwrap(),
            state: Arc::default(),
            changed: Arc::default(),
            task: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (state, changed) = (self.state.clone(), self.changed.clone());
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the task cuts them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (state, changed) = (state.clone(), changed.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (state, changed) = (state.clone(), changed.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(answer(req, &state, &changed).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/presence", self.addr)
    }

    pub fn fail_next(&self, n: u32) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    /// Closes the port and cuts every connection.
    pub fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => return self.serve(l),
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot bind {} again: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().got.clone()
    }

    /// The events of the deliveries answered 2xx, in the order received.
    pub fn acked(&self) -> Vec<Value> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .flat_map(|d| d.events)
            .collect()
    }

    /// Waits until the acknowledged events satisfy `ok`, for at most
    /// `limit`; returns them.
    pub async fn until_acked(&self, limit: Duration, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            let acked = self.acked();
            if ok(&acked) {
                return acked;
            }
            assert!(
                Instant::now() < deadline,
                "not delivered within {limit:?}; acknowledged so far: {}",
                ids(&acked).join(" ")
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Waits until `n` requests arrived (answered or not yet).
    pub async fn until_started(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if self.state.lock().unwrap().started >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} requests within {limit:?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Waits until the receiver got `n` requests (answered or not).
    pub async fn until_requests(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if self.deliveries().len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} requests within {limit:?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    changed: &tokio::sync::Notify,
) -> hyper::Response<String> {
    let started = Instant::now();
    let signature = req
        .headers()
        .get("presence-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let events = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["events"].as_array().cloned())
        .unwrap_or_default();
    // Recorded on arrival: a request whose sender dies before the answer
    // stays `answered: 0`.
    let (index, delay) = {
        let mut s = state.lock().unwrap();
        s.started += 1;
        s.got.push(Delivery {
            signature,
            body,
            answered: 0,
            events,
            started,
            at: started,
        });
        (s.got.len() - 1, s.delay)
    };
    changed.notify_waiters();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = {
        let mut s = state.lock().unwrap();
        let status = if s.fail_next > 0 {
            s.fail_next -= 1;
            500
        } else {
            200
        };
        let d = &mut s.got[index];
        d.answered = status;
        d.at = Instant::now();
        status
    };
    changed.notify_waiters();
    hyper::Response::builder()
        .status(status)
        .body(String::new())
        .unwrap()
}

/// The ids of `events`, in order.
pub fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Checks, as the README tells receivers to, that each user's events come
/// in `v` order with no gap among those acknowledged, once duplicates (same
/// id) are dropped; returns the distinct ids.
pub fn assert_in_v_order_per_user(acked: &[Value]) -> Vec<String> {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut distinct = Vec::new();
    for e in acked {
        let user = e["user"].as_str().unwrap().to_owned();
        let v = e["v"].as_u64().unwrap();
        let prev = last.get(&user).copied().unwrap_or(0);
        if v <= prev {
            // A duplicate must repeat an id already delivered.
            assert!(
                distinct.contains(&e["id"].as_str().unwrap().to_owned()),
                "{user}: v{v} after v{prev} and never delivered before: {}",
                ids(acked).join(" ")
            );
            continue;
        }
        last.insert(user, v);
        distinct.push(e["id"].as_str().unwrap().to_owned());
    }
    distinct
}

/// Verifies every delivery's `Presence-Signature` with Python's `hmac`
/// (not the hub's code): `t` recent, `v1` the HMAC-SHA256 of `"<t>." +
/// body` under `secret`.
pub fn assert_signed_by_python(deliveries: &[Delivery], secret: &str) {
    assert!(!deliveries.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for (i, d) in deliveries.iter().enumerate() {
        let path = dir.path().join(format!("{i}.body"));
        std::fs::write(&path, &d.body).unwrap();
        lines.push_str(&format!("{}\t{}\n", path.display(), d.signature));
    }
    let script = r#"
import hmac, hashlib, sys, time
secret = sys.argv[1].encode()
bad = 0
for line in sys.stdin:
    path, header = line.rstrip("\n").split("\t")
    parts = dict(p.split("=", 1) for p in header.split(","))
    body = open(path, "rb").read()
    want = hmac.new(secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(parts["t"])) < 300
    if not (fresh and hmac.compare_digest(want, parts["v1"])):
        print("bad signature:", header, path)
        bad += 1
print("checked")
sys.exit(1 if bad else 0)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (Debian has it)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("checked"), "{text}");
}
