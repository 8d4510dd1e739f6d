//! Throwaway PostgreSQL servers for Bindery's tests: real servers, never a mock.
//!
//! [`Cluster::start`] makes a fresh cluster in a temporary directory and starts its server on a
//! free port of 127.0.0.1, with trust authentication over TCP for the user `postgres` (and no
//! Unix socket). [`Cluster::standby`] makes a streaming standby of a running cluster;
//! [`Cluster::kill`] and [`Cluster::promote`] turn it into the primary. Dropping a `Cluster`
//! stops its server (an immediate shutdown) and removes its directory.
//!
//! ```no_run
//! let pg = bindery_pgtest::Cluster::start();
//! let url = pg.create_database();
//! assert_eq!(pg.psql(&url, "select 1 + 1"), "2");
//! ```
//!
//! The server programs come from `PG_BIN`, else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin` (`tests/setup.sh` installs them). initdb and postgres refuse to
//! run as root, so as root they run as the user `postgres`.
//!
//! The postmaster is a child of the test process and stays in its process group, so a test
//! runner that kills a hung test's group (as nextest does) takes the server with it. Keep a
//! `Cluster` in a local, not a `static`: statics are never dropped, so their servers would
//! outlive the process.

use std::ffi::OsStr;
use std::fmt::Display;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tempfile::TempDir;

/// How long any wait (a start, a stop, a standby's sync, a promotion) may take before it panics.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often a wait checks its condition.
const POLL: Duration = Duration::from_millis(10);
/// Starts tried, each on a new free port, before [`Cluster::start`] gives up.
const START_ATTEMPTS: usize = 10;
/// What every server runs with, before the caller's settings (which override these).
const BASE_SETTINGS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    // TCP only: no socket file in a directory the server might not be allowed to write.
    "unix_socket_directories=",
    // A test survives a killed server (the page cache keeps what it wrote), not a lost machine.
    "fsync=off",
    "max_connections=200",
];
/// Where to send whoever finds no PostgreSQL on the machine.
const INSTALL_HINT: &str = "run tests/setup.sh (it installs PostgreSQL), or set PG_BIN to the \
                            directory that holds initdb and postgres";

/// A PostgreSQL server of this test's own: its data directory, its port on 127.0.0.1, and its
/// postmaster (a child of this process) while it runs.
///
/// Dropping it stops the server (an immediate shutdown, errors ignored) and removes the
/// directory.
pub struct Cluster {
    port: u16,
    /// The caller's `name=value` settings, passed again on [`Cluster::restart`].
    settings: Vec<String>,
    /// The postmaster, while it runs.
    server: Option<Child>,
    /// Holds `data` (the data directory) and `postgres.log` (the server's output).
    root: TempDir,
}

impl Cluster {
    /// Starts a fresh server with the default settings: `fsync=off`, `max_connections=200`,
    /// listening on 127.0.0.1 only, on a port nothing else had.
    ///
    /// Panics (with the server's log) if it cannot start.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Starts a fresh server with extra settings, as `-c name=value` options that override the
    /// defaults. Values are written as in postgresql.conf: a string in single quotes
    /// (`("synchronous_standby_names", "'FIRST 1 (b)'")`) or a bare number or word
    /// (`("max_connections", "300")`).
    pub fn start_with(settings: &[(&str, &str)]) -> Cluster {
        let settings = settings
            .iter()
            .map(|(name, value)| format!("{name}={}", unquote(value)))
            .collect();
        let root = new_root();
        let mut initdb = server_command("initdb");
        initdb.arg("-D").arg(root.path().join("data")).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--no-locale",
            "-E",
            "UTF8",
        ]);
        run(initdb, "initdb");
        Cluster::launch(root, settings)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's process id while the server runs: its children are the backends and
    /// the background processes (for reading their CPU time in /proc, as `make bench` does).
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// A libpq key=value connection string to database `dbname`:
    /// `host=127.0.0.1 port=P user=postgres dbname=D`.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={}",
            self.port,
            conninfo_value(dbname)
        )
    }

    /// Creates a database with a name no other database of this process has, and returns its
    /// connection string ([`Cluster::url`]).
    ///
    /// On a primary with `synchronous_standby_names`, call [`Cluster::wait_sync`] first: until
    /// the standby is `sync`, the primary's commits wait for it.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs `sql` (one or more statements) with psql on database `dbname` (a name, or a
    /// connection string such as [`Cluster::url`]'s), stopping at the first error, and returns
    /// the rows it printed, trimmed: unaligned, one row a line, columns separated by `|`, no
    /// headers and no command tags (`psql -X -A -t -q -v ON_ERROR_STOP=1`).
    ///
    /// Panics with psql's stderr if psql fails.
    pub fn psql(&self, dbname: &str, sql: &str) -> String {
        let conninfo = if dbname.contains('=') {
            // A connection string: psql takes it whole as the database name.
            dbname.to_owned()
        } else {
            self.url(dbname)
        };
        let mut cmd = client_command("psql");
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
        ])
        .arg(&conninfo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {:?}: {e}", cmd.get_program()));
        let mut stdin = child.stdin.take().expect("psql's stdin is piped");
        // Written from a second thread: psql may print more than a pipe holds before it has
        // read all of the input.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || stdin.write_all(sql.as_bytes()));
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("psql: {e}"));
        if !output.status.success() {
            panic!(
                "psql on port {} ({}) failed: {}\nsql: {sql}",
                self.port,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Makes a streaming standby of this running server (`pg_basebackup -R -X stream`) that
    /// connects with `application_name` (the name `synchronous_standby_names` lists), and
    /// starts it on a port of its own, with the default settings (not this server's extra
    /// ones: promoted, it would wait for a standby of its own). A primary started with more
    /// than the default `max_connections` has a standby that refuses to start (hot standby
    /// needs at least the primary's).
    ///
    /// It serves reads (hot standby) once it has started; [`Cluster::wait_sync`] on the
    /// primary waits until it is a synchronous standby.
    pub fn standby(&self, application_name: &str) -> Cluster {
        let root = new_root();
        let source = format!(
            "host=127.0.0.1 port={} user=postgres application_name={}",
            self.port,
            conninfo_value(application_name)
        );
        let mut cmd = server_command("pg_basebackup");
        cmd.arg("-D")
            .arg(root.path().join("data"))
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync", "-d"])
            .arg(source);
        run(cmd, "pg_basebackup");
        Cluster::launch(root, Vec::new())
    }

    /// Waits (on this primary) until the standby named `application_name` streams from it as a
    /// synchronous standby: `pg_stat_replication` shows it `sync`. From then on, a commit here
    /// returns only once the standby has flushed it.
    pub fn wait_sync(&self, application_name: &str) {
        let sql = format!(
            "select sync_state from pg_stat_replication where application_name = {}",
            sql_literal(application_name)
        );
        wait_for(
            format_args!(
                "standby {application_name:?} to be sync on port {}",
                self.port
            ),
            || match self.psql("postgres", &sql) {
                state if state == "sync" => Ok(()),
                state if state.is_empty() => Err("not connected".to_owned()),
                state => Err(state),
            },
        );
    }

    /// Waits (on this standby) until it has replayed everything `primary` had written when
    /// called. A synchronous commit waits only for the standby's flush, so a read on the
    /// standby right after one may not see it yet; after this it does.
    pub fn wait_replay(&self, primary: &Cluster) {
        let target = primary.psql("postgres", "select pg_current_wal_lsn()");
        let sql = format!(
            "select coalesce(pg_last_wal_replay_lsn() >= '{target}', false), \
             pg_last_wal_replay_lsn()"
        );
        wait_for(
            format_args!(
                "port {} to replay port {}'s WAL up to {target}",
                self.port, primary.port
            ),
            || match self.psql("postgres", &sql).split_once('|') {
                Some(("t", _)) => Ok(()),
                Some((_, replayed)) => Err(format!("replayed up to {replayed:?}")),
                None => Err("no answer".to_owned()),
            },
        );
    }

    /// Promotes this standby to a primary (`pg_promote()`, which does what `pg_ctl promote`
    /// does), and waits until `pg_is_in_recovery()` is false: it takes writes.
    pub fn promote(&self) {
        // Not pg_promote's own wait, which checks ten times a second.
        let signalled = self.psql("postgres", "select pg_promote(wait => false)");
        assert_eq!(signalled, "t", "pg_promote() on port {} failed", self.port);
        wait_for(
            format_args!("port {} to leave recovery", self.port),
            || match self.psql("postgres", "select pg_is_in_recovery()").as_str() {
                "f" => Ok(()),
                other => Err(format!("pg_is_in_recovery() = {other}")),
            },
        );
    }

    /// Kills the server as a crash would: SIGKILL to the postmaster and to each of its
    /// children (backends, WAL senders, background processes), and returns once they are all
    /// gone. Its data stays, for [`Cluster::restart`] (which recovers from the crash) or for
    /// a standby to take over.
    pub fn kill(&mut self) {
        let mut postmaster = self
            .server
            .take()
            .unwrap_or_else(|| panic!("kill: the server on port {} is not running", self.port));
        let pid = postmaster.id();
        // Stopped, the postmaster forks no child between the listing and the kill.
        signal(pid, Signal::STOP);
        let children = children_of(pid);
        signal(pid, Signal::KILL);
        for &child in &children {
            // Each child leads a process group of its own (postgres calls setsid): that takes
            // whatever it started too.
            signal_group(child, Signal::KILL);
            signal(child, Signal::KILL);
        }
        let _ = postmaster.wait();
        wait_for(
            format_args!("the children of the killed postmaster {pid} to exit"),
            || match children.iter().find(|&&child| alive(child)) {
                None => Ok(()),
                Some(child) => Err(format!("process {child} still runs")),
            },
        );
    }

    /// Freezes the server as a hung machine would seem: SIGSTOP to the postmaster and each of
    /// its children. The kernel still accepts connections on its port and keeps the open
    /// ones, but nothing answers. [`Cluster::thaw`] lets it go on; [`Cluster::kill`] kills it
    /// frozen, and dropping it stops it as usual.
    pub fn freeze(&self) {
        let postmaster = self
            .server
            .as_ref()
            .unwrap_or_else(|| panic!("freeze: the server on port {} is not running", self.port))
            .id();
        // Stopped first, the postmaster forks no child between the listing and the stops.
        signal(postmaster, Signal::STOP);
        for child in children_of(postmaster) {
            signal(child, Signal::STOP);
        }
    }

    /// Lets a frozen server go on (SIGCONT to the postmaster and its children).
    pub fn thaw(&self) {
        let postmaster = self
            .server
            .as_ref()
            .unwrap_or_else(|| panic!("thaw: the server on port {} is not running", self.port))
            .id();
        for child in children_of(postmaster) {
            signal(child, Signal::CONT);
        }
        signal(postmaster, Signal::CONT);
    }

    /// Stops the server with a fast shutdown (SIGINT, what `pg_ctl -m fast stop` sends: open
    /// transactions are rolled back, a checkpoint is written) and waits until it has exited.
    pub fn stop(&mut self) {
        let mut postmaster = self
            .server
            .take()
            .unwrap_or_else(|| panic!("stop: the server on port {} is not running", self.port));
        signal(postmaster.id(), Signal::INT);
        if !wait_exit(&mut postmaster) {
            let _ = postmaster.kill();
            let _ = postmaster.wait();
            panic!(
                "the server on port {} did not stop within {DEADLINE:?}",
                self.port
            );
        }
    }

    /// Starts the server again on the same port and data directory (after [`Cluster::kill`],
    /// with crash recovery), after stopping it first if it runs ([`Cluster::stop`]). Waits
    /// until it accepts connections.
    pub fn restart(&mut self) {
        if self.server.is_some() {
            self.stop();
        }
        match spawn_server(self.root.path(), self.port, &self.settings) {
            Ok(postmaster) => self.server = Some(postmaster),
            Err(Failure::PortTaken(log)) => {
                panic!(
                    "port {} was taken while the server was down:\n{log}",
                    self.port
                )
            }
            Err(Failure::Other(why)) => {
                panic!("restarting the server on port {}: {why}", self.port)
            }
        }
    }

    /// Starts the server of a prepared data directory (`root/data`) on a free port, trying
    /// another one if that one was taken in the meantime.
    fn launch(root: TempDir, settings: Vec<String>) -> Cluster {
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_server(root.path(), port, &settings) {
                Ok(postmaster) => {
                    return Cluster {
                        port,
                        settings,
                        server: Some(postmaster),
                        root,
                    }
                }
                Err(Failure::PortTaken(_)) => continue,
                Err(Failure::Other(why)) => panic!("starting PostgreSQL: {why}"),
            }
        }
        panic!(
            "starting PostgreSQL: {START_ATTEMPTS} ports in a row were taken before it bound them"
        )
    }
}

impl Drop for Cluster {
    /// Stops the server with an immediate shutdown (SIGQUIT, what `pg_ctl -m immediate stop`
    /// sends), or SIGKILL if that takes longer than the deadline, ignoring errors; the data
    /// directory goes with the `TempDir`. A frozen server is let go on first, so that it
    /// hears the signal.
    fn drop(&mut self) {
        if self.server.is_some() {
            self.thaw();
        }
        if let Some(mut postmaster) = self.server.take() {
            signal(postmaster.id(), Signal::QUIT);
            if !wait_exit(&mut postmaster) {
                let _ = postmaster.kill();
                let _ = postmaster.wait();
            }
        }
    }
}

/// Why a server did not start.
enum Failure {
    /// Its port was taken (its log says so).
    PortTaken(String),
    /// Anything else.
    Other(String),
}

/// Starts postgres on `root/data` and `port`, logging to `root/postgres.log`, and waits until
/// its postmaster.pid says it is ready for connections (after any crash recovery, and for a
/// standby once it serves reads).
fn spawn_server(root: &Path, port: u16, settings: &[String]) -> Result<Child, Failure> {
    let log_path = root.join("postgres.log");
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Failure::Other(format!("{}: {e}", log_path.display())))?;
    let log_start = log.seek(SeekFrom::End(0)).unwrap_or(0);
    let log_of = |what: &str| {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&log_path) {
            let _ = file.seek(SeekFrom::Start(log_start));
            let _ = file.read_to_string(&mut text);
        }
        format!("{what}; its log:\n{}", text.trim_end())
    };
    let data = root.join("data");
    let mut cmd = server_command("postgres");
    cmd.arg("-D").arg(&data).arg("-p").arg(port.to_string());
    for setting in BASE_SETTINGS
        .iter()
        .copied()
        .chain(settings.iter().map(String::as_str))
    {
        cmd.arg("-c").arg(setting);
    }
    let stdout = log.try_clone().map_err(|e| Failure::Other(e.to_string()))?;
    cmd.stdout(stdout).stderr(log);
    let mut postmaster = cmd
        .spawn()
        .map_err(|e| Failure::Other(format!("could not run {:?}: {e}", cmd.get_program())))?;
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = postmaster.try_wait() {
            let log = log_of(&format!("postgres exited ({status})"));
            return Err(if log.contains("Address already in use") {
                Failure::PortTaken(log)
            } else {
                Failure::Other(log)
            });
        }
        if ready(&data, postmaster.id()) {
            return Ok(postmaster);
        }
        if started.elapsed() > DEADLINE {
            let _ = postmaster.kill();
            let _ = postmaster.wait();
            return Err(Failure::Other(log_of(&format!(
                "not ready after {DEADLINE:?}"
            ))));
        }
        std::thread::sleep(POLL);
    }
}

/// Whether `data`'s postmaster.pid is that of postmaster `pid` (not one a killed server left)
/// and says `ready`.
fn ready(data: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(data.join("postmaster.pid")) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    // Line 1: the postmaster's pid; line 8: its status (starting, stopping, ready, standby).
    lines.first() == Some(&pid.to_string().as_str()) && lines.get(7) == Some(&"ready")
}

/// Waits until `postmaster` exits, for [`DEADLINE`] at most; whether it did.
fn wait_exit(postmaster: &mut Child) -> bool {
    let started = Instant::now();
    loop {
        match postmaster.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if started.elapsed() > DEADLINE => return false,
            Ok(None) => std::thread::sleep(POLL),
        }
    }
}

/// Polls `check` until it passes, and panics with its last complaint after [`DEADLINE`].
fn wait_for(what: impl Display, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if started.elapsed() > DEADLINE => {
                panic!("timed out after {DEADLINE:?} waiting for {what}: {last}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Sends `sig` to process `pid`, ignoring errors (it may be gone already).
fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = pid_of(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Sends `sig` to the process group that `leader` leads, if it leads one, ignoring errors.
fn signal_group(leader: u32, sig: Signal) {
    // Never the group of pid 1, which kill(2) reads as every process.
    if let Some(leader) = pid_of(leader).filter(|pid| !pid.is_init()) {
        let _ = rustix::process::kill_process_group(leader, sig);
    }
}

/// `pid` as rustix takes it.
fn pid_of(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// Whether `pid` still runs: a zombie (dead, not yet reaped by whoever inherited it) does not.
fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

/// The state and parent pid of process `pid`, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so split at the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// A port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
        .port()
}

/// A new temporary directory the server's user owns.
fn new_root() -> TempDir {
    let root = tempfile::Builder::new()
        .prefix("bindery-pgtest-")
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
    if let Some(user) = server_user() {
        std::os::unix::fs::chown(root.path(), Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown postgres {}: {e}", root.path().display()));
    }
    root
}

/// The user the server programs run as when this process is root.
#[derive(Clone, Copy)]
struct User {
    uid: u32,
    gid: u32,
}

/// `postgres`'s uid and gid if this process runs as root (initdb and postgres refuse root),
/// else `None`: they run as this process's user.
fn server_user() -> Option<User> {
    static USER: OnceLock<Option<User>> = OnceLock::new();
    *USER.get_or_init(|| {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let mut getent = Command::new("getent");
        getent.args(["passwd", "postgres"]);
        let entry = String::from_utf8_lossy(
            &run(getent, "looking up the user postgres (initdb refuses root)").stdout,
        )
        .into_owned();
        // postgres:x:UID:GID:...
        let fields: Vec<&str> = entry.trim().split(':').collect();
        let id = |i: usize| fields.get(i).and_then(|f| f.parse().ok());
        match (id(2), id(3)) {
            (Some(uid), Some(gid)) => Some(User { uid, gid }),
            _ => panic!("unexpected passwd entry for postgres: {entry:?}"),
        }
    })
}

/// A command for one of the server's programs (initdb, postgres, pg_basebackup): as the
/// server's user when this process is root.
fn server_command(program: &str) -> Command {
    let mut cmd = client_command(program);
    if let Some(user) = server_user() {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

/// A command for one of PostgreSQL's programs, run from `/` (which every user may enter),
/// with none of this process's `PG*` variables (PGHOST, PGOPTIONS, ...) to redirect it.
fn client_command(program: &str) -> Command {
    let mut cmd = Command::new(bin_dir().join(program));
    cmd.current_dir("/").stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"PG") {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Runs `cmd` to its end; panics with its stderr if it fails.
fn run(mut cmd: Command, what: &str) -> Output {
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run {:?}: {e}", cmd.get_program()));
    if !output.status.success() {
        panic!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    output
}

/// The directory of initdb, postgres, pg_basebackup and psql: `PG_BIN` if set, else
/// `pg_config --bindir` if that has initdb, else the newest `/usr/lib/postgresql/*/bin` that
/// does. Panics, saying how to install PostgreSQL, if there is none.
fn bin_dir() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let has_initdb = |dir: &Path| dir.join("initdb").is_file();
        if let Some(dir) = std::env::var_os("PG_BIN") {
            let dir = PathBuf::from(dir);
            if has_initdb(&dir) {
                return dir;
            }
            panic!("PG_BIN={} has no initdb: {INSTALL_HINT}", dir.display());
        }
        if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
            let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            // Debian's pg_config (libpq-dev) names a bindir even with no server installed.
            if output.status.success() && has_initdb(&dir) {
                return dir;
            }
        }
        let newest = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let version = entry.ok()?.file_name();
                let dir = Path::new("/usr/lib/postgresql").join(&version).join("bin");
                has_initdb(&dir).then(|| (version_key(&version), dir))
            })
            .max();
        match newest {
            Some((_, dir)) => dir,
            None => panic!("no PostgreSQL server programs (initdb) found: {INSTALL_HINT}"),
        }
    })
}

/// "15" and "9.6" as numbers, so that 15 sorts after 9.6.
fn version_key(version: &OsStr) -> Vec<u32> {
    version
        .to_string_lossy()
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// A postgresql.conf value as the command line takes it: a quoted string unquoted (`'a ''b'''`
/// is `a 'b'`), anything else as it is.
fn unquote(value: &str) -> String {
    match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => value.to_owned(),
    }
}

/// `value` as a libpq key=value connection string takes it: quoted if it must be.
fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\' || c == '=');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// `value` as an SQL string literal.
fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_unquoted_as_postgresql_conf_writes_them() {
        assert_eq!(unquote("'FIRST 1 (b)'"), "FIRST 1 (b)");
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(unquote("300"), "300");
        assert_eq!(unquote("'"), "'");
    }

    #[test]
    fn connection_string_values_are_quoted_when_they_must_be() {
        assert_eq!(conninfo_value("test_1"), "test_1");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value(r"it's\"), r"'it\'s\\'");
        assert_eq!(conninfo_value(""), "''");
    }

    #[test]
    fn a_server_on_a_taken_port_fails_as_one() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut pg = Cluster::start();
        pg.stop();
        match spawn_server(pg.root.path(), port, &[]) {
            Err(Failure::PortTaken(log)) => assert!(log.contains("could not bind"), "{log}"),
            Err(Failure::Other(why)) => panic!("not told apart as a taken port: {why}"),
            Ok(mut postmaster) => {
                let _ = postmaster.kill();
                panic!("started on port {port}, which a listener holds");
            }
        }
    }

    #[test]
    fn newer_versions_sort_after_older() {
        assert!(version_key(OsStr::new("15")) > version_key(OsStr::new("9.6")));
        assert!(version_key(OsStr::new("16")) > version_key(OsStr::new("15")));
    }
}
