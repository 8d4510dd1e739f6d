//! Fresh SIDs that sort in creation order: 48 bits of milliseconds since the epoch, then 80
//! random bits; a SID made in the same millisecond as the last one (or while the clock stands
//! behind it) is the last one plus one. Ordering by SID is therefore ordering by creation,
//! which is what lets list pages use the SID as their keyset cursor.

use std::time::{SystemTime, UNIX_EPOCH};

use bindery_domain::{NewSids, Sid, SidKind};

#[derive(Debug)]
pub struct MonotonicSids {
    last: u128,
}

impl MonotonicSids {
    /// A generator whose SIDs all sort after `newest` (the newest SID already stored).
    pub fn after(newest: Option<u128>) -> Self {
        MonotonicSids {
            last: newest.unwrap_or(0),
        }
    }

    fn next_value(&mut self) -> u128 {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let mut random = [0u8; 16];
        getrandom::getrandom(&mut random).expect("the operating system provides randomness");
        let candidate = ((millis & 0xffff_ffff_ffff) << 80) | (u128::from_be_bytes(random) >> 48);
        self.last = if candidate > self.last {
            candidate
        } else {
            self.last.wrapping_add(1)
        };
        self.last
    }
}

impl NewSids for MonotonicSids {
    fn new_sid<K: SidKind>(&mut self) -> Sid<K> {
        Sid::from_bytes(self.next_value().to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_domain::BindingSid;

    #[test]
    fn sids_increase_even_within_one_millisecond() {
        let mut sids = MonotonicSids::after(None);
        let made: Vec<BindingSid> = (0..10_000).map(|_| sids.new_sid()).collect();
        assert!(made.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn sids_sort_after_the_newest_stored_one_even_if_the_clock_is_behind() {
        let future = u128::MAX - 10;
        let mut sids = MonotonicSids::after(Some(future));
        let next: BindingSid = sids.new_sid();
        assert_eq!(next.as_str(), format!("BS{:032x}", future + 1));
    }
}
