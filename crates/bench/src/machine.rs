//! What the numbers were measured on, and waiting for the machine to be quiet.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub date: String,
    pub commit: String,
    pub rustc: String,
    pub filesystem: String,
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Machine {
    pub fn read(work_dir: &Path) -> Machine {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let commit = match output("git", &["rev-parse", "--short", "HEAD"]) {
            Some(commit) => {
                let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{commit} (with uncommitted changes)")
                } else {
                    commit
                }
            }
            None => "unknown".into(),
        };
        Machine {
            cpus,
            cpu_model,
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            commit,
            rustc: output("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            filesystem: filesystem_of(work_dir),
        }
    }
}

/// The type and device of the mount holding `path` (the longest mount point above it).
pub fn filesystem_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (device, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
        .unwrap_or_else(|| "unknown".into())
}

pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A CPU's time so far, from /proc/stat: busy (running any process, or the kernel) and in
/// all, in ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    busy: u64,
    total: u64,
}

impl CpuTime {
    pub fn of(cpu: usize) -> anyhow::Result<CpuTime> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/stat"))?;
        // user nice system idle iowait irq softirq steal (guest time is inside user's).
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        let total: u64 = ticks.iter().sum();
        Ok(CpuTime {
            busy: total - idle,
            total,
        })
    }

    /// The share of the time since `earlier` that the CPU was busy.
    pub fn busy_since(&self, earlier: &CpuTime) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        self.busy.saturating_sub(earlier.busy) as f64 / total.max(1) as f64
    }
}

#[derive(Debug, Clone)]
pub struct Quiet {
    pub threshold: f64,
    pub waited: Duration,
    /// The 1-minute load average when measuring began.
    pub load: f64,
    pub reached: bool,
}

/// Polls the 1-minute load average until it is below `threshold`, for at most `wait`.
pub fn wait_for_quiet(threshold: f64, wait: Duration) -> Quiet {
    let started = Instant::now();
    loop {
        let load = load_average();
        if load < threshold || started.elapsed() >= wait {
            return Quiet {
                threshold,
                waited: started.elapsed(),
                load,
                reached: load < threshold,
            };
        }
        eprintln!(
            "waiting for a quiet machine: 1-minute load {load:.2} (want < {threshold}), \
             {:.0} s of at most {:.0} s waited",
            started.elapsed().as_secs_f64(),
            wait.as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(15).min(wait.saturating_sub(started.elapsed())));
    }
}
