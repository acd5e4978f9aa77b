//! `HOTKEYS START ... SLOTS`: the hash slots a session is restricted to, and what each worker
//! thread counts of the commands on them.
//!
//! The front door does not know how a key maps to a slot (that is the cluster's function, and
//! the front door may only use `shoal-proto`): whoever builds a [`SelectedSlots`] hands it the
//! function.

use std::sync::Arc;

/// Number of hash slots of a cluster.
pub const SLOTS: usize = 16384;

/// A key's hash slot, as the cluster computes it.
pub type SlotOf = fn(&[u8]) -> u16;

/// Why a list of slots cannot be selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotsError {
    /// No slot given.
    #[error("no slot given")]
    Empty,
    /// A slot is not below [`SLOTS`].
    #[error("slot {0} out of range")]
    OutOfRange(u32),
    /// A slot is given twice.
    #[error("duplicate slot number")]
    Duplicate(u16),
}

/// The slots a session tracks: a bitmap to test a slot, and the sorted, merged ranges
/// `HOTKEYS GET` lists.
#[derive(Clone)]
pub struct SelectedSlots {
    bits: Box<[u64; SLOTS / 64]>,
    ranges: Vec<(u16, u16)>,
    slot_of: SlotOf,
}

impl std::fmt::Debug for SelectedSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectedSlots")
            .field("ranges", &self.ranges)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SelectedSlots {
    /// Equal if they select the same slots (the slot functions are not compared).
    fn eq(&self, other: &Self) -> bool {
        self.ranges == other.ranges
    }
}

impl Eq for SelectedSlots {}

impl SelectedSlots {
    /// The slots `slots` (in any order, each once), whose keys' slots `slot_of` finds.
    pub fn new(slots: &[u32], slot_of: SlotOf) -> Result<SelectedSlots, SlotsError> {
        if slots.is_empty() {
            return Err(SlotsError::Empty);
        }
        let mut sorted = Vec::with_capacity(slots.len());
        for &slot in slots {
            match u16::try_from(slot) {
                Ok(s) if usize::from(s) < SLOTS => sorted.push(s),
                _ => return Err(SlotsError::OutOfRange(slot)),
            }
        }
        sorted.sort_unstable();
        let mut bits = Box::new([0u64; SLOTS / 64]);
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for slot in sorted {
            match ranges.last_mut() {
                Some((_, last)) if *last == slot => return Err(SlotsError::Duplicate(slot)),
                Some((_, last)) if *last + 1 == slot => *last = slot,
                _ => ranges.push((slot, slot)),
            }
            bits[usize::from(slot) / 64] |= 1 << (slot % 64);
        }
        Ok(SelectedSlots {
            bits,
            ranges,
            slot_of,
        })
    }

    /// The selected slots as sorted ranges, first and last slot included; adjacent slots
    /// merged into one range (as Redis's `slotRangeArrayAppend` merges them).
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    /// Whether `slot` is selected.
    pub fn contains(&self, slot: u16) -> bool {
        let slot = usize::from(slot);
        slot < SLOTS && self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// Whether `key`'s slot is selected.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.contains((self.slot_of)(key))
    }
}

/// What one worker thread counts during a session with selected slots (in its summaries).
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    pub(crate) slots: Arc<SelectedSlots>,
    /// The session's `SAMPLE` ratio: with selected slots every command with keys comes to
    /// [`super::HotKeys::sample`], which draws the sample itself.
    pub(crate) ratio: u32,
    pub(crate) counts: SelectedCounts,
}

/// The node's counts of the commands on selected slots (Redis's `*-selected-slots` fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectedCounts {
    /// Microseconds of every command on the selected slots.
    pub all_commands_us: u64,
    /// Bytes in and out of every command on the selected slots.
    pub all_commands_net_bytes: u64,
    /// Microseconds of the sampled commands among them.
    pub sampled_commands_us: u64,
    /// Bytes in and out of the sampled commands among them.
    pub sampled_commands_net_bytes: u64,
}

impl SelectedCounts {
    /// Adds `other`'s counts (another thread's).
    pub(crate) fn add(&mut self, other: &SelectedCounts) {
        self.all_commands_us = self.all_commands_us.saturating_add(other.all_commands_us);
        self.all_commands_net_bytes = self
            .all_commands_net_bytes
            .saturating_add(other.all_commands_net_bytes);
        self.sampled_commands_us = self
            .sampled_commands_us
            .saturating_add(other.sampled_commands_us);
        self.sampled_commands_net_bytes = self
            .sampled_commands_net_bytes
            .saturating_add(other.sampled_commands_net_bytes);
    }

    /// Counts a command of `us` microseconds and `bytes` bytes; `sampled` if it is sampled.
    pub(crate) fn count(&mut self, us: u64, bytes: u64, sampled: bool) {
        self.all_commands_us = self.all_commands_us.saturating_add(us);
        self.all_commands_net_bytes = self.all_commands_net_bytes.saturating_add(bytes);
        if sampled {
            self.sampled_commands_us = self.sampled_commands_us.saturating_add(us);
            self.sampled_commands_net_bytes = self.sampled_commands_net_bytes.saturating_add(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_byte(key: &[u8]) -> u16 {
        key.first().map_or(0, |&b| u16::from(b))
    }

    #[test]
    fn slots_are_sorted_and_merged_into_ranges() {
        let s = SelectedSlots::new(&[10, 5, 1, 0, 6, 2, 16383], first_byte).unwrap();
        assert_eq!(s.ranges(), &[(0, 2), (5, 6), (10, 10), (16383, 16383)]);
        for slot in [0, 1, 2, 5, 6, 10, 16383] {
            assert!(s.contains(slot), "{slot}");
        }
        for slot in [3, 4, 7, 11, 16382, 16384, u16::MAX] {
            assert!(!s.contains(slot), "{slot}");
        }
        assert!(s.contains_key(&[5, 9]));
        assert!(!s.contains_key(&[4]));
    }

    #[test]
    fn wrong_lists_are_refused() {
        assert_eq!(
            SelectedSlots::new(&[], first_byte).unwrap_err(),
            SlotsError::Empty
        );
        assert_eq!(
            SelectedSlots::new(&[1, 16384], first_byte).unwrap_err(),
            SlotsError::OutOfRange(16384)
        );
        assert_eq!(
            SelectedSlots::new(&[7, 3, 7], first_byte).unwrap_err(),
            SlotsError::Duplicate(7)
        );
    }

    #[test]
    fn counts_add_up() {
        let mut a = SelectedCounts::default();
        a.count(5, 100, false);
        a.count(7, 10, true);
        let mut b = SelectedCounts::default();
        b.count(1, 1, true);
        a.add(&b);
        assert_eq!(
            a,
            SelectedCounts {
                all_commands_us: 13,
                all_commands_net_bytes: 111,
                sampled_commands_us: 8,
                sampled_commands_net_bytes: 11,
            }
        );
    }
}
