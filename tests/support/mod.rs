//! Test helpers, one idea a file:
//!
//! - `spawn`: starting and stopping `bindery serve` (`TestApp::spawn*`, `ServerLog`,
//!   `KillOnDrop`, `serve_until_exit`);
//! - `accounts`: the accounts a test signs in as (`Credentials`, `first_account`,
//!   `TestApp::other_account`);
//! - `client`: requests signed as an account and their answers (`basic`, `Reply`,
//!   `TestApp::post`, `register_binding`, `walk`…);
//! - `raw`: requests written byte for byte on a socket (`TestApp::raw_http`, `RawReply`);
//! - `wire`: path segments, form bodies and query strings, and the API's paths;
//! - `answers`: checking answers (`assert_error`, `sid`, `keys`, `spec_fields`, `served_fields`,
//!   `is_twilio_date`);
//! - `material`: push-credential material Bindery accepts (`credential_form`,
//!   `TestApp::create_credential_of`, `certificate`, `service_account`);
//! - `scrape`: `/metrics` samples (`TestApp::metric`); `promql`: the metrics a PromQL
//!   expression reads;
//! - `cli`: the binary's one-shot commands and the data dir seen from outside (`bindery`,
//!   `TestApp::verify`, `exported_events`, `TestApp::sqlite_tables`);
//! - `nodes`: many `bindery serve` nodes on one PostgreSQL database (`Database`, its settings and
//!   the commands run on it; `Nodes::start`), and sealing key files (`write_key_file`);
//! - `console`: the console's pages and forms as a browser sends them (`Console`, `Page`);
//! - `wait`: waiting for a condition, with a deadline against a hang (`wait_until`).
//!
//! Everything is re-exported here, so `crate::support::X` names it wherever it lives.

mod accounts;
mod answers;
mod cli;
mod client;
mod console;
pub mod material;
mod nodes;
pub mod promql;
mod raw;
mod scrape;
mod spawn;
mod wait;
mod wire;

pub use accounts::*;
pub use answers::*;
pub use cli::*;
pub use client::*;
pub use console::*;
pub use nodes::*;
// Nothing names these yet, but a test may.
#[allow(unused_imports)]
pub use raw::*;
pub use spawn::*;
pub use wait::*;
pub use wire::*;
