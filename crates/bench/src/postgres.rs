//! The PostgreSQL engine's scenarios (CONTRACT §7): Bindery nodes on one database of a real
//! PostgreSQL server that the benchmark starts itself (`crates/pgtest`), with durable commits
//! as in production (fsync on, synchronous_commit on), pinned to the server's CPU with the
//! nodes: Bindery and PostgreSQL share one core, the load generator has the other.
//!
//! 1. One node, then three nodes on one database with the load spread over their ports, each
//!    on a fresh database: `/healthz` (the layout's own ceiling), registration of new
//!    devices, fetch and a user's list (of what the registration stored), as the fresh SQLite
//!    data dir measures them; the report gives each as a ratio to the layout's `/healthz`
//!    and to the SQLite figure of the same run.
//! 2. The change feed's lag: one registration at a time on node 1 while a long-poll
//!    (`GET /v2/Events?After=N&Wait=…`) waits on node 2, which NOTIFY wakes; and, for
//!    comparison, both on the one node, which its own writer wakes.
//!
//! Every scenario reads the CPU time of the nodes and of PostgreSQL's processes (the
//! postmaster and its children: backends, WAL writer, checkpointer, autovacuum), so that the
//! report can say what bounds each figure.

use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bindery_pgtest::Cluster;

use crate::dataset::{address, binding_type, identity};
use crate::load::{Http, Request, Stats, Workload};
use crate::server::{self, Server};
use crate::{Bench, Commits, Items, Registered, Servers, PER_USER};

/// What the server runs with: durable commits, the realistic setting (pgtest's default for
/// tests is `fsync=off`). A commit returns once its WAL is flushed to disk.
const SETTINGS: &[(&str, &str)] = &[
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
];

/// The settings the report states, as the running server reports them (`SHOW`).
const REPORTED: &[&str] = &[
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
];

/// How long each long-poll of the lag scenario may wait (the answer comes at the commit).
const FEED_WAIT_SECONDS: u64 = 10;
/// The feed scenario's users and devices, far from the registration load's.
const FEED_FIRST_USER: u64 = 1_000_000_000;

/// A PostgreSQL server of the benchmark's own, and what it runs with.
pub struct Postgres {
    cluster: Cluster,
    postmaster: u32,
    pub version: String,
    /// `(name, value)` of each of [`REPORTED`].
    pub settings: Vec<(String, String)>,
}

impl Postgres {
    /// Starts a fresh cluster, its processes pinned to `cpu`.
    fn start(cpu: Option<usize>) -> anyhow::Result<Postgres> {
        // The postmaster inherits the affinity of the thread that starts it, and each backend
        // and background process inherits the postmaster's.
        let cluster = std::thread::spawn(move || -> std::io::Result<Cluster> {
            if let Some(cpu) = cpu {
                server::pin_current_thread(cpu)?;
            }
            Ok(Cluster::start_with(SETTINGS))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("PostgreSQL did not start (pgtest's message is above)"))?
        .context("pinning PostgreSQL to the server's CPU")?;
        let postmaster = cluster.pid().context("the postmaster has no pid")?;
        let version = cluster.psql("postgres", "SHOW server_version");
        let settings = REPORTED
            .iter()
            .map(|name| {
                let value = cluster.psql("postgres", &format!("SHOW {name}"));
                (name.to_string(), value)
            })
            .collect();
        Ok(Postgres {
            cluster,
            postmaster,
            version,
            settings,
        })
    }

    /// CPU seconds so far of the postmaster and its children, those that exited included.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let mut seconds = server::cpu_seconds_with_exited_children(&self.postmaster.to_string())?;
        for child in server::children_of(self.postmaster) {
            // A child that exits meanwhile is counted in its parent's figure once reaped.
            seconds += server::cpu_seconds(&child.to_string()).unwrap_or(0.0);
        }
        Ok(seconds)
    }

    fn setting(&self, name: &str) -> &str {
        self.settings
            .iter()
            .find(|(n, _)| n == name)
            .map_or("?", |(_, v)| v.as_str())
    }

    /// Whether commits wait for their WAL to reach the disk.
    pub fn durable(&self) -> bool {
        self.setting("fsync") == "on" && self.setting("synchronous_commit") == "on"
    }
}

/// The request scenarios, each compared with the SQLite engine's same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Healthz,
    Registration,
    Fetch,
    UserList,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Healthz => "GET /healthz",
            Scenario::Registration => "register a new device (201)",
            Scenario::Fetch => "fetch one binding",
            Scenario::UserList => "list a user's bindings",
        }
    }
}

/// One request scenario on one layout.
pub struct Row {
    pub scenario: Scenario,
    pub nodes: usize,
    pub stored: String,
    pub connections: usize,
    pub stats: Stats,
    /// The same layout's `/healthz` requests/s.
    pub healthz: f64,
    pub commits: Option<Commits>,
    pub note: String,
}

/// A share of one core at or above which that core is the bound.
const SATURATED: f64 = 0.9;

fn pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// Who kept the server's CPU busy: Bindery, PostgreSQL (the larger first) and, when more
/// than a sliver, the rest of the CPU's busy time (other processes, interrupts).
fn shares(bindery: f64, postgres: f64, core_busy: f64) -> String {
    let mut text = if bindery >= postgres {
        format!("Bindery {} + PostgreSQL {}", pct(bindery), pct(postgres))
    } else {
        format!("PostgreSQL {} + Bindery {}", pct(postgres), pct(bindery))
    };
    let other = core_busy - bindery - postgres;
    if other >= 0.05 {
        text.push_str(&format!(" + other {}", pct(other)));
    }
    text
}

impl Row {
    /// What bounds this row's rate, read from its CPU and commit figures (BENCHMARKS.md's
    /// intro gives the rules): a CPU that is busy, or else what requests wait for.
    pub fn bound(&self) -> String {
        let s = &self.stats;
        let Some((server_core, generator_core)) = s.cores_busy else {
            return format!(
                "not pinned, so not told apart: Bindery {}, PostgreSQL {}, generator {}",
                pct(s.server_cpu),
                pct(s.postgres_cpu),
                pct(s.generator_cpu)
            );
        };
        let shares = shares(s.server_cpu, s.postgres_cpu, server_core);
        // Each node's writer runs one transaction at a time, and each transaction first
        // takes the write lock: more than one in flight on average means some wait for it.
        let lock = self
            .commits
            .filter(|c| self.nodes > 1 && c.in_flight > 1.0)
            .map(|c| {
                format!(
                    "the write lock: {:.1} of the {} nodes' transactions in flight on average, \
                     one holding it, the others waiting for it",
                    c.in_flight, self.nodes
                )
            });
        if server_core >= SATURATED {
            return match lock {
                Some(lock) => format!("CPU 0 ({shares}); {lock}"),
                None => format!("CPU 0 ({shares})"),
            };
        }
        if generator_core >= SATURATED {
            return format!(
                "CPU 1, the load generator's ({} busy, the generator {})",
                pct(generator_core),
                pct(s.generator_cpu)
            );
        }
        let waits = match (self.scenario, self.commits, lock) {
            (_, _, Some(lock)) => lock,
            (Scenario::Registration, Some(c), None) if c.in_flight >= SATURATED => format!(
                "the writer: one transaction at a time, {:.2} ms each, waiting for round \
                 trips to PostgreSQL and its WAL flush",
                c.seconds_each * 1e3
            ),
            (Scenario::Healthz, _, _) => "neither CPU is full".to_owned(),
            _ => "round trips to PostgreSQL: an HTTP worker waits for each query".to_owned(),
        };
        format!(
            "{waits} (CPU 0 {} busy: {shares}; CPU 1 {})",
            pct(server_core),
            pct(generator_core)
        )
    }
}

/// The change feed's lag over `commits` commits, one at a time.
pub struct Lag {
    pub nodes: usize,
    pub commits: usize,
    /// From the write's answer (201) to the long-poll's answer, in seconds, sorted; negative
    /// when the long-poll answered first.
    pub from_answer: Vec<f64>,
    /// From the write's request to the long-poll's answer, sorted.
    pub from_request: Vec<f64>,
    /// The write's own latency, sorted.
    pub write: Vec<f64>,
    pub server_cpu: f64,
    pub postgres_cpu: f64,
    /// As in [`Stats::cores_busy`].
    pub cores_busy: Option<(f64, f64)>,
}

impl Lag {
    /// Where the write and the long-poll were, and what wakes the long-poll.
    pub fn layout(&self) -> String {
        if self.nodes == 1 {
            "one node: write and long-poll on it, woken by its own writer".to_owned()
        } else {
            format!(
                "{} nodes: write on node 1, long-poll on node 2, woken by NOTIFY",
                self.nodes
            )
        }
    }

    /// What the lag is made of: with one commit at a time no CPU is full, so it is the chain
    /// of wake-ups and round trips from the commit to the answer.
    pub fn bound(&self) -> String {
        let path = if self.nodes > 1 {
            "the commit's NOTIFY reaches node 2's listening connection, whose thread wakes the \
             long-poll"
        } else {
            "the node's writer wakes the long-poll after its commit"
        };
        let busy = match self.cores_busy {
            Some((server_core, _)) if server_core >= SATURATED => {
                return format!(
                    "CPU 0 ({})",
                    shares(self.server_cpu, self.postgres_cpu, server_core)
                )
            }
            Some((server_core, _)) => format!(
                "CPU 0 {} busy: {}",
                pct(server_core),
                shares(self.server_cpu, self.postgres_cpu, server_core)
            ),
            None => "not pinned".to_owned(),
        };
        format!(
            "wake-ups and round trips ({busy}): {path}, which reads the events from \
             PostgreSQL (one more round trip) and answers"
        )
    }
}

/// The `p`-th percentile (0–100) of sorted `values`; NaN when there is none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

pub struct PostgresResults {
    pub version: String,
    pub settings: Vec<(String, String)>,
    pub durable: bool,
    /// Where the cluster's data directory is: the type and device of its mount.
    pub filesystem: String,
    pub rows: Vec<Row>,
    pub lags: Vec<Lag>,
}

/// Nodes of one layout on their fresh database.
struct Layout {
    name: String,
    nodes: Vec<Server>,
}

impl Layout {
    fn servers<'a>(&'a self, postgres: &'a Postgres) -> Servers<'a> {
        Servers {
            bindery: self.nodes.iter().collect(),
            postgres: Some(postgres),
        }
    }

    fn stop(self) -> anyhow::Result<()> {
        for node in self.nodes {
            node.stop()?;
        }
        Ok(())
    }
}

impl Bench<'_> {
    /// Every PostgreSQL scenario (see the module's comment).
    pub fn postgres(&self) -> anyhow::Result<PostgresResults> {
        eprintln!("PostgreSQL: starting a cluster (fsync on, synchronous_commit on)");
        let postgres = Postgres::start(self.bindery.cpu)?;
        eprintln!("PostgreSQL {}: {:?}", postgres.version, postgres.settings);
        // The nodes on one database must hold the same sealing key: one file for all,
        // written before any starts, as an operator copies one key to every node.
        let key = self.args.work_dir.join("postgres-secret.key");
        bindery_daemon::Sealer::create(&key).context("writing the nodes' sealing key")?;
        let mut results = PostgresResults {
            version: postgres.version.clone(),
            settings: postgres.settings.clone(),
            durable: postgres.durable(),
            // pgtest makes its clusters in the temporary directory.
            filesystem: crate::machine::filesystem_of(&std::env::temp_dir()),
            rows: Vec::new(),
            lags: Vec::new(),
        };
        for nodes in [1, 3] {
            let layout = self.layout(&postgres, &key, nodes)?;
            self.requests(&postgres, &layout, &mut results.rows)?;
            results.lags.push(self.feed_lag(&postgres, &layout)?);
            layout.stop()?;
        }
        Ok(results)
    }

    /// `count` nodes on a fresh database: the first creates the account, the others use it.
    fn layout(&self, postgres: &Postgres, key: &Path, count: usize) -> anyhow::Result<Layout> {
        let name = format!("pg-{count}-node{}", if count == 1 { "" } else { "s" });
        let url = postgres.cluster.create_database();
        let key = key.display().to_string();
        let settings = [
            ("BINDERY_STORAGE__ENGINE", "postgres"),
            ("BINDERY_STORAGE__POSTGRES__URL", url.as_str()),
            ("BINDERY_STORAGE__SECRET_KEY_FILE", key.as_str()),
            ("BINDERY_STORAGE__GROUP_COMMIT", "true"),
        ];
        let mut nodes: Vec<Server> = Vec::new();
        for i in 1..=count {
            let node = format!("{name}-{i}");
            let dir = self.args.work_dir.join(&node);
            let credentials = nodes.first().map(|n| (n.account.clone(), n.token.clone()));
            nodes.push(self.bindery.serve(&node, &dir, &settings, credentials)?);
        }
        Ok(Layout { name, nodes })
    }

    /// `/healthz`, registration, fetch and a user's list, as the fresh SQLite data dir has
    /// them, with the load spread over the layout's nodes.
    fn requests(
        &self,
        postgres: &Postgres,
        layout: &Layout,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        let (name, nodes) = (&layout.name, layout.nodes.len());
        let servers = layout.servers(postgres);
        let first = &layout.nodes[0];
        let service = self.service(first)?;
        let anonymous = Http::new(first.addr, None);
        let http = Http::new(first.addr, Some((&first.account, &first.token)));
        let connections = self.args.connections;
        let row = |scenario, stored: &str, stats: Stats, healthz, commits, note: &str| Row {
            scenario,
            nodes,
            stored: stored.to_owned(),
            connections,
            stats,
            healthz,
            commits,
            note: note.to_owned(),
        };

        eprintln!("{name}: GET /healthz");
        let workload = Workload::new(200, |_| Request {
            bytes: anonymous.get("/healthz"),
            tag: 0,
        });
        let stats =
            self.measure_servers(&servers, &format!("{name}-healthz"), &workload, connections)?;
        let healthz = stats.per_second();
        rows.push(row(Scenario::Healthz, "0", stats, healthz, None, ""));

        eprintln!("{name}: registration (new devices)");
        let registered = Registered::default();
        let workload = Self::registration(&http, &service, 0, &registered);
        let (stats, commits) =
            self.measure_registration(&servers, &format!("{name}-registration"), &workload)?;
        let note = Commits::note_of(commits);
        rows.push(row(
            Scenario::Registration,
            "0 → growing",
            stats,
            healthz,
            commits,
            &note,
        ));
        let known = registered.sids.borrow().clone();
        let users = registered.full_users();
        if users == 0 {
            bail!("{name}: no user got all {PER_USER} devices registered");
        }
        let stored = known.len().to_string();

        eprintln!("{name}: fetch one binding");
        let workload = Self::fetch(&http, &service, |rng| {
            let (n, sid) = &known[rng.below(known.len() as u64) as usize];
            (n / PER_USER, sid.clone())
        });
        let stats =
            self.measure_servers(&servers, &format!("{name}-fetch"), &workload, connections)?;
        rows.push(row(Scenario::Fetch, &stored, stats, healthz, None, ""));

        eprintln!("{name}: user list");
        let items = Items::new();
        let workload = Self::user_list(&http, &service, users, &items);
        let stats = self.measure_servers(
            &servers,
            &format!("{name}-user-list"),
            &workload,
            connections,
        )?;
        let note = items.note(PER_USER);
        rows.push(row(
            Scenario::UserList,
            &stored,
            stats,
            healthz,
            None,
            &note,
        ));
        Ok(())
    }

    /// Registers one new device at a time on node 1 while a long-poll waits for the
    /// account's next events on node 2 (on node 1 when it is alone), `--feed-commits` times.
    fn feed_lag(&self, postgres: &Postgres, layout: &Layout) -> anyhow::Result<Lag> {
        let nodes = &layout.nodes;
        let (writer, reader) = (&nodes[0], &nodes[nodes.len().min(2) - 1]);
        let commits = self.args.feed_commits;
        eprintln!("{}: change feed lag, {commits} commits", layout.name);
        let service = self.service(writer)?;
        let mut after = feed_head(reader)?;
        let (mut from_answer, mut from_request, mut write) = (Vec::new(), Vec::new(), Vec::new());
        let servers = layout.servers(postgres);
        let cores_before = self.cores()?;
        let cpu_before = servers.cpu_seconds()?;
        let started = Instant::now();
        for k in 0..commits as u64 {
            let poll = long_poll(reader, after);
            wait_for_long_poll(reader)?;
            let user = FEED_FIRST_USER + k;
            let form = format!(
                "BindingType={}&Address={}&Endpoint=e0",
                binding_type(0),
                address(FEED_FIRST_USER * PER_USER + k)
            );
            let sent = Instant::now();
            let (status, body) = server::request(
                writer.addr,
                "POST",
                &format!("/v2/Services/{service}/Users/{}/Bindings", identity(user)),
                Some((&writer.account, &writer.token)),
                &form,
            )?;
            let answered = Instant::now();
            if status != 201 {
                bail!("a registration for the feed answered {status}: {body}");
            }
            let (next, fed) = poll
                .join()
                .map_err(|_| anyhow::anyhow!("the long-poll's thread panicked"))??;
            if next <= after {
                bail!("the long-poll after {after} answered without the commit's events");
            }
            after = next;
            from_answer.push(seconds_between(answered, fed));
            from_request.push(seconds_between(sent, fed));
            write.push(seconds_between(sent, answered));
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu_after = servers.cpu_seconds()?;
        for values in [&mut from_answer, &mut from_request, &mut write] {
            values.sort_by(f64::total_cmp);
        }
        let lag = Lag {
            nodes: nodes.len(),
            commits,
            from_answer,
            from_request,
            write,
            server_cpu: (cpu_after.0 - cpu_before.0) / wall,
            postgres_cpu: (cpu_after.1 - cpu_before.1) / wall,
            cores_busy: self.cores_busy_since(cores_before)?,
        };
        eprintln!(
            "  {}: from the write's answer p50 {:.2} ms, p99 {:.2} ms; the write p50 {:.2} ms",
            lag.layout(),
            percentile(&lag.from_answer, 50.0) * 1e3,
            percentile(&lag.from_answer, 99.0) * 1e3,
            percentile(&lag.write, 50.0) * 1e3
        );
        Ok(lag)
    }
}

/// Seconds from `from` to `to`, negative when `to` came first.
fn seconds_between(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64(),
        None => -from.duration_since(to).as_secs_f64(),
    }
}

/// The position of the account's last event, read page by page from the feed.
fn feed_head(server: &Server) -> anyhow::Result<i64> {
    let credentials = (server.account.as_str(), server.token.as_str());
    let mut after = 0;
    loop {
        let (next, _) = events_after(server.addr, credentials, after, "PageSize=1000")?;
        if next == after {
            return Ok(after);
        }
        after = next;
    }
}

/// `GET /v2/Events?After=…&{query}`: the page's `meta.next_after`, and when it answered.
fn events_after(
    addr: SocketAddr,
    credentials: (&str, &str),
    after: i64,
    query: &str,
) -> anyhow::Result<(i64, Instant)> {
    let (status, body) = server::request(
        addr,
        "GET",
        &format!("/v2/Events?After={after}&{query}"),
        Some(credentials),
        "",
    )?;
    let answered = Instant::now();
    if status != 200 {
        bail!("GET /v2/Events answered {status}: {body}");
    }
    let page: serde_json::Value = serde_json::from_str(&body)?;
    let next = page["meta"]["next_after"]
        .as_i64()
        .context("no meta.next_after in the feed's answer")?;
    Ok((next, answered))
}

/// A long-poll for the events after `after`, on a thread of its own (which, like this one,
/// runs on the load generator's CPU).
fn long_poll(server: &Server, after: i64) -> JoinHandle<anyhow::Result<(i64, Instant)>> {
    let (addr, account, token) = (server.addr, server.account.clone(), server.token.clone());
    std::thread::spawn(move || {
        let query = format!("Wait={FEED_WAIT_SECONDS}");
        events_after(addr, (&account, &token), after, &query)
    })
}

/// Waits until `server` holds a long-poll (`bindery_feed_waiters`), so that the commit that
/// follows wakes one that is parked rather than racing its first read.
fn wait_for_long_poll(server: &Server) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server
        .metrics()?
        .get("bindery_feed_waiters")
        .copied()
        .unwrap_or(0.0)
        < 1.0
    {
        if Instant::now() > deadline {
            bail!("no long-poll waited on the feed within 5 s");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    // Subscribed, it reads once more before it parks.
    std::thread::sleep(Duration::from_millis(2));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with these CPU shares (Bindery, PostgreSQL, generator) and busy CPUs.
    fn row(scenario: Scenario, nodes: usize, cpu: (f64, f64, f64), cores: (f64, f64)) -> Row {
        let mut stats = Stats::default();
        (stats.server_cpu, stats.postgres_cpu, stats.generator_cpu) = cpu;
        stats.cores_busy = Some(cores);
        Row {
            scenario,
            nodes,
            stored: String::new(),
            connections: 32,
            stats,
            healthz: 1.0,
            commits: None,
            note: String::new(),
        }
    }

    fn commits(in_flight: f64) -> Option<Commits> {
        Some(Commits {
            per_second: 100.0,
            registrations_per_commit: 10.0,
            seconds_each: in_flight / 100.0,
            in_flight,
        })
    }

    #[test]
    fn a_full_server_cpu_is_the_bound_and_says_who_used_it() {
        let fetch = row(Scenario::Fetch, 1, (0.3, 0.6, 0.2), (0.98, 0.3));
        assert_eq!(
            fetch.bound(),
            "CPU 0 (PostgreSQL 60% + Bindery 30% + other 8%)"
        );
    }

    #[test]
    fn three_writers_in_flight_queue_for_the_write_lock() {
        let mut registration = row(Scenario::Registration, 3, (0.3, 0.4, 0.1), (0.72, 0.1));
        registration.commits = commits(2.6);
        let bound = registration.bound();
        assert!(
            bound.starts_with("the write lock: 2.6 of the 3 nodes' transactions in flight"),
            "{bound}"
        );
        // On one node, the writer's one transaction at a time is no queue for the lock.
        registration.nodes = 1;
        registration.commits = commits(0.97);
        assert!(registration
            .bound()
            .starts_with("the writer: one transaction at a time"));
    }

    #[test]
    fn reads_below_a_full_cpu_wait_for_round_trips() {
        let list = row(Scenario::UserList, 1, (0.4, 0.3, 0.2), (0.75, 0.25));
        assert!(list.bound().starts_with("round trips to PostgreSQL"));
        let generator_bound = row(Scenario::UserList, 1, (0.4, 0.3, 0.95), (0.75, 0.97));
        assert!(generator_bound
            .bound()
            .starts_with("CPU 1, the load generator's"));
    }

    #[test]
    fn percentiles_of_signed_lags() {
        let lags = [-0.2, -0.1, 0.1, 0.3];
        assert_eq!(percentile(&lags, 50.0), -0.1);
        assert_eq!(percentile(&lags, 99.0), 0.3);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
