//! The `vessel` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vessel::app::App;
use vessel::auth::Scope;
use vessel::cli::commands::{self, Format};
use vessel::cli::{ApiClient, target};
use vessel::config::Config;

/// mimalloc instead of glibc's malloc: under load the host's threads
/// allocate and free on each other's behalf, and glibc's arena locks showed
/// as a tenth of the host's time in a profile of `GET /status` at c=32.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Loads the configuration that `serve` would use (file, defaults and
    /// environment) and prints it as TOML: every field, secrets redacted.
    CheckConfig {
        /// The TOML configuration.
        #[arg(long, short, env = "VESSEL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Writes the default configuration, every field commented, to start a
    /// config file from.
    InitConfig {
        /// Where to write it; `-` or none: standard output.
        path: Option<PathBuf>,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
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
    /// Asks a running host how it is: its store, and its sessions counted
    /// by status.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Lists, shows, extends and stops sessions on a running host (an
    /// operator token is needed when the host checks tokens).
    Sessions {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

/// Which host the operator subcommands ask, and with which token.
#[derive(Args)]
struct Target {
    /// The host's API, e.g. `http://127.0.0.1:8080` (or `VESSEL_URL`);
    /// without either, the address the configuration listens on.
    #[arg(long, global = true)]
    url: Option<String>,
    /// The bearer token (better: `--token-file`, or `VESSEL_TOKEN`, which
    /// other users cannot see in the process list).
    #[arg(long, global = true, conflicts_with = "token_file")]
    token: Option<String>,
    /// A file whose first line is the bearer token.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// The host's TOML configuration, read for its `listen` address when
    /// no URL is given.
    #[arg(long, short, global = true, env = "VESSEL_CONFIG")]
    config: Option<PathBuf>,
}

/// `vessel sessions ...`.
#[derive(Subcommand)]
enum SessionsCommand {
    /// Every session, as a table.
    List {
        /// Only sessions with this status.
        #[arg(long, value_parser = ["active", "starting", "stopping"])]
        status: Option<String>,
        /// Show at most this many sessions.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One user's session.
    Show {
        /// The user.
        user: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stops a user's session.
    Stop {
        /// The user.
        user: String,
        /// Print the API's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Keeps a user's session alive: its last heartbeat becomes now.
    Extend {
        /// The user.
        user: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl Target {
    /// A client for the host this names. The token comes from `--token`,
    /// `--token-file` or `VESSEL_TOKEN`, and never appears in output.
    fn client(self) -> anyhow::Result<ApiClient> {
        let env = |name: &str| std::env::var(name).ok();
        let config = self.config;
        let url = target::resolve_url(self.url, env("VESSEL_URL"), || -> anyhow::Result<_> {
            let config = Config::load(config.as_deref(), env).context(
                "no --url or VESSEL_URL, and the configuration (for its listen address) \
                 cannot be loaded",
            )?;
            Ok(config.listen)
        })?;
        let token =
            target::resolve_token(self.token, self.token_file.as_deref(), env("VESSEL_TOKEN"))?;
        Ok(ApiClient::new(&url, token))
    }
}

fn format_of(json: bool) -> Format {
    if json { Format::Json } else { Format::Human }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Writes `text` to standard output. A reader that has gone away (`vessel
/// check-config | head`) is not an error: it has read all it wanted.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// Writes the default configuration to `path`, refusing to overwrite a file
/// unless `force`.
fn write_new_file(path: &std::path::Path, force: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: pass --force to overwrite it, or name another file",
                path.display()
            )
        } else {
            anyhow::Error::new(error).context(format!("cannot write {}", path.display()))
        }
    })?;
    file.write_all(vessel::config::DEFAULT_FILE.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {}: run `vessel check-config --config {}` to see it in effect",
        path.display(),
        path.display()
    );
    Ok(())
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

fn main() -> std::process::ExitCode {
    init_logging();
    let cli = Cli::parse();
    match start(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The message and its causes on one line, without a backtrace:
            // the operator needs to know what to change, not where in
            // Vessel it was noticed.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command on a runtime of its own: `serve` on as many threads as
/// the configuration's `worker_threads` asks, the rest on the default.
fn start(cli: Cli) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref(), env)?;
            runtime(config.worker_threads)?.block_on(serve(config))
        }
        command => runtime(0)?.block_on(run(command)),
    }
}

/// A multi-threaded runtime with `threads` workers (0: one per CPU).
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder.build().context("cannot start the async runtime")
}

/// `vessel serve`: the API, the session manager and the background tasks
/// until SIGTERM or SIGINT.
async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = App::build(config).await?;
    release_startup_memory();
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
    Ok(())
}

/// Hands the memory start-up freed back to the system. Compiling plugins
/// (when the compiled cache does not have them) takes about 100 MiB for a
/// moment on wasmtime's compiler threads; mimalloc keeps what they freed
/// for reuse, and without this a host that compiled at start held 130 MiB
/// for a minute or more against 37 MiB for one that loaded from the cache.
fn release_startup_memory() {
    // SAFETY: `mi_collect` only frees memory mimalloc holds unused; it is
    // safe to call from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// mimalloc's `arena_eager_commit` option, in the numbering of the
/// mimalloc 3 that `libmimalloc-sys` builds (its Rust constants follow
/// mimalloc 2's enum, where this option has no name); the test
/// `the_allocator_is_the_mimalloc_whose_options_are_named_here` fails when
/// an update brings another mimalloc.
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs [`commit_heap_on_demand`] before mimalloc initializes: mimalloc's
/// own constructor (at the default priority) reserves its first arena, and
/// a numbered `.init_array` entry runs before the unnumbered ones (as
/// Rust's standard library registers its own `.init_array.00099`). Only
/// on Linux: elsewhere mimalloc's default does not commit eagerly (it does
/// where the system overcommits memory).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static COMMIT_HEAP_ON_DEMAND: extern "C" fn() = commit_heap_on_demand;

/// Tells mimalloc to commit its arenas as they are used instead of all at
/// once. The first arena (1 GiB of address space) holds all the host ever
/// allocates; committed eagerly, memory a burst of work had used and freed
/// stayed counted as resident: 256 cold starts at once took a host on the
/// embedded store to 120-310 MiB, against about 60 MiB without it.
/// `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still decides, as
/// mimalloc documents. Nothing here may allocate: it runs before the
/// allocator is set up.
#[cfg(target_os = "linux")]
extern "C" fn commit_heap_on_demand() {
    // SAFETY: `getenv` with a NUL-terminated name only reads the
    // environment, which nothing writes this early; `mi_option_set`
    // stores the value of an option and is safe before mimalloc's
    // initialization, which then keeps it.
    unsafe {
        if libc::getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    match command {
        Command::Serve { .. } => unreachable!("`serve` runs through `start`"),
        Command::CheckConfig { config } => {
            let config = Config::load(config.as_deref(), env)?;
            print_out(&config.to_toml()?)?;
        }
        Command::InitConfig { path, force } => match path {
            Some(path) if path.as_os_str() != "-" => write_new_file(&path, force)?,
            _ => print_out(vessel::config::DEFAULT_FILE)?,
        },
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
            print_out(&format!("{token}\n"))?;
        }
        Command::Status { target, json } => {
            let client = target.client()?;
            print_out(&commands::status(&client, format_of(json)).await?)?;
        }
        Command::Sessions { target, command } => {
            let client = target.client()?;
            let text = match command {
                SessionsCommand::List {
                    status,
                    limit,
                    json,
                } => {
                    let limit = limit.map(|limit| limit as usize);
                    commands::list(&client, status.as_deref(), limit, format_of(json), now_ms())
                        .await?
                }
                SessionsCommand::Show { user, json } => {
                    commands::show(&client, &user, format_of(json), now_ms()).await?
                }
                SessionsCommand::Stop { user, json } => {
                    commands::stop(&client, &user, format_of(json)).await?
                }
                SessionsCommand::Extend { user, json } => {
                    commands::extend(&client, &user, format_of(json), now_ms()).await?
                }
            };
            print_out(&text)?;
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The option number set before mimalloc starts is `arena_eager_commit`
    /// only in mimalloc 3 (3.3.2 when this was written); another major
    /// version must be looked at again before this passes.
    #[test]
    fn the_allocator_is_the_mimalloc_whose_options_are_named_here() {
        // SAFETY: both only read mimalloc's state.
        let (version, eager_commit) = unsafe {
            (
                libmimalloc_sys::mi_version(),
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
            )
        };
        // mimalloc 3.3.2 reports 30302.
        assert_eq!(version / 10_000, 3, "mimalloc {version}: check the enum");
        // This test binary has the same allocator and constructor as
        // `vessel`; mimalloc's default is 2 (eager where the OS overcommits).
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(eager_commit, 0, "the constructor did not run first");
        }
    }
}
