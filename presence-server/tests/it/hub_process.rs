//! The real `presence-server` binary as a child process: configured by
//! environment, found by its `presence hub listening addr=` log line,
//! stopped with SIGTERM or SIGKILL, restarted on the same environment.
//!
//! Every wait has a deadline, and a process is SIGKILLed when its handle
//! drops, so no test leaves a hub behind.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Admin, ADMIN_KEY, SECRET};

pub const BIN: &str = env!("CARGO_BIN_EXE_presence-server");
/// Start-up, readiness, shutdown and exits must happen within this.
pub const PROCESS_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// A command for the binary with no `PRESENCE_*` variable inherited from
/// the test's environment.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PRESENCE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A hub process. Dropping it kills it.
pub struct HubProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Everything the process (and its predecessors, after `restart`) logged.
    stderr: Arc<Mutex<String>>,
    pub stdout: mpsc::Receiver<String>,
    /// Where the next listening address is announced.
    addr_rx: mpsc::Receiver<SocketAddr>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Strips ANSI colour sequences from a log line.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let line = plain(line);
    if !line.contains("presence hub listening") {
        return None;
    }
    let rest = &line[line.find("addr=")? + 5..];
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    addr.parse().ok()
}

/// A spawned process and where its listening address will be announced.
struct Spawned {
    child: Child,
    stdout: mpsc::Receiver<String>,
    addr: mpsc::Receiver<SocketAddr>,
}

fn spawn(args: &[String], env: &[(String, String)], log: &Arc<Mutex<String>>) -> Spawned {
    let mut cmd = command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn presence-server");
    let (addr_tx, addr) = mpsc::channel();
    // Both pipes were requested by `command`.
    let err_pipe = child.stderr.take().expect("piped stderr");
    let log = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
            if let Some(a) = listening_addr(&line) {
                let _ = addr_tx.send(a);
            }
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let (out_tx, stdout) = mpsc::channel();
    let out_pipe = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    Spawned {
        child,
        stdout,
        addr,
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl HubProcess {
    /// Starts the hub with `args` and `env` and waits (blocking the thread)
    /// until it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> HubProcess {
        let mut p = Self::spawn_new(args, env);
        let addr = Self::wait_addr_blocking(&mut p);
        p.addr = addr;
        p
    }

    /// Like `start`, but waits without blocking the async runtime, so the
    /// test's tabs keep running meanwhile.
    pub async fn start_async(args: &[&str], env: &[(&str, &str)]) -> HubProcess {
        let mut p = Self::spawn_new(args, env);
        p.addr = p.wait_addr().await;
        p
    }

    /// A node of a cluster: shares Redis at `redis_url`, is called `node`,
    /// expires users after `idle_timeout_ms`, and drains within 1 s on
    /// SIGTERM. Returns once it is ready (`/readyz`).
    pub async fn cluster_node(redis_url: &str, node: &str, idle_timeout_ms: u64) -> HubProcess {
        Self::cluster_node_with(redis_url, node, idle_timeout_ms, &[]).await
    }

    /// [`cluster_node`](Self::cluster_node) with more variables.
    pub async fn cluster_node_with(
        redis_url: &str,
        node: &str,
        idle_timeout_ms: u64,
        extra: &[(&str, &str)],
    ) -> HubProcess {
        let idle = idle_timeout_ms.to_string();
        let mut env = vec![
            ("PRESENCE_LISTEN", "127.0.0.1:0"),
            ("PRESENCE_JWT_SECRET", SECRET),
            ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
            ("PRESENCE_REDIS_URL", redis_url),
            ("PRESENCE_NODE_ID", node),
            ("PRESENCE_IDLE_TIMEOUT_MS", &idle),
            ("PRESENCE_SHUTDOWN_GRACE_MS", "1000"),
        ];
        env.extend_from_slice(extra);
        let p = Self::start_async(&[], &env).await;
        p.wait_ready().await;
        p
    }

    fn spawn_new(args: &[&str], env: &[(&str, &str)]) -> HubProcess {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env = owned(env);
        let stderr = Arc::new(Mutex::new(String::new()));
        let s = spawn(&args, &env, &stderr);
        HubProcess {
            child: s.child,
            addr: "127.0.0.1:0".parse().unwrap(),
            stderr,
            stdout: s.stdout,
            addr_rx: s.addr,
            args,
            env,
        }
    }

    fn wait_addr_blocking(p: &mut HubProcess) -> SocketAddr {
        match p.addr_rx.recv_timeout(PROCESS_WAIT) {
            Ok(a) => a,
            Err(_) => panic!("the hub did not start; stderr:\n{}", p.stderr()),
        }
    }

    async fn wait_addr(&mut self) -> SocketAddr {
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            if let Ok(a) = self.addr_rx.try_recv() {
                return a;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the hub exited with {status}; stderr:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "the hub did not start in {PROCESS_WAIT:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts the process again with the same arguments and environment
    /// (killing it first if it still runs). Its address may change: it is
    /// whatever the new process announces. Returns once it is ready.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.lock().unwrap().push_str("--- restarted ---\n");
        let s = spawn(&self.args, &self.env, &self.stderr);
        self.child = s.child;
        self.stdout = s.stdout;
        self.addr_rx = s.addr;
        self.addr = self.wait_addr().await;
        self.wait_ready().await;
    }

    /// Waits until `/readyz` answers 200 (in cluster mode: joined).
    pub async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.addr);
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let ok = http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} never ready; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn admin(&self) -> Admin {
        Admin::new(self.addr, ADMIN_KEY)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush, hand off or close anything.
    pub fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL the hub");
        self.child.wait().expect("reap the hub");
    }

    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        send_signal(pid, sig);
    }

    /// Waits for the process to exit on its own without blocking the runtime.
    pub async fn exited_within(&mut self, d: Duration) -> ExitStatus {
        let deadline = Instant::now() + d;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the hub did not exit in {d:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

#[allow(unsafe_code)]
pub fn send_signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the
    // pid is that of a child we have not reaped, so it names our process.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}
