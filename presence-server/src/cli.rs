//! Command line and environment (SPEC §7): every setting is a flag with a
//! `PRESENCE_*` variable behind it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "presence-server", version, about = "Real-time presence hub")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mint an HS256 token for a user from the configured secret.
    Token {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PRESENCE_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// HS256 secret shared with the ERP.
    #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA for RS256, EC P-256 for ES256).
    #[arg(long, env = "PRESENCE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Key of the ERP backend for the admin API.
    #[arg(long, env = "PRESENCE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    #[arg(long, env = "PRESENCE_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// How often tabs report activity while someone interacts; unset:
    /// a third of the idle timeout, at most 10 s. At most half the idle
    /// timeout, or users would flap between reports.
    #[arg(long, env = "PRESENCE_ACTIVITY_INTERVAL_MS")]
    pub activity_interval_ms: Option<u64>,
    /// Directory of the embedded store.
    #[arg(long, env = "PRESENCE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Set = cluster mode (shared state in Redis).
    #[arg(long, env = "PRESENCE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Comma-separated allowed Origin values; empty allows any.
    #[arg(long, env = "PRESENCE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    #[arg(long, env = "PRESENCE_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "PRESENCE_MAX_FRAME_BYTES", default_value_t = 16 * 1024)]
    pub max_frame_bytes: usize,
    #[arg(long, env = "PRESENCE_RATE_PER_SEC", default_value_t = 20)]
    pub rate_per_sec: u32,
    #[arg(long, env = "PRESENCE_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,
    #[arg(long, env = "PRESENCE_MAX_TABS_PER_USER", default_value_t = 32)]
    pub max_tabs_per_user: usize,
    #[arg(long, env = "PRESENCE_MAX_SUBSCRIPTIONS", default_value_t = 16)]
    pub max_subscriptions: usize,
    #[arg(long, env = "PRESENCE_HELLO_TIMEOUT_MS", default_value_t = 5_000)]
    pub hello_timeout_ms: u64,
    #[arg(long, env = "PRESENCE_OUTBOUND_QUEUE", default_value_t = 32_768)]
    pub outbound_queue: usize,
    #[arg(long, env = "PRESENCE_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,
    /// A tab silent on the wire this long is pinged.
    #[arg(long, env = "PRESENCE_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    /// A pinged tab silent this long more is closed as gone.
    #[arg(long, env = "PRESENCE_PONG_TIMEOUT_MS", default_value_t = 20_000)]
    pub pong_timeout_ms: u64,
    /// How long a closing connection waits for the client's close frame.
    #[arg(long, env = "PRESENCE_CLOSE_LINGER_MS", default_value_t = 1_000)]
    pub close_linger_ms: u64,
    /// Bytes of frames handed to a tab's socket at once (bounds its write buffer).
    #[arg(long, env = "PRESENCE_WRITE_BUFFER_BYTES", default_value_t = 1 << 20)]
    pub write_buffer_bytes: usize,
    /// `text` or `json` log lines.
    #[arg(long, env = "PRESENCE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Demo mode: generate secrets, seed a demo tenant, print tokens.
    #[arg(long)]
    pub dev: bool,

    // The HTTP edge: connections, upgrades and request sizes.
    /// Open connections (HTTP and WebSocket); the next one gets 503.
    #[arg(long, env = "PRESENCE_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Upgraded connections that have not completed `hello`; the next upgrade gets 503.
    #[arg(long, env = "PRESENCE_MAX_PENDING_HELLO", default_value_t = 10_000)]
    pub max_pending_hello: usize,
    /// A request's line and headers must arrive within this (and an idle
    /// keep-alive connection is closed after it).
    #[arg(
        long,
        env = "PRESENCE_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub header_read_timeout_ms: u64,
    /// Larger request line plus headers get 431.
    #[arg(long, env = "PRESENCE_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Larger JSON bodies on the admin API get 413.
    #[arg(long, env = "PRESENCE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Larger CSV imports get 413.
    #[arg(long, env = "PRESENCE_MAX_IMPORT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_import_bytes: usize,
}

/// A setting is missing or wrong; the hub does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no token key: set PRESENCE_JWT_SECRET (HS256) or PRESENCE_JWT_PUBLIC_KEY_FILE (RS256/ES256), or run with --dev")]
    MissingJwtKey,
    #[error("set only one of PRESENCE_JWT_SECRET and PRESENCE_JWT_PUBLIC_KEY_FILE")]
    TwoJwtKeys,
    #[error("no admin key: set PRESENCE_ADMIN_KEY (at least 16 characters), or run with --dev")]
    MissingAdminKey,
    #[error("PRESENCE_ADMIN_KEY must be at least 16 characters")]
    WeakAdminKey,
    #[error("PRESENCE_JWT_SECRET must be at least 16 characters")]
    WeakJwtSecret,
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("PRESENCE_ACTIVITY_INTERVAL_MS ({interval_ms}) must be at most half of PRESENCE_IDLE_TIMEOUT_MS ({idle_ms}): users would go offline between two reports")]
    ActivityInterval { interval_ms: u64, idle_ms: u64 },
    #[error(transparent)]
    Key(#[from] crate::auth::KeyError),
}

impl ServeArgs {
    /// The hub settings these arguments describe.
    pub fn config(&self) -> Result<Config, ConfigError> {
        for (name, v) in [
            ("PRESENCE_IDLE_TIMEOUT_MS", self.idle_timeout_ms),
            (
                "PRESENCE_ACTIVITY_INTERVAL_MS",
                self.activity_interval_ms.unwrap_or(1),
            ),
            ("PRESENCE_HELLO_TIMEOUT_MS", self.hello_timeout_ms),
            ("PRESENCE_MAX_FRAME_BYTES", self.max_frame_bytes as u64),
            ("PRESENCE_RATE_PER_SEC", self.rate_per_sec as u64),
            ("PRESENCE_RATE_BURST", self.rate_burst as u64),
            ("PRESENCE_MAX_TABS_PER_USER", self.max_tabs_per_user as u64),
            ("PRESENCE_MAX_SUBSCRIPTIONS", self.max_subscriptions as u64),
            ("PRESENCE_OUTBOUND_QUEUE", self.outbound_queue as u64),
            ("PRESENCE_PING_INTERVAL_MS", self.ping_interval_ms),
            ("PRESENCE_PONG_TIMEOUT_MS", self.pong_timeout_ms),
            (
                "PRESENCE_WRITE_BUFFER_BYTES",
                self.write_buffer_bytes as u64,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if let Some(interval_ms) = self.activity_interval_ms {
            if interval_ms > self.idle_timeout_ms / 2 {
                return Err(ConfigError::ActivityInterval {
                    interval_ms,
                    idle_ms: self.idle_timeout_ms,
                });
            }
        }
        // The HTTP edge.
        for (name, v) in [
            ("PRESENCE_MAX_CONNECTIONS", self.max_connections as u64),
            ("PRESENCE_MAX_PENDING_HELLO", self.max_pending_hello as u64),
            (
                "PRESENCE_HEADER_READ_TIMEOUT_MS",
                self.header_read_timeout_ms,
            ),
            ("PRESENCE_MAX_HEADER_BYTES", self.max_header_bytes as u64),
            ("PRESENCE_MAX_BODY_BYTES", self.max_body_bytes as u64),
            ("PRESENCE_MAX_IMPORT_BYTES", self.max_import_bytes as u64),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(Config {
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            activity_interval: self.activity_interval_ms.map(Duration::from_millis),
            hello_timeout: Duration::from_millis(self.hello_timeout_ms),
            max_frame_bytes: self.max_frame_bytes,
            rate_per_sec: self.rate_per_sec,
            rate_burst: self.rate_burst,
            max_tabs_per_user: self.max_tabs_per_user,
            max_subscriptions: self.max_subscriptions,
            outbound_queue: self.outbound_queue,
            allowed_origins: self
                .allowed_origins
                .iter()
                .filter(|o| !o.is_empty())
                .cloned()
                .collect(),
            node_id: self.node_id.clone().unwrap_or_else(|| "node-1".into()),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            presence_flush: Duration::from_secs(1),
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            pong_timeout: Duration::from_millis(self.pong_timeout_ms),
            close_linger: Duration::from_millis(self.close_linger_ms),
            write_buffer_bytes: self.write_buffer_bytes,

            max_connections: self.max_connections,
            max_pending_hello: self.max_pending_hello,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            max_import_bytes: self.max_import_bytes,
        })
    }

    /// The token verifier, from exactly one configured key.
    pub fn verifier(&self) -> Result<crate::auth::Verifier, ConfigError> {
        match (&self.jwt_secret, &self.jwt_public_key_file) {
            (Some(_), Some(_)) => Err(ConfigError::TwoJwtKeys),
            (Some(s), None) if s.len() < 16 => Err(ConfigError::WeakJwtSecret),
            (Some(s), None) => Ok(crate::auth::Verifier::hs256(s.as_bytes())),
            (None, Some(p)) => Ok(crate::auth::Verifier::from_public_key_file(p)?),
            (None, None) => Err(ConfigError::MissingJwtKey),
        }
    }

    pub fn admin_key(&self) -> Result<String, ConfigError> {
        match &self.admin_key {
            None => Err(ConfigError::MissingAdminKey),
            Some(k) if k.len() < 16 => Err(ConfigError::WeakAdminKey),
            Some(k) => Ok(k.clone()),
        }
    }
}
