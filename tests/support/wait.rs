//! Waiting for something to happen: a condition checked again and again, with a deadline that
//! only guards against a hang. A test never sleeps to let something happen, nor measures how
//! long something took: on a loaded machine both flake.

use std::time::{Duration, Instant};

/// How long a test waits for what must come before it gives up: long, so that only a hang
/// reaches it on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until `condition` holds; panics naming `what` if it still does not after `within`.
#[track_caller]
pub fn wait_until(within: Duration, what: &str, condition: impl FnMut() -> bool) {
    assert!(
        poll_until(within, condition),
        "gave up after {within:?} waiting for {what}"
    );
}

/// Checks `condition` until it holds (true) or `within` has passed (false); for the waits
/// whose failure needs more words than [`wait_until`] gives, or none (a guard's `Drop`).
pub fn poll_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(1);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
