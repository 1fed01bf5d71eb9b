//! The operations kit of `examples/` checked with the tools that will read
//! it: the alert rules and Prometheus configuration by `promtool` (with the
//! rules' unit tests), the systemd unit by `systemd-analyze verify`, and the
//! unit's stop timeout and file limit against the hub's own settings. That
//! the dashboard and the rules name only exposed metrics is checked against
//! a live scrape in `metrics.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use presence_server::Config;

use crate::hub_process::BIN;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Runs `promtool` with `args` in `dir`; fails with the install command if
/// it is missing.
fn promtool(dir: &Path, args: &[&str]) -> Output {
    match Command::new("promtool").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "promtool is not installed ({e}): apt-get install -y prometheus (scripts/test installs it)"
        ),
    }
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = examples().join("prometheus");
    let out = promtool(&dir, &["check", "rules", "alerts.yml"]);
    assert_ok("promtool check rules", &out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("6 rules found"), "{said}");
    assert_ok(
        "promtool test rules",
        &promtool(&dir, &["test", "rules", "alerts.test.yml"]),
    );
    assert_ok(
        "promtool check config",
        &promtool(&dir, &["check", "config", "prometheus.yml"]),
    );
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    for alert in [
        "PresenceHubDown",
        "PresenceHubNotReady",
        "PresenceDeliveryLatencyHigh",
        "PresenceSlowConsumersRising",
        "PresenceRedisUnreachable",
        "PresenceDirectoryLagging",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}\n")),
            "no {alert} rule"
        );
    }
}

/// The unit's `Key=value` settings (the last one wins, as in systemd; a
/// key set more than once, like `Environment=`, keeps every value).
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn unit_text() -> String {
    std::fs::read_to_string(examples().join("systemd/presence-server.service")).unwrap()
}

fn setting<'a>(s: &'a [(String, String)], key: &str) -> Option<&'a str> {
    s.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Seconds of a systemd time span as the unit writes it (`15`, `15s`).
fn seconds(span: &str) -> u64 {
    span.trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("a time span in seconds: {span}"))
}

#[test]
fn the_unit_is_hardened_and_outlasts_the_hubs_shutdown_grace() {
    let s = unit_settings(&unit_text());
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "presence-server"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("ExecStartPre", "/usr/local/bin/presence-server check"),
        ("ExecStart", "/usr/local/bin/presence-server"),
    ] {
        assert_eq!(setting(&s, key), Some(want), "{key}");
    }
    let env: Vec<&str> = s
        .iter()
        .filter(|(k, _)| k == "Environment")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        env.contains(&"PRESENCE_DATA_DIR=%S/presence-server"),
        "the data dir must be the StateDirectory: {env:?}"
    );
    // systemd must not SIGKILL a hub that is still draining: its stop
    // timeout outlasts the grace the unit gives the hub (and the default).
    let grace_ms: u64 = env
        .iter()
        .find_map(|e| e.strip_prefix("PRESENCE_SHUTDOWN_GRACE_MS="))
        .map_or(Config::default().shutdown_grace.as_millis() as u64, |v| {
            v.parse().unwrap()
        });
    let stop_s = seconds(setting(&s, "TimeoutStopSec").expect("TimeoutStopSec"));
    assert!(
        stop_s * 1000 >= grace_ms + 5_000,
        "TimeoutStopSec={stop_s} leaves no margin over a {grace_ms} ms grace"
    );
    // One descriptor per connection: the limit stays above the hub's
    // connection limit, or the hub warns at every start.
    let nofile: usize = setting(&s, "LimitNOFILE").unwrap().parse().unwrap();
    assert!(
        nofile > Config::default().max_connections + 1_000,
        "LimitNOFILE={nofile}"
    );
}

/// `systemd-analyze verify` on the unit, its commands pointed at the
/// binary under test (verify refuses a unit whose binary does not exist).
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed (it comes with systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("presence-server.service");
    let text = unit_text().replace("=/usr/local/bin/presence-server", &format!("={BIN}"));
    assert!(text.contains(&format!("ExecStart={BIN}\n")));
    assert!(text.contains(&format!("ExecStartPre={BIN} check\n")));
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    // verify exits 0 on some problems it only prints (an unknown key, a
    // bad value): none may be about this unit.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("presence-server.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify: {ours:#?}");
}
