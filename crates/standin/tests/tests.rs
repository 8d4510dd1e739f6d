//! The stand-ins' self-tests: one binary with topic modules, as the root crate's e2e tests.

mod apns;
mod binary;
mod fcm;
mod support;
