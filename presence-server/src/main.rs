//! `presence-server`: runs the hub, mints a token (`token`), or checks the
//! configuration (`check`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use presence_server::{dev, mint_hs256, Cli, Command, EmbeddedStore, Hub, ServeArgs};

/// jemalloc rather than the system allocator: tabs hold small long-lived
/// allocations between short-lived snapshot and fan-out buffers, and glibc's
/// allocator fragments under that mix (see BENCHMARKS.md, memory per tab).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A listener with a deep accept queue: Rust's default backlog (128) drops
/// connections when a thousand tabs reconnect at once (after a deploy),
/// and each dropped SYN costs its tab a one-second retransmit.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Prints a failure as one clear line (with its causes), never a backtrace:
/// a start-up error is read by an operator, not a developer.
fn main() -> std::process::ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("presence-server: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token {
            tenant,
            user,
            ttl_secs,
            jwt_secret,
        }) => {
            println!(
                "{}",
                mint_hs256(jwt_secret.as_bytes(), &tenant, &user, now_secs(), ttl_secs)
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Some(Command::Check { serve }) => {
            let report = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?
                .block_on(presence_server::check(&serve));
            print_check(&report);
            // The report is the message: no error line after it.
            Ok(if report.ok() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        None => {
            init_tracing(&cli.serve.log_format);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?
                .block_on(run(cli.serve))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// One line per finding, problems first, then a verdict.
fn print_check(report: &presence_server::CheckReport) {
    for p in &report.problems {
        println!("problem: {p}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    for n in &report.notes {
        println!("ok:      {n}");
    }
    match report.problems.len() {
        0 => println!("the hub would start and serve"),
        1 => println!("1 problem: the hub would not start or not serve"),
        n => println!("{n} problems: the hub would not start or not serve"),
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRESENCE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(mut args: ServeArgs) -> anyhow::Result<()> {
    let dev_secrets = if args.dev {
        let s = dev::secrets(&args.data_dir).context("create the --dev secrets")?;
        args.jwt_secret.get_or_insert_with(|| s.jwt_secret.clone());
        args.admin_key.get_or_insert_with(|| s.admin_key.clone());
        Some(s)
    } else {
        None
    };
    let config = args.config()?;
    let verifier = args.verifier()?;
    let admin_key = args.admin_key()?;
    // The name this process claims users under: unique per start, so a
    // restarted node never mistakes a predecessor's claims for its own.
    let node = format!(
        "{}#{}",
        config.node_id,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let hub = match &args.redis_url {
        None => {
            let store = EmbeddedStore::open(&args.data_dir)
                .with_context(|| format!("open the store in {}", args.data_dir.display()))?;
            Hub::new(
                config,
                verifier,
                Some(admin_key.clone()),
                Arc::new(store),
                None,
            )
            .await
            .context("load the directory")?
        }
        Some(url) => {
            presence_server::start_cluster(config, verifier, Some(admin_key.clone()), url, &node)
                .await?
        }
    };
    let listener = listen(args.listen).with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, node = %hub.config.node_id, "presence hub listening");
    if dev_secrets.is_some() {
        dev::seed(&hub).await.context("seed the demo tenant")?;
        // The secrets in force (a variable may have replaced a generated
        // one), for the landing page's links and curl line.
        hub.set_dev(dev::DevSecrets {
            jwt_secret: args.jwt_secret.clone().unwrap_or_default(),
            admin_key: admin_key.clone(),
        });
        print_dev_banner(&args, &admin_key, addr);
    }
    // Returns within PRESENCE_SHUTDOWN_GRACE_MS of the signal, cluster
    // hand-off included, with every task of the node ended.
    presence_server::run(hub, listener, shutdown_signal())
        .await
        .context("serve")?;
    tracing::info!("stopped");
    Ok(())
}

fn print_dev_banner(args: &ServeArgs, admin_key: &str, addr: std::net::SocketAddr) {
    // Only reached in --dev, where the secret was just filled in.
    let secret = args.jwt_secret.as_deref().unwrap_or_default().as_bytes();
    let token = |user| mint_hs256(secret, dev::DEMO_TENANT, user, now_secs(), 12 * 3600);
    let (admin, attendant, other) = (token("ana"), token("diego"), token("fabio"));
    let supervisor = token("bruno");
    println!(
        "\npresence hub (dev mode) on http://{addr}\n\
         start here:      http://{addr}/   (every link below, on one page)\n\
         tenant:          {tenant}\n\
         admin key:       {admin_key}\n\
         admin token:     {admin}   (ana, profile admin)\n\
         \x20                user management:   http://{addr}/users#token={admin}\n\
         \x20                attendance report: http://{addr}/reports#token={admin}\n\
         \x20                protocol demo:     http://{addr}/demo#token={admin}\n\
         attendant token: {attendant}   (diego, member of the Support CRM team)\n\
         \x20                attendants button: http://{addr}/attendants#token={attendant}\n\
         \x20                team roster:       http://{addr}/team#token={attendant}\n\
         other token:     {other}   (fabio, Finance team: not an attendant, so no attendants button)\n\
         \x20                attendants button: http://{addr}/attendants#token={other}\n\
         \x20                team roster:       http://{addr}/team#token={other}\n\
         supervisor token: {supervisor}   (bruno, supervisor of the Sales team)\n\
         \x20                attendance report: http://{addr}/reports#token={supervisor}\n\
         browser SDK:     http://{addr}/sdk/presence.js (clients/js)\n\n\
         connect a tab:   websocket ws://{addr}/v1/ws, first frame\n\
         \x20                {{\"type\":\"hello\",\"token\":\"<token>\",\"tab\":\"<uuid>\",\"idle_ms\":0}}\n\
         watch the roster: {{\"type\":\"subscribe\",\"id\":1,\"roster\":\"directory\"}}   (admin token)\n\
         admin API:       curl -H 'Authorization: Bearer {admin_key}' http://{addr}/v1/tenants/{tenant}/stats\n\
         more tokens:     PRESENCE_JWT_SECRET=<see {dir}/dev-secrets.json> presence-server token --tenant {tenant} --user elisa\n",
        tenant = dev::DEMO_TENANT,
        dir = args.data_dir.display(),
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
