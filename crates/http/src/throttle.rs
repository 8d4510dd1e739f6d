//! Throttling of failed sign-ins per client address: after `LIMIT` failures within `WINDOW`,
//! an address is refused (429, with `Retry-After`) until the window has passed, so that
//! guessing a secret costs real time. A success clears the address's count. The address is
//! the TCP peer's: behind a proxy, every client shares the proxy's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LIMIT: u32 = 20;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the oldest windows are forgotten first when full.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct AuthThrottle {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthThrottle {
    /// `Some(seconds to wait)` when this address may not try now.
    pub fn check(&self, address: IpAddr) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (since, count) = *failures.get(&address)?;
        let elapsed = since.elapsed();
        (count >= LIMIT && elapsed < WINDOW).then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    pub fn failed(&self, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= CAPACITY && !failures.contains_key(&address) {
            failures.retain(|_, (since, _)| since.elapsed() < WINDOW);
            if failures.len() >= CAPACITY {
                if let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(a, _)| *a)
                {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(address).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    pub fn succeeded(&self, address: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_the_limit_and_cleared_by_a_success() {
        let throttle = AuthThrottle::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..LIMIT - 1 {
            throttle.failed(a);
        }
        assert_eq!(throttle.check(a), None);
        throttle.failed(a);
        assert!(throttle.check(a).is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(throttle.check(b), None, "per address");
        throttle.succeeded(a);
        assert_eq!(throttle.check(a), None);
    }
}
