//! Long-polls on the change feed: who waits for which account's events, within bounds.
//!
//! A waiter subscribes to its own account: the writer, after each commit, wakes only the
//! accounts that got events, so a busy tenant's writes never wake another tenant's polls.
//! How many may wait is bounded per account and in all: each waiter holds a connection and a
//! task for up to the longest `Wait`, and without a bound one account could hold them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bindery_domain::{AccountSid, RecordedEvent};
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// Long-polls waiting at once, over every account.
    pub total: usize,
    /// Long-polls waiting at once for one account.
    pub per_account: usize,
}

impl Default for WaitLimits {
    fn default() -> Self {
        WaitLimits {
            total: 1024,
            per_account: 32,
        }
    }
}

/// Why a long-poll may not wait now; it may retry shortly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitRefused {
    #[error("this account already has {0} long-polls waiting, the most allowed; retry later")]
    Account(usize),
    #[error("{0} long-polls are waiting, the most this server allows; retry later")]
    Total(usize),
}

struct Waiting {
    count: usize,
    /// The newest position of this account's events since the first of them subscribed.
    newest: watch::Sender<i64>,
}

#[derive(Default)]
struct State {
    total: usize,
    accounts: HashMap<AccountSid, Waiting>,
}

pub struct FeedWaiters {
    limits: WaitLimits,
    metrics: Metrics,
    state: Mutex<State>,
    safety_poll: Mutex<Option<Duration>>,
}

impl FeedWaiters {
    pub fn new(limits: WaitLimits, metrics: Metrics) -> Arc<FeedWaiters> {
        Arc::new(FeedWaiters {
            limits,
            metrics,
            state: Mutex::new(State::default()),
            safety_poll: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update below leaves the map whole before it can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the waiters of each account with events among `events` that its log grew.
    pub fn publish<'a>(&self, events: impl IntoIterator<Item = &'a RecordedEvent>) {
        let state = self.lock();
        if state.accounts.is_empty() {
            return;
        }
        for event in events {
            if let Some(waiting) = state.accounts.get(&event.account_sid) {
                waiting.newest.send_if_modified(|newest| {
                    let grew = event.position > *newest;
                    if grew {
                        *newest = event.position;
                    }
                    grew
                });
            }
        }
    }

    /// Tells the waiters of `accounts` (every waiter, with `None`) that the log grew to
    /// `position`: what another node committed, heard through PostgreSQL's `NOTIFY`, or
    /// (with `None`) what a node that may have missed notices must read again for.
    pub fn wake(&self, accounts: Option<&[AccountSid]>, position: i64) {
        let state = self.lock();
        let grow = |waiting: &Waiting| {
            waiting.newest.send_if_modified(|newest| {
                let grew = position > *newest;
                if grew {
                    *newest = position;
                }
                grew
            });
        };
        match accounts {
            Some(accounts) => accounts
                .iter()
                .filter_map(|account| state.accounts.get(account))
                .for_each(grow),
            None => state.accounts.values().for_each(grow),
        }
    }

    /// Makes every wait look again at least this often, whether or not it was woken: on
    /// PostgreSQL, the safety net under `NOTIFY` (a notice lost while a node reconnects).
    pub fn poll_every(&self, interval: Duration) {
        *self.safety_poll.lock().unwrap_or_else(|e| e.into_inner()) = Some(interval);
    }

    /// A place among `account`'s waiters, if the limits leave one. Events committed from now
    /// on wake it; read the feed once more after subscribing, for those committed before.
    pub fn subscribe(
        self: &Arc<Self>,
        account: AccountSid,
    ) -> Result<FeedSubscription, WaitRefused> {
        let mut state = self.lock();
        if state.total >= self.limits.total {
            return Err(WaitRefused::Total(self.limits.total));
        }
        let waiting = state.accounts.entry(account).or_insert_with(|| Waiting {
            count: 0,
            newest: watch::channel(0).0,
        });
        if waiting.count >= self.limits.per_account {
            return Err(WaitRefused::Account(self.limits.per_account));
        }
        waiting.count += 1;
        let newest = waiting.newest.subscribe();
        state.total += 1;
        self.metrics.feed_waiters.set(state.total as i64);
        Ok(FeedSubscription {
            waiters: self.clone(),
            account,
            newest,
        })
    }

    fn leave(&self, account: &AccountSid) {
        let mut state = self.lock();
        state.total -= 1;
        if let Some(waiting) = state.accounts.get_mut(account) {
            waiting.count -= 1;
            if waiting.count == 0 {
                state.accounts.remove(account);
            }
        }
        self.metrics.feed_waiters.set(state.total as i64);
    }
}

/// One long-poll's place among its account's waiters, given back when dropped.
pub struct FeedSubscription {
    waiters: Arc<FeedWaiters>,
    account: AccountSid,
    newest: watch::Receiver<i64>,
}

impl FeedSubscription {
    /// Waits until the account's log grows past `position`, or `timeout` passes; answers the
    /// newest position of the account's events if it grew.
    ///
    /// With a safety poll set (see [`FeedWaiters::poll_every`]) it answers `position` itself
    /// when that interval passes first, before `timeout`: the caller then reads the log again.
    pub async fn wait_past(&mut self, position: i64, timeout: Duration) -> Option<i64> {
        let poll = *self
            .waiters
            .safety_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (wait, polled) = match poll {
            Some(poll) if poll < timeout => (poll, true),
            _ => (timeout, false),
        };
        let grew = tokio::time::timeout(wait, self.newest.wait_for(|&n| n > position)).await;
        match grew {
            Ok(Ok(newest)) => {
                self.waiters.metrics.feed_wakeups.inc();
                Some(*newest)
            }
            Err(_) if polled => Some(position),
            _ => None,
        }
    }
}

impl Drop for FeedSubscription {
    fn drop(&mut self) {
        self.waiters.leave(&self.account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_domain::{Event, Timestamp};

    fn account(n: u8) -> AccountSid {
        AccountSid::from_bytes([n; 16])
    }

    fn event(account: AccountSid, position: i64) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: account.to_string(),
            stream_version: 1,
            account_sid: account,
            service_sid: None,
            recorded_at: Timestamp::from_unix(0),
            request_id: None,
            event: Event::AccountCreated {
                friendly_name: String::new(),
                auth_token_hash: bindery_domain::SecretHash::of("x"),
            },
        }
    }

    #[test]
    fn the_limits_hold_per_account_and_in_all_and_a_place_is_given_back() {
        let waiters = FeedWaiters::new(
            WaitLimits {
                total: 3,
                per_account: 2,
            },
            Metrics::new(),
        );
        let a1 = waiters.subscribe(account(1)).unwrap();
        let _a2 = waiters.subscribe(account(1)).unwrap();
        assert_eq!(
            waiters.subscribe(account(1)).err(),
            Some(WaitRefused::Account(2))
        );
        let _b1 = waiters.subscribe(account(2)).unwrap();
        assert_eq!(
            waiters.subscribe(account(3)).err(),
            Some(WaitRefused::Total(3))
        );
        drop(a1);
        assert!(waiters.subscribe(account(3)).is_ok());
    }

    #[actix_rt::test]
    async fn only_the_account_with_events_is_woken() {
        let waiters = FeedWaiters::new(WaitLimits::default(), Metrics::new());
        let mut alice = waiters.subscribe(account(1)).unwrap();
        let mut bob = waiters.subscribe(account(2)).unwrap();
        waiters.publish(&[event(account(2), 7), event(account(2), 8)]);
        assert_eq!(alice.wait_past(0, Duration::ZERO).await, None);
        assert_eq!(bob.wait_past(0, Duration::ZERO).await, Some(8));
        assert_eq!(bob.wait_past(8, Duration::ZERO).await, None);
        waiters.publish(&[event(account(1), 9)]);
        assert_eq!(alice.wait_past(0, Duration::from_secs(5)).await, Some(9));
    }
}
