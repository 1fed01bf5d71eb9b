//! The JavaScript clients, run as part of `cargo test`: the SDK's unit tests,
//! size budget and package checks (`clients/js/tests/{sdk,size,package}.test.js`)
//! and the dashboards, the attendance report and the landing page end to end
//! in headless Chromium (`browser.test.js`, `reports.test.js`,
//! `landing.test.js`), each with
//! Node's test runner against this crate's own `presence-server` binary.
//!
//! A test binary of its own, not a module of `it`: cargo runs test binaries
//! one after another, so Chromium's CPU never competes with the timing
//! checks of the hub's own suite on a small machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_presence-server");
const NPM_CI: &str = "npm ci --prefix clients/js";

/// The two runs share the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/js")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails with the command that installs what is missing.
fn require(node_module: &str) {
    let node = Command::new("node").arg("--version").output();
    let version = match node {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => panic!("Node.js 20+ is required for the JS tests: apt-get install -y nodejs npm"),
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(major >= 20, "Node.js 20+ is required, found {version}");
    let dir = js_dir().join("node_modules").join(node_module);
    assert!(
        dir.is_dir(),
        "{} is missing: run `{NPM_CI}` from the repository root",
        dir.display()
    );
}

/// Runs `node --test <files>` in `clients/js`, killing it (and the hubs and
/// browsers it started) after `limit`; panics with its output unless it
/// passed.
fn node_test(files: &[&str], limit: Duration) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new("node");
    cmd.arg("--test")
        .arg("--test-reporter=spec")
        .args(files)
        .current_dir(js_dir())
        .env("PRESENCE_BIN", BIN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a timeout can end the hubs and Chromium too.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("start node");
    let output = Arc::new(Mutex::new(String::new()));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped stderr")),
    ]
    .into_iter()
    .map(|mut pipe| {
        let output = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    })
    .collect();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for node") {
            break Some(s);
        }
        if started.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for r in readers {
        let _ = r.join();
    }
    let output = output.lock().unwrap().clone();
    match status {
        Some(s) if s.success() => println!("{output}"),
        Some(s) => panic!("node --test {files:?} failed ({s}):\n{output}"),
        None => panic!("node --test {files:?} did not finish within {limit:?}:\n{output}"),
    }
}

#[test]
fn js_sdk_passes_its_tests_against_a_real_hub_and_fits_its_size_budget() {
    require("esbuild");
    require("ws");
    node_test(
        &[
            "tests/sdk.test.js",
            "tests/size.test.js",
            "tests/package.test.js",
        ],
        Duration::from_secs(180),
    );
}

#[test]
fn dashboards_pass_end_to_end_in_headless_chromium() {
    require("playwright-core");
    let chromium = chromium();
    assert!(
        chromium.exists(),
        "{} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)",
        chromium.display()
    );
    node_test(
        &[
            "tests/browser.test.js",
            "tests/reports.test.js",
            "tests/landing.test.js",
        ],
        Duration::from_secs(300),
    );
}
