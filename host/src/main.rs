//! The `vessel` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vessel::app::App;
use vessel::auth::Scope;
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
    /// Prints the configuration that `serve` would use, as loaded (secrets
    /// redacted).
    CheckConfig {
        /// The TOML configuration.
        #[arg(long, short, env = "VESSEL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Mints an API token, signed with the configured key (the first of
    /// `auth.signing_keys`, else the host's own `{data_dir}/signing.key`).
    Token {
        /// The TOML configuration.
        #[arg(long, short, env = "VESSEL_CONFIG")]
        config: Option<PathBuf>,
        /// A user token for this user id: it may act on this user's session
        /// only.
        #[arg(
            long,
            conflicts_with = "operator",
            required_unless_present = "operator"
        )]
        user: Option<String>,
        /// An operator token, which may act on every session; the value
        /// names the operator or service in logs.
        #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "operator")]
        operator: Option<String>,
        /// How long the token stays valid, e.g. `1h`, `30m`, `7d`.
        #[arg(long, default_value = "1h", value_parser = humantime_serde::re::humantime::parse_duration)]
        ttl: std::time::Duration,
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
            if let Some(token) = app.startup_token() {
                // Shown once, to the person starting the host (as Jupyter
                // does), never through the log.
                eprintln!(
                    "\nVessel made its own signing key ({}). An operator token, valid for \
                     30 days:\n\n    {token}\n\nSend it as `Authorization: Bearer <token>`; \
                     `vessel token --operator` makes another.\n",
                    vessel::auth::keyfile::FILE_NAME
                );
            }
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
        Command::Token {
            config,
            user,
            operator,
            ttl,
        } => {
            let config = Config::load(config.as_deref(), env)?;
            let key = vessel::auth::signing_key(&config)?;
            let (subject, scope) = match (user, operator) {
                (Some(user), _) => (user, Scope::User),
                (None, Some(name)) => (name, Scope::Operator),
                (None, None) => anyhow::bail!("name --user ID or --operator"),
            };
            let token = vessel::auth::token::mint(&key, &subject, scope, ttl)?;
            println!("{token}");
        }
    }
    Ok(())
}
