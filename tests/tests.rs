//! End-to-end tests: the real `bindery` binary, on a random port, with a fresh data dir.

mod support;

mod auth;
mod backup;
mod bindings;
mod cli;
mod crash;
mod credentials;
mod deliveries;
mod delivery;
mod desktop;
mod direct;
mod embedded;
mod error_kinds;
mod errors;
mod faults;
mod feed;
mod form_validation;
mod hostile;
mod idempotency;
mod lifecycle;
mod logs;
mod metrics;
mod notify_identities;
mod paging;
mod paging_limits;
mod registration;
mod routes;
mod sealing;
mod services;
mod settings;
mod shutdown;
mod systemd;
mod tenancy;
mod users;
mod webhook;
