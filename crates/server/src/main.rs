//! `missive`: the server binary.

use clap::{Parser, Subcommand};
use missive::settings::Settings;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

mod admin;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "missive", version, about = "Missive instant-messaging server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server: by default every tier in this process on the embedded store.
    Serve(Box<Settings>),
    /// Operators' commands that work on the databases themselves.
    Admin(admin::AdminArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => {
            init_logs(&settings.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .on_thread_park(missive::on_idle_worker)
                .build()?;
            runtime.block_on(serve(*settings))
        }
        Command::Admin(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(admin::run(args))
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    missive::run(settings, shutdown, |bound| {
        // One line per listener, for people and for scripts that asked for port 0, then one
        // line saying that every listener is up.
        let secure = |tls: bool, plain: &'static str, secure: &'static str| match tls {
            true => secure,
            false => plain,
        };
        let (client, tls) = (bound.tls.client, bound.tls);
        if let Some(tcp) = bound.tcp {
            println!("missive listening {}://{tcp}", secure(client, "tcp", "tls"));
        }
        if let Some(http) = bound.http {
            println!("missive listening {}://{http}", secure(client, "http", "https"));
            println!("missive listening {}://{http}/ws", secure(client, "ws", "wss"));
        }
        if let Some(rpc) = bound.rpc {
            println!("missive listening rpc {}://{rpc}", secure(tls.rpc, "http", "https"));
        }
        println!(
            "missive listening admin {}://{}",
            secure(tls.admin, "http", "https"),
            bound.admin
        );
        println!("missive ready");
    })
    .await
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}

fn init_logs(format: &str) {
    let filter = EnvFilter::try_from_env("MISSIVE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
