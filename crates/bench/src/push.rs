//! The push scenarios (the `direct` transport, CONTRACT §6): the release binary pushing to the
//! APNs and FCM stand-ins of `crates/standin`, real HTTP/2 servers over TLS on loopback that
//! answer 200 at once. They run in this process, one thread each, on the load generator's CPU.
//!
//! 1. The ceiling: a client in this process, on the server's CPU, pushing straight to the
//!    APNs stand-in over one HTTP/2 connection with [`CEILING_IN_FLIGHT`] streams in flight,
//!    with Bindery's own sender (`http2::Connection`, `apns::send`, `payload::apns`). It is
//!    the denominator: what one connection to this stand-in carries on this machine.
//! 2. Bindery through one credential: notifies naming [`USERS`] users with one apn binding
//!    each, [`NOTIFIES_IN_FLIGHT`] at a time; pushes/s = pushes delivered / time.
//! 3. A notify to the same users with an apn and an fcm binding each: its latency, one notify
//!    at a time, and the server's CPU per push.
//! 4. Idle clients: as many credentials as bindings (one each), every one notified once, so
//!    that each builds its client and opens its connection; the server's memory before and
//!    after.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bindery_daemon::delivery::http2::{tls_config, Connection};
use bindery_daemon::delivery::{apns as apns_sender, payload, Push};
use bindery_domain::notify::Priority;
use bindery_domain::{BindingSid, BindingType, Identity, MessageType, PushAddress, ServiceSid};
use bindery_standin::{Apns, ApnsAuth, ClientCert, ClientCertSpec, Fcm, TestCa};

use crate::dataset::{address, identity};
use crate::load::{self, Request, Workload};
use crate::server::{self, Server};
use crate::{Bench, Servers};

/// Streams the ceiling's client keeps in flight on its one connection.
pub const CEILING_IN_FLIGHT: usize = 256;
/// Users in the throughput and latency scenarios (one notify names them all).
pub const USERS: u64 = 1000;
/// Notifies in flight at once in the throughput scenario, so that one notify's tail (its
/// slowest push, its answer, the next one's reads) does not leave the connection idle.
pub const NOTIFIES_IN_FLIGHT: usize = 4;
/// Notifies at least in the latency scenario.
const MIN_REPETITIONS: usize = 5;
/// Connections that create credentials and bindings.
const SETUP_CONNECTIONS: usize = 32;
/// The bundle id: the client certificate's UID, so the APNs topic.
const BUNDLE: &str = "com.example.bench";
/// The service's friendly name, which is each push's title.
const TITLE: &str = "bench";
const BODY: &str = "hello from the bench";
/// Identities per notify (CONTRACT: at most 1,000).
const NOTIFY_LIMIT: u64 = 1000;

/// What the stand-in carries over one connection from a client that does nothing else.
#[derive(Debug, Clone)]
pub struct Ceiling {
    pub delivered: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// From the first push after the connection opened to the last answer.
    pub seconds: f64,
    pub in_flight: usize,
    /// TLS connections the stand-in accepted meanwhile.
    pub connections: u64,
    /// CPU of the client's thread and of the stand-in's, in % of one core.
    pub client_cpu: f64,
    pub standin_cpu: f64,
}

impl Ceiling {
    pub fn per_second(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }
}

/// What notifies' answers counted.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub notifies: u64,
    pub delivered: u64,
    pub failed: u64,
    pub pending: u64,
    pub first_error: Option<String>,
}

impl Counts {
    pub fn pushes(&self) -> u64 {
        self.delivered + self.failed + self.pending
    }

    /// Adds a notify's answer; its first failure's error is kept.
    fn add(&mut self, status: u16, body: &[u8]) {
        self.notifies += 1;
        let answer: serde_json::Value = match serde_json::from_slice(body) {
            Ok(answer) if status == 201 => answer,
            _ => {
                self.first_error.get_or_insert_with(|| {
                    format!(
                        "notify answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                });
                return;
            }
        };
        let n = |key: &str| answer[key].as_u64().unwrap_or(0);
        self.delivered += n("delivered");
        self.failed += n("failed");
        self.pending += n("pending");
        if self.first_error.is_none() {
            let failure = answer["results"].as_array().and_then(|results| {
                results
                    .iter()
                    .find(|r| r["status"] != "delivered")
                    .map(|r| format!("{}: {}", r["status"], r["error"]))
            });
            self.first_error = failure;
        }
    }
}

/// Notifies' latencies, sorted.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut all: Vec<Duration>) -> Latencies {
        all.sort_unstable();
        Latencies(all)
    }

    /// The `p`-th percentile (0–100), zero when there is none.
    fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
}

/// Bindery pushing through one credential.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub counts: Counts,
    pub users: u64,
    pub notifies_in_flight: usize,
    /// From the first notify sent to the last answer read.
    pub seconds: f64,
    pub notify_p50: Duration,
    pub server_cpu: f64,
    pub server_cpu_per_push: f64,
    pub standin_cpu: f64,
    /// `bindery_push_connections_opened_total{provider="apns"}` at the end.
    pub connections_opened: f64,
    /// TLS connections the stand-in accepted from this server, warm-up included.
    pub standin_connections: u64,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.counts.delivered as f64 / self.seconds.max(1e-9)
    }
}

/// One notify to users with an apn and an fcm binding each, one at a time.
#[derive(Debug, Clone)]
pub struct Fanout {
    pub counts: Counts,
    pub users: u64,
    pub p50: Duration,
    pub max: Duration,
    pub server_cpu_per_push: f64,
    /// `bindery_push_connections_opened_total` per provider at the end.
    pub connections_opened: BTreeMap<String, f64>,
}

/// Memory with one client (and connection) per credential, idle.
#[derive(Debug, Clone)]
pub struct Idle {
    pub asked: u64,
    pub credentials: u64,
    /// Why fewer than asked, if so.
    pub limited: Option<String>,
    /// RLIMIT_NOFILE (soft) of this process and of the server.
    pub fd_limits: (u64, u64),
    pub counts: Counts,
    /// From the first notify to every push's end.
    pub took: Duration,
    /// VmRSS and VmHWM before the notifies (credentials and bindings created) and after.
    pub rss_before: u64,
    pub hwm_before: u64,
    pub rss_after: u64,
    pub hwm_after: u64,
    pub connections_opened: f64,
    pub standin_connections: u64,
    /// Server CPU while its clients sat idle, in % of one core.
    pub idle_cpu: f64,
}

#[derive(Debug, Clone)]
pub struct PushResults {
    pub ceiling: Ceiling,
    pub throughput: Throughput,
    pub fanout: Fanout,
    pub idle: Option<Idle>,
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit, so that the servers it starts
/// afterwards inherit it too (the idle-clients scenario holds a connection per credential at
/// both ends); returns the soft limit now.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit and setrlimit write and read a plain struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur
    }
}

/// The soft "Max open files" of a process.
fn fd_limit_of(pid: u32) -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no Max open files in /proc/PID/limits")?;
    let soft = line
        .split_whitespace()
        .nth(3)
        .context("unreadable Max open files")?;
    Ok(soft.parse().unwrap_or(u64::MAX))
}

/// This process's threads.
fn threads() -> anyhow::Result<Vec<String>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        tids.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(tids)
}

/// The CPU seconds of one of this process's threads. (Threads are told apart by when they
/// appeared, not by name: thread names do not reach `comm` on every kernel this runs on.)
struct ThreadCpu(String);

impl ThreadCpu {
    /// The one thread that did not exist at `before`.
    fn started_since(before: &[String]) -> anyhow::Result<ThreadCpu> {
        let new: Vec<String> = threads()?
            .into_iter()
            .filter(|tid| !before.contains(tid))
            .collect();
        match &new[..] {
            [tid] => Ok(ThreadCpu(format!("self/task/{tid}"))),
            _ => bail!("{} new threads where one was expected", new.len()),
        }
    }

    fn seconds(&self) -> f64 {
        server::cpu_seconds(&self.0).unwrap_or(f64::NAN)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The push Bindery makes for user `k`'s apn binding in a notify of [`BODY`].
fn ceiling_push(addresses: &[PushAddress], n: usize) -> Push {
    let mut sid = [0u8; 16];
    sid[..8].copy_from_slice(&(n as u64).to_be_bytes());
    Push {
        binding_sid: BindingSid::from_bytes(sid),
        binding_type: BindingType::Apn,
        address: addresses[n % addresses.len()].clone(),
        credential_sid: None,
        service_sid: ServiceSid::from_bytes([7; 16]),
        identity: Identity::parse("u1").expect("a valid identity"),
        message_type: MessageType::NewMessage,
        title: Some(TITLE.to_owned()),
        body: BODY.to_owned(),
        sound: None,
        data: None,
        priority: Priority::High,
        ttl: None,
    }
}

/// The ceiling: Bindery's sender, alone, on `cpu`, over one connection to the stand-in.
fn ceiling(
    apns: &Apns,
    standin: &ThreadCpu,
    ca: &TestCa,
    cert: &ClientCert,
    duration: Duration,
    cpu: Option<usize>,
) -> anyhow::Result<Ceiling> {
    let url = apns.url();
    let tls =
        tls_config(Some(ca.ca_file()), Some(cert.rustls_identity())).map_err(anyhow::Error::msg)?;
    let addresses: Vec<PushAddress> = (0..USERS)
        .map(|k| PushAddress::parse(&address(k)).expect("a valid address"))
        .collect();
    let connections_before = apns.stats().connections;
    let client = std::thread::spawn(move || -> anyhow::Result<Ceiling> {
        if let Some(cpu) = cpu {
            server::pin_current_thread(cpu)?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let connection = Connection::new(&url, tls).map_err(anyhow::Error::msg)?;
            let push = ceiling_push(&addresses, 0);
            let first = apns_sender::send(&connection, &payload::apns(&push, BUNDLE, 0), None)
                .await
                .map_err(|e| anyhow::anyhow!("the first push to the stand-in failed: {e}"))?;
            if first.status != 200 {
                bail!("the stand-in answered the first push {}", first.status);
            }
            let (delivered, failed) = (Cell::new(0u64), Cell::new(0u64));
            let first_error = RefCell::new(None);
            let cpu_before = server::cpu_seconds("thread-self")?;
            let started = Instant::now();
            let end = started + duration;
            let streams = (0..CEILING_IN_FLIGHT).map(|stream| {
                let (connection, addresses) = (&connection, &addresses);
                let (delivered, failed, first_error) = (&delivered, &failed, &first_error);
                async move {
                    let mut n = stream;
                    while Instant::now() < end {
                        let push = ceiling_push(addresses, n);
                        let request = payload::apns(&push, BUNDLE, unix_now());
                        match apns_sender::send(connection, &request, None).await {
                            Ok(answer) if answer.status == 200 => {
                                delivered.set(delivered.get() + 1)
                            }
                            other => {
                                failed.set(failed.get() + 1);
                                first_error
                                    .borrow_mut()
                                    .get_or_insert_with(|| format!("{other:?}"));
                            }
                        }
                        n += CEILING_IN_FLIGHT;
                    }
                }
            });
            futures_util::future::join_all(streams).await;
            let seconds = started.elapsed().as_secs_f64();
            let client_cpu = (server::cpu_seconds("thread-self")? - cpu_before) / seconds;
            Ok(Ceiling {
                delivered: delivered.get(),
                failed: failed.get(),
                first_error: first_error.into_inner(),
                seconds,
                in_flight: CEILING_IN_FLIGHT,
                connections: 0,
                client_cpu,
                standin_cpu: 0.0,
            })
        })
    });
    let standin_before = standin.seconds();
    let mut result = client
        .join()
        .map_err(|_| anyhow::anyhow!("the ceiling's client panicked"))??;
    // The stand-in's CPU over the client's whole run (the first push included: a little more
    // than the measured window, so a little less than its true share).
    result.standin_cpu = (standin.seconds() - standin_before) / result.seconds;
    result.connections = apns.stats().connections - connections_before;
    Ok(result)
}

/// Form encoding of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// The `"sid":"XX…"` of an answer with the given prefix.
fn sid_with(prefix: &str, body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let needle = format!(r#""sid":"{prefix}"#);
    let at = text.find(&needle)? + 7;
    Some(text.get(at..at + 34)?.to_owned())
}

/// The notify request naming users `first..first + count`.
fn notify_form(first: u64, count: u64) -> String {
    let mut pairs: Vec<(String, String)> = (first..first + count)
        .map(|k| ("Identity".to_owned(), identity(k)))
        .collect();
    pairs.push(("Body".into(), BODY.into()));
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    form(&pairs)
}

/// The sum of the samples of `name` that carry every one of `labels` (`key="value"`).
fn sample(metrics: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(key, _)| {
            key.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.is_empty())
                && labels.iter().all(|label| key.contains(label))
        })
        .map(|(_, value)| value)
        .sum()
}

fn metric(server: &Server, name: &str, labels: &[&str]) -> anyhow::Result<f64> {
    Ok(sample(&server.metrics()?, name, labels))
}

const OPENED: &str = "bindery_push_connections_opened_total";
const PUSHED: &str = "bindery_push_requests_total";

impl Bench<'_> {
    /// The server on the direct transport, pushing to these stand-ins.
    fn push_server(
        &self,
        name: &str,
        apns: &Apns,
        fcm: &Fcm,
        ca: &TestCa,
    ) -> anyhow::Result<Server> {
        let dir = self.args.work_dir.join(name);
        let (apns_url, fcm_url) = (apns.url(), fcm.url());
        let ca_file = ca.ca_file().display().to_string();
        self.bindery.serve(
            name,
            &dir,
            &[
                ("BINDERY_STORAGE__GROUP_COMMIT", "true"),
                ("BINDERY_DELIVERY__TRANSPORT", "direct"),
                ("BINDERY_DELIVERY__APNS__ENDPOINT", &apns_url),
                ("BINDERY_DELIVERY__APNS__SANDBOX_ENDPOINT", &apns_url),
                ("BINDERY_DELIVERY__FCM__ENDPOINT", &fcm_url),
                ("BINDERY_DELIVERY__TLS__CA_FILE", &ca_file),
            ],
            None,
        )
    }

    fn post(&self, server: &Server, path: &str, body: &str, expect: u16) -> anyhow::Result<String> {
        let (status, answer) = server::request(
            server.addr,
            "POST",
            path,
            Some((&server.account, &server.token)),
            body,
        )?;
        if status != expect {
            bail!("POST {path} answered {status}: {answer}");
        }
        Ok(answer)
    }

    /// A service that sends new-message pushes; its SID.
    fn chat_service(&self, server: &Server) -> anyhow::Result<String> {
        let service = self.service(server)?;
        self.post(
            server,
            &format!("/v2/Services/{service}"),
            "Notifications.NewMessage.Enabled=true",
            200,
        )?;
        Ok(service)
    }

    /// Creates `count` credentials from the same form, concurrently; their SIDs in order.
    fn credentials(
        &self,
        server: &Server,
        body: &str,
        count: usize,
    ) -> anyhow::Result<Vec<String>> {
        let http = load::Http::new(server.addr, Some((&server.account, &server.token)));
        let sids = RefCell::new(vec![String::new(); count]);
        let refused = RefCell::new(None);
        load::send_all(
            server.addr,
            SETUP_CONNECTIONS,
            count,
            |_| http.post_form("/v2/Credentials", body),
            |i, status, answer| match sid_with("CR", answer) {
                Some(sid) if status == 201 => sids.borrow_mut()[i] = sid,
                _ => {
                    refused.borrow_mut().get_or_insert_with(|| {
                        format!("{status}: {}", String::from_utf8_lossy(answer))
                    });
                }
            },
        )?;
        if let Some(refused) = refused.into_inner() {
            bail!("creating a credential answered {refused}");
        }
        Ok(sids.into_inner())
    }

    /// Registers one binding for each user `first..first + count`: `(type, address number,
    /// credential)` for user `k` from `binding(k)`.
    fn bindings<'b>(
        &self,
        server: &Server,
        service: &str,
        first: u64,
        count: u64,
        binding: impl Fn(u64) -> (&'static str, u64, &'b str),
    ) -> anyhow::Result<()> {
        let http = load::Http::new(server.addr, Some((&server.account, &server.token)));
        let refused = RefCell::new(None);
        load::send_all(
            server.addr,
            SETUP_CONNECTIONS,
            count as usize,
            |i| {
                let k = first + i as u64;
                let (binding_type, number, credential) = binding(k);
                http.post_form(
                    &format!("/v2/Services/{service}/Users/{}/Bindings", identity(k)),
                    &form(&[
                        ("BindingType", binding_type),
                        ("Address", &address(number)),
                        ("Endpoint", binding_type),
                        ("CredentialSid", credential),
                    ]),
                )
            },
            |_, status, answer| {
                if status != 201 {
                    refused.borrow_mut().get_or_insert_with(|| {
                        format!("{status}: {}", String::from_utf8_lossy(answer))
                    });
                }
            },
        )?;
        if let Some(refused) = refused.into_inner() {
            bail!("registering a binding answered {refused}");
        }
        Ok(())
    }

    /// One notify, on its own connection; what it answered.
    fn notify_once(&self, server: &Server, service: &str, form: &str) -> anyhow::Result<Counts> {
        let (status, answer) = server::request(
            server.addr,
            "POST",
            &format!("/v2/Services/{service}/Notifications"),
            Some((&server.account, &server.token)),
            form,
        )?;
        let mut counts = Counts::default();
        counts.add(status, answer.as_bytes());
        Ok(counts)
    }

    /// Notifies `form` on `connections` connections, `repeat` times or, without, for the
    /// measured duration. Returns the counts and latencies of every answer (those that came
    /// after the duration, the drain, too: a notify may outlast a short duration), the wall
    /// time (from the first request to the last answer) and the server's CPU seconds
    /// meanwhile.
    fn notify_load(
        &self,
        server: &Server,
        service: &str,
        form: &str,
        connections: usize,
        repeat: Option<usize>,
        name: &str,
    ) -> anyhow::Result<(Counts, Latencies, f64, f64)> {
        let http = load::Http::new(server.addr, Some((&server.account, &server.token)));
        let request = http.post_form(&format!("/v2/Services/{service}/Notifications"), form);
        let counts = RefCell::new(Counts::default());
        // Each request's tag is its number; `next` is called as it is sent.
        let sent = RefCell::new(Vec::new());
        let latencies = RefCell::new(Vec::new());
        let workload = Workload::new(201, |_| {
            let mut sent = sent.borrow_mut();
            sent.push(Instant::now());
            Request {
                bytes: request.clone(),
                tag: sent.len() as u64 - 1,
            }
        })
        .on_answer(|tag, status, body| {
            latencies
                .borrow_mut()
                .push(sent.borrow()[tag as usize].elapsed());
            counts.borrow_mut().add(status, body);
        });
        let perf = self.perf(&Servers::one(server), name)?;
        let pid = server.pid().to_string();
        let cpu_before = server::cpu_seconds(&pid)?;
        let started = Instant::now();
        match repeat {
            Some(count) => load::send_all(
                server.addr,
                connections,
                count,
                |_| (workload.next)(&mut load::Rng::new(0)).bytes,
                |i, status, body| (workload.answered)(i as u64, status, body),
            )?,
            None => {
                load::run(
                    &[server.addr],
                    connections,
                    Duration::ZERO,
                    Duration::from_secs_f64(self.args.duration),
                    &workload,
                )?;
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = server::cpu_seconds(&pid)? - cpu_before;
        self.perf_done(perf, name)?;
        drop(workload);
        Ok((
            counts.into_inner(),
            Latencies::new(latencies.into_inner()),
            wall,
            cpu,
        ))
    }

    /// Every push scenario (see the module's comment).
    pub fn push(&self) -> anyhow::Result<PushResults> {
        let ca_dir = self.args.work_dir.join("push-ca");
        let ca = TestCa::new(&ca_dir)?;
        let before = threads()?;
        let apns = Apns::start(&ca, ApnsAuth::Certificate)?;
        let standin = ThreadCpu::started_since(&before)?;
        let fcm = Fcm::start(&ca)?;
        let cert = ca.client_cert(&ClientCertSpec::new(BUNDLE))?;
        let duration = Duration::from_secs_f64(self.args.duration);

        eprintln!(
            "push: the stand-in's ceiling, one connection, {CEILING_IN_FLIGHT} streams in flight"
        );
        let ceiling = ceiling(&apns, &standin, &ca, &cert, duration, self.bindery.cpu)?;
        eprintln!(
            "  {:>9.0} pushes/s  ({} delivered, {} failed{}); CPU: client {:.0}%, stand-in {:.0}%",
            ceiling.per_second(),
            ceiling.delivered,
            ceiling.failed,
            ceiling
                .first_error
                .as_deref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            ceiling.client_cpu * 100.0,
            ceiling.standin_cpu * 100.0
        );

        let server = self.push_server("push", &apns, &fcm, &ca)?;
        let service = self.chat_service(&server)?;
        let apn_credential = self.credentials(
            &server,
            &form(&[
                ("Type", "apn"),
                ("FriendlyName", "bench apns"),
                ("Certificate", &cert.cert_pem),
                ("PrivateKey", &cert.key_pkcs8_pem),
            ]),
            1,
        )?;
        let fcm_credential = self.credentials(
            &server,
            &form(&[
                ("Type", "fcm"),
                ("FriendlyName", "bench fcm"),
                ("Secret", &fcm.service_account().json_string()),
            ]),
            1,
        )?;
        self.bindings(&server, &service, 0, USERS, |k| {
            ("apn", k, apn_credential[0].as_str())
        })?;
        let everyone = notify_form(0, USERS);
        let apns_before = apns.stats().connections;
        let warm = self.notify_once(&server, &service, &everyone)?;
        if warm.delivered != USERS {
            bail!(
                "the first notify to {USERS} users delivered {} of their pushes (first error: {})",
                warm.delivered,
                warm.first_error.as_deref().unwrap_or("none")
            );
        }

        eprintln!(
            "push: Bindery through one credential, {USERS} users × 1 apn binding, \
             {NOTIFIES_IN_FLIGHT} notifies at a time"
        );
        let standin_before = standin.seconds();
        let (counts, latencies, seconds, cpu) = self.notify_load(
            &server,
            &service,
            &everyone,
            NOTIFIES_IN_FLIGHT,
            None,
            "push-throughput",
        )?;
        let throughput = Throughput {
            users: USERS,
            notifies_in_flight: NOTIFIES_IN_FLIGHT,
            seconds,
            notify_p50: latencies.percentile(50.0),
            server_cpu: cpu / seconds,
            server_cpu_per_push: cpu / counts.pushes().max(1) as f64,
            standin_cpu: (standin.seconds() - standin_before) / seconds,
            connections_opened: metric(&server, OPENED, &[r#"provider="apns""#])?,
            standin_connections: apns.stats().connections - apns_before,
            counts,
        };
        eprintln!(
            "  {:>9.0} pushes/s  ({} delivered, {} failed, {} pending in {} notifies{}); notify \
             p50 {:.1} ms; CPU: server {:.0}% ({:.1} µs per push), stand-in {:.0}%; connections \
             opened {} (stand-in: {})",
            throughput.per_second(),
            throughput.counts.delivered,
            throughput.counts.failed,
            throughput.counts.pending,
            throughput.counts.notifies,
            throughput
                .counts
                .first_error
                .as_deref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            throughput.notify_p50.as_secs_f64() * 1e3,
            throughput.server_cpu * 100.0,
            throughput.server_cpu_per_push * 1e6,
            throughput.standin_cpu * 100.0,
            throughput.connections_opened,
            throughput.standin_connections
        );

        eprintln!("push: a notify to {USERS} users × 2 devices (apn + fcm), one at a time");
        self.bindings(&server, &service, 0, USERS, |k| {
            ("fcm", 1_000_000 + k, fcm_credential[0].as_str())
        })?;
        let warm_started = Instant::now();
        let warm = self.notify_once(&server, &service, &everyone)?;
        // As many as fit in the measured duration, judging by the first, and at least five.
        let repeat = (self.args.duration / warm_started.elapsed().as_secs_f64().max(1e-3))
            .clamp(MIN_REPETITIONS as f64, 1000.0) as usize;
        if warm.delivered != 2 * USERS {
            bail!(
                "the first notify to {USERS} users × 2 devices delivered {} pushes (first \
                 error: {})",
                warm.delivered,
                warm.first_error.as_deref().unwrap_or("none")
            );
        }
        let (counts, latencies, _, cpu) =
            self.notify_load(&server, &service, &everyone, 1, Some(repeat), "push-fanout")?;
        let metrics = server.metrics()?;
        let fanout = Fanout {
            users: USERS,
            p50: latencies.percentile(50.0),
            max: latencies.percentile(100.0),
            server_cpu_per_push: cpu / counts.pushes().max(1) as f64,
            connections_opened: ["apns", "fcm"]
                .iter()
                .map(|p| {
                    let label = format!("provider=\"{p}\"");
                    (p.to_string(), sample(&metrics, OPENED, &[&label]))
                })
                .collect(),
            counts,
        };
        eprintln!(
            "  {} notifies: p50 {:.1} ms, max {:.1} ms; {} delivered, {} failed, {} pending{}; \
             server CPU {:.1} µs per push",
            fanout.counts.notifies,
            fanout.p50.as_secs_f64() * 1e3,
            fanout.max.as_secs_f64() * 1e3,
            fanout.counts.delivered,
            fanout.counts.failed,
            fanout.counts.pending,
            fanout
                .counts
                .first_error
                .as_deref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            fanout.server_cpu_per_push * 1e6
        );
        server.stop()?;

        let idle = match self.args.idle_credentials {
            0 => None,
            asked => Some(self.idle(&apns, &fcm, &ca, &cert, asked)?),
        };
        Ok(PushResults {
            ceiling,
            throughput,
            fanout,
            idle,
        })
    }

    /// `asked` credentials (fewer if file descriptors do not allow), one binding each, every
    /// one notified once; the server's memory before and after.
    fn idle(
        &self,
        apns: &Apns,
        fcm: &Fcm,
        ca: &TestCa,
        cert: &ClientCert,
        asked: u64,
    ) -> anyhow::Result<Idle> {
        let server = self.push_server("push-idle", apns, fcm, ca)?;
        let own = fd_limit_of(std::process::id())?;
        let theirs = fd_limit_of(server.pid())?;
        // Each connection is a descriptor here (the stand-in's end) and one in the server;
        // both need some for everything else.
        let room = own.min(theirs).saturating_sub(1000);
        let (credentials, limited) = if asked > room {
            (
                room,
                Some(format!(
                    "file descriptors: RLIMIT_NOFILE is {own} here and {theirs} in the server"
                )),
            )
        } else {
            (asked, None)
        };
        eprintln!("push: {credentials} credentials, one binding each, notified once");
        let service = self.chat_service(&server)?;
        let sids = self.credentials(
            &server,
            &form(&[
                ("Type", "apn"),
                ("Certificate", &cert.cert_pem),
                ("PrivateKey", &cert.key_pkcs8_pem),
            ]),
            credentials as usize,
        )?;
        self.bindings(&server, &service, 0, credentials, |k| {
            ("apn", k, sids[k as usize].as_str())
        })?;
        let (rss_before, hwm_before) = (server.memory("VmRSS")?, server.memory("VmHWM")?);
        let delivered_labels = [r#"provider="apns""#, r#"outcome="delivered""#];
        let delivered_before = metric(&server, PUSHED, &delivered_labels)?;
        let apns_before = apns.stats().connections;
        let started = Instant::now();
        let mut counts = Counts::default();
        let mut first = 0;
        while first < credentials {
            let count = NOTIFY_LIMIT.min(credentials - first);
            let answer = self.notify_once(&server, &service, &notify_form(first, count))?;
            counts.notifies += answer.notifies;
            counts.delivered += answer.delivered;
            counts.failed += answer.failed;
            counts.pending += answer.pending;
            if counts.first_error.is_none() {
                counts.first_error = answer.first_error;
            }
            first += count;
        }
        // Pushes still pending at the deadline go on: wait for them.
        let deadline = Instant::now() + Duration::from_secs(120);
        while counts.pending > 0
            && metric(&server, PUSHED, &delivered_labels)? - delivered_before
                < (counts.delivered + counts.pending) as f64
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        let took = started.elapsed();
        // Idle: nothing is sent; what the clients hold stays.
        std::thread::sleep(Duration::from_secs(1));
        // As long as a scenario's warm-up and measurement, which `--perf` records.
        let perf = self.perf(&Servers::one(&server), "push-idle")?;
        let pid = server.pid().to_string();
        let cpu_before = server::cpu_seconds(&pid)?;
        let idle_started = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(
            self.args.warmup + self.args.duration,
        ));
        let idle_cpu =
            (server::cpu_seconds(&pid)? - cpu_before) / idle_started.elapsed().as_secs_f64();
        self.perf_done(perf, "push-idle")?;
        let idle = Idle {
            asked,
            credentials,
            limited,
            fd_limits: (own, theirs),
            counts,
            took,
            rss_before,
            hwm_before,
            rss_after: server.memory("VmRSS")?,
            hwm_after: server.memory("VmHWM")?,
            connections_opened: metric(&server, OPENED, &[r#"provider="apns""#])?,
            standin_connections: apns.stats().connections - apns_before,
            idle_cpu,
        };
        eprintln!(
            "  {} delivered, {} failed, {} pending{} in {:.1} s; VmRSS {:.1} → {:.1} MB \
             ({:.1} kB per credential), VmHWM {:.1} MB; connections opened {} (stand-in {}); \
             idle CPU {:.1}%",
            idle.counts.delivered,
            idle.counts.failed,
            idle.counts.pending,
            idle.counts
                .first_error
                .as_deref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            idle.took.as_secs_f64(),
            idle.rss_before as f64 / 1e6,
            idle.rss_after as f64 / 1e6,
            idle.rss_after.saturating_sub(idle.rss_before) as f64 / 1e3 / credentials as f64,
            idle.hwm_after as f64 / 1e6,
            idle.connections_opened,
            idle.standin_connections,
            idle.idle_cpu * 100.0
        );
        server.stop()?;
        Ok(idle)
    }
}
