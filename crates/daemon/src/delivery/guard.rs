//! The dead-token guard (CONTRACT §6.4). A burst of "unregistered" answers through one
//! credential is more likely a wrong environment or topic (a sandbox token sent to
//! production answers `BadDeviceToken`) than thousands of phones gone at once; removing every
//! such binding would wipe a registry. So past `limit` removals through one credential within
//! the last minute, the next ones are refused (the push fails with `unregistered_guard` and its
//! binding stays) and the credential counts as unhealthy, until the window holds fewer again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bindery_domain::CredentialSid;

/// How far back the removals are counted.
pub const WINDOW: Duration = Duration::from_secs(60);

pub struct RemovalGuard {
    limit: usize,
    /// Per credential, the times of the removals within the window, oldest first; at most
    /// `limit` of them, so memory stays bounded however many answers come.
    removals: HashMap<CredentialSid, VecDeque<Instant>>,
}

impl RemovalGuard {
    pub fn new(limit_per_minute: u32) -> Self {
        RemovalGuard {
            limit: limit_per_minute as usize,
            removals: HashMap::new(),
        }
    }

    fn recent(&mut self, credential: CredentialSid, now: Instant) -> &mut VecDeque<Instant> {
        let times = self.removals.entry(credential).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        times
    }

    /// Whether a binding may be removed, at `now`, for an "unregistered" answer through
    /// `credential`; counts the removal when it may.
    pub fn allow(&mut self, credential: CredentialSid, now: Instant) -> bool {
        let limit = self.limit;
        let times = self.recent(credential, now);
        if times.len() >= limit {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Starts `credential`'s window afresh (it was changed or deleted).
    pub fn forget(&mut self, credential: CredentialSid) {
        self.removals.remove(&credential);
    }

    /// The credentials with removals kept (within the window, until `healthy` finds none):
    /// the only ones whose health time alone may change.
    pub fn watched(&self) -> impl Iterator<Item = CredentialSid> + '_ {
        self.removals.keys().copied()
    }

    /// Whether removals through `credential` go ahead at `now` (the body's `healthy`).
    pub fn healthy(&mut self, credential: CredentialSid, now: Instant) -> bool {
        let limit = self.limit;
        let healthy = self.recent(credential, now).len() < limit;
        if healthy
            && self
                .removals
                .get(&credential)
                .is_some_and(VecDeque::is_empty)
        {
            self.removals.remove(&credential);
        }
        healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(n: u8) -> CredentialSid {
        CredentialSid::from_bytes([n; 16])
    }

    #[test]
    fn past_the_limit_in_a_minute_removals_stop_until_the_window_holds_fewer() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut guard = RemovalGuard::new(3);
        let (a, b) = (credential(1), credential(2));
        for second in 0..3 {
            assert!(guard.allow(a, at(second)), "removal {second} of 3");
        }
        assert!(
            !guard.allow(a, at(10)),
            "the fourth within a minute is refused"
        );
        assert!(!guard.healthy(a, at(10)));
        assert!(
            guard.allow(b, at(10)),
            "another credential is not held back"
        );
        assert!(guard.healthy(b, at(10)));
        // The first removal (at 0 s) leaves the window at 60 s: one more may go.
        assert!(guard.healthy(a, at(60)));
        assert!(guard.allow(a, at(60)));
        assert!(!guard.allow(a, at(60)));
        // Refusals are not counted: once the window empties, the full limit is back.
        assert!(guard.healthy(a, at(200)));
        for _ in 0..3 {
            assert!(guard.allow(a, at(200)));
        }
    }

    #[test]
    fn only_credentials_with_removals_in_the_window_are_watched() {
        let start = Instant::now();
        let mut guard = RemovalGuard::new(3);
        let (a, b) = (credential(1), credential(2));
        assert!(guard.allow(a, start));
        assert!(guard.healthy(b, start));
        assert_eq!(guard.watched().collect::<Vec<_>>(), vec![a]);
        assert!(guard.healthy(a, start + WINDOW));
        assert_eq!(guard.watched().count(), 0, "its window emptied");
    }

    #[test]
    fn a_limit_of_zero_never_removes() {
        let mut guard = RemovalGuard::new(0);
        assert!(!guard.allow(credential(1), Instant::now()));
    }
}
