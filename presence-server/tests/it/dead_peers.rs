//! Peers that vanish without a word (SPEC §9): a tab behind nginx whose
//! client stops reading and answering pings, and a tab whose network drops
//! every packet (an nftables rule on a loopback address, so no FIN or RST
//! ever arrives). The hub's pings must find both, close them and free their
//! slot in the user's tab limit within the ping interval plus the pong
//! timeout.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use presence_protocol::{ErrorCode, ServerMessage};
use presence_server::Config;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;
use uuid::Uuid;

use crate::nginx_support::{example_for, require_nginx, Nginx};
use crate::support::*;

const PING_INTERVAL: Duration = Duration::from_millis(300);
const PONG_TIMEOUT: Duration = Duration::from_millis(300);
/// Scheduling on a loaded 2-core machine, on top of interval + timeout.
const SLACK: Duration = Duration::from_millis(1_500);

/// Pings soon, one tab per user, so a tab that is not freed is seen at once.
fn lively() -> Config {
    Config {
        ping_interval: PING_INTERVAL,
        pong_timeout: PONG_TIMEOUT,
        close_linger: Duration::from_millis(300),
        max_tabs_per_user: 1,
        ..test_config()
    }
}

/// The example nginx site with `proxy_read_timeout` set to `value`.
fn with_read_timeout(site: String, value: &str) -> String {
    let shipped = "proxy_read_timeout 75s;";
    assert!(
        site.contains(shipped),
        "the example no longer has `{shipped}`"
    );
    site.replace(shipped, &format!("proxy_read_timeout {value};"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_behind_nginx_that_stops_answering_pings_is_closed_by_the_hub_and_its_slot_freed() {
    let bin = require_nginx();
    let h = TestHub::with_config(lively()).await;
    h.seed("acme", &["ann"]).await;
    // The shipped file as it is: its read timeout is far longer than the
    // test, so only the hub can end the tab.
    let lb = Nginx::start_site(&bin, |port| example_for(port, [h.addr, h.addr])).await;
    // A client that stops reading: it answers no ping, sends nothing.
    let mut gone = Tab::open(lb.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    let took = open_tabs_within(&h, 0.0, PING_INTERVAL + PONG_TIMEOUT + SLACK).await;
    eprintln!("the silent tab behind nginx was freed {took:?} after it stopped reading");
    // ann's one slot is free again, through nginx too.
    let _next = Tab::open(lb.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;

    // What reached the stale client through nginx: pings, then the hub's
    // close saying why, then the end of the stream (nginx closes the
    // client's side once the hub closed its own).
    assert_pinged_then_closed_for_no_pong(&mut gone).await;
    assert!(
        lb.error_log().lines().all(|l| !l.contains("[error]")),
        "{}",
        lb.error_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tab_behind_nginx_that_answers_pings_outlives_nginx_s_read_timeout() {
    let bin = require_nginx();
    let h = TestHub::with_config(lively()).await;
    h.seed("acme", &["bob"]).await;
    // nginx's read timeout far below how long the tab is kept: only the
    // hub's pings and the tab's pongs pass through nginx meanwhile.
    let lb = Nginx::start_site(&bin, |port| {
        with_read_timeout(example_for(port, [h.addr, h.addr]), "1s")
    })
    .await;
    let mut live = Tab::open(lb.addr, &token("acme", "bob"), Uuid::new_v4(), 0).await;
    // Read (its library answers each ping), and nothing sent.
    let kept_for = Duration::from_secs(3);
    let mut pings = 0;
    let until = Instant::now() + kept_for;
    while let Ok(m) = tokio::time::timeout_at(until, live.ws.next()).await {
        match m {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("the tab was not kept: {other:?}"),
        }
    }
    assert!(
        pings >= 3,
        "{pings} pings in {kept_for:?} at a {PING_INTERVAL:?} interval"
    );
    assert_eq!(h.metric("presence_open_tabs").await, Some(1.0));
    // Three of nginx's read timeouts later, still a working tab.
    live.send_text(r#"{"type":"unsubscribe","id":"x","roster":"directory"}"#)
        .await;
    let reply = live.recv().await;
    assert!(
        matches!(
            reply,
            ServerMessage::Error {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{reply:?}"
    );
}

/// The loopback address the vanishing tab connects from (all of 127/8 is
/// local on Linux); the rule also names the tab's port, so it matches that
/// one connection only.
const LOST_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);

fn require_nft() -> &'static str {
    let nft = ["nft", "/usr/sbin/nft"].into_iter().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    nft.expect("nft is not installed: apt-get install -y nftables (.ci/run installs it)")
}

/// An nftables table of the test's own that drops every packet to and from
/// one TCP endpoint, as a network that went away would: no FIN, no RST, no
/// ICMP. Dropping the guard deletes the table, also when the test fails.
struct PacketLoss {
    nft: &'static str,
    table: String,
}

impl PacketLoss {
    fn start(nft: &'static str, endpoint: SocketAddr) -> PacketLoss {
        let (ip, port) = (endpoint.ip(), endpoint.port());
        assert!(
            matches!(ip, std::net::IpAddr::V4(v4) if v4.is_loopback()),
            "only loopback addresses: {ip}"
        );
        let table = format!("presence_test_{}_{port}", std::process::id());
        // Dropped on input, where neither side's kernel tells its socket:
        // a drop on output would fail the sender's writes with EPERM.
        let script = format!(
            "table ip {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n    \
             ip saddr {ip} tcp sport {port} drop\n    ip daddr {ip} tcp dport {port} drop\n  }}\n}}\n"
        );
        let path = std::env::temp_dir().join(format!("{table}.nft"));
        std::fs::write(&path, script).unwrap();
        let out = Command::new(nft).arg("-f").arg(&path).output().unwrap();
        let _ = std::fs::remove_file(&path);
        let guard = PacketLoss {
            nft,
            table: table.clone(),
        };
        assert!(
            out.status.success(),
            "cannot add the nftables rule (the test needs root, or CAP_NET_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }
}

impl Drop for PacketLoss {
    fn drop(&mut self) {
        let out = Command::new(self.nft)
            .args(["delete", "table", "ip", &self.table])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            // Not added in the first place, or already gone.
            Ok(o) => eprintln!(
                "nft delete table ip {}: {}",
                self.table,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("nft delete table ip {}: {e}", self.table),
        }
    }
}

#[tokio::test]
async fn a_tab_whose_network_drops_every_packet_is_closed_and_freed_within_ping_interval_plus_pong_timeout(
) {
    let nft = require_nft();
    let h = TestHub::with_config(lively()).await;
    h.seed("acme", &["ann"]).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((LOST_SOURCE, 0))).unwrap();
    let stream = socket.connect(h.addr).await.unwrap();
    let endpoint = stream.local_addr().unwrap();
    let (ws, _) = tokio_tungstenite::client_async(h.url(), MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    let mut tab = Tab::hello(ws, &token("acme", "ann"), Uuid::new_v4(), 0)
        .await
        .unwrap_or_else(|c| panic!("refused: {c:?}"));
    assert_eq!(h.metric("presence_open_tabs").await, Some(1.0));

    let loss = PacketLoss::start(nft, endpoint);
    let lost_at = Instant::now();
    // The client is still there and reading (its library would answer a
    // ping): only the network between them is gone.
    let budget = PING_INTERVAL + PONG_TIMEOUT + SLACK;
    let heard = tokio::select! {
        took = open_tabs_within(&h, 0.0, budget) => {
            eprintln!("the tab was freed {took:?} after its network went");
            None
        }
        m = tab.ws.next() => Some(m),
    };
    assert!(
        heard.is_none(),
        "the client got something through the dropped network: {heard:?}"
    );
    assert!(lost_at.elapsed() < budget);
    // ann's one slot is free again for a tab on a working network.
    let _next = h.tab("acme", "ann").await;
    drop(loss);
}
