//! Slowing failed authentications down per source address, over all its connections: each
//! failure from an address takes a turn [`INTERVAL`] after the previous one's, beyond a short
//! burst, and its reply waits for that turn. Many connections from one address then try about
//! [`PER_SECOND`] passwords a second between them, however many there are. A successful
//! authentication never waits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failed authentications an address may make a second, once its burst is spent.
const PER_SECOND: u32 = 10;
/// The time between two turns of one address.
const INTERVAL: Duration = Duration::from_millis(1000 / PER_SECOND as u64);
/// Failures an address may make at once without waiting.
const BURST: u32 = 10;
/// Addresses remembered; beyond that, those whose turns are all in the past are forgotten.
const MAX_ADDRESSES: usize = 65_536;

/// The next free turn of every address that failed recently.
#[derive(Debug, Default)]
pub(crate) struct AuthThrottle {
    next_turn: Mutex<HashMap<IpAddr, Instant>>,
}

impl AuthThrottle {
    /// Records a failed authentication from `addr` at `now`: how long its reply must wait.
    pub(crate) fn failed(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let mut turns = self.next_turn.lock();
        if turns.len() >= MAX_ADDRESSES && !turns.contains_key(&addr) {
            turns.retain(|_, turn| *turn > now);
            if turns.len() >= MAX_ADDRESSES {
                return None;
            }
        }
        // The burst is a credit of turns in the past: a new address starts with all of it.
        let credit = INTERVAL * BURST;
        let earliest = now.checked_sub(credit).unwrap_or(now);
        let turn = turns.entry(addr).or_insert(earliest);
        *turn = (*turn).max(earliest) + INTERVAL;
        let wait = turn.saturating_duration_since(now);
        (!wait.is_zero()).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_a_burst_then_a_turn_every_tenth_of_a_second() {
        let throttle = AuthThrottle::default();
        let attacker: IpAddr = [10, 0, 0, 1].into();
        let now = Instant::now();
        let waits: Vec<Option<Duration>> =
            (0..12).map(|_| throttle.failed(attacker, now)).collect();
        assert!(
            waits[..BURST as usize].iter().all(Option::is_none),
            "{waits:?}"
        );
        // However many connections the failures come on, they queue behind each other.
        assert_eq!(waits[10], Some(INTERVAL));
        assert_eq!(waits[11], Some(INTERVAL * 2));
        // Another address is not slowed by this one.
        assert_eq!(throttle.failed([10, 0, 0, 2].into(), now), None);
        // After a quiet while the burst is back.
        let later = now + INTERVAL * (BURST + 2) + Duration::from_secs(1);
        assert_eq!(throttle.failed(attacker, later), None);
    }
}
