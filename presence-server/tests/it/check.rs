//! `presence-server check`, run as an operator runs it: the built binary
//! with the variables `serve` reads, against a real `redis-server` or a
//! port nobody listens on. Every problem is reported with its variable,
//! and the exit code agrees with whether `serve` starts on the same
//! configuration.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::hub_process::HubProcess;
use crate::process::run_to_exit;
use crate::redis_support::{free_port, query, RedisCluster, RedisServer};
use crate::support::{ADMIN_KEY, SECRET};

/// Far above any open-files limit a test machine has.
const HUGE_MAX_CONNECTIONS: &str = "4000000000";

/// Whether `check` passed, and what it printed (all of it on stdout).
fn check(env: &[(&str, &str)]) -> (bool, String) {
    let (status, stdout, stderr) = run_to_exit(&["check"], env);
    assert!(stderr.is_empty(), "check wrote to stderr: {stderr}");
    (status.success(), stdout)
}

fn problems(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect()
}

#[test]
fn every_problem_is_reported_at_once_with_the_variable_to_change() {
    let redis_port = free_port().to_string();
    let redis_url = format!("redis://127.0.0.1:{redis_port}/");
    let env = [
        ("PRESENCE_LISTEN", "127.0.0.1:0"),
        ("PRESENCE_JWT_SECRET", "short"),
        // PRESENCE_ADMIN_KEY: missing.
        ("PRESENCE_IDLE_TIMEOUT_MS", "1000"),
        ("PRESENCE_ACTIVITY_INTERVAL_MS", "900"),
        ("PRESENCE_MAX_CONNECTIONS", HUGE_MAX_CONNECTIONS),
        ("PRESENCE_REDIS_URL", &redis_url),
    ];
    let (ok, out) = check(&env);
    assert!(!ok, "check passed:\n{out}");
    let found = problems(&out);
    for (variable, what) in [
        ("PRESENCE_JWT_SECRET", "at least 16"),
        ("PRESENCE_ADMIN_KEY", "no admin key"),
        ("PRESENCE_ACTIVITY_INTERVAL_MS", "at most half"),
        ("PRESENCE_MAX_CONNECTIONS", "RLIMIT_NOFILE"),
        ("PRESENCE_REDIS_URL", "unreachable"),
    ] {
        assert!(
            found
                .iter()
                .any(|l| l.contains(variable) && l.contains(what)),
            "no problem naming {variable} ({what}) in:\n{out}"
        );
    }
    assert_eq!(found.len(), 5, "{out}");
    assert!(
        out.ends_with("5 problems: the hub would not start or not serve\n"),
        "{out}"
    );
    // And the hub indeed does not start on it.
    let (status, _, stderr) = run_to_exit(&[], &env);
    assert!(!status.success(), "serve started:\n{stderr}");
}

#[test]
fn a_key_file_that_does_not_parse_a_data_dir_that_cannot_be_written_and_a_taken_port_are_problems()
{
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::File::create(&key)
        .unwrap()
        .write_all(b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
        .unwrap();
    // Under a regular file: no directory can be made there, even by root.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let data = file.join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let env = [
        ("PRESENCE_LISTEN", listen.as_str()),
        ("PRESENCE_JWT_PUBLIC_KEY_FILE", key.to_str().unwrap()),
        ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
        ("PRESENCE_DATA_DIR", data.to_str().unwrap()),
        ("PRESENCE_MAX_CONNECTIONS", "100"),
    ];
    let (ok, out) = check(&env);
    assert!(!ok, "check passed:\n{out}");
    let found = problems(&out);
    for (variable, what) in [
        ("PRESENCE_JWT_PUBLIC_KEY_FILE", "neither an RSA nor an EC"),
        ("PRESENCE_DATA_DIR", "not a writable directory"),
        ("PRESENCE_LISTEN", &listen),
    ] {
        assert!(
            found
                .iter()
                .any(|l| l.contains(variable) && l.contains(what)),
            "no problem naming {variable} ({what}) in:\n{out}"
        );
    }
    assert_eq!(found.len(), 3, "{out}");
    let (status, _, _) = run_to_exit(&[], &env);
    assert!(!status.success(), "serve started");
}

#[tokio::test]
async fn a_configuration_that_passes_starts_a_hub_that_serves() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("not-yet");
    let env = [
        ("PRESENCE_LISTEN", "127.0.0.1:0"),
        ("PRESENCE_JWT_SECRET", SECRET),
        ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
        ("PRESENCE_DATA_DIR", dir.to_str().unwrap()),
        ("PRESENCE_MAX_CONNECTIONS", "100"),
    ];
    let (ok, out) = check(&env);
    assert!(ok, "check failed:\n{out}");
    assert!(out.contains("ok:      mode: single node"), "{out}");
    assert!(out.contains("will be created"), "{out}");
    assert!(out.ends_with("the hub would start and serve\n"), "{out}");
    assert!(!dir.exists(), "check created the data dir");
    let hub = HubProcess::start(&[], &env);
    hub.wait_ready().await;
}

#[tokio::test]
async fn a_reachable_redis_passes_and_the_cluster_node_serves() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let env = [
        ("PRESENCE_LISTEN", "127.0.0.1:0"),
        ("PRESENCE_JWT_SECRET", SECRET),
        ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
        ("PRESENCE_REDIS_URL", url.as_str()),
        ("PRESENCE_MAX_CONNECTIONS", "100"),
    ];
    let (ok, out) = check(&env);
    assert!(ok, "check failed:\n{out}");
    assert!(
        out.contains("mode: cluster, on a single Redis server"),
        "{out}"
    );
    let hub = HubProcess::start_async(&[], &env).await;
    hub.wait_ready().await;
}

#[test]
fn dev_mode_needs_no_secrets() {
    let data = tempfile::tempdir().unwrap();
    let (status, out, _) = run_to_exit(
        &["check", "--dev"],
        &[
            ("PRESENCE_LISTEN", "127.0.0.1:0"),
            ("PRESENCE_DATA_DIR", data.path().to_str().unwrap()),
            ("PRESENCE_MAX_CONNECTIONS", "100"),
        ],
    );
    assert!(status.success(), "{out}");
    // The check generates nothing: serve would, on its first start.
    assert!(!data.path().join("dev-secrets.json").exists());
}

#[tokio::test]
async fn a_redis_cluster_passes_while_it_serves_and_fails_once_a_master_is_lost() {
    let mut cluster = RedisCluster::start(3).await;
    let url = cluster.url();
    let env = [
        ("PRESENCE_LISTEN", "127.0.0.1:0"),
        ("PRESENCE_JWT_SECRET", SECRET),
        ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
        ("PRESENCE_REDIS_URL", url.as_str()),
        ("PRESENCE_MAX_CONNECTIONS", "100"),
    ];
    let (ok, out) = check(&env);
    assert!(ok, "check failed:\n{out}");
    assert!(
        out.contains("on a Redis Cluster (cluster_state:ok)"),
        "{out}"
    );

    // A master lost: its slots have no owner, so the cluster stops serving
    // (within the cluster's node timeout, 2 s here).
    cluster.nodes[2].kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in &cluster.nodes[..2] {
        loop {
            let info: Option<String> =
                query(n.port, redis::cmd("CLUSTER").arg("INFO").clone()).await;
            if info.is_some_and(|i| i.contains("cluster_state:fail")) {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster never noticed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (ok, out) = check(&env);
    assert!(!ok, "check passed on a failed cluster:\n{out}");
    assert!(
        problems(&out)
            .iter()
            .any(|l| l.starts_with("problem: PRESENCE_REDIS_URL: ")),
        "{out}"
    );
}
