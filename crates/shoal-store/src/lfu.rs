//! Redis's LFU counter (`evict.c`: `LFULogIncr`, `LFUDecrAndReturn`), kept in an entry's
//! 20-bit clock field while an LFU policy is selected.
//!
//! ```text
//! 19          8 7         0
//! | ldt: u12    | counter: u8 |
//! ```
//!
//! `counter` is a logarithmic access counter: a new key starts at [`LFU_INIT_VAL`], an access
//! increments it with probability `1 / ((counter - 5) * lfu_log_factor + 1)` (always below 5),
//! up to 255. `ldt` is the minute of the last access or decrement; every `lfu-decay-time`
//! minutes since then take one off the counter when it is read. Redis keeps `ldt` in 16 bits
//! (minutes modulo 65536, 45 days); Shoal has 12 (modulo 4096, 68 hours), because the field is
//! the 20 bits an entry has for its access clock and no more. So that a key left alone for
//! longer still reads as decayed, [`Lfu::refreshed`] lets a background sweep fold the decay into
//! the counter of every key at least once every [`REFRESH_AFTER`] minutes (see
//! `Store::maintain`).

/// A new key's counter (Redis's `LFU_INIT_VAL`): high enough that a key just written is not the
/// first one evicted, before it had a chance to be read.
pub const LFU_INIT_VAL: u8 = 5;
/// Redis's default `lfu-log-factor`.
pub const DEFAULT_LFU_LOG_FACTOR: u32 = 10;
/// Redis's default `lfu-decay-time` (minutes).
pub const DEFAULT_LFU_DECAY_TIME: u32 = 1;

/// Bits of the last-decrement minute.
pub(crate) const MINUTE_BITS: u32 = 12;
/// Mask of the last-decrement minute.
pub(crate) const MINUTE_MASK: u32 = (1 << MINUTE_BITS) - 1;
/// A key whose last access or decrement is this many minutes old (a quarter of the minute
/// clock's range: about 17 hours) is due for [`Lfu::refreshed`].
pub(crate) const REFRESH_AFTER: u32 = 1 << (MINUTE_BITS - 2);

/// The minute clock: Unix minutes modulo 4096.
pub(crate) fn minutes(now_ms: u64) -> u32 {
    (now_ms / 60_000) as u32 & MINUTE_MASK
}

/// The field holding `counter` last decremented at `minutes`.
#[inline]
pub(crate) fn pack(minutes: u32, counter: u8) -> u32 {
    (minutes & MINUTE_MASK) << 8 | u32::from(counter)
}

/// The counter as stored (without decay).
#[inline]
pub(crate) fn stored_counter(field: u32) -> u8 {
    field as u8
}

/// The minute of the last access or decrement.
#[inline]
pub(crate) fn last_decrement(field: u32) -> u32 {
    (field >> 8) & MINUTE_MASK
}

/// Minutes from `then` to `now` on the wrapping minute clock.
#[inline]
pub(crate) fn elapsed(now: u32, then: u32) -> u32 {
    now.wrapping_sub(then) & MINUTE_MASK
}

/// Redis's `LFULogIncr`: `counter` plus one with probability
/// `1 / ((counter - LFU_INIT_VAL) * log_factor + 1)` (1 below `LFU_INIT_VAL`), saturating at
/// 255. `random` is uniform over `u32`: Redis draws `r` uniform in `[0, 1]` and increments when
/// `r < p`; here `r = random / 2^32`, so the test is `random * (base * factor + 1) < 2^32`, in
/// integers.
#[inline]
pub(crate) fn log_incr(counter: u8, log_factor: u32, random: u32) -> u8 {
    if counter == u8::MAX {
        return counter;
    }
    let base = u64::from(counter.saturating_sub(LFU_INIT_VAL));
    let divisor = base * u64::from(log_factor) + 1;
    let hit = u64::from(random)
        .checked_mul(divisor)
        .is_some_and(|x| x < 1 << 32);
    counter + u8::from(hit)
}

/// The LFU settings and the current minute, as an access sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lfu {
    /// `lfu-log-factor`.
    pub(crate) log_factor: u32,
    /// `lfu-decay-time`, minutes (0: counters never decay).
    pub(crate) decay_time: u32,
    /// The minute clock ([`minutes`]) now.
    pub(crate) minutes: u32,
}

impl Lfu {
    /// A new key's field: [`LFU_INIT_VAL`] as of now.
    #[inline]
    pub(crate) fn fresh(&self) -> u32 {
        pack(self.minutes, LFU_INIT_VAL)
    }

    /// Redis's `LFUDecrAndReturn`: the counter less one per `decay_time` minutes elapsed since
    /// its last decrement (what `OBJECT FREQ` shows and eviction compares).
    #[inline]
    pub(crate) fn decayed(&self, field: u32) -> u8 {
        let counter = stored_counter(field);
        if self.decay_time == 0 {
            return counter;
        }
        let periods = elapsed(self.minutes, last_decrement(field)) / self.decay_time;
        counter.saturating_sub(periods.min(255) as u8)
    }

    /// Redis's `updateLFU`, for an access: the decayed counter, incremented by
    /// [`log_incr`], as of now.
    #[inline]
    pub(crate) fn accessed(&self, field: u32, random: u32) -> u32 {
        pack(
            self.minutes,
            log_incr(self.decayed(field), self.log_factor, random),
        )
    }

    /// For the background sweep: when the field's last decrement is at least
    /// [`REFRESH_AFTER`] minutes old, the same state with the decay folded into the counter
    /// and the last decrement moved up by the periods taken (so the next period is due when it
    /// would have been). `None` when it is recent enough to be left alone.
    pub(crate) fn refreshed(&self, field: u32) -> Option<u32> {
        let since = elapsed(self.minutes, last_decrement(field));
        if since < REFRESH_AFTER {
            return None;
        }
        let partial = since.checked_rem(self.decay_time).unwrap_or(0);
        Some(pack(
            self.minutes.wrapping_sub(partial),
            self.decayed(field),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Redis 7.0's `LFULogIncr`, as written in `evict.c`, with `r` given.
    fn redis_log_incr(counter: u8, log_factor: u32, r: f64) -> u8 {
        if counter == 255 {
            return 255;
        }
        let mut baseval = f64::from(counter) - f64::from(LFU_INIT_VAL);
        if baseval < 0.0 {
            baseval = 0.0;
        }
        let p = 1.0 / (baseval * f64::from(log_factor) + 1.0);
        if r < p { counter + 1 } else { counter }
    }

    /// Redis 7.0's `LFUDecrAndReturn` on its own 16-bit minute clock.
    fn redis_decr(counter: u8, ldt: u32, now: u32, decay_time: u32) -> u8 {
        let elapsed = if now >= ldt {
            now - ldt
        } else {
            65535 - ldt + now
        };
        // `decay_time ? elapsed / decay_time : 0`
        let periods = elapsed.checked_div(decay_time).unwrap_or(0);
        if periods > u32::from(counter) {
            0
        } else {
            counter - periods as u8
        }
    }

    proptest! {
        #[test]
        fn the_increment_is_redis_s(counter: u8, log_factor in prop_oneof![0..100u32, any::<u32>()], random: u32) {
            let r = f64::from(random) / 4_294_967_296.0;
            prop_assert_eq!(log_incr(counter, log_factor, random), redis_log_incr(counter, log_factor, r));
        }

        #[test]
        fn the_decay_is_redis_s_within_the_minute_clock(counter: u8, ldt in 0..4096u32, ago in 0..4096u32, decay_time in prop_oneof![0..10u32, any::<u32>()]) {
            let now = ldt + ago;
            let lfu = Lfu { log_factor: 10, decay_time, minutes: now & MINUTE_MASK };
            prop_assert_eq!(lfu.decayed(pack(ldt, counter)), redis_decr(counter, ldt, now, decay_time));
        }

        #[test]
        fn a_refresh_changes_no_reading_now_or_later(counter: u8, ago in 0..4096u32, later in 0..2048u32, decay_time in 0..2000u32) {
            let ldt = 1000;
            let lfu = Lfu { log_factor: 10, decay_time, minutes: (ldt + ago) & MINUTE_MASK };
            let field = pack(ldt, counter);
            if let Some(refreshed) = lfu.refreshed(field) {
                prop_assert!(ago >= REFRESH_AFTER);
                prop_assert_eq!(lfu.decayed(refreshed), lfu.decayed(field));
                // Later readings match the true decay (ago + later minutes), which the
                // unrefreshed field would have got wrong once the clock wrapped.
                let then = Lfu { minutes: (ldt + ago + later) & MINUTE_MASK, ..lfu };
                prop_assert_eq!(then.decayed(refreshed), redis_decr(counter, 0, ago + later, decay_time));
            } else {
                prop_assert!(ago < REFRESH_AFTER);
            }
        }
    }

    #[test]
    fn the_counter_grows_logarithmically_as_redis_documents() {
        // redis.conf's table: with factor 10, 100 hits reach about 10, 1000 about 18, 100K
        // about 142, 1M 255; with factor 1, 100 hits about 18... We check the same orders of
        // magnitude with a fixed random sequence.
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 32) as u32
        };
        let mut counter_after = |factor: u32, hits: u32| {
            let mut c = LFU_INIT_VAL;
            for _ in 0..hits {
                c = log_incr(c, factor, next());
            }
            c
        };
        let c = counter_after(10, 100);
        assert!((8..=13).contains(&c), "factor 10, 100 hits: {c}");
        let c = counter_after(10, 1000);
        assert!((15..=22).contains(&c), "factor 10, 1000 hits: {c}");
        let c = counter_after(10, 100_000);
        assert!((130..=155).contains(&c), "factor 10, 100K hits: {c}");
        assert_eq!(counter_after(0, 300), 255, "factor 0 counts every hit");
        assert_eq!(counter_after(0, 3), LFU_INIT_VAL + 3);
        let c = counter_after(1, 100);
        assert!((16..=22).contains(&c), "factor 1, 100 hits: {c}");
    }

    #[test]
    fn a_new_key_reads_five_and_its_first_access_always_counts() {
        let lfu = Lfu {
            log_factor: 10,
            decay_time: 1,
            minutes: 77,
        };
        assert_eq!(lfu.decayed(lfu.fresh()), 5);
        assert_eq!(lfu.decayed(lfu.accessed(lfu.fresh(), u32::MAX)), 6);
    }

    #[test]
    fn decay_takes_one_per_period_and_wraps_with_the_clock() {
        let at = |minutes, decay_time| Lfu {
            log_factor: 10,
            decay_time,
            minutes,
        };
        let field = pack(4090, 20);
        assert_eq!(at(4090, 1).decayed(field), 20);
        assert_eq!(at(4095, 1).decayed(field), 15);
        assert_eq!(at(4, 1).decayed(field), 10, "10 minutes, across the wrap");
        assert_eq!(at(4, 3).decayed(field), 17);
        assert_eq!(at(4, 0).decayed(field), 20, "decay time 0: never");
        assert_eq!(at(200, 1).decayed(field), 0);
        // An access decays first, then stamps the minute.
        let accessed = at(4, 1).accessed(field, u32::MAX);
        assert_eq!(
            (stored_counter(accessed), last_decrement(accessed)),
            (10, 4)
        );
    }
}
