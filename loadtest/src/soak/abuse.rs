//! Abusive tabs: each connects, abuses the hub in one way until it is
//! closed, and reconnects (a new tab each time), so the soak shows what
//! abuse costs the hub over time and how every abusive connection ends.
//!
//! | kind | sends | the hub must |
//! |---|---|---|
//! | flood | `activity` frames far beyond 20/s | answer `rate_limited`, then close 4008 |
//! | oversized | one text frame over 16 KiB | close 4008 |
//! | ping storm | pings far beyond 20/s | count them as frames: close 4008 |
//! | fragments | a text frame with FIN=0 and 3 bytes, then a continuation whose 64-bit length is 2^64−3 | close 1002 (protocol error) |
//!
//! Frames that prove nothing (`idle_ms` beyond any timeout), so abusers
//! never turn online and any transition of theirs is spurious.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::common::{activity_frame, hello};
use crate::control::Stop;
use crate::fanout::NO_PROOF_MS;
use crate::wire::{self, Frame, Tab};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Flood,
    Oversized,
    PingStorm,
    Fragments,
}

impl Kind {
    /// The close code the hub must answer with.
    pub fn expected_close(self) -> u16 {
        match self {
            Kind::Flood | Kind::Oversized | Kind::PingStorm => 4008,
            Kind::Fragments => 1002,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Flood => "flood",
            Kind::Oversized => "oversized",
            Kind::PingStorm => "ping_storm",
            Kind::Fragments => "fragments",
        }
    }
}

/// How one abusive connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A close frame with this code.
    Closed(u16),
    /// The connection ended without a close frame (what a browser reports
    /// as 1006): a reset, or the hub's task gone.
    NoCloseFrame,
    /// Still open when the cycle's time ran out.
    NotClosed,
    /// `hello` was answered with a close (e.g. 4029: the user's tab list is
    /// full of tabs that were never removed).
    Refused(u16),
    /// No connection or no answer to `hello`.
    ConnectFailed,
}

impl Outcome {
    pub fn label(self) -> String {
        match self {
            Outcome::Closed(c) => c.to_string(),
            Outcome::NoCloseFrame => "1006 (no close frame)".into(),
            Outcome::NotClosed => format!("not closed within {} s", CYCLE_LIMIT.as_secs()),
            Outcome::Refused(c) => format!("hello refused with {c}"),
            Outcome::ConnectFailed => "connect failed".into(),
        }
    }

    pub fn is_expected(self, kind: Kind) -> bool {
        self == Outcome::Closed(kind.expected_close())
    }
}

/// How long one abusive connection may last before it counts as not
/// closed.
pub const CYCLE_LIMIT: Duration = Duration::from_secs(5);
/// Pause between two connections of one abuser.
const PAUSE: Duration = Duration::from_secs(1);
/// Frames per write and the pause between writes of a flood or storm:
/// 4,000 frames a second, 200 times the allowed rate.
const BATCH: usize = 20;
const BATCH_EVERY: Duration = Duration::from_millis(5);

/// A masked ping with a zero key (see `wire`).
pub fn ping_frame(payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() < 126,
        "a control frame's payload is < 126 bytes"
    );
    let mut f = vec![0x89, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

/// A text frame one byte over `max`: whatever it holds, it is too big.
pub fn oversized_frame(max: usize) -> Vec<u8> {
    wire::text_frame(&vec![b' '; max + 1])
}

/// A text frame with FIN=0 and 3 bytes, then a continuation frame whose
/// 64-bit length is 2^64 − 3 (top bit set, which RFC 6455 forbids), then a
/// few bytes of it: a length that overflows when added to what came before.
pub fn crafted_fragments() -> Vec<u8> {
    let mut f = vec![0x01, 0x80 | 3, 0, 0, 0, 0, b'{', b'"', b't'];
    f.extend_from_slice(&[0x80, 0x80 | 127]);
    f.extend_from_slice(&(u64::MAX - 2).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(b"abcdefgh");
    f
}

/// Outcomes so far, by kind and label, and what the flood was told.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub cycles: BTreeMap<&'static str, BTreeMap<String, u64>>,
    pub unexpected: u64,
    /// `rate_limited` errors that reached the flooding tabs.
    pub rate_limited_errors: u64,
}

impl Tally {
    pub fn record(&mut self, kind: Kind, outcome: Outcome) {
        *self
            .cycles
            .entry(kind.name())
            .or_default()
            .entry(outcome.label())
            .or_default() += 1;
        if !outcome.is_expected(kind) {
            self.unexpected += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.cycles.values().flat_map(|m| m.values()).sum()
    }

    /// `flood 4008×12, oversized 1006 (no close frame)×3 …`
    pub fn line(&self) -> String {
        let parts: Vec<String> = self
            .cycles
            .iter()
            .map(|(k, m)| {
                let codes: Vec<String> = m.iter().map(|(l, n)| format!("{l}×{n}")).collect();
                format!("{k} {}", codes.join(", "))
            })
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Where an abuser connects and as whom.
pub struct Abuser {
    pub kind: Kind,
    pub hub: SocketAddr,
    pub source: IpAddr,
    pub token: String,
    pub max_frame: usize,
}

impl Abuser {
    /// Connects, abuses and reconnects until `stop`, recording every
    /// outcome in `tally`.
    pub async fn run(self, stop: Stop, tally: Arc<Mutex<Tally>>) {
        while !stop.stopped() {
            let outcome = self.cycle(&tally).await;
            tally
                .lock()
                .expect("no panic while held")
                .record(self.kind, outcome);
            if !stop.sleep(PAUSE).await {
                break;
            }
        }
    }

    async fn cycle(&self, tally: &Mutex<Tally>) -> Outcome {
        // A new tab id each time: an attacker does not reuse its tabs, and a
        // hub that forgets to remove a tab then shows it in the user's list.
        let hello = hello(self.token.clone(), NO_PROOF_MS);
        let tab = match tokio::time::timeout(CYCLE_LIMIT, wire::open(self.hub, self.source, &hello))
            .await
        {
            Ok(Ok(tab)) => tab,
            Ok(Err(e)) => {
                return wire::close_code(&e).map_or(Outcome::ConnectFailed, Outcome::Refused)
            }
            Err(_) => return Outcome::ConnectFailed,
        };
        let Tab {
            mut reader,
            mut writer,
            ..
        } = tab;
        let mut rate_limited = 0;
        let ending = async {
            loop {
                match reader.next().await {
                    Ok(Some(Frame::Close(code))) => return Outcome::Closed(code),
                    Ok(Some(Frame::Text(t))) => {
                        if t.starts_with(br#"{"type":"error""#)
                            && t.windows(14).any(|w| w == b"\"rate_limited\"")
                        {
                            rate_limited += 1;
                        }
                    }
                    Ok(Some(Frame::Ping(_) | Frame::Other)) => {}
                    Ok(None) | Err(_) => return Outcome::NoCloseFrame,
                }
            }
        };
        let abuse = async {
            // A write error means the hub is gone: the reader tells how.
            let _ = self.abuse(&mut writer).await;
            std::future::pending::<()>().await
        };
        let outcome = tokio::select! {
            o = tokio::time::timeout(CYCLE_LIMIT, ending) => o.unwrap_or(Outcome::NotClosed),
            _ = abuse => unreachable!("the abuse future never resolves"),
        };
        tally
            .lock()
            .expect("no panic while held")
            .rate_limited_errors += rate_limited;
        outcome
    }

    async fn abuse(&self, w: &mut tokio::net::tcp::OwnedWriteHalf) -> std::io::Result<()> {
        let batch = |frame: Vec<u8>| frame.repeat(BATCH);
        match self.kind {
            Kind::Flood => {
                let frames = batch(activity_frame(NO_PROOF_MS));
                loop {
                    w.write_all(&frames).await?;
                    tokio::time::sleep(BATCH_EVERY).await;
                }
            }
            Kind::PingStorm => {
                let frames = batch(ping_frame(b"storm"));
                loop {
                    w.write_all(&frames).await?;
                    tokio::time::sleep(BATCH_EVERY).await;
                }
            }
            Kind::Oversized => w.write_all(&oversized_frame(self.max_frame)).await,
            Kind::Fragments => w.write_all(&crafted_fragments()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crafted_fragments_declare_a_length_that_wraps() {
        let f = crafted_fragments();
        // First frame: text, FIN clear, masked, 3 bytes.
        assert_eq!((f[0], f[1]), (0x01, 0x83));
        let cont = &f[9..];
        // Continuation, FIN set, masked, 64-bit length.
        assert_eq!((cont[0], cont[1]), (0x80, 0xff));
        let len = u64::from_be_bytes(cont[2..10].try_into().unwrap());
        assert_eq!(len, u64::MAX - 2);
        assert_eq!(len.wrapping_add(3), 0);
        assert!(cont.len() > 14);
    }

    #[test]
    fn frames_built_for_abuse_have_the_declared_sizes() {
        let p = ping_frame(b"storm");
        assert_eq!(&p[..2], &[0x89, 0x85]);
        assert_eq!(p.len(), 2 + 4 + 5);
        let big = oversized_frame(16 * 1024);
        assert_eq!(big[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([big[2], big[3]]) as usize, 16 * 1024 + 1);
    }

    #[test]
    fn outcomes_are_tallied_by_code_and_judged_by_kind() {
        let mut t = Tally::default();
        t.record(Kind::Flood, Outcome::Closed(4008));
        t.record(Kind::Flood, Outcome::Closed(4008));
        t.record(Kind::Flood, Outcome::NoCloseFrame);
        t.record(Kind::Fragments, Outcome::Closed(1002));
        t.record(Kind::Fragments, Outcome::Refused(4029));
        t.record(Kind::PingStorm, Outcome::NotClosed);
        assert_eq!(t.total(), 6);
        assert_eq!(t.unexpected, 3);
        assert_eq!(t.cycles["flood"]["4008"], 2);
        assert_eq!(t.cycles["fragments"]["hello refused with 4029"], 1);
        assert_eq!(
            t.line(),
            "flood 1006 (no close frame)×1, 4008×2; fragments 1002×1, hello refused with 4029×1; ping_storm not closed within 5 s×1"
        );
        assert!(Outcome::Closed(1002).is_expected(Kind::Fragments));
        assert!(!Outcome::Closed(4008).is_expected(Kind::Fragments));
    }
}
