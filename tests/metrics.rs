//! The operators' side: `/metrics` as a real Prometheus scrapes it, as `promtool` lints it,
//! on its own address with `metrics.listen`, and the files in `config/` that build on it (the
//! Grafana dashboard, the scrape config; the systemd unit is `tests/systemd.rs`'s).
//!
//! These tests need the `prometheus` and `promtool` binaries (Debian package `prometheus`,
//! installed by `.ci/run`); they fail, not skip, without them.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::promql::metric_names;
use crate::support::{
    poll_until, sid, user_bindings_path, Credentials, ServerLog, TestApp, PATIENCE,
};

const USER_BINDINGS: &str = "/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings";

/// A server with `/metrics`, `/healthz` and `/readyz` on an address of their own.
fn spawn_with_metrics_listener() -> (TestApp, ServerLog, String) {
    let (app, log) = TestApp::spawn_logged(
        TempDir::new().expect("temp dir"),
        &[("BINDERY_METRICS__LISTEN", "127.0.0.1:0")],
        None,
    );
    let address = log
        .value_after("metrics and health on http://")
        .unwrap_or_else(|| {
            panic!(
                "no `metrics and health on` line before `listening on`:\n{}",
                log.lines().join("\n")
            )
        });
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let listening = log
        .value_after("listening on http://")
        .expect("listening line");
    assert_ne!(address, listening, "the metrics address is its own");
    (app, log, format!("http://{address}"))
}

/// A plain GET: (status, content type, body text).
pub(crate) fn fetch(url: &str) -> (u16, String, String) {
    let response = match ureq::get(url).timeout(Duration::from_secs(10)).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("GET {url} failed: {e}"),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_owned();
    (
        status,
        content_type,
        response.into_string().expect("a text body"),
    )
}

/// One line of a scrape: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// A `/metrics` scrape as samples, comments left out.
pub(crate) fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
                None => (series, ""),
            };
            (name.to_owned(), parse_labels(labels), value)
        })
        .collect()
}

/// `a="x",b="y"` (with the text format's escapes) as pairs.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("name=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => match chars.next().expect("an escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        pairs.push((name.to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    pairs
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value_of(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
}

fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install the Debian package `prometheus`")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

pub(crate) fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Registers a device; it must answer 201.
#[track_caller]
fn register(app: &TestApp, service: &str, user: &str, kind: &str, endpoint: &str) -> String {
    let address = format!("token-{user}-{kind}-{endpoint}");
    let reply = app.register_binding(
        service,
        user,
        &[
            ("BindingType", kind),
            ("Address", &address),
            ("Endpoint", endpoint),
        ],
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    sid(&reply.body)
}

// ---- A real Prometheus ----

/// `prometheus` on 127.0.0.1 scraping one target every second; killed, and its storage
/// removed, when dropped.
struct Prometheus {
    child: Child,
    url: String,
    dir: TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let mut dir = TempDir::new().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: bindery\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write the scrape config");
        // A port that was free a moment ago; another process may take it before Prometheus
        // binds it, so a start that fails at once is retried on a new one.
        for attempt in 1..=3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = std::fs::File::create(dir.path().join(format!("prometheus-{attempt}.log")))
                .expect("log file");
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run prometheus ({e}): install the Debian package `prometheus`")
                });
            let mut prometheus = Prometheus {
                child,
                url: format!("http://127.0.0.1:{port}"),
                dir,
            };
            if prometheus.wait_ready(attempt) {
                return prometheus;
            }
            let _ = prometheus.child.kill();
            let _ = prometheus.child.wait();
            dir = std::mem::replace(&mut prometheus.dir, TempDir::new().expect("temp dir"));
        }
        panic!("prometheus did not start in three attempts");
    }

    /// Whether `/-/ready` answers 200; false if the process exits first.
    fn wait_ready(&mut self, attempt: u32) -> bool {
        let mut exited = None;
        let settled = poll_until(PATIENCE, || {
            exited = self.child.try_wait().expect("try_wait");
            exited.is_some()
                || matches!(
                    ureq::get(&format!("{}/-/ready", self.url))
                        .timeout(Duration::from_secs(1))
                        .call(),
                    Ok(r) if r.status() == 200
                )
        });
        if let Some(status) = exited {
            eprintln!("prometheus exited ({status}):\n{}", self.log(attempt));
            return false;
        }
        assert!(
            settled,
            "prometheus not ready within {PATIENCE:?}:\n{}",
            self.log(attempt)
        );
        true
    }

    fn log(&self, attempt: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("prometheus-{attempt}.log")))
            .unwrap_or_default()
    }

    /// An instant query: each series's labels and value.
    fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let response = ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", expr)
            .timeout(Duration::from_secs(5))
            .call()
            .unwrap_or_else(|e| panic!("query {expr}: {e}"));
        let body: Value = response.into_json().expect("JSON");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{expr}: {body}"))
            .iter()
            .map(|series| {
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{expr}: {series}"));
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// The single value `expr` answers, if it answers exactly one series.
    fn scalar(&self, expr: &str) -> Option<f64> {
        match self.query(expr).as_slice() {
            [(_, value)] => Some(*value),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_metrics_listener_and_sees_the_traffic() {
    let (app, _log, metrics_url) = spawn_with_metrics_listener();
    let target = metrics_url.trim_start_matches("http://");
    let prometheus = Prometheus::start(target);

    let service = sid(&app.create_service("chat"));
    let mut apn = Vec::new();
    for (user, endpoint) in [("alice", "phone"), ("alice", "tablet"), ("bob", "phone")] {
        apn.push(register(&app, &service, user, "apn", endpoint));
    }
    for (user, endpoint) in [("alice", "phone"), ("carol", "laptop")] {
        register(&app, &service, user, "fcm", endpoint);
    }
    let registrations = 5.0;
    app.delete(&format!(
        "{}/{}",
        user_bindings_path(&service, "alice"),
        apn[0]
    ))
    .expect(204);
    let fetches = 7;
    for _ in 0..fetches {
        app.get_raw(&format!("/v2/Services/{service}")).expect(200);
    }

    let expectations: Vec<(String, f64)> = vec![
        (format!("up{{job=\"bindery\",instance=\"{target}\"}}"), 1.0),
        ("bindery_bindings{binding_type=\"apn\"}".into(), 2.0),
        ("bindery_bindings{binding_type=\"fcm\"}".into(), 2.0),
        ("bindery_bindings{binding_type=\"gcm\"}".into(), 0.0),
        (
            format!("sum(bindery_http_requests_total{{route=\"{USER_BINDINGS}\",method=\"POST\"}})"),
            registrations,
        ),
        (
            format!(
                "sum(bindery_http_requests_total{{route=\"{USER_BINDINGS}/{{Sid}}\",method=\"DELETE\",status=\"204\"}})"
            ),
            1.0,
        ),
        (
            "sum(bindery_http_requests_total{route=\"/v2/Services/{Sid}\",method=\"GET\",status=\"200\"})"
                .into(),
            f64::from(fetches),
        ),
        // Every event of a fresh data dir went through the writer, which counted it.
        (
            "bindery_log_position - scalar(sum(bindery_events_appended_total))".into(),
            0.0,
        ),
        (
            "bindery_log_position - bindery_projection_position".into(),
            0.0,
        ),
    ];
    let mut seen: Vec<(&str, Option<f64>, f64)> = Vec::new();
    let scraped = poll_until(PATIENCE, || {
        seen = expectations
            .iter()
            .map(|(expr, want)| (expr.as_str(), prometheus.scalar(expr), *want))
            .collect();
        seen.iter().all(|(_, got, want)| *got == Some(*want))
    });
    if !scraped {
        let (_, _, scrape) = fetch(&format!("{metrics_url}/metrics"));
        panic!(
            "Prometheus did not see the expected values within {PATIENCE:?} \
             (expression, seen, expected): {seen:#?}\nBindery's /metrics now:\n{scrape}"
        );
    }
    // Nothing else was registered: the POST counter was 201 every time.
    assert_eq!(
        prometheus.scalar(&format!(
            "sum(bindery_http_requests_total{{route=\"{USER_BINDINGS}\",method=\"POST\",status=\"201\"}})"
        )),
        Some(registrations)
    );
    assert!(
        prometheus
            .scalar("sum(bindery_events_appended_total)")
            .is_some_and(|n| n >= 7.0),
        "an account, a service, users, five bindings and a removal were appended"
    );
}

#[test]
fn the_scrape_passes_promtool_and_names_no_path_or_sid() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let binding = register(&app, &service, "alice", "apn", "alice-phone");
    let user = sid(&app
        .get_raw(&crate::support::user_path(&service, "alice"))
        .expect(200));
    app.get_raw(&format!(
        "{}/{binding}",
        user_bindings_path(&service, "alice")
    ))
    .expect(200);
    // A miss on a served template, and a path that matches none.
    assert_eq!(
        app.get_raw(&crate::support::user_path(&service, "alice-nobody"))
            .status,
        404
    );
    assert_eq!(app.get_raw("/v2/alice/nowhere").status, 404);

    let (status, content_type, text) = fetch(&app.url("/metrics"));
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let checked = run_with_stdin("promtool", &["check", "metrics"], text.as_bytes());
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics ({}):\n{}{}",
        checked.status,
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let all = samples(&text);
    let leaks: Vec<String> = all
        .iter()
        .flat_map(|(name, labels, _)| labels.iter().map(move |(k, v)| (name, k, v)))
        .filter(|(_, _, v)| {
            v.contains("alice")
                || [&service, &user, &binding, &app.account.user]
                    .iter()
                    .any(|sid| v.contains(sid.as_str()))
                || looks_like_sid(v)
        })
        .map(|(name, k, v)| format!("{name}{{{k}={v:?}}}"))
        .collect();
    assert!(leaks.is_empty(), "labels naming a user or a SID: {leaks:?}");
    let routes: BTreeSet<&str> = all
        .iter()
        .filter(|(name, _, _)| name == "bindery_http_requests_total")
        .flat_map(|(_, labels, _)| labels.iter())
        .filter(|(k, _)| k == "route")
        .map(|(_, v)| v.as_str())
        .collect();
    for route in [
        "/v2/Services",
        USER_BINDINGS,
        "/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings/{Sid}",
        "/v2/Services/{ServiceSid}/Users/{Sid}",
    ] {
        assert!(routes.contains(route), "{route} not in {routes:?}");
    }
    for route in &routes {
        assert!(
            route.starts_with('/') || *route == "unmatched",
            "a route label is a template or `unmatched`: {route}"
        );
    }

    // Each refused request counts once: none, a wrong token, an unknown account, a wrong
    // scheme.
    let failures = || {
        value_of(
            &fetch(&app.url("/metrics")).2,
            "bindery_auth_failures_total",
            &[],
        )
        .expect("bindery_auth_failures_total is always there")
    };
    let before = failures();
    let wrong_token = Credentials {
        user: app.account.user.clone(),
        password: "not-the-token".into(),
    };
    let unknown = Credentials {
        user: format!("AC{}", "0".repeat(32)),
        password: "whatever".into(),
    };
    assert_eq!(app.get("/v2/Services", None).0, 401);
    assert_eq!(app.get("/v2/Services", Some(&wrong_token)).0, 401);
    assert_eq!(app.get("/v2/Services", Some(&unknown)).0, 401);
    let bearer = ureq::get(&app.url("/v2/Services"))
        .set("Authorization", "Bearer abc")
        .call();
    assert!(matches!(bearer, Err(ureq::Error::Status(401, _))));
    assert_eq!(failures() - before, 4.0, "four refused requests");
    // A good request is no failure.
    assert_eq!(app.get("/v2/Services", Some(&app.account)).0, 200);
    assert_eq!(failures() - before, 4.0);
}

/// Two capitals and 32 hex digits: a Twilio SID.
fn looks_like_sid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(34).any(|w| {
        w[..2].iter().all(u8::is_ascii_uppercase) && w[2..].iter().all(|b| b.is_ascii_hexdigit())
    })
}

#[test]
fn with_metrics_listen_the_operator_routes_move_to_their_own_port() {
    let (app, _log, metrics_url) = spawn_with_metrics_listener();
    // The API stays on its own port, and its traffic shows on the metrics port.
    assert_eq!(app.get("/v2/Services", Some(&app.account)).0, 200);

    let (status, content_type, text) = fetch(&format!("{metrics_url}/metrics"));
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_eq!(
        value_of(
            &text,
            "bindery_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/v2/Services"),
                ("status", "200")
            ]
        ),
        Some(1.0),
        "{text}"
    );

    let (status, _, text) = fetch(&format!("{metrics_url}/readyz"));
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON"),
        serde_json::json!({"status": "ready"})
    );
    let (status, _, text) = fetch(&format!("{metrics_url}/healthz"));
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON"),
        serde_json::json!({"status": "ok"})
    );

    // What is not served on a port is not found there: the operators' routes on the API
    // port, the API on the metrics port.
    let mut wrong = Vec::new();
    for url in ["/metrics", "/healthz", "/readyz"]
        .map(|path| app.url(path))
        .into_iter()
        .chain(["/v2/Services", "/openapi.json"].map(|path| format!("{metrics_url}{path}")))
    {
        let (status, _, text) = fetch(&url);
        if status != 404 {
            wrong.push(format!("GET {url} answered {status} {text}"));
        }
    }
    assert!(wrong.is_empty(), "expected 404:\n{}", wrong.join("\n"));
}

// ---- config/: the dashboard and the scrape config ----

/// The families only the direct transport fills.
pub(crate) fn is_push_metric(name: &str) -> bool {
    name.starts_with("bindery_push_") || name.starts_with("bindery_credential_")
}

/// The PromQL expressions of every panel, rows' nested panels included.
pub(crate) fn panel_expressions(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

#[test]
fn the_grafana_dashboard_reads_only_metrics_bindery_serves() {
    let path = repository().join("config/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).expect("the dashboard"))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {}",
        dashboard["schemaVersion"]
    );
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "panel ids are unique"
        );
        assert!(panel["gridPos"]["w"].is_u64(), "{}", panel["title"]);
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{} reads the chosen datasource",
                panel["title"]
            );
            assert!(
                panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "{} has a query",
                panel["title"]
            );
        }
    }

    // A server with some traffic, so that every labelled family has a series.
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    register(&app, &service, "alice", "apn", "phone");
    assert_eq!(app.get("/v2/Services", None).0, 401);
    let (_, _, text) = fetch(&app.url("/metrics"));
    let served: BTreeSet<String> = samples(&text).into_iter().map(|(n, _, _)| n).collect();

    let expressions = panel_expressions(&dashboard);
    let mut used = BTreeSet::new();
    for (title, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: no metric in {expr}");
        for name in names {
            // Only a server on the direct transport serves these: direct.rs checks them.
            if is_push_metric(&name) {
                continue;
            }
            assert!(
                served.contains(&name),
                "panel {title:?} reads {name}, which Bindery does not serve: {expr}"
            );
            used.insert(name);
        }
    }
    for family in [
        "bindery_http_requests_total",
        "bindery_http_request_duration_seconds_bucket",
        "bindery_events_appended_total",
        "bindery_store_commit_duration_seconds_bucket",
        "bindery_store_commit_batch_size_bucket",
        "bindery_bindings",
        "bindery_log_position",
        "bindery_projection_position",
        "bindery_auth_failures_total",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(family), "no panel shows {family}: {used:?}");
    }
}

#[test]
fn promtool_accepts_the_shipped_scrape_config() {
    let path = repository().join("config/prometheus.yml");
    let checked = Command::new("promtool")
        .args(["check", "config"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install the Debian package `prometheus`")
        });
    assert!(
        checked.status.success(),
        "promtool check config {} ({}):\n{}{}",
        path.display(),
        checked.status,
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
