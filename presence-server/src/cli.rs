//! Command line and environment (SPEC §7): every setting is a flag with a
//! `PRESENCE_*` variable behind it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{defaults as d, Config};

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
    /// Check the configuration as the hub would load it (the same flags and
    /// variables), report every problem with the variable to change, and
    /// exit 0 only when the hub would start and serve.
    Check {
        // Boxed: the settings dwarf `Token`'s fields.
        #[command(flatten)]
        serve: Box<ServeArgs>,
    },
}

/// The hub's settings. Every default is a constant of
/// [`config::defaults`](crate::config::defaults), which `Config::default`
/// uses too, and `--help` prints it after the line below each flag;
/// README.md's configuration table is checked against this (`tests` below).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PRESENCE_LISTEN", default_value = d::LISTEN)]
    pub listen: SocketAddr,
    /// HS256 secret shared with the ERP (at least 16 characters).
    #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key, instead of the secret: RSA means RS256, EC P-256 ES256.
    #[arg(long, env = "PRESENCE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Bearer key of the ERP backend for the admin API (at least 16 characters).
    #[arg(long, env = "PRESENCE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// A user is online this long after their last interaction.
    #[arg(long, env = "PRESENCE_IDLE_TIMEOUT_MS", default_value_t = d::IDLE_TIMEOUT_MS)]
    pub idle_timeout_ms: u64,
    /// How often tabs report activity while someone interacts; unset:
    /// a third of the idle timeout, at most 10000. At most half the idle
    /// timeout, or users would flap between reports.
    #[arg(long, env = "PRESENCE_ACTIVITY_INTERVAL_MS")]
    pub activity_interval_ms: Option<u64>,
    /// Directory of the embedded store.
    #[arg(long, env = "PRESENCE_DATA_DIR", default_value = d::DATA_DIR)]
    pub data_dir: PathBuf,
    /// Set = cluster mode (shared state in Redis).
    #[arg(long, env = "PRESENCE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Comma-separated allowed Origin values; empty allows any.
    #[arg(long, env = "PRESENCE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Node name in logs; in cluster mode a random suffix per start is added.
    #[arg(long, env = "PRESENCE_NODE_ID", default_value = d::NODE_ID)]
    pub node_id: String,
    /// Larger frames close the tab with 4008.
    #[arg(long, env = "PRESENCE_MAX_FRAME_BYTES", default_value_t = d::MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// Sustained frames per second per tab.
    #[arg(long, env = "PRESENCE_RATE_PER_SEC", default_value_t = d::RATE_PER_SEC)]
    pub rate_per_sec: u32,
    /// Burst of frames per tab.
    #[arg(long, env = "PRESENCE_RATE_BURST", default_value_t = d::RATE_BURST)]
    pub rate_burst: u32,
    /// The next tab of a user gets 4029.
    #[arg(long, env = "PRESENCE_MAX_TABS_PER_USER", default_value_t = d::MAX_TABS_PER_USER)]
    pub max_tabs_per_user: usize,
    /// Rosters one tab may watch.
    #[arg(long, env = "PRESENCE_MAX_SUBSCRIPTIONS", default_value_t = d::MAX_SUBSCRIPTIONS)]
    pub max_subscriptions: usize,
    /// `hello` must arrive within this after the upgrade, else 4001.
    #[arg(long, env = "PRESENCE_HELLO_TIMEOUT_MS", default_value_t = d::HELLO_TIMEOUT_MS)]
    pub hello_timeout_ms: u64,
    /// Frames queued for one tab before it is closed as a slow consumer (1013).
    #[arg(long, env = "PRESENCE_OUTBOUND_QUEUE", default_value_t = d::OUTBOUND_QUEUE)]
    pub outbound_queue: usize,
    /// How long SIGTERM waits for tabs to close.
    #[arg(long, env = "PRESENCE_SHUTDOWN_GRACE_MS", default_value_t = d::SHUTDOWN_GRACE_MS)]
    pub shutdown_grace_ms: u64,
    /// How long a tenant's transition feed keeps events, unless the tenant
    /// sets its own `event_retention_s`.
    #[arg(long, env = "PRESENCE_EVENT_RETENTION_S", default_value_t = d::EVENT_RETENTION_S)]
    pub event_retention_s: u64,
    /// Webhook targets allowed although private, loopback or link-local:
    /// comma-separated hosts, addresses and CIDR networks.
    #[arg(long, env = "PRESENCE_WEBHOOK_ALLOWED_HOSTS")]
    pub webhook_allowed_hosts: Option<String>,
    /// Most events in one webhook delivery.
    #[arg(long, env = "PRESENCE_WEBHOOK_BATCH_MAX", default_value_t = d::WEBHOOK_BATCH_MAX)]
    pub webhook_batch_max: usize,
    /// How long a webhook batch waits to fill before it goes.
    #[arg(long, env = "PRESENCE_WEBHOOK_BATCH_WAIT_MS", default_value_t = d::WEBHOOK_BATCH_WAIT_MS)]
    pub webhook_batch_wait_ms: u64,
    /// The first retry of a failed delivery waits about this; each next twice as long.
    #[arg(long, env = "PRESENCE_WEBHOOK_RETRY_MIN_MS", default_value_t = d::WEBHOOK_RETRY_MIN_MS)]
    pub webhook_retry_min_ms: u64,
    /// The longest wait between two retries of a delivery.
    #[arg(long, env = "PRESENCE_WEBHOOK_RETRY_MAX_MS", default_value_t = d::WEBHOOK_RETRY_MAX_MS)]
    pub webhook_retry_max_ms: u64,
    /// One delivery's request may take this long, answer included.
    #[arg(long, env = "PRESENCE_WEBHOOK_TIMEOUT_MS", default_value_t = d::WEBHOOK_TIMEOUT_MS)]
    pub webhook_timeout_ms: u64,
    /// Cluster mode: another node takes a dead deliverer's tenants over within this.
    #[arg(long, env = "PRESENCE_WEBHOOK_LEASE_MS", default_value_t = d::WEBHOOK_LEASE_MS)]
    pub webhook_lease_ms: u64,
    /// Cluster mode: a tenant nothing on this node used for this long is unloaded here.
    #[arg(long, env = "PRESENCE_TENANT_EVICT_AFTER_MS", default_value_t = d::TENANT_EVICT_AFTER_MS)]
    pub tenant_evict_after_ms: u64,
    /// A tab silent on the wire this long is pinged.
    #[arg(long, env = "PRESENCE_PING_INTERVAL_MS", default_value_t = d::PING_INTERVAL_MS)]
    pub ping_interval_ms: u64,
    /// A pinged tab silent this long more is closed as gone (1001).
    #[arg(long, env = "PRESENCE_PONG_TIMEOUT_MS", default_value_t = d::PONG_TIMEOUT_MS)]
    pub pong_timeout_ms: u64,
    /// How long a closing connection waits for the client's close frame.
    #[arg(long, env = "PRESENCE_CLOSE_LINGER_MS", default_value_t = d::CLOSE_LINGER_MS)]
    pub close_linger_ms: u64,
    /// Bytes of frames handed to a tab's socket at once (bounds its write buffer).
    #[arg(long, env = "PRESENCE_WRITE_BUFFER_BYTES", default_value_t = d::WRITE_BUFFER_BYTES)]
    pub write_buffer_bytes: usize,
    /// `text` or `json` log lines.
    #[arg(long, env = "PRESENCE_LOG_FORMAT", default_value = d::LOG_FORMAT)]
    pub log_format: String,
    /// Demo mode: generate secrets, seed a demo tenant, print tokens.
    #[arg(long)]
    pub dev: bool,

    // The HTTP edge: connections, upgrades and request sizes.
    /// Open connections (HTTP and WebSocket); the next one gets 503.
    #[arg(long, env = "PRESENCE_MAX_CONNECTIONS", default_value_t = d::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Upgraded connections that have not completed `hello`; the next upgrade gets 503.
    #[arg(long, env = "PRESENCE_MAX_PENDING_HELLO", default_value_t = d::MAX_PENDING_HELLO)]
    pub max_pending_hello: usize,
    /// A request's line and headers must arrive within this (and an idle
    /// keep-alive connection is closed after it).
    #[arg(
        long,
        env = "PRESENCE_HEADER_READ_TIMEOUT_MS",
        default_value_t = d::HEADER_READ_TIMEOUT_MS
    )]
    pub header_read_timeout_ms: u64,
    /// Larger request line plus headers get 431.
    #[arg(long, env = "PRESENCE_MAX_HEADER_BYTES", default_value_t = d::MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,
    /// Larger JSON bodies on the admin API get 413.
    #[arg(long, env = "PRESENCE_MAX_BODY_BYTES", default_value_t = d::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Larger CSV imports and bulk-sync (`POST .../batch`) bodies get 413.
    #[arg(long, env = "PRESENCE_MAX_IMPORT_BYTES", default_value_t = d::MAX_IMPORT_BYTES)]
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
    #[error("PRESENCE_WEBHOOK_ALLOWED_HOSTS: {0}")]
    WebhookHosts(String),
    #[error("PRESENCE_WEBHOOK_RETRY_MIN_MS ({min_ms}) must be at most PRESENCE_WEBHOOK_RETRY_MAX_MS ({max_ms})")]
    WebhookRetry { min_ms: u64, max_ms: u64 },
    #[error(transparent)]
    Key(#[from] crate::auth::KeyError),
}

impl ServeArgs {
    /// The hub settings these arguments describe.
    ///
    /// # Errors
    /// The first of [`ServeArgs::setting_problems`].
    pub fn config(&self) -> Result<Config, ConfigError> {
        if let Some(first) = self.setting_problems().into_iter().next() {
            return Err(first);
        }
        Ok(self.build_config())
    }

    /// Every reason these settings (keys aside: [`ServeArgs::verifier`],
    /// [`ServeArgs::admin_key`]) would stop the hub, not only the first:
    /// `config` refuses on the first, `presence-server check` lists them
    /// all, so the two cannot disagree.
    pub(crate) fn setting_problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
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
            ("PRESENCE_EVENT_RETENTION_S", self.event_retention_s),
            ("PRESENCE_PONG_TIMEOUT_MS", self.pong_timeout_ms),
            (
                "PRESENCE_WRITE_BUFFER_BYTES",
                self.write_buffer_bytes as u64,
            ),
            ("PRESENCE_WEBHOOK_BATCH_MAX", self.webhook_batch_max as u64),
            ("PRESENCE_WEBHOOK_RETRY_MIN_MS", self.webhook_retry_min_ms),
            ("PRESENCE_WEBHOOK_TIMEOUT_MS", self.webhook_timeout_ms),
            ("PRESENCE_WEBHOOK_LEASE_MS", self.webhook_lease_ms),
            ("PRESENCE_TENANT_EVICT_AFTER_MS", self.tenant_evict_after_ms),
        ] {
            if v == 0 {
                problems.push(ConfigError::Zero(name));
            }
        }
        if let Some(interval_ms) = self.activity_interval_ms {
            if interval_ms > self.idle_timeout_ms / 2 {
                problems.push(ConfigError::ActivityInterval {
                    interval_ms,
                    idle_ms: self.idle_timeout_ms,
                });
            }
        }
        if self.webhook_retry_min_ms > self.webhook_retry_max_ms {
            problems.push(ConfigError::WebhookRetry {
                min_ms: self.webhook_retry_min_ms,
                max_ms: self.webhook_retry_max_ms,
            });
        }
        if let Err(e) = self.webhook_policy() {
            problems.push(e);
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
                problems.push(ConfigError::Zero(name));
            }
        }
        problems
    }

    fn webhook_policy(&self) -> Result<crate::webhook::target::Policy, ConfigError> {
        crate::webhook::target::Policy::parse(
            self.webhook_allowed_hosts.as_deref().unwrap_or_default(),
        )
        .map_err(ConfigError::WebhookHosts)
    }

    fn build_config(&self) -> Config {
        Config {
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
            node_id: self.node_id.clone(),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            event_retention: Duration::from_secs(self.event_retention_s),
            event_trim: Duration::from_millis(d::EVENT_TRIM_MS),
            cluster_duties: Duration::from_millis(d::CLUSTER_DUTIES_MS),
            directory_poll: Duration::from_millis(d::DIRECTORY_POLL_MS),
            tenant_evict_after: Duration::from_millis(self.tenant_evict_after_ms),
            tenant_load_timeout: Duration::from_millis(d::TENANT_LOAD_TIMEOUT_MS),
            webhooks: crate::config::WebhookSettings {
                // Checked by `setting_problems` before this is built.
                allowed_hosts: self.webhook_policy().unwrap_or_default(),
                batch_max: self.webhook_batch_max,
                batch_wait: Duration::from_millis(self.webhook_batch_wait_ms),
                retry_min: Duration::from_millis(self.webhook_retry_min_ms),
                retry_max: Duration::from_millis(self.webhook_retry_max_ms),
                timeout: Duration::from_millis(self.webhook_timeout_ms),
                lease: Duration::from_millis(self.webhook_lease_ms),
            },
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
        }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::{CommandFactory, Parser};

    use super::*;

    /// README.md's configuration table, the user-facing contract: each
    /// variable and its default, `None` where the cell is prose ("—",
    /// "unset", "a third of the idle timeout, …") rather than one value.
    fn readme_defaults() -> BTreeMap<String, Option<String>> {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .expect("README.md has a Configuration section");
        let value = |cell: &str| {
            let cell = cell.trim();
            let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
            (!inner.contains('`')).then(|| inner.to_owned())
        };
        let mut out = BTreeMap::new();
        let rows = section
            .lines()
            .skip_while(|l| !l.starts_with("| variable |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'));
        for row in rows {
            let cells: Vec<&str> = row.split('|').collect();
            // `A` / `B` | `1` / `2` describes two variables.
            let names: Vec<&str> = cells[1].split(" / ").collect();
            let defaults: Vec<&str> = if names.len() > 1 {
                cells[2].split(" / ").collect()
            } else {
                vec![cells[2]]
            };
            assert_eq!(names.len(), defaults.len(), "{row}");
            for (name, default) in names.iter().zip(defaults) {
                let name = value(name).unwrap_or_else(|| panic!("{row}"));
                out.insert(name, value(default));
            }
        }
        out
    }

    /// What `--help` shows: each variable and its default, if any.
    fn help_defaults() -> BTreeMap<String, Option<String>> {
        Cli::command()
            .get_arguments()
            .filter_map(|a| {
                let env = a.get_env()?.to_str()?.to_owned();
                let values: Vec<String> = a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                Some((env, (!values.is_empty()).then(|| values.join(","))))
            })
            .collect()
    }

    #[test]
    fn the_readme_table_lists_every_variable_with_the_default_help_shows() {
        assert_eq!(readme_defaults(), help_defaults());
    }

    #[test]
    fn no_flags_and_no_variables_give_the_library_defaults() {
        let cli = Cli::try_parse_from(["presence-server"]).expect("no argument is required");
        let config = cli.serve.config().expect("the defaults are valid");
        assert_eq!(
            format!("{config:?}"),
            format!("{:?}", Config::default()),
            "is a PRESENCE_* variable set in this test's environment?"
        );
    }
}
