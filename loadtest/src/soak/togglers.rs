//! The scheduled users: the soak's source of transitions that can be timed.
//! A logout toggler sends `activity` (online), holds, sends `logout`
//! (offline; the hub closes the tab with 4004) and reconnects for its next
//! cycle; an expiry toggler keeps one tab open, sends `activity` and then
//! nothing, so the hub expires it after the idle timeout.
//!
//! Each records the cause's time in [`Causes`] before sending it, and
//! counts the transitions it caused, so the watchers can time and judge
//! every delta. When the run stops, everyone who is online is taken
//! offline with a known cause (a `logout`, or an expiry that is about to
//! land), so the final counts are exact.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::common::{activity_frame, hello, logout_frame};
use crate::control::Stop;
use crate::fanout::NO_PROOF_MS;
use crate::wire::{self, Frame, Tab};

use super::plan::Toggle;
use super::watch::Causes;

/// What went wrong with the scheduled users' connections, by what
/// happened (each should stay at zero).
pub type Problems = Arc<Mutex<BTreeMap<String, u64>>>;

fn problem(p: &Problems, what: String) {
    *p.lock()
        .expect("no panic while held")
        .entry(what)
        .or_default() += 1;
}

/// One scheduled user's connection, reopened when it is lost.
struct Line {
    hub: SocketAddr,
    source: IpAddr,
    token: String,
    tab: Option<Tab>,
    problems: Problems,
}

impl Line {
    /// The open tab, connecting (without proof) if there is none.
    async fn tab(&mut self) -> &mut Tab {
        loop {
            if self.tab.is_some() {
                break;
            }
            let hello = hello(self.token.clone(), NO_PROOF_MS);
            match tokio::time::timeout(
                Duration::from_secs(5),
                wire::open(self.hub, self.source, &hello),
            )
            .await
            {
                Ok(Ok(t)) => self.tab = Some(t),
                Ok(Err(e)) => {
                    problem(&self.problems, format!("connect failed: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => {
                    problem(&self.problems, "connect timed out".into());
                }
            }
        }
        self.tab.as_mut().expect("set above")
    }

    /// Sends a frame, on a new connection if the current one is gone.
    async fn send(&mut self, frame: &[u8]) {
        for _ in 0..2 {
            if self.tab().await.writer.write_all(frame).await.is_ok() {
                return;
            }
            problem(&self.problems, "write failed".into());
            self.tab = None;
        }
    }

    /// Waits until `at`, reading (and discarding) what the hub sends; a
    /// connection the hub ends meanwhile is a problem and is reopened.
    /// False when the run was stopped first.
    async fn idle_until(&mut self, at: Instant, stop: &Stop) -> bool {
        loop {
            let tab = self.tab().await;
            let ended = tokio::select! {
                _ = tokio::time::sleep_until(at) => return true,
                _ = stop.wait() => return false,
                f = tab.reader.next() => match f {
                    Ok(Some(Frame::Close(code))) => format!("closed with {code}"),
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => "connection lost".to_owned(),
                },
            };
            problem(&self.problems, ended);
            self.tab = None;
        }
    }

    /// After a `logout`: the hub must close the tab with 4004.
    async fn expect_logged_out(&mut self) {
        let Some(tab) = self.tab.as_mut() else {
            return;
        };
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match tab.reader.next().await {
                    Ok(Some(Frame::Close(code))) => return Some(code),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return None,
                }
            }
        })
        .await;
        match end {
            Ok(Some(4004)) => {}
            Ok(Some(code)) => problem(&self.problems, format!("logout answered with {code}")),
            Ok(None) => problem(
                &self.problems,
                "logout answered without a close frame".into(),
            ),
            Err(_) => problem(&self.problems, "logout not answered within 5 s".into()),
        }
        self.tab = None;
    }

    async fn close(mut self) {
        if let Some(mut t) = self.tab.take() {
            let _ = t.writer.write_all(&wire::close_frame()).await;
        }
    }
}

/// Where a scheduled user connects and as whom.
pub struct Member {
    /// Its place in the pool, and its user index.
    pub k: usize,
    pub user: usize,
    pub hub: SocketAddr,
    pub source: IpAddr,
    pub token: String,
}

impl Member {
    fn line(&self, problems: &Problems) -> Line {
        Line {
            hub: self.hub,
            source: self.source,
            token: self.token.clone(),
            tab: None,
            problems: problems.clone(),
        }
    }
}

/// Online with `activity` at each of its slots, offline with `logout` a
/// hold later, until `end` or `stop`.
pub async fn logout(
    m: Member,
    sched: Toggle,
    origin: Instant,
    end: Instant,
    causes: Arc<Causes>,
    stop: Stop,
    problems: Problems,
) {
    let i = m.user;
    let mut line = m.line(&problems);
    let (on, off) = (activity_frame(0), logout_frame());
    for j in 0.. {
        let start = origin + Duration::from_micros(sched.start_us(m.k, j));
        if start >= end || !line.idle_until(start, &stop).await {
            break;
        }
        causes.online_sent_us[i].store(causes.now_us(), Ordering::Relaxed);
        causes.caused[i].fetch_add(1, Ordering::Relaxed);
        line.send(&on).await;
        // Stopped during the hold: log out now, so the user ends offline.
        let _ = line
            .idle_until(start + Duration::from_micros(sched.hold_us), &stop)
            .await;
        causes.by_expiry[i].store(false, Ordering::Relaxed);
        causes.offline_due_us[i].store(causes.now_us(), Ordering::Relaxed);
        causes.caused[i].fetch_add(1, Ordering::Relaxed);
        line.send(&off).await;
        line.expect_logged_out().await;
    }
    line.close().await;
}

/// Online with `activity` at each of its slots; offline when the hub
/// expires it, an idle timeout later, with the tab still open.
#[allow(clippy::too_many_arguments)]
pub async fn expiry(
    m: Member,
    sched: Toggle,
    idle_timeout: Duration,
    origin: Instant,
    end: Instant,
    causes: Arc<Causes>,
    stop: Stop,
    problems: Problems,
) {
    let i = m.user;
    let mut line = m.line(&problems);
    let on = activity_frame(0);
    for j in 0.. {
        let start = origin + Duration::from_micros(sched.start_us(m.k, j));
        if start >= end || !line.idle_until(start, &stop).await {
            break;
        }
        let sent = causes.now_us();
        causes.online_sent_us[i].store(sent, Ordering::Relaxed);
        causes.offline_due_us[i].store(sent + idle_timeout.as_micros() as u64, Ordering::Relaxed);
        causes.by_expiry[i].store(true, Ordering::Relaxed);
        // Online now, offline at the deadline: both caused by this frame.
        causes.caused[i].fetch_add(2, Ordering::Relaxed);
        let deadline = Instant::now() + idle_timeout;
        line.send(&on).await;
        if line.idle_until(deadline, &stop).await {
            continue;
        }
        // Stopped while online: log out, unless the expiry is about to land
        // (a logout racing it could find the user offline already).
        if deadline.saturating_duration_since(Instant::now()) > Duration::from_secs(3) {
            causes.by_expiry[i].store(false, Ordering::Relaxed);
            causes.offline_due_us[i].store(causes.now_us(), Ordering::Relaxed);
            line.send(&logout_frame()).await;
            line.expect_logged_out().await;
        } else {
            tokio::time::sleep_until(deadline + Duration::from_millis(1500)).await;
        }
        break;
    }
    line.close().await;
}
