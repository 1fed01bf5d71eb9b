//! nginx in front of hubs, as `examples/nginx/presence.conf` puts it: the
//! shipped file with the test's addresses, run in the foreground from a
//! temporary directory.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::hub_process::PROCESS_WAIT;
use crate::redis_support::free_port;

/// The nginx binary (on PATH or where Debian puts it); fails the test with
/// the command that installs it.
pub fn require_nginx() -> String {
    ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_owned)
        .expect("nginx is not installed: apt-get install -y nginx (.ci/run installs it)")
}

/// The shipped example, with its two upstream servers and its listen
/// address replaced by the test's.
const EXAMPLE: &str = include_str!("../../../examples/nginx/presence.conf");

pub fn example_for(listen: u16, hubs: [SocketAddr; 2]) -> String {
    let mut conf = EXAMPLE.to_owned();
    for (placeholder, value) in [
        ("server 127.0.0.1:7701", format!("server {}", hubs[0])),
        ("server 127.0.0.1:7702", format!("server {}", hubs[1])),
        ("listen 80;", format!("listen 127.0.0.1:{listen};")),
    ] {
        assert!(
            conf.contains(placeholder),
            "the example no longer has `{placeholder}`"
        );
        conf = conf.replace(placeholder, &value);
    }
    conf
}

/// An nginx in the foreground, all its files in a temp dir. Dropping it
/// kills it (one process: `master_process off`).
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// nginx with the shipped example in front of `hubs`.
    pub async fn start(bin: &str, hubs: [SocketAddr; 2]) -> Nginx {
        Self::start_site(bin, |port| example_for(port, hubs)).await
    }

    /// nginx serving the site `site(port)` gives for its listen port.
    pub async fn start_site(bin: &str, site: impl Fn(u16) -> String) -> Nginx {
        let mut last_err = String::new();
        for _ in 0..3 {
            match Self::try_start(bin, &site).await {
                Ok(n) => return n,
                Err(e) => last_err = e,
            }
        }
        panic!("nginx did not start: {last_err}");
    }

    async fn try_start(bin: &str, site: &impl Fn(u16) -> String) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let port = free_port();
        std::fs::write(dir.path().join("presence.conf"), site(port)).unwrap();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/presence.conf;\n}}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {bin}: {e}"))?;
        let mut n = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let deadline = Instant::now() + PROCESS_WAIT;
        let http = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = n.child.try_wait() {
                return Err(format!("exited with {status}: {}", n.error_log()));
            }
            let up = http
                .get(format!("http://{}/healthz", n.addr))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if up {
                return Ok(n);
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on {}: {}", n.addr, n.error_log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}
