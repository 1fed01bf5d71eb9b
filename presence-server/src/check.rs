//! `presence-server check`: the configuration as `serve` would load it
//! (the same [`ServeArgs`], so the same flags and variables), and every
//! reason it would not start or not serve, each naming the variable to
//! change. All of them, not the first: an operator fixes a unit file once.
//!
//! It reads, connects and probes, but starts nothing: no store is opened
//! (a running hub holds it), the listen address is bound and released at
//! once, the data directory gets a probe file it removes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::auth::KeyError;
use crate::cli::{ConfigError, ServeArgs};
use crate::store::redis_conn::{RedisConn, RedisConnError, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};

/// Why the hub would not start, or would not serve what it is configured
/// for. Each message names the variable to change.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Setting(ConfigError),
    #[error("PRESENCE_JWT_PUBLIC_KEY_FILE: {0}")]
    PublicKey(KeyError),
    #[error(
        "PRESENCE_MAX_CONNECTIONS ({max_connections}) is above the open-files limit \
         (RLIMIT_NOFILE {files}): past about {files} connections accept fails instead of \
         answering 503; raise it (ulimit -n, systemd LimitNOFILE=) or lower PRESENCE_MAX_CONNECTIONS"
    )]
    OpenFiles { files: u64, max_connections: usize },
    #[error("PRESENCE_REDIS_URL: {0}")]
    Redis(RedisConnError),
    #[error("PRESENCE_REDIS_URL: Redis does not answer {command}: {cause}")]
    RedisCommand {
        command: &'static str,
        cause: String,
    },
    #[error("PRESENCE_REDIS_URL: the Redis Cluster is not serving (cluster_state:{0})")]
    ClusterState(String),
    #[error("PRESENCE_DATA_DIR: {dir} is not a writable directory: {source}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("PRESENCE_LISTEN: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Something that works but is probably not meant.
#[derive(Debug, thiserror::Error)]
pub enum Warning {
    #[error(
        "PRESENCE_CLOSE_LINGER_MS ({linger_ms}) is longer than the {drain_ms} ms \
         PRESENCE_SHUTDOWN_GRACE_MS leaves tabs to close at shutdown: tabs that do not \
         answer their 1012 are dropped before their linger ends"
    )]
    Linger { linger_ms: u64, drain_ms: u64 },
}

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each one stops the hub or keeps it from serving; empty means it
    /// would start and serve.
    pub problems: Vec<Problem>,
    pub warnings: Vec<Warning>,
    /// What was checked and found fine, for the operator to read.
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks `args` as `serve` would use them. With `--dev`, missing secrets
/// count as generated (as `serve` would generate them).
pub async fn check(args: &ServeArgs) -> Report {
    let mut args = args.clone();
    let mut report = Report::default();
    if args.dev {
        // `dev::secrets` makes 32 characters; only their presence matters.
        let generated = || "generated-by-dev-0123456789abcdef".to_owned();
        args.jwt_secret.get_or_insert_with(generated);
        args.admin_key.get_or_insert_with(generated);
    }
    for p in args.setting_problems() {
        report.problems.push(Problem::Setting(p));
    }
    match args.verifier() {
        Ok(_) => report.notes.push(match &args.jwt_public_key_file {
            Some(p) => format!("token key: public key {}", p.display()),
            None => "token key: HS256 secret".to_owned(),
        }),
        Err(ConfigError::Key(e)) => report.problems.push(Problem::PublicKey(e)),
        Err(e) => report.problems.push(Problem::Setting(e)),
    }
    if let Err(e) = args.admin_key() {
        report.problems.push(Problem::Setting(e));
    }
    open_files(&args, &mut report);
    if let Ok(config) = args.config() {
        let drain = crate::server::drain_budget(config.shutdown_grace);
        if config.close_linger > drain {
            report.warnings.push(Warning::Linger {
                linger_ms: config.close_linger.as_millis() as u64,
                drain_ms: drain.as_millis() as u64,
            });
        }
    }
    match &args.redis_url {
        Some(url) => redis(url, &mut report).await,
        None => report.notes.push("mode: single node".to_owned()),
    }
    // The data directory holds the store on a single node and the
    // generated secrets in --dev; a cluster node writes nothing there.
    if args.redis_url.is_none() || args.dev {
        match writable(&args.data_dir) {
            Ok(note) => report.notes.push(note),
            Err(source) => report.problems.push(Problem::DataDir {
                dir: args.data_dir.clone(),
                source,
            }),
        }
    }
    match std::net::TcpListener::bind(args.listen) {
        Ok(_) => report
            .notes
            .push(format!("listen: {} is free", args.listen)),
        Err(source) => report.problems.push(Problem::Listen {
            addr: args.listen,
            source,
        }),
    }
    report
}

fn open_files(args: &ServeArgs, report: &mut Report) {
    match crate::server::open_files_limit() {
        Some(files) if files < args.max_connections as u64 => {
            report.problems.push(Problem::OpenFiles {
                files,
                max_connections: args.max_connections,
            })
        }
        Some(files) => report.notes.push(format!(
            "open files: RLIMIT_NOFILE {files} ≥ PRESENCE_MAX_CONNECTIONS {}",
            args.max_connections
        )),
        None => report
            .notes
            .push("open files: no RLIMIT_NOFILE limit".to_owned()),
    }
}

/// Connects as cluster mode does ([`RedisConn::connect`]), then asks.
async fn redis(url: &str, report: &mut Report) {
    let mut conn = match RedisConn::connect(url).await {
        Ok(c) => c,
        Err(e) => return report.problems.push(Problem::Redis(e)),
    };
    // Bounded: a connected server that stops answering must not hang the check.
    let bound = CONNECT_TIMEOUT + RESPONSE_TIMEOUT;
    let ping =
        tokio::time::timeout(bound, redis::cmd("PING").query_async::<String>(&mut conn)).await;
    match ping {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return report.problems.push(Problem::RedisCommand {
                command: "PING",
                cause: e.to_string(),
            })
        }
        Err(_) => {
            return report
                .problems
                .push(Problem::Redis(RedisConnError::Timeout(bound)))
        }
    }
    if !conn.is_cluster() {
        report
            .notes
            .push("mode: cluster, on a single Redis server (PING answered)".to_owned());
        return;
    }
    let info = tokio::time::timeout(
        bound,
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async::<String>(&mut conn),
    )
    .await;
    let cause = match info {
        Ok(Ok(info)) => {
            let state = info
                .lines()
                .find_map(|l| l.trim().strip_prefix("cluster_state:").map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            if state == "ok" {
                report
                    .notes
                    .push("mode: cluster, on a Redis Cluster (cluster_state:ok)".to_owned());
            } else {
                report.problems.push(Problem::ClusterState(state));
            }
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {bound:?}"),
    };
    report.problems.push(Problem::RedisCommand {
        command: "CLUSTER INFO",
        cause,
    });
}

/// A probe file written and removed in `dir`, or in the nearest existing
/// parent when `dir` does not exist yet (the hub creates it).
fn writable(dir: &Path) -> std::io::Result<String> {
    let mut at = dir;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", at.display()),
        ));
    }
    let probe = at.join(format!(".presence-check-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)?;
    Ok(if at == dir {
        format!("data dir: {} is writable", dir.display())
    } else {
        format!(
            "data dir: {} will be created ({} is writable)",
            dir.display(),
            at.display()
        )
    })
}
