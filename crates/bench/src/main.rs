//! `bindery-bench`: the benchmark behind `make bench`. It starts the release binary on fresh
//! data dirs (and, in `postgres`, as nodes of a PostgreSQL server it starts), drives it with a
//! fixed number of keep-alive connections for a fixed time per scenario, and writes
//! requests/s, p50/p99 latency and the ratio to `GET /healthz` (measured in the same run) to
//! BENCHMARKS.md. It reports; it never fails on a missed target.

mod dataset;
mod load;
mod machine;
mod postgres;
mod push;
mod report;
mod server;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use dataset::{address, binding_type, identity, Dataset};
use load::{Http, Request, Rng, Stats, Workload};
use machine::CpuTime;
use report::{Lists, Report, Row};
use server::{Bindery, Server};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "bindery-bench",
    about = "Bindery's benchmark: run every scenario, write BENCHMARKS.md"
)]
pub struct Args {
    /// The bindery binary to measure (a release build)
    #[arg(long, default_value = "target/release/bindery")]
    bindery: PathBuf,
    /// Where to write the results (its text after the generated section is kept)
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Scratch space for data dirs and server logs (emptied first)
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Seconds each scenario is measured
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before each measurement, not counted
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Concurrent keep-alive connections in every scenario
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Bindings in the small imported data set
    #[arg(long, default_value_t = 10_000)]
    small: u64,
    /// Bindings in the large imported data set
    #[arg(long, default_value_t = 1_000_000)]
    large: u64,
    /// Bindings per user in the imported data sets (and in the registration load)
    #[arg(long, default_value_t = 5)]
    per_user: u64,
    /// Start measuring once the 1-minute load average is below this
    #[arg(long, default_value_t = 0.5)]
    quiet_load: f64,
    /// Seconds to wait at most for that (then measure anyway, and say so)
    #[arg(long, default_value_t = 1200)]
    quiet_wait: u64,
    /// Do not pin the server and the load generator to separate CPUs
    #[arg(long)]
    no_pin: bool,
    /// Record `perf record --call-graph dwarf` of the server during every scenario whose name
    /// contains this (e.g. `fresh-`, `registration`; `-` for all), into the work dir
    #[arg(long, value_name = "PATTERN")]
    perf: Option<String>,
    /// Skip `bindery verify` of the large generated log (about 20 s with a million bindings)
    #[arg(long)]
    skip_verify_large: bool,
    /// Skip the push scenarios (the direct transport to the APNs and FCM stand-ins)
    #[arg(long)]
    skip_push: bool,
    /// Skip the PostgreSQL scenarios (one node and three on a PostgreSQL server the benchmark
    /// starts, and the change feed's lag between nodes)
    #[arg(long)]
    skip_postgres: bool,
    /// Run only the PostgreSQL scenarios and the fresh SQLite data dir's, which they are
    /// compared with (no group-commit-off run, no imported data sets, no push)
    #[arg(long, conflicts_with = "skip_postgres")]
    only_postgres: bool,
    /// Commits, one at a time, over which the change feed's lag is measured
    #[arg(long, default_value_t = 300)]
    feed_commits: usize,
    /// Credentials (each with one binding, each notified once) in the idle-clients push
    /// scenario; 0 skips it
    #[arg(long, default_value_t = 10_000)]
    idle_credentials: u64,
    /// Print the results without writing the output file
    #[arg(long)]
    no_write: bool,
}

const PER_USER: u64 = 5;
/// With pinning, the server (and PostgreSQL) run on one CPU, the load generator on another.
const SERVER_CPU: usize = 0;
const GENERATOR_CPU: usize = 1;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.per_user != PER_USER {
        bail!("--per-user is fixed at {PER_USER} in this version (the user list target is for 5)");
    }
    if args.work_dir.exists() {
        std::fs::remove_dir_all(&args.work_dir)
            .with_context(|| format!("cannot empty {}", args.work_dir.display()))?;
    }
    std::fs::create_dir_all(&args.work_dir)?;
    // Before any server starts, so that each inherits it.
    push::raise_fd_limit();
    if !args.bindery.exists() {
        bail!(
            "no binary at {} (cargo build --release first)",
            args.bindery.display()
        );
    }
    let machine = machine::Machine::read(&args.work_dir);
    let quiet = machine::wait_for_quiet(args.quiet_load, Duration::from_secs(args.quiet_wait));
    let started = Instant::now();
    eprintln!(
        "1-minute load average {:.2} ({}); measuring",
        quiet.load,
        if quiet.reached { "quiet" } else { "NOT quiet" }
    );
    let pinned = !args.no_pin && machine.cpus >= 2;
    if pinned {
        server::pin_current_thread(GENERATOR_CPU)
            .context("pinning the load generator to its CPU")?;
    }
    let bindery = Bindery {
        binary: args.bindery.clone(),
        cpu: pinned.then_some(SERVER_CPU),
        logs: args.work_dir.clone(),
    };
    let mut report = Report::new(&args, machine, quiet, pinned);
    let bench = Bench {
        args: &args,
        bindery: &bindery,
    };
    bench.fresh(&mut report)?;
    if !args.only_postgres {
        bench.without_group_commit(&mut report)?;
        bench.small(&mut report)?;
        bench.large(&mut report)?;
    }
    if !args.skip_postgres {
        report.postgres = Some(bench.postgres()?);
    }
    if !args.skip_push && !args.only_postgres {
        report.push = Some(bench.push()?);
    }
    report.load_after = machine::load_average();
    report.runtime = started.elapsed();
    let text = report.markdown();
    println!("{text}");
    if !args.no_write {
        report::write(&args.out, &text)?;
        eprintln!("wrote {}", args.out.display());
    }
    Ok(())
}

struct Bench<'a> {
    args: &'a Args,
    bindery: &'a Bindery,
}

/// Bindings registered through the API during a run: binding number → SID.
#[derive(Default)]
struct Registered {
    next: Cell<u64>,
    sids: RefCell<Vec<(u64, String)>>,
}

impl Registered {
    /// Users (from `first_user`) whose every device was registered.
    fn full_users(&self) -> u64 {
        let numbers: BTreeSet<u64> = self.sids.borrow().iter().map(|(n, _)| *n).collect();
        let mut users = 0;
        while (0..PER_USER).all(|j| numbers.contains(&(users * PER_USER + j))) {
            users += 1;
        }
        users
    }
}

fn sid_in(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find(r#""sid":"BS"#)? + 7;
    Some(text.get(at..at + 34)?.to_owned())
}

/// Bindings in a list body.
fn items_in(body: &[u8]) -> u64 {
    let needle = br#""binding_type""#;
    body.windows(needle.len()).filter(|w| w == needle).count() as u64
}

/// Smallest and largest number of items seen in list answers.
struct Items(Cell<(u64, u64)>);

impl Items {
    fn new() -> Self {
        Items(Cell::new((u64::MAX, 0)))
    }
    fn see(&self, body: &[u8]) {
        let n = items_in(body);
        let (low, high) = self.0.get();
        self.0.set((low.min(n), high.max(n)));
    }
    fn note(&self, expected: u64) -> String {
        match self.0.get() {
            (low, high) if low == expected && high == expected => {
                format!("{expected} bindings in every answer")
            }
            (low, high) => {
                format!("MISMATCH: {low}–{high} bindings per answer, {expected} expected")
            }
        }
    }
}

/// What a scenario loads and whose CPU it reads: Bindery's servers (the load spread evenly
/// over their ports) and, on the PostgreSQL engine, PostgreSQL's processes.
pub struct Servers<'a> {
    pub bindery: Vec<&'a Server>,
    pub postgres: Option<&'a postgres::Postgres>,
}

impl<'a> Servers<'a> {
    pub fn one(server: &'a Server) -> Self {
        Servers {
            bindery: vec![server],
            postgres: None,
        }
    }

    fn addrs(&self) -> Vec<std::net::SocketAddr> {
        self.bindery.iter().map(|s| s.addr).collect()
    }

    /// CPU seconds so far: Bindery's (every node's, summed) and PostgreSQL's.
    fn cpu_seconds(&self) -> anyhow::Result<(f64, f64)> {
        let mut bindery = 0.0;
        for server in &self.bindery {
            bindery += server::cpu_seconds(&server.pid().to_string())?;
        }
        let postgres = match self.postgres {
            Some(postgres) => postgres.cpu_seconds()?,
            None => 0.0,
        };
        Ok((bindery, postgres))
    }

    /// The sum over the nodes of a sample of their /metrics.
    fn metric_sums(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        let mut sums = BTreeMap::new();
        for server in &self.bindery {
            for (name, value) in server.metrics()? {
                *sums.entry(name).or_default() += value;
            }
        }
        Ok(sums)
    }
}

/// What the writers' group commits did during a registration load (over every node).
#[derive(Debug, Clone, Copy)]
pub struct Commits {
    pub per_second: f64,
    pub registrations_per_commit: f64,
    /// The mean time of one (lock wait included, on PostgreSQL).
    pub seconds_each: f64,
    /// The commits' summed time over the wall time: how many were in flight on average
    /// (at most 1 per node: each node's writer runs one at a time).
    pub in_flight: f64,
}

impl Commits {
    /// The note of a registration row: what the commits did, if any was measured.
    fn note_of(commits: Option<Commits>) -> String {
        commits.map(|c| c.note()).unwrap_or_default()
    }

    fn note(&self) -> String {
        format!(
            "{:.0} commits/s, {:.1} registrations per commit, {:.2} ms per commit",
            self.per_second,
            self.registrations_per_commit,
            self.seconds_each * 1e3
        )
    }
}

impl Bench<'_> {
    fn measure(&self, server: &Server, name: &str, workload: &Workload) -> anyhow::Result<Stats> {
        self.measure_on(server, name, workload, self.args.connections)
    }

    fn measure_on(
        &self,
        server: &Server,
        name: &str,
        workload: &Workload,
        connections: usize,
    ) -> anyhow::Result<Stats> {
        self.measure_servers(&Servers::one(server), name, workload, connections)
    }

    fn measure_servers(
        &self,
        servers: &Servers,
        name: &str,
        workload: &Workload,
        connections: usize,
    ) -> anyhow::Result<Stats> {
        let perf = self.perf(servers, name)?;
        let cores_before = self.cores()?;
        let cpu_before = (servers.cpu_seconds()?, server::cpu_seconds("self")?);
        let started = Instant::now();
        let mut stats = load::run(
            &servers.addrs(),
            connections,
            Duration::from_secs_f64(self.args.warmup),
            Duration::from_secs_f64(self.args.duration),
            workload,
        )?;
        let wall = started.elapsed().as_secs_f64();
        let (bindery_cpu, postgres_cpu) = servers.cpu_seconds()?;
        let answers = stats.answered.max(1) as f64;
        let server_cpu = bindery_cpu - cpu_before.0 .0;
        stats.server_cpu_per_answer = server_cpu / answers;
        stats.server_cpu = server_cpu / wall;
        let postgres_cpu = postgres_cpu - cpu_before.0 .1;
        stats.postgres_cpu_per_answer = postgres_cpu / answers;
        stats.postgres_cpu = postgres_cpu / wall;
        stats.generator_cpu = (server::cpu_seconds("self")? - cpu_before.1) / wall;
        stats.cores_busy = self.cores_busy_since(cores_before)?;
        self.perf_done(perf, name)?;
        let postgres = if servers.postgres.is_some() {
            format!(
                ", PostgreSQL {:.0}% ({:.0} µs)",
                stats.postgres_cpu * 100.0,
                stats.postgres_cpu_per_answer * 1e6
            )
        } else {
            String::new()
        };
        eprintln!(
            "  {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  CPU: server {:.0}% ({:.0} µs per \
             request){postgres}, generator {:.0}%  errors {}{}",
            stats.per_second(),
            stats.percentile(50.0).as_secs_f64() * 1e3,
            stats.percentile(99.0).as_secs_f64() * 1e3,
            stats.server_cpu * 100.0,
            stats.server_cpu_per_answer * 1e6,
            stats.generator_cpu * 100.0,
            stats.errors,
            stats
                .first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        Ok(stats)
    }

    /// The time so far of the server's CPU and of the load generator's, when pinned.
    fn cores(&self) -> anyhow::Result<Option<(CpuTime, CpuTime)>> {
        if self.bindery.cpu.is_none() {
            return Ok(None);
        }
        Ok(Some((
            CpuTime::of(SERVER_CPU)?,
            CpuTime::of(GENERATOR_CPU)?,
        )))
    }

    /// How busy those two CPUs were since `before`.
    fn cores_busy_since(
        &self,
        before: Option<(CpuTime, CpuTime)>,
    ) -> anyhow::Result<Option<(f64, f64)>> {
        let Some((server, generator)) = before else {
            return Ok(None);
        };
        Ok(Some((
            CpuTime::of(SERVER_CPU)?.busy_since(&server),
            CpuTime::of(GENERATOR_CPU)?.busy_since(&generator),
        )))
    }

    fn service(&self, server: &Server) -> anyhow::Result<String> {
        let (status, body) = server::request(
            server.addr,
            "POST",
            "/v2/Services",
            Some((&server.account, &server.token)),
            "FriendlyName=bench",
        )?;
        if status != 201 {
            bail!("creating a service answered {status}: {body}");
        }
        let value: serde_json::Value = serde_json::from_str(&body)?;
        Ok(value["sid"].as_str().context("no sid")?.to_owned())
    }

    /// `perf record -g` of the servers for as long as one scenario runs, if asked for.
    fn perf(&self, servers: &Servers, name: &str) -> anyhow::Result<Option<std::process::Child>> {
        match &self.args.perf {
            Some(pattern) if pattern == "-" || name.contains(pattern.as_str()) => {}
            _ => return Ok(None),
        }
        let seconds = self.args.warmup + self.args.duration;
        let out = self.args.work_dir.join(format!("perf-{name}.data"));
        let child = std::process::Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-q",
                "-p",
            ])
            .arg(
                servers
                    .bindery
                    .iter()
                    .map(|s| s.pid().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .arg("-o")
            .arg(&out)
            .args(["--", "sleep", &format!("{seconds}")])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("running perf (apt-get install linux-perf)")?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Some(child))
    }

    fn perf_done(&self, child: Option<std::process::Child>, name: &str) -> anyhow::Result<()> {
        let Some(mut child) = child else {
            return Ok(());
        };
        child.wait()?;
        let data = self.args.work_dir.join(format!("perf-{name}.data"));
        // Self time with call chains, and inclusive time per function without them.
        for (suffix, options) in [
            ("self", &["--no-children", "--percent-limit", "0.5"][..]),
            (
                "inclusive",
                &["--children", "--percent-limit", "1", "-g", "none"][..],
            ),
        ] {
            let text = std::process::Command::new("perf")
                .args(["report", "--stdio"])
                .args(options)
                .arg("-i")
                .arg(&data)
                .output()?;
            let path = self.args.work_dir.join(format!("perf-{name}-{suffix}.txt"));
            std::fs::write(&path, &text.stdout)?;
            eprintln!("  perf profile: {}", path.display());
        }
        Ok(())
    }

    /// The registration load: new devices, `PER_USER` per user, from user `first_user` on.
    fn registration<'a>(
        http: &'a Http,
        service: &'a str,
        first_user: u64,
        registered: &'a Registered,
    ) -> Workload<'a> {
        Workload::new(201, move |_| {
            let n = registered.next.get();
            registered.next.set(n + 1);
            let (user, j) = (first_user + n / PER_USER, n % PER_USER);
            Request {
                bytes: http.post_form(
                    &format!("/v2/Services/{service}/Users/{}/Bindings", identity(user)),
                    &format!(
                        "BindingType={}&Address={}&Endpoint=e{j}",
                        binding_type(j),
                        address(first_user * PER_USER + n)
                    ),
                ),
                tag: n,
            }
        })
        .on_answer(move |n, status, body| {
            if status == 201 {
                if let Some(sid) = sid_in(body) {
                    registered.sids.borrow_mut().push((n, sid));
                }
            }
        })
    }

    /// Registers again what `registration` registered (same user, endpoint, type, address).
    fn reregistration<'a>(
        http: &'a Http,
        service: &'a str,
        first_user: u64,
        known: &'a [(u64, String)],
    ) -> Workload<'a> {
        Workload::new(200, move |rng| {
            let (n, _) = &known[rng.below(known.len() as u64) as usize];
            let (user, j) = (first_user + n / PER_USER, n % PER_USER);
            Request {
                bytes: http.post_form(
                    &format!("/v2/Services/{service}/Users/{}/Bindings", identity(user)),
                    &format!(
                        "BindingType={}&Address={}&Endpoint=e{j}",
                        binding_type(j),
                        address(first_user * PER_USER + n)
                    ),
                ),
                tag: *n,
            }
        })
    }

    fn fetch<'a>(
        http: &'a Http,
        service: &'a str,
        pick: impl Fn(&mut Rng) -> (u64, String) + 'a,
    ) -> Workload<'a> {
        Workload::new(200, move |rng| {
            let (user, sid) = pick(rng);
            Request {
                bytes: http.get(&format!(
                    "/v2/Services/{service}/Users/{}/Bindings/{sid}",
                    identity(user)
                )),
                tag: 0,
            }
        })
    }

    fn user_list<'a>(
        http: &'a Http,
        service: &'a str,
        users: u64,
        items: &'a Items,
    ) -> Workload<'a> {
        Workload::new(200, move |rng| Request {
            bytes: http.get(&format!(
                "/v2/Services/{service}/Users/{}/Bindings",
                identity(rng.below(users))
            )),
            tag: 0,
        })
        .on_answer(move |_, _, body| items.see(body))
    }

    fn service_list<'a>(
        http: &'a Http,
        service: &'a str,
        users: u64,
        items: &'a Items,
    ) -> Workload<'a> {
        Workload::new(200, move |rng| Request {
            bytes: http.get(&format!(
                "/v2/Services/{service}/Bindings?BindingType=apn&Identity={}",
                identity(rng.below(users))
            )),
            tag: 0,
        })
        .on_answer(move |_, _, body| items.see(body))
    }

    /// Registration measured with the writers' batching visible in /metrics.
    fn measure_registration(
        &self,
        servers: &Servers,
        name: &str,
        workload: &Workload,
    ) -> anyhow::Result<(Stats, Option<Commits>)> {
        let before = servers.metric_sums()?;
        let started = Instant::now();
        let stats = self.measure_servers(servers, name, workload, self.args.connections)?;
        let wall = started.elapsed().as_secs_f64();
        let after = servers.metric_sums()?;
        let delta = |name: &str| {
            after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
        };
        let commits = delta("bindery_store_commit_batch_size_count");
        let took = delta("bindery_store_commit_duration_seconds_sum");
        let commits = (commits > 0.0).then(|| Commits {
            per_second: commits / wall,
            registrations_per_commit: delta("bindery_store_commit_batch_size_sum") / commits,
            seconds_each: took / commits,
            in_flight: took / wall,
        });
        Ok((stats, commits))
    }

    /// 1–3: a fresh data dir, group commit on, durable commits.
    fn fresh(&self, report: &mut Report) -> anyhow::Result<()> {
        eprintln!("fresh data dir, group commit on");
        let dir = self.args.work_dir.join("fresh");
        let server = self.bindery.serve(
            "fresh",
            &dir,
            &[("BINDERY_STORAGE__GROUP_COMMIT", "true")],
            None,
        )?;
        let service = self.service(&server)?;
        let anonymous = Http::new(server.addr, None);
        let http = Http::new(server.addr, Some((&server.account, &server.token)));

        eprintln!("GET /healthz");
        let healthz = Workload::new(200, |_| Request {
            bytes: anonymous.get("/healthz"),
            tag: 0,
        });
        let stats = self.measure(&server, "fresh-healthz", &healthz)?;
        report.healthz = stats.per_second();
        report.rows.push(Row::new(
            "GET /healthz",
            "0",
            self.args.connections,
            stats,
            "",
        ));

        eprintln!("registration (new devices)");
        let registered = Registered::default();
        let workload = Self::registration(&http, &service, 0, &registered);
        let (stats, commits) =
            self.measure_registration(&Servers::one(&server), "fresh-registration", &workload)?;
        report.registration = stats.per_second();
        report.rows.push(Row::new(
            "register a new device (201)",
            "0 → growing",
            self.args.connections,
            stats,
            &Commits::note_of(commits),
        ));
        let known = registered.sids.borrow().clone();
        let users = registered.full_users();
        if users == 0 {
            bail!("no user got all {PER_USER} devices registered");
        }
        let stored = format!("{}", known.len());

        eprintln!("re-registration ({} bindings)", known.len());
        let workload = Self::reregistration(&http, &service, 0, &known);
        let (stats, commits) =
            self.measure_registration(&Servers::one(&server), "fresh-reregistration", &workload)?;
        report.rows.push(Row::new(
            "register an existing device again (200)",
            &stored,
            self.args.connections,
            stats,
            &Commits::note_of(commits),
        ));

        eprintln!("fetch one binding");
        let workload = Self::fetch(&http, &service, |rng| {
            let (n, sid) = &known[rng.below(known.len() as u64) as usize];
            (n / PER_USER, sid.clone())
        });
        let stats = self.measure(&server, "fresh-fetch", &workload)?;
        report.fetch = stats.per_second();
        report.rows.push(Row::new(
            "fetch one binding",
            &stored,
            self.args.connections,
            stats,
            "",
        ));

        eprintln!("user list");
        let items = Items::new();
        let stats = self.measure(
            &server,
            "fresh-user-list",
            &Self::user_list(&http, &service, users, &items),
        )?;
        report.user_list = stats.per_second();
        report.rows.push(Row::new(
            "list a user's bindings",
            &stored,
            self.args.connections,
            stats,
            &items.note(PER_USER),
        ));

        eprintln!("service list with filters");
        let items = Items::new();
        let stats = self.measure(
            &server,
            "fresh-service-list",
            &Self::service_list(&http, &service, users, &items),
        )?;
        report.rows.push(Row::new(
            "list the service's bindings, BindingType=apn&Identity=…",
            &stored,
            self.args.connections,
            stats,
            &items.note(2),
        ));
        report.rss_fresh = Some(server.memory("VmHWM")?);
        server.stop()
    }

    /// 4: the same registration load with group commit off.
    fn without_group_commit(&self, report: &mut Report) -> anyhow::Result<()> {
        eprintln!("fresh data dir, group commit OFF: registration");
        let dir = self.args.work_dir.join("no-group-commit");
        let server = self.bindery.serve(
            "no-group-commit",
            &dir,
            &[("BINDERY_STORAGE__GROUP_COMMIT", "false")],
            None,
        )?;
        let service = self.service(&server)?;
        let http = Http::new(server.addr, Some((&server.account, &server.token)));
        let registered = Registered::default();
        let workload = Self::registration(&http, &service, 0, &registered);
        let (stats, commits) = self.measure_registration(
            &Servers::one(&server),
            "no-group-commit-registration",
            &workload,
        )?;
        report.registration_without_group_commit = stats.per_second();
        report.rows.push(Row::new(
            "register a new device, group commit OFF",
            "0 → growing",
            self.args.connections,
            stats,
            &Commits::note_of(commits),
        ));
        server.stop()
    }

    /// Generates a data set and imports it into `dir`; returns it with the import's duration.
    fn import(&self, dir: &Path, bindings: u64) -> anyhow::Result<(Dataset, Duration)> {
        let dataset = Dataset::new(bindings.div_ceil(PER_USER), PER_USER);
        eprintln!(
            "importing {} bindings ({} events)",
            dataset.bindings(),
            dataset.events()
        );
        let mut feed = |out: &mut dyn std::io::Write| dataset.write(out).map(|_| ());
        let (stderr, took) = self.bindery.run(dir, &["import"], Some(&mut feed))?;
        if !stderr.contains(&format!("imported {} events", dataset.events())) {
            bail!("import said: {}", stderr.trim());
        }
        Ok((dataset, took))
    }

    fn verify(&self, dir: &Path) -> anyhow::Result<Duration> {
        let (stderr, took) = self.bindery.run(dir, &["verify"], None)?;
        if !stderr.contains("verified") {
            bail!("verify said: {}", stderr.trim());
        }
        Ok(took)
    }

    /// Lists (and fetch) on an imported data set; returns the server, still running.
    fn read_scenarios(
        &self,
        name: &str,
        dataset: &Dataset,
        dir: &Path,
        report: &mut Report,
    ) -> anyhow::Result<(Server, Lists)> {
        let server = self.bindery.serve(
            name,
            dir,
            &[("BINDERY_STORAGE__GROUP_COMMIT", "true")],
            Some((dataset.account.clone(), dataset.token.clone())),
        )?;
        let http = Http::new(server.addr, Some((&server.account, &server.token)));
        let stored = report::count(dataset.bindings());
        let (service, users) = (dataset.service.as_str(), dataset.users);
        let mut lists = Vec::new();
        for connections in [self.args.connections, 1] {
            eprintln!("{name}: user list, {connections} connection(s)");
            let items = Items::new();
            let workload = Self::user_list(&http, service, users, &items);
            let perf_name = format!("{name}-user-list-{connections}");
            let stats = self.measure_on(&server, &perf_name, &workload, connections)?;
            report.rows.push(Row::new(
                "list a user's bindings",
                &stored,
                connections,
                stats.clone(),
                &items.note(PER_USER),
            ));
            lists.push(stats);

            eprintln!("{name}: service list with filters, {connections} connection(s)");
            let items = Items::new();
            let workload = Self::service_list(&http, service, users, &items);
            let perf_name = format!("{name}-service-list-{connections}");
            let stats = self.measure_on(&server, &perf_name, &workload, connections)?;
            report.rows.push(Row::new(
                "list the service's bindings, BindingType=apn&Identity=…",
                &stored,
                connections,
                stats.clone(),
                &items.note(2),
            ));
            lists.push(stats);
        }
        let [_, _, user, service_list]: [Stats; 4] = lists
            .try_into()
            .map_err(|_| anyhow::anyhow!("four list measurements"))?;

        eprintln!("{name}: fetch");
        let workload = Self::fetch(&http, service, |rng| {
            let user = rng.below(users);
            (user, dataset.binding_sid(user, rng.below(PER_USER)))
        });
        let stats = self.measure(&server, &format!("{name}-fetch"), &workload)?;
        report.rows.push(Row::new(
            "fetch one binding",
            &stored,
            self.args.connections,
            stats,
            "",
        ));
        Ok((
            server,
            Lists {
                user,
                service: service_list,
            },
        ))
    }

    /// 6 (small half): lists with `small` bindings stored.
    fn small(&self, report: &mut Report) -> anyhow::Result<()> {
        let dir = self.args.work_dir.join("small");
        let (dataset, _) = self.import(&dir, self.args.small)?;
        self.verify(&dir)?;
        report.small_verified = true;
        let (server, lists) = self.read_scenarios("small", &dataset, &dir, report)?;
        report.small_bindings = dataset.bindings();
        report.small_lists = Some(lists);
        server.stop()
    }

    /// 5, 6 (large half), 7: import, rebuild, lists and memory with `large` bindings.
    fn large(&self, report: &mut Report) -> anyhow::Result<()> {
        let dir = self.args.work_dir.join("large");
        let (dataset, import_took) = self.import(&dir, self.args.large)?;
        report.import = Some((dataset.events(), import_took));
        if !self.args.skip_verify_large {
            eprintln!("verify");
            report.large_verified = Some(self.verify(&dir)?);
        }
        eprintln!("rebuild");
        let (stderr, took) = self.bindery.run(&dir, &["rebuild"], None)?;
        if !stderr.contains(&format!("from {} events", dataset.events())) {
            bail!("rebuild said: {}", stderr.trim());
        }
        report.rebuild = Some((dataset.events(), took));
        report.database_bytes = std::fs::metadata(dir.join("bindery.db"))
            .map(|m| m.len())
            .ok();

        let (server, lists) = self.read_scenarios("large", &dataset, &dir, report)?;
        report.large_bindings = dataset.bindings();
        report.large_lists = Some(lists);

        eprintln!("large: registration (new devices)");
        let http = Http::new(server.addr, Some((&server.account, &server.token)));
        let registered = Registered::default();
        let workload = Self::registration(&http, &dataset.service, dataset.users, &registered);
        let (stats, commits) =
            self.measure_registration(&Servers::one(&server), "large-registration", &workload)?;
        report.rows.push(Row::new(
            "register a new device (201)",
            &format!("{} → growing", report::count(dataset.bindings())),
            self.args.connections,
            stats,
            &Commits::note_of(commits),
        ));
        report.rss_large = Some((server.memory("VmHWM")?, server.memory("VmRSS")?));
        server.stop()
    }
}
