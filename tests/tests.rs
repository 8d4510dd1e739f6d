//! End-to-end tests: the real `bindery` binary, on a random port, with a fresh data dir.

mod support;

mod auth;
mod backup;
mod bindings;
mod cli;
mod crash;
mod credentials;
mod delivery;
mod desktop;
mod errors;
mod faults;
mod hostile;
mod idempotency;
mod lifecycle;
mod logs;
mod metrics;
mod paging;
mod registration;
mod routes;
mod services;
mod shutdown;
mod systemd;
mod tenancy;
mod users;
mod webhook;
