//! The soak's report: the samples, the table for people and the JSON
//! line (through `crate::report::emit`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::deltas::Integrity;
use crate::report::Latency;

use super::abuse;
use super::population::Stats;

/// One sample of the hub, and of the run so far.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_secs: f64,
    pub rss_kib: u64,
    pub open_tabs: f64,
    pub registered_tabs: Option<f64>,
    /// Cause → watcher during this sample's period.
    pub latency_ms: Latency,
    pub transitions_caused: u64,
    pub deltas: u64,
    pub spurious: u64,
    pub reloads: u64,
    pub abuse_cycles: u64,
    pub abuse_unexpected: u64,
}

#[derive(Debug, Serialize)]
pub struct Classes {
    pub logout_togglers: usize,
    pub expiry_togglers: usize,
    pub reloaders: usize,
    pub steady: usize,
    pub idle: usize,
    pub abusers: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tabs: usize,
    pub crowd_tabs_open: u64,
    pub workers: usize,
    pub classes: Classes,
    pub directory_watchers: usize,
    pub roster_watchers: usize,
    pub idle_timeout_ms: u64,
    pub activity_ms: u64,
    pub minutes: u64,
    pub secs: f64,
    pub sample_secs: u64,
    pub warmup_secs: u64,
    pub rss_warmup_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub rss_growth_pct: Option<f64>,
    pub samples: Vec<Sample>,
    pub latency_ms: Latency,
    pub expiry_lateness_ms: Latency,
    pub expiry_early: u64,
    pub expiry_later_than_1s: u64,
    pub transitions_caused: u64,
    pub deltas_owed: u64,
    pub deltas_seen: u64,
    pub missing: u64,
    pub spurious: u64,
    pub integrity: Integrity,
    pub watchers_ended_by_hub: Vec<String>,
    pub crowd: Stats,
    pub scheduled_user_problems: BTreeMap<String, u64>,
    pub abuse: abuse::Tally,
    pub open_tabs_baseline: f64,
    pub open_tabs_after_close: f64,
    pub registered_tabs_baseline: Option<f64>,
    pub registered_tabs_after_close: Option<f64>,
    pub tabs_leaked: f64,
    pub registered_tabs_leaked: Option<f64>,
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn sample_line(s: &Sample) -> String {
    format!(
        "{:>6.0} s  RSS {}  tabs {} (registered {})  p50 {:.2} p99 {:.2} max {:.2} ms (n={})  caused {}  spurious {}  reloads {}  abuse {} ({} unexpected)",
        s.t_secs,
        mib(s.rss_kib),
        s.open_tabs,
        s.registered_tabs.map_or("n/a".into(), |r| r.to_string()),
        s.latency_ms.p50,
        s.latency_ms.p99,
        s.latency_ms.max,
        s.latency_ms.count,
        s.transitions_caused,
        s.spurious,
        s.reloads,
        s.abuse_cycles,
        s.abuse_unexpected,
    )
}

pub fn rows_of(r: &Report) -> Vec<(&'static str, String)> {
    let c = &r.classes;
    let opt = |v: Option<f64>| v.map_or("n/a (not exported)".to_owned(), |v| v.to_string());
    let mut rows = vec![
        (
            "tabs",
            format!(
                "{} ({} scheduled by logout, {} by expiry, {} reloading, {} steady, {} idle; crowd {} open over {} workers), {} abusive",
                r.tabs, c.logout_togglers, c.expiry_togglers, c.reloaders, c.steady, c.idle,
                r.crowd_tabs_open, r.workers, c.abusers
            ),
        ),
        (
            "watchers",
            format!("{} on the directory, {} on team rosters", r.directory_watchers, r.roster_watchers),
        ),
        (
            "run",
            format!(
                "{:.1} min (asked {}), idle timeout {} ms, activity every {} ms",
                r.secs / 60.0, r.minutes, r.idle_timeout_ms, r.activity_ms
            ),
        ),
        (
            "RSS",
            match (r.rss_warmup_kib, r.rss_end_kib, r.rss_growth_pct) {
                (Some(w), Some(e), Some(g)) => format!(
                    "{} after warm-up ({} min) → {} at the end: {g:+.2}% (goal < 5%)",
                    mib(w),
                    r.warmup_secs / 60,
                    mib(e)
                ),
                (_, e, _) => format!(
                    "{} at the end; the run was shorter than its warm-up",
                    e.map_or("n/a".into(), mib)
                ),
            },
        ),
    ];
    for s in &r.samples {
        rows.push((
            "  sample",
            format!(
                "{:>5.0} s  RSS {}  tabs {}  p99 {:.2} ms (max {:.2}, n={})",
                s.t_secs,
                mib(s.rss_kib),
                s.open_tabs,
                s.latency_ms.p99,
                s.latency_ms.max,
                s.latency_ms.count
            ),
        ));
    }
    rows.extend([
        ("cause → watcher", r.latency_ms.line()),
        ("expiry: arrival − deadline", r.expiry_lateness_ms.line()),
        (
            "expiry early / > 1 s late",
            format!("{} / {}", r.expiry_early, r.expiry_later_than_1s),
        ),
        (
            "transitions",
            format!(
                "{} caused; watchers had to see at least {} deltas and saw {} (the crowd's first onlines are allowed, not owed)",
                r.transitions_caused, r.deltas_owed, r.deltas_seen
            ),
        ),
        (
            "missing / spurious (goal 0)",
            format!("{} / {}", r.missing, r.spurious),
        ),
        ("v rule", r.integrity.line()),
        (
            "watchers ended by the hub",
            if r.watchers_ended_by_hub.is_empty() {
                "none".into()
            } else {
                r.watchers_ended_by_hub.join("; ")
            },
        ),
        (
            "reloads",
            format!(
                "{}, {} failed reconnects, close → welcome p99 ≤ {:.2} ms, max {:.2} ms",
                r.crowd.reloads,
                r.crowd.reload_failures,
                r.crowd.reload_p99_ms,
                r.crowd.reload_max_ms
            ),
        ),
        (
            "crowd tabs the hub ended",
            format!("{} {:?}", r.crowd.unexpected_total(), r.crowd.unexpected),
        ),
        (
            "scheduled users' problems",
            format!("{:?}", r.scheduled_user_problems),
        ),
        ("abusive cycles by close", r.abuse.line()),
        (
            "abusive: unexpected outcomes",
            format!(
                "{} of {} ({} rate_limited errors reached the floods)",
                r.abuse.unexpected,
                r.abuse.total(),
                r.abuse.rate_limited_errors
            ),
        ),
        (
            "open tabs after closing all (goal: baseline)",
            format!(
                "{} (baseline {}): leaked {}",
                r.open_tabs_after_close, r.open_tabs_baseline, r.tabs_leaked
            ),
        ),
        (
            "registered tabs after closing all",
            format!(
                "{} (baseline {}): leaked {}",
                opt(r.registered_tabs_after_close),
                opt(r.registered_tabs_baseline),
                opt(r.registered_tabs_leaked)
            ),
        ),
    ]);
    rows
}
