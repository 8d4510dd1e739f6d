//! End-to-end tests: the real `bindery` binary, on a random port, with a fresh data dir.

mod support;

mod auth;
mod cli;
