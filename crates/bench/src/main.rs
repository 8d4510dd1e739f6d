//! `bindery-bench`: the benchmark behind `make bench`. It starts the release binary on fresh
//! data dirs, drives it with a fixed number of keep-alive connections for a fixed time per
//! scenario, and writes requests/s, p50/p99 latency and the ratio to `GET /healthz` (measured
//! in the same run) to BENCHMARKS.md. It reports; it never fails on a missed target.

mod dataset;
mod load;
mod machine;
mod push;
mod report;
mod server;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use dataset::{address, binding_type, identity, Dataset};
use load::{Http, Request, Rng, Stats, Workload};
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
    /// Credentials (each with one binding, each notified once) in the idle-clients push
    /// scenario; 0 skips it
    #[arg(long, default_value_t = 10_000)]
    idle_credentials: u64,
    /// Print the results without writing the output file
    #[arg(long)]
    no_write: bool,
}

const PER_USER: u64 = 5;

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
        server::pin_current_thread(1).context("pinning the load generator to CPU 1")?;
    }
    let bindery = Bindery {
        binary: args.bindery.clone(),
        cpu: pinned.then_some(0),
        logs: args.work_dir.clone(),
    };
    let mut report = Report::new(&args, machine, quiet, pinned);
    let bench = Bench {
        args: &args,
        bindery: &bindery,
    };
    bench.fresh(&mut report)?;
    bench.without_group_commit(&mut report)?;
    bench.small(&mut report)?;
    bench.large(&mut report)?;
    if !args.skip_push {
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
        let perf = self.perf(server, name)?;
        let pid = server.pid().to_string();
        let cpu_before = (server::cpu_seconds(&pid)?, server::cpu_seconds("self")?);
        let started = Instant::now();
        let mut stats = load::run(
            server.addr,
            connections,
            Duration::from_secs_f64(self.args.warmup),
            Duration::from_secs_f64(self.args.duration),
            workload,
        )?;
        let wall = started.elapsed().as_secs_f64();
        let server_cpu = server::cpu_seconds(&pid)? - cpu_before.0;
        stats.server_cpu_per_answer = server_cpu / stats.answered.max(1) as f64;
        stats.server_cpu = server_cpu / wall;
        stats.generator_cpu = (server::cpu_seconds("self")? - cpu_before.1) / wall;
        self.perf_done(perf, name)?;
        eprintln!(
            "  {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  CPU: server {:.0}% ({:.0} µs per \
             request), generator {:.0}%  errors {}{}",
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

    /// `perf record -g` of the server for as long as one scenario runs, if asked for.
    fn perf(&self, server: &Server, name: &str) -> anyhow::Result<Option<std::process::Child>> {
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
            .arg(server.pid().to_string())
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

    /// Registration measured with the writer's batching visible in /metrics.
    fn measure_registration(
        &self,
        server: &Server,
        name: &str,
        workload: &Workload,
    ) -> anyhow::Result<(Stats, String)> {
        let before = server.metrics()?;
        let started = Instant::now();
        let stats = self.measure(server, name, workload)?;
        let wall = started.elapsed().as_secs_f64();
        let after = server.metrics()?;
        let delta = |name: &str| {
            after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
        };
        let commits = delta("bindery_store_commit_batch_size_count");
        let note = if commits > 0.0 {
            format!(
                "{:.0} commits/s, {:.1} registrations per commit, {:.2} ms per commit",
                commits / wall,
                delta("bindery_store_commit_batch_size_sum") / commits,
                delta("bindery_store_commit_duration_seconds_sum") / commits * 1e3
            )
        } else {
            String::new()
        };
        Ok((stats, note))
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
        let (stats, note) = self.measure_registration(&server, "fresh-registration", &workload)?;
        report.registration = stats.per_second();
        report.rows.push(Row::new(
            "register a new device (201)",
            "0 → growing",
            self.args.connections,
            stats,
            &note,
        ));
        let known = registered.sids.borrow().clone();
        let users = registered.full_users();
        if users == 0 {
            bail!("no user got all {PER_USER} devices registered");
        }
        let stored = format!("{}", known.len());

        eprintln!("re-registration ({} bindings)", known.len());
        let workload = Self::reregistration(&http, &service, 0, &known);
        let (stats, note) =
            self.measure_registration(&server, "fresh-reregistration", &workload)?;
        report.rows.push(Row::new(
            "register an existing device again (200)",
            &stored,
            self.args.connections,
            stats,
            &note,
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
        let (stats, note) =
            self.measure_registration(&server, "no-group-commit-registration", &workload)?;
        report.registration_without_group_commit = stats.per_second();
        report.rows.push(Row::new(
            "register a new device, group commit OFF",
            "0 → growing",
            self.args.connections,
            stats,
            &note,
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
        let (stats, note) = self.measure_registration(&server, "large-registration", &workload)?;
        report.rows.push(Row::new(
            "register a new device (201)",
            &format!("{} → growing", report::count(dataset.bindings())),
            self.args.connections,
            stats,
            &note,
        ));
        report.rss_large = Some((server.memory("VmHWM")?, server.memory("VmRSS")?));
        server.stop()
    }
}
