//! Prometheus metrics: one registry per daemon, rendered in the text format (0.0.4) at
//! `/metrics`. Labels never name a user, a service or a raw path: only bounded sets (route
//! templates, event types, binding types).

use std::sync::Arc;

use bindery_domain::BindingType;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::store::BindingCounts;

#[derive(Clone)]
pub struct Metrics(Arc<Families>);

pub struct Families {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub events_appended: IntCounterVec,
    pub commit_duration: Histogram,
    pub commit_batch_size: Histogram,
    pub projection_position: IntGauge,
    pub log_position: IntGauge,
    pub bindings: IntGaugeVec,
    pub auth_failures: IntCounter,
    pub deliveries: IntCounterVec,
    pub deliveries_in_flight: IntGauge,
    pub feed_waiters: IntGauge,
    pub feed_wakeups: IntCounter,
    pub push_requests: IntCounterVec,
    pub push_duration: HistogramVec,
    pub push_inflight: IntGaugeVec,
    pub push_connections_opened: IntCounterVec,
    pub credential_expiry: IntGaugeVec,
    pub credential_healthy: IntGaugeVec,
    pub database_round_trip: Gauge,
    pub database_connections: IntGaugeVec,
    pub sweeper: IntGauge,
}

impl std::ops::Deref for Metrics {
    type Target = Families;
    fn deref(&self) -> &Families {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        fn register<C: prometheus::core::Collector + Clone + 'static>(
            registry: &Registry,
            c: C,
        ) -> C {
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        }
        let latency = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let families = Families {
            http_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "bindery_http_requests_total",
                        "HTTP requests answered, by method, route template and status.",
                    ),
                    &["method", "route", "status"],
                )
                .expect("valid metric"),
            ),
            http_request_duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "bindery_http_request_duration_seconds",
                        "Time from request to response, by method and route template.",
                    )
                    .buckets(latency.clone()),
                    &["method", "route"],
                )
                .expect("valid metric"),
            ),
            events_appended: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "bindery_events_appended_total",
                        "Events appended to the log, by event type.",
                    ),
                    &["type"],
                )
                .expect("valid metric"),
            ),
            commit_duration: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "bindery_store_commit_duration_seconds",
                        "Time to decide, append and commit one batch of commands.",
                    )
                    .buckets(latency),
                )
                .expect("valid metric"),
            ),
            commit_batch_size: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "bindery_store_commit_batch_size",
                        "Commands committed together in one transaction (group commit).",
                    )
                    .buckets(vec![
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            projection_position: register(
                &registry,
                IntGauge::new(
                    "bindery_projection_position",
                    "Log position the projections reflect.",
                )
                .expect("valid metric"),
            ),
            log_position: register(
                &registry,
                IntGauge::new(
                    "bindery_log_position",
                    "Position of the newest event in the log.",
                )
                .expect("valid metric"),
            ),
            bindings: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("bindery_bindings", "Bindings stored, by binding type."),
                    &["binding_type"],
                )
                .expect("valid metric"),
            ),
            auth_failures: register(
                &registry,
                IntCounter::new(
                    "bindery_auth_failures_total",
                    "Requests refused for missing or wrong credentials.",
                )
                .expect("valid metric"),
            ),
            deliveries: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "bindery_deliveries_total",
                        "Pushes handed to a transport, by transport and outcome.",
                    ),
                    &["transport", "outcome"],
                )
                .expect("valid metric"),
            ),
            deliveries_in_flight: register(
                &registry,
                IntGauge::new(
                    "bindery_deliveries_in_flight",
                    "Pushes handed to the dispatchers and not yet answered.",
                )
                .expect("valid metric"),
            ),
            feed_waiters: register(
                &registry,
                IntGauge::new(
                    "bindery_feed_waiters",
                    "Long-polls of the change feed waiting for events.",
                )
                .expect("valid metric"),
            ),
            feed_wakeups: register(
                &registry,
                IntCounter::new(
                    "bindery_feed_wakeups_total",
                    "Long-polls woken by their account's events.",
                )
                .expect("valid metric"),
            ),
            push_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "bindery_push_requests_total",
                        "Pushes sent straight to a provider, by provider and outcome \
                         (retried counts each try that is tried again).",
                    ),
                    &["provider", "outcome"],
                )
                .expect("valid metric"),
            ),
            push_duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "bindery_push_duration_seconds",
                        "Time from a push's first try to its final outcome, by provider.",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0,
                    ]),
                    &["provider"],
                )
                .expect("valid metric"),
            ),
            push_inflight: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "bindery_push_inflight",
                        "Pushes on the wire to a provider now, by provider.",
                    ),
                    &["provider"],
                )
                .expect("valid metric"),
            ),
            push_connections_opened: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "bindery_push_connections_opened_total",
                        "HTTP/2 connections opened to a provider, by provider.",
                    ),
                    &["provider"],
                )
                .expect("valid metric"),
            ),
            credential_expiry: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "bindery_credential_expiry_timestamp_seconds",
                        "When a certificate credential expires (its notAfter), Unix seconds.",
                    ),
                    &["credential"],
                )
                .expect("valid metric"),
            ),
            credential_healthy: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "bindery_credential_healthy",
                        "1 while a credential pushes; 0 after its provider blamed it, or \
                         while the dead-token guard holds its removals.",
                    ),
                    &["credential"],
                )
                .expect("valid metric"),
            ),
            database_round_trip: register(
                &registry,
                Gauge::new(
                    "bindery_database_round_trip_seconds",
                    "PostgreSQL: the last round trip to the database measured by this node's \
                     listener (once a second); 0 on SQLite.",
                )
                .expect("valid metric"),
            ),
            database_connections: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "bindery_database_connections",
                        "This node's read connections to the database, idle in its pool or \
                         in use by a read.",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            sweeper: register(
                &registry,
                IntGauge::new(
                    "bindery_sweeper_active",
                    "1 while this node is the one that expires stale bindings (always on \
                     SQLite; on PostgreSQL, one node at a time).",
                )
                .expect("valid metric"),
            ),
            registry,
        };
        #[cfg(target_os = "linux")]
        families
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector registers once");
        Metrics(Arc::new(families))
    }

    /// Every metric, in Prometheus's text exposition format.
    /// The log's head, which the projections always reach in the same transaction.
    pub fn set_log_position(&self, position: i64) {
        self.log_position.set(position);
        self.projection_position.set(position);
    }

    /// The bindings gauge, set to what the store holds (`set`) or moved by what a commit
    /// changed.
    pub fn count_bindings(&self, counts: &BindingCounts, set: bool) {
        for binding_type in BindingType::ALL {
            let gauge = self.bindings.with_label_values(&[binding_type.as_str()]);
            let count = counts.get(binding_type);
            if set {
                gauge.set(count);
            } else if count != 0 {
                gauge.add(count);
            }
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding to memory does not fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";
}
