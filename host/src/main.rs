//! The `vessel` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vessel::app::App;
use vessel::config::Config;

/// Vessel: per-user development microVMs behind one API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the API, the session manager and the Reaper.
    Serve {
        /// The TOML configuration; without it, the embedded default runs.
        #[arg(long, short, env = "VESSEL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Prints the configuration that `serve` would use, as loaded.
    CheckConfig {
        /// The TOML configuration.
        #[arg(long, short, env = "VESSEL_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("VESSEL_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("VESSEL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    let env = |name: &str| std::env::var(name).ok();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref(), env)?;
            let listen = config.listen;
            let app = App::build(config).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            app.serve(listener, shutdown_signal()).await?;
            tracing::info!("vessel stopped");
        }
        Command::CheckConfig { config } => {
            let config = Config::load(config.as_deref(), env)?;
            println!("{config:#?}");
        }
    }
    Ok(())
}
