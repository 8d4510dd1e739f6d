//! Running the real `bindery` binary: `serve` on a free port, and the one-shot commands
//! (`import`, `rebuild`, `verify`), each optionally pinned to one CPU.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Pins the calling thread (and what it spawns afterwards) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes a one-shot command's standard input.
pub type Feed<'a> = dyn FnMut(&mut dyn Write) -> std::io::Result<()> + 'a;

/// How to run the binary: where it is, which CPU it gets, where its stderr goes.
#[derive(Debug, Clone)]
pub struct Bindery {
    pub binary: PathBuf,
    pub cpu: Option<usize>,
    pub logs: PathBuf,
}

impl Bindery {
    /// A command with a clean environment as far as Bindery is concerned: no inherited
    /// `BINDERY_*` variable (Bindery refuses unknown ones), `RUST_LOG=warn` so that the
    /// per-request log line is not what is measured, and durable commits.
    fn command(&self, data_dir: &Path) -> Command {
        let mut command = Command::new(&self.binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BINDERY_") {
                command.env_remove(key);
            }
        }
        command
            .env("RUST_LOG", "warn")
            .env("BINDERY_STORAGE__SYNCHRONOUS", "full")
            .arg("--data-dir")
            .arg(data_dir);
        let cpu = self.cpu;
        // SAFETY: prctl and sched_setaffinity are async-signal-safe; nothing else runs here.
        unsafe {
            command.pre_exec(move || {
                // Should the benchmark die (Ctrl-C), its servers go with it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                match cpu {
                    Some(cpu) => pin_current_thread(cpu),
                    None => Ok(()),
                }
            });
        }
        command
    }

    fn log_file(&self, name: &str) -> anyhow::Result<std::fs::File> {
        let path = self.logs.join(format!("{name}.log"));
        std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))
    }

    /// Runs a one-shot command to the end; returns its stderr and how long it took.
    pub fn run(
        &self,
        data_dir: &Path,
        args: &[&str],
        stdin: Option<&mut Feed>,
    ) -> anyhow::Result<(String, Duration)> {
        let mut command = self.command(data_dir);
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        let mut stderr = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        if let Some(feed) = stdin {
            let mut input =
                std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped"));
            feed(&mut input).context("writing to bindery's stdin")?;
            input.flush()?;
        }
        let status = child.wait()?;
        let took = started.elapsed();
        let stderr = reader.join().unwrap_or_default();
        if !status.success() {
            bail!(
                "bindery {} failed ({status}): {}",
                args.join(" "),
                stderr.trim()
            );
        }
        Ok((stderr, took))
    }

    /// Starts `bindery serve` on a free port and waits until `/healthz` answers. With
    /// `credentials`, the data dir already has that account; without, a fresh data dir's first
    /// account is read from the file it writes (`first-account.json`).
    pub fn serve(
        &self,
        name: &str,
        data_dir: &Path,
        settings: &[(&str, &str)],
        credentials: Option<(String, String)>,
    ) -> anyhow::Result<Server> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = self.command(data_dir);
        command
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file(name)?);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let mut server = Server {
            child,
            addr,
            account: String::new(),
            token: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !matches!(get(addr, "/healthz"), Ok((200, _))) {
            server.check_alive(name)?;
            if Instant::now() > deadline {
                bail!("{name}: /healthz did not answer within two minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // A fresh data dir's first account is written to a file before the server listens.
        (server.account, server.token) = match credentials {
            Some(credentials) => credentials,
            None => first_account(data_dir)
                .with_context(|| format!("{name}: no first account in {}", data_dir.display()))?,
        };
        Ok(server)
    }
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub account: String,
    pub token: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{name}: bindery exited ({status}); see its log in the work dir");
        }
        Ok(())
    }

    /// A `kB` field of /proc/PID/status, in bytes: VmHWM (peak resident), VmRSS (now).
    pub fn memory(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .with_context(|| format!("no {field} in /proc/PID/status"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("unreadable {line:?}"))?;
        Ok(kib * 1024)
    }

    /// The server's Prometheus samples (name with labels → value).
    pub fn metrics(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let (status, body) = get(self.addr, "/metrics")?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect())
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                bail!("bindery did not stop within a minute of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time (user and system, every thread) a process has used so far, in seconds.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    Ok(stat_fields(pid, &[11, 12])?.iter().sum::<f64>() / ticks_per_second())
}

/// The same, plus the CPU time of its children that have exited (and that it has waited
/// for): a postmaster's backends and workers that ended.
pub fn cpu_seconds_with_exited_children(pid: &str) -> anyhow::Result<f64> {
    Ok(stat_fields(pid, &[11, 12, 13, 14])?.iter().sum::<f64>() / ticks_per_second())
}

/// The processes whose parent is `parent` now.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(&pid.to_string(), &[1]).is_ok_and(|ppid| ppid[0] == f64::from(parent))
        })
        .collect()
}

/// Numeric fields of /proc/PID/stat, counted from the state (0) after the command name:
/// 1 the parent, 11 and 12 user and system time, 13 and 14 those of waited-for children.
fn stat_fields(pid: &str, indexes: &[usize]) -> anyhow::Result<Vec<f64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("unreadable /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    indexes
        .iter()
        .map(|&i| {
            Ok(fields
                .get(i)
                .context("short /proc/PID/stat")?
                .parse::<f64>()?)
        })
        .collect()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// One blocking GET on its own connection, for set-up and checks (not for load).
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request(addr, "GET", path, None, "")
}

/// One blocking request with optional Basic credentials; returns the status and the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
    form: &str,
) -> std::io::Result<(u16, String)> {
    use base64::Engine;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let authorization = credentials
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status line"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The (account SID, auth token) a fresh server wrote for its first account.
fn first_account(data_dir: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(data_dir.join("first-account.json"))?;
    let account: serde_json::Value = serde_json::from_str(&text)?;
    let field = |name: &str| -> anyhow::Result<String> {
        Ok(account[name]
            .as_str()
            .with_context(|| format!("{name} missing"))?
            .to_owned())
    };
    Ok((field("account_sid")?, field("auth_token")?))
}
