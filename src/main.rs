//! `bindery`: the push-binding registry daemon and its administration commands.

mod config;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bindery_daemon::clock::{Clock, SystemClock};
use bindery_daemon::delivery::TransportSettings;
use bindery_daemon::lock::{DataDirLock, LockError};
use bindery_daemon::store::{self, database_path, Location};
use bindery_daemon::{
    secrets, Daemon, DaemonOptions, Envelope, ImportKey, Store, StoreError, StoreOptions,
};
use bindery_domain::{AccountSid, ApiKeySid, Command, Row, SecretHash};
use clap::{Parser, Subcommand};

use config::{Flags, LogFormat, Settings};

#[derive(Parser)]
#[command(
    name = "bindery",
    version,
    about = "A self-hosted push-binding registry"
)]
struct Cli {
    /// Directory holding the database [default: ./data]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML settings file (see config/bindery.toml); every command reads the same settings
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Manage accounts
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// Manage API keys
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Drop every projection and replay it from the log
    Rebuild,
    /// Replay the log into a scratch database and compare every projection row
    Verify,
    /// Write every event as one JSON line on stdout, oldest first
    Export,
    /// Copy the database consistently while the server runs; restore by copying the file
    /// to `bindery.db` in an empty data dir, with the key file (`storage.secret_key_file`,
    /// not in the copy) beside it
    Backup {
        /// Where to write the copy (must not exist)
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Read exported events into an empty data dir; sealed credentials in them must open
    /// under its key file (copy the exporting data dir's there first)
    Import {
        /// Read from this file instead of stdin
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AccountsCmd {
    /// Create an account; prints its SID and auth token (shown only this once)
    Create {
        #[arg(long, value_name = "NAME", default_value = "Bindery account")]
        friendly_name: String,
    },
    /// List accounts, one JSON object a line
    List,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create an API key for an account; prints its SID and secret (shown only this once)
    Create {
        #[arg(long, value_name = "AC…")]
        account: String,
        #[arg(long, value_name = "NAME", default_value = "")]
        friendly_name: String,
    },
    /// Revoke an API key; requests signed with it are refused from then on
    Revoke {
        #[arg(value_name = "SK…")]
        sid: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bindery: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Every command reads the same layers as `serve` and refuses what it does not know, so a
    // setting (the data dir, the storage's) means the same to all of them.
    let flags = Flags {
        listen: match cli.command {
            Cmd::Serve { listen } => listen,
            _ => None,
        },
        data_dir: cli.data_dir.clone(),
    };
    let settings = Settings::load(cli.config.as_deref(), &flags).map_err(anyhow::Error::msg)?;
    let serving = matches!(cli.command, Cmd::Serve { .. });
    init_logging(settings.log.format, if serving { "info" } else { "warn" });
    let data_dir = settings.data_dir.as_path();
    let store_options = settings.store_options();
    let location = settings.location().map_err(anyhow::Error::msg)?;
    let on_postgres = matches!(location, Location::Postgres(_));
    match cli.command {
        Cmd::Serve { .. } => serve(settings)?,
        Cmd::Accounts(AccountsCmd::Create { friendly_name }) => {
            let token = secrets::new_secret();
            let command = Command::CreateAccount {
                friendly_name,
                auth_token_hash: SecretHash::of(&token),
            };
            let sid = commit(&location, &store_options, command)?;
            print_json(&serde_json::json!({"account_sid": sid, "auth_token": token}))?;
        }
        Cmd::Accounts(AccountsCmd::List) => {
            let accounts = store::with_reader(&existing(&location)?, &store_options, |db| {
                bindery_daemon::queries::ReadView::new(db).accounts()
            })?;
            for account in accounts {
                print_json(&serde_json::json!({
                    "account_sid": account.sid,
                    "friendly_name": account.friendly_name,
                    "date_created": account.date_created.to_string(),
                }))?;
            }
        }
        Cmd::Keys(KeysCmd::Create {
            account,
            friendly_name,
        }) => {
            let account = AccountSid::parse(&account)?;
            let secret = secrets::new_secret();
            let command = Command::CreateApiKey {
                account,
                friendly_name,
                secret_hash: SecretHash::of(&secret),
            };
            let sid = commit(&location, &store_options, command)?;
            print_json(&serde_json::json!({"sid": sid, "secret": secret}))?;
        }
        Cmd::Keys(KeysCmd::Revoke { sid }) => {
            let key = ApiKeySid::parse(&sid)?;
            commit(&location, &store_options, Command::RevokeApiKey { key })?;
            eprintln!("revoked {key}");
        }
        Cmd::Rebuild => {
            // On PostgreSQL the rebuild holds the write lock instead: the nodes' writes wait
            // for it, and their reads see the projections as they were until it commits.
            let _lock = (!on_postgres)
                .then(|| lock(data_dir, "rebuild"))
                .transpose()?;
            let replayed = open(&location, &store_options)?.rebuild()?;
            eprintln!("rebuilt the projections from {replayed} events");
        }
        Cmd::Verify => {
            let differences = store::verify_at(&existing(&location)?, &store_options)?;
            if differences.is_empty() {
                eprintln!("verified: every projection row equals a replay of the log");
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            for difference in &differences {
                writeln!(out, "{difference}")?;
            }
            eprintln!("verify failed: {} difference(s)", differences.len());
            return Ok(ExitCode::FAILURE);
        }
        Cmd::Export => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let count = store::export(&existing(&location)?, &mut out, &store_options)?;
            eprintln!("exported {count} events");
        }
        Cmd::Backup { to } => {
            if on_postgres {
                bail!(
                    "backup copies a SQLite data dir; on PostgreSQL use its own backups \
                     (pg_dump, pg_basebackup), or `bindery export` for the log alone"
                );
            }
            store::backup(&existing_database(data_dir)?, &to, &store_options)?;
            eprintln!("backed up to {}", to.display());
        }
        Cmd::Import { from } => {
            let _lock = (!on_postgres)
                .then(|| lock(data_dir, "import"))
                .transpose()?;
            // Read before the store is touched: a malformed key file is refused up front.
            let key = ImportKey::load(&settings.secret_key_file())?;
            let mut store = open(&location, &store_options)?;
            let report = match from {
                Some(file) => {
                    let file = std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?;
                    store.import(&mut std::io::BufReader::new(file), &key)?
                }
                None => store.import(&mut std::io::stdin().lock(), &key)?,
            };
            eprintln!(
                "imported {} events (up to position {})",
                report.events, report.last_position
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(location: &Location, options: &StoreOptions) -> anyhow::Result<Store> {
    Store::open_at(location, options).with_context(|| format!("cannot open {}", shown(location)))
}

/// The store named in words for a message: the file, or the PostgreSQL database (never the
/// connection string, which may hold a password).
fn shown(location: &Location) -> String {
    match location {
        Location::Sqlite(path) => path.display().to_string(),
        Location::Postgres(target) => format!(
            "the PostgreSQL database {:?}",
            target.config.get_dbname().unwrap_or("(the user's)")
        ),
    }
}

/// The store, which a command that only reads needs to exist already (a PostgreSQL database
/// is checked when connecting).
fn existing(location: &Location) -> anyhow::Result<Location> {
    if let Location::Sqlite(path) = location {
        if !path.exists() {
            bail!("no database at {}", path.display());
        }
    }
    Ok(location.clone())
}

/// Takes the data dir's lock for `command`, which must not run beside a server (see
/// [`DataDirLock`]).
fn lock(data_dir: &Path, command: &str) -> anyhow::Result<DataDirLock> {
    DataDirLock::acquire(data_dir).map_err(|e| match e {
        LockError::Held(_) => anyhow::anyhow!(
            "{e}: stop the server on {} before `bindery {command}` (it holds every write for \
             as long as it runs); accounts, keys, verify, export and backup are safe beside it",
            data_dir.display()
        ),
        other => other.into(),
    })
}

fn existing_database(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = database_path(data_dir);
    if !path.exists() {
        bail!("no database at {}", path.display());
    }
    Ok(path)
}

/// Commits one command on its own connection (safe beside a running server: SQLite locks the
/// file, PostgreSQL's write lock orders it among the nodes' commits) and returns the SID of
/// what it created or changed.
fn commit(location: &Location, options: &StoreOptions, command: Command) -> anyhow::Result<String> {
    let committed =
        open(location, options)?.execute_one(Envelope::from(command), SystemClock.now())?;
    let subject = committed
        .events
        .last()
        .map(|e| e.stream.clone())
        .unwrap_or_default();
    Ok(committed
        .row
        .as_ref()
        .map(|r: &Row| r.sid().to_owned())
        .unwrap_or(subject))
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A server whose stderr reader went away (a `| tee` that exited) must keep serving and
    // still stop on SIGTERM: a failed log write is dropped, not reported with a panicking
    // eprintln!.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Pretty => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    // Checked before anything starts: a desktop transport without a session bus, or a webhook
    // without a URL, is a start-up error.
    let (transport, direct) = match settings.transport().map_err(anyhow::Error::msg)? {
        TransportSettings::Direct(direct) => {
            direct.check().map_err(anyhow::Error::msg)?;
            (None, Some(direct))
        }
        other => (
            Some(bindery_daemon::delivery::transport(&other).map_err(anyhow::Error::msg)?),
            None,
        ),
    };
    // Held until the process ends: `rebuild` and `import` are refused meanwhile, and so is a
    // second server on the same data dir.
    let _lock =
        DataDirLock::acquire(&settings.data_dir).context("cannot serve: the data dir is in use")?;
    actix_rt::System::new().block_on(async move {
        let mut options = DaemonOptions::new(settings.data_dir.clone());
        options.secret_key_file = settings.secret_key_file();
        options.store = settings.store_options();
        options.postgres = settings.postgres().map_err(anyhow::Error::msg)?;
        options.group_commit = settings.storage.group_commit;
        options.stale_after = settings.bindings.stale_after;
        options.sweep_interval = settings.bindings.sweep_interval;
        if let Some(transport) = transport {
            options.transport = transport;
        }
        options.direct = direct;
        options.wait_limits = bindery_daemon::feed::WaitLimits {
            total: settings.http.long_polls,
            per_account: settings.http.long_polls_per_account,
        };
        let daemon = Daemon::start(options).map_err(|e| match e {
            // Its message names the key file; the database is fine.
            StoreError::Seal(e) => anyhow::Error::new(e).context("cannot serve"),
            e => anyhow::Error::new(e).context(match settings.location() {
                Ok(location @ Location::Postgres(_)) => format!("cannot open {}", shown(&location)),
                _ => format!(
                    "cannot open the database in {}",
                    settings.data_dir.display()
                ),
            }),
        })?;
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let address = listener.local_addr()?;
        if !daemon.read(|view| view.has_accounts())? {
            create_first_account(&daemon, &settings.data_dir, address).await?;
        }
        let operations = match settings.metrics.listen {
            Some(listen) => Some(
                TcpListener::bind(listen)
                    .with_context(|| format!("cannot listen on {listen} (metrics.listen)"))?,
            ),
            None => None,
        };
        let operations_address = operations.as_ref().map(|l| l.local_addr()).transpose()?;
        let http = bindery_http::HttpSettings {
            public_url: settings.public_url.clone(),
            body_limit: settings.http.body_limit,
            per_user_limit: settings.bindings.per_user_limit,
            ..Default::default()
        };
        let console = settings
            .console
            .enabled
            .then(|| bindery_console::ConsoleSettings {
                session_lifetime: settings.console.session_lifetime,
                public_url: settings.public_url.clone(),
                stale_after: settings.bindings.stale_after,
            });
        let mount = move |config: &mut actix_web::web::ServiceConfig| {
            if let Some(console) = &console {
                bindery_console::mount(console.clone())(config);
            }
        };
        let servers = bindery_http::serve(daemon.clone(), http, listener, operations, mount)?;
        stop_on_signals(servers.iter().map(|s| s.handle()).collect())?;
        if let Some(operations) = operations_address {
            tracing::info!("metrics and health on http://{operations}");
        }
        tracing::info!(data_dir = %settings.data_dir.display(), "listening on http://{address}");
        for result in futures_util::future::join_all(servers).await {
            result?;
        }
        // Requests in flight have finished: commit what is left and close the database. A
        // checkpoint that fails (a full disk) loses nothing: the WAL keeps every commit.
        if let Err(e) = daemon.shutdown().await {
            tracing::warn!(error = %e, "could not checkpoint the WAL on shutdown; it is kept");
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGTERM or SIGINT: stop accepting, let requests in flight finish, then return from
/// `server.await`. The handlers are registered here, before the server says it listens.
fn stop_on_signals(servers: Vec<actix_web::dev::ServerHandle>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    actix_rt::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        }
        for server in servers {
            server.stop(true).await;
        }
    });
    Ok(())
}

/// Where the first account's credentials go when there is no terminal to show them on.
const FIRST_ACCOUNT_FILE: &str = "first-account.json";

/// A fresh data dir gets an account, so that `bindery serve` alone gives a usable server. Its
/// auth token is shown once and never again: on the terminal when there is one; otherwise
/// (systemd, a pipe) in a file of the data dir that only its owner may read, since what goes
/// to stdout there ends up in a journal that others can read.
async fn create_first_account(
    daemon: &Daemon,
    data_dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let token = secrets::new_secret();
    let command = Command::CreateFirstAccount {
        friendly_name: "Bindery account".into(),
        auth_token_hash: SecretHash::of(&token),
    };
    let committed = daemon.execute(Envelope::from(command)).await?;
    if committed.events.is_empty() {
        // Another node on the same database created it a moment ago: its operator has it.
        tracing::info!("another node created the first account");
        return Ok(());
    }
    let sid = committed
        .row
        .as_ref()
        .map(|r| r.sid().to_owned())
        .unwrap_or_default();
    if !std::io::stdout().is_terminal() {
        let file = data_dir.join(FIRST_ACCOUNT_FILE);
        write_private(
            &file,
            &serde_json::json!({"account_sid": sid, "auth_token": token}),
        )
        .with_context(|| {
            format!(
                "cannot write the first account's credentials to {}",
                file.display()
            )
        })?;
        tracing::info!(
            account_sid = %sid,
            "no account existed, so Bindery created one; its auth token is in {} \
             (readable only by its owner): read it, then delete the file",
            file.display()
        );
        return Ok(());
    }
    let message = format!(
        "No account existed, so Bindery created one. Its auth token is shown only this once:\n\
         \n  account_sid: {sid}\n  auth_token:  {token}\n\n\
         Use them as HTTP Basic credentials (Twilio's helper libraries take them as\n\
         Client(account_sid, auth_token)), e.g.\n\n  \
         curl -u {sid}:{token} http://{listen}/v2/Services\n\n"
    );
    let mut out = std::io::stdout().lock();
    out.write_all(message.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes `value` as one JSON line to a new file that only its owner may read. A file left
/// from an earlier data dir is replaced, never reused with its permissions.
fn write_private(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    bindery_daemon::private_file::create(path, format!("{value}\n").as_bytes())
}
