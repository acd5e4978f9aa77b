//! Slot placement: consistent hashing with bounded loads.
//!
//! Every shard has [`VNODES`] points on a 64-bit ring at positions hashed from its id, and the
//! slots sit evenly spaced around the ring in slot order (keys are already spread uniformly over
//! slots by CRC16, so slots need no second hash, and neighbouring slots staying together keeps
//! each shard's slots in a few hundred contiguous ranges rather than thousands of single slots,
//! which is what `CLUSTER SLOTS` sends to every client). A slot belongs to the shard of the
//! first point at or after its position, wrapping past the top. Consistent hashing alone leaves
//! shards several percent apart, so a bounded-load pass caps every shard at [`cap`] slots: a slot
//! whose shard is full goes to the next distinct shard clockwise that has room.
//!
//! [`replace`] starts from the table before the shard set changed (an empty one for a new
//! cluster, which places every slot from nothing) and moves only what the change needs, as an operator would in Redis Cluster: a
//! removed shard's slots go to the remaining shards, an added shard takes its share from the
//! others, and no other slot moves. Its result therefore depends on history, not only on the
//! shard set.
//!
//! Everything here is a pure function of its inputs, with positions from the fixed
//! [`splitmix64`], so every node computes the same ring and the same tables.

use crate::map::{ShardId, SlotTable, splitmix64};
use crate::slot::{SLOTS, Slot};

/// Virtual points each shard has on the ring.
pub(crate) const VNODES: usize = 64;

/// How far above the mean load, in percent, [`cap`] lets a shard go.
const SLACK_PERCENT: usize = 5;

/// Mixed into shard ids before hashing their points.
const POINT_SALT: u64 = 0x706f_696e_745f_706f;

/// Most slots any shard may own, for `shards` shards: floor(1.05 * 16384 / shards), but never
/// below ceil(16384 / shards), so that the shards together always have room for every slot.
/// Rounding down keeps the largest load within 5% of the mean exactly. 0 for no shards.
pub(crate) fn cap(shards: usize) -> usize {
    if shards == 0 {
        return 0;
    }
    let with_slack = SLOTS * (100 + SLACK_PERCENT) / (100 * shards);
    with_slack.max(SLOTS.div_ceil(shards))
}

/// The load a newly added shard fills up to: the mean, rounded down.
fn fair_share(shards: usize) -> usize {
    SLOTS / shards
}

/// Where `slot` sits on the ring: the middle of its 1/16384 of the ring.
fn slot_position(slot: Slot) -> u64 {
    const SPACING: u64 = 1 << 50; // 2^64 / 16384
    u64::from(slot) * SPACING + SPACING / 2
}

/// Where point number `index` of `shard` sits on the ring.
fn point_position(shard: ShardId, index: usize) -> u64 {
    splitmix64(splitmix64(POINT_SALT ^ u64::from(shard.0)) ^ index as u64)
}

/// One virtual point: a position and the shard it belongs to (an index into [`Ring::shards`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Point {
    position: u64,
    shard: usize,
}

/// The ring of virtual points of a set of shards, sorted by position.
///
/// Positions come from a fixed hash of (shard id, point index), never from a random-seeded
/// hasher: every node must compute the same ring. The same shard set in any order (duplicates
/// ignored) gives the same ring.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Ring {
    /// The distinct shards, ascending by id.
    shards: Vec<ShardId>,
    /// Every shard's [`VNODES`] points, ascending by position (then shard, should two collide).
    points: Vec<Point>,
}

impl Ring {
    /// The ring of `shards`, in any order; duplicates count once.
    pub(crate) fn new(shards: &[ShardId]) -> Ring {
        let mut shards = shards.to_vec();
        shards.sort_unstable();
        shards.dedup();
        let mut points: Vec<Point> = shards
            .iter()
            .enumerate()
            .flat_map(|(index, &shard)| {
                (0..VNODES).map(move |point| Point {
                    position: point_position(shard, point),
                    shard: index,
                })
            })
            .collect();
        points.sort_unstable();
        Ring { shards, points }
    }

    /// The index of `shard` in [`Ring::shards`].
    fn index_of(&self, shard: ShardId) -> Option<usize> {
        self.shards.binary_search(&shard).ok()
    }

    /// The index of the first point at or after `position` (`points.len()` if none is).
    fn first_point_from(&self, position: u64) -> usize {
        self.points
            .partition_point(|point| point.position < position)
    }

    /// The index of the shard of the first point at or after `position`, wrapping.
    fn owner_from(&self, position: u64) -> Option<usize> {
        let first = self.first_point_from(position);
        self.points
            .get(first)
            .or(self.points.first())
            .map(|point| point.shard)
    }

    /// Indices of the distinct shards, clockwise from `position`.
    fn clockwise_from(&self, position: u64) -> impl Iterator<Item = usize> + '_ {
        let first = self.first_point_from(position);
        let mut seen = vec![false; self.shards.len()];
        self.points[first..]
            .iter()
            .chain(&self.points[..first])
            .map(|point| point.shard)
            .filter(move |&shard| !std::mem::replace(&mut seen[shard], true))
            .take(self.shards.len())
    }

    /// The positions of the points of the shard at `index`, ascending.
    fn positions_of(&self, index: usize) -> Vec<u64> {
        self.points
            .iter()
            .filter(|point| point.shard == index)
            .map(|point| point.position)
            .collect()
    }
}

/// How far clockwise from `position` the first of `points` (ascending, not empty) lies.
fn clockwise_distance(points: &[u64], position: u64) -> u64 {
    let next = points
        .get(points.partition_point(|&point| point < position))
        .or(points.first())
        .expect("every shard on a ring has points");
    next.wrapping_sub(position)
}

/// Re-placement when the shard set changes: `current` is the table before, `shards` the shards
/// after (any order, no duplicates). Moves as little as the change allows:
///
/// 1. Slots of shards no longer present, and unowned slots, are orphans. Each orphan, in slot
///    order, goes to the first shard clockwise of its position whose load is below [`cap`].
///    Nothing else moves because of a removal.
/// 2. Each added shard (present, but owning nothing in `current`), in id order, takes first the
///    excess of every shard above [`cap`] (as much as fits under its own cap), then slots until
///    it holds 16384 / n (rounded down), only from shards holding more than that. Either way it
///    takes the slots closest before its own points, mostly the ones consistent hashing would
///    give it anyway. Only slots that go to an added shard move. If no present shard owned
///    anything, step 1 alone already placed every slot as from nothing, so this step is
///    skipped.
/// 3. A shard still above [`cap`] (which the steps above leave none of when `current` was
///    within the cap of its own shard count) gives its highest slots to the least loaded shards.
///
/// No shards give an all-unowned table.
pub(crate) fn replace(current: &SlotTable, shards: &[ShardId]) -> SlotTable {
    let ring = Ring::new(shards);
    if ring.shards.is_empty() {
        return SlotTable::empty();
    }
    let mut assignment = Assignment::from_table(&ring, current);
    let added = assignment.shards_owning_nothing();
    assignment.assign_orphans();
    if added.len() < ring.shards.len() {
        for shard in added {
            assignment.fill_added_shard(shard);
        }
    }
    assignment.shed_excess();
    assignment.into_table()
}

/// How many slots have a different owner in `a` and `b`.
#[cfg(test)]
pub(crate) fn moved(a: &SlotTable, b: &SlotTable) -> usize {
    a.iter().zip(b.iter()).filter(|(x, y)| x != y).count()
}

/// A placement being worked out on a ring: each slot's owner and each shard's load, with shards
/// as indices into [`Ring::shards`].
struct Assignment<'a> {
    ring: &'a Ring,
    owners: Vec<Option<usize>>,
    loads: Vec<usize>,
    cap: usize,
}

impl<'a> Assignment<'a> {
    /// Every slot unowned.
    fn unowned(ring: &'a Ring) -> Assignment<'a> {
        Assignment {
            ring,
            owners: vec![None; SLOTS],
            loads: vec![0; ring.shards.len()],
            cap: cap(ring.shards.len()),
        }
    }

    /// `table`'s owners, with slots of shards not on `ring` unowned.
    fn from_table(ring: &'a Ring, table: &SlotTable) -> Assignment<'a> {
        let mut assignment = Assignment::unowned(ring);
        for (slot, owner) in table.iter().enumerate() {
            if let Some(shard) = owner.and_then(|owner| ring.index_of(owner)) {
                assignment.give(slot, shard);
            }
        }
        assignment
    }

    /// The shards that own no slot, ascending by id.
    fn shards_owning_nothing(&self) -> Vec<usize> {
        (0..self.loads.len())
            .filter(|&shard| self.loads[shard] == 0)
            .collect()
    }

    /// Makes `shard` the owner of `slot`.
    fn give(&mut self, slot: usize, shard: usize) {
        if let Some(previous) = self.owners[slot] {
            self.loads[previous] -= 1;
        }
        self.owners[slot] = Some(shard);
        self.loads[shard] += 1;
    }

    /// Step 1: every unowned slot, in slot order, to the first shard clockwise with room.
    fn assign_orphans(&mut self) {
        for slot in 0..SLOTS {
            if self.owners[slot].is_none() {
                let shard = self.first_with_room(slot);
                self.give(slot, shard);
            }
        }
    }

    /// The first shard clockwise of `slot`'s position whose load is below the cap.
    fn first_with_room(&self, slot: usize) -> usize {
        let position = slot_position(slot as Slot);
        let has_room = |shard: &usize| self.loads[*shard] < self.cap;
        // The owner usually has room; only when it has none is the walk (which allocates) needed.
        self.ring
            .owner_from(position)
            .filter(has_room)
            .or_else(|| self.ring.clockwise_from(position).find(has_room))
            .expect("shards * cap >= SLOTS, so while a slot is unowned some shard has room")
    }

    /// Step 2 for one added shard: the excess of shards above the cap, then its fair share.
    fn fill_added_shard(&mut self, shard: usize) {
        let nearest_first = self.slots_nearest_first(shard);
        let fair = fair_share(self.ring.shards.len());
        self.take_while_below(shard, self.cap, self.cap, &nearest_first);
        // While this shard holds less than the fair share, some other holds more, so this pass
        // always fills it up to the fair share.
        self.take_while_below(shard, fair, fair, &nearest_first);
    }

    /// The slots `shard` does not own, ascending by the clockwise distance from their position
    /// to its nearest point at or after it (then by slot).
    fn slots_nearest_first(&self, shard: usize) -> Vec<usize> {
        let points = self.ring.positions_of(shard);
        let mut by_distance: Vec<(u64, usize)> = (0..SLOTS)
            .filter(|&slot| self.owners[slot] != Some(shard))
            .map(|slot| {
                (
                    clockwise_distance(&points, slot_position(slot as Slot)),
                    slot,
                )
            })
            .collect();
        by_distance.sort_unstable();
        by_distance.into_iter().map(|(_, slot)| slot).collect()
    }

    /// Gives `taker` the `candidates` in order while it holds fewer than `limit`, each only if its
    /// owner holds more than `donor_floor`.
    fn take_while_below(
        &mut self,
        taker: usize,
        limit: usize,
        donor_floor: usize,
        candidates: &[usize],
    ) {
        for &slot in candidates {
            if self.loads[taker] >= limit {
                break;
            }
            match self.owners[slot] {
                Some(donor) if donor != taker && self.loads[donor] > donor_floor => {
                    self.give(slot, taker)
                }
                _ => {}
            }
        }
    }

    /// Step 3, a fallback: every shard above the cap gives its highest slots, one at a time, to
    /// whichever shard is least loaded (lowest id on a tie).
    fn shed_excess(&mut self) {
        for donor in 0..self.loads.len() {
            let mut slot = SLOTS;
            while self.loads[donor] > self.cap {
                slot -= 1;
                if self.owners[slot] == Some(donor) {
                    let taker = self.least_loaded();
                    self.give(slot, taker);
                }
            }
        }
    }

    /// The shard with the smallest load, lowest id on a tie.
    fn least_loaded(&self) -> usize {
        (0..self.loads.len())
            .min_by_key(|&shard| (self.loads[shard], shard))
            .expect("an assignment is only made on a ring with shards")
    }

    /// The finished table.
    fn into_table(self) -> SlotTable {
        let mut table = SlotTable::empty();
        for (slot, owner) in self.owners.iter().enumerate() {
            table.set(slot as Slot, owner.map(|shard| self.ring.shards[shard]));
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    /// Test-only views of the ring: what the production code uses through `owner_from` and
    /// `clockwise_from`, in shard ids.
    impl Ring {
        /// The shard of the first point at or after `slot`'s position, wrapping past the top of the
        /// ring; `None` for a ring without shards.
        fn owner(&self, slot: Slot) -> Option<ShardId> {
            self.owner_from(slot_position(slot))
                .map(|index| self.shards[index])
        }

        /// Every shard once, in the order its first point comes clockwise from `slot`'s position: the
        /// owner first, then the shards a bounded-load pass falls back to.
        fn clockwise(&self, slot: Slot) -> impl Iterator<Item = ShardId> + '_ {
            self.clockwise_from(slot_position(slot))
                .map(|index| self.shards[index])
        }
    }

    /// Initial placement: every slot, in order 0..16384, to the first shard clockwise of its
    /// position that still has room under [`cap`]. No shards give an all-unowned table.
    fn place(shards: &[ShardId]) -> SlotTable {
        let ring = Ring::new(shards);
        if ring.shards.is_empty() {
            return SlotTable::empty();
        }
        let mut assignment = Assignment::unowned(&ring);
        assignment.assign_orphans();
        assignment.into_table()
    }

    fn ids(raw: impl IntoIterator<Item = u32>) -> Vec<ShardId> {
        raw.into_iter().map(ShardId).collect()
    }

    fn loads(table: &SlotTable) -> BTreeMap<Option<ShardId>, usize> {
        let mut loads = BTreeMap::new();
        for owner in table.iter() {
            *loads.entry(owner).or_insert(0) += 1;
        }
        loads
    }

    /// Every slot is owned by one of `shards`, and the largest load is within 5% of the mean.
    fn assert_owned_and_balanced(table: &SlotTable, shards: &[ShardId]) {
        let loads = loads(table);
        for owner in loads.keys() {
            assert!(
                owner.is_some_and(|owner| shards.contains(&owner)),
                "a slot is owned by {owner:?}, not one of {shards:?}"
            );
        }
        let max = *loads.values().max().expect("16384 slots");
        let mean = SLOTS as f64 / shards.len() as f64;
        assert!(
            max as f64 / mean <= 1.05,
            "{} shards: max load {max} is {:.4} x the mean",
            shards.len(),
            max as f64 / mean
        );
    }

    /// Slots that changed owner went to one of `added`, or were unowned or owned by one of
    /// `removed`.
    fn assert_moved_only_for(
        before: &SlotTable,
        after: &SlotTable,
        added: &[ShardId],
        removed: &[ShardId],
    ) {
        for (slot, (old, new)) in before.iter().zip(after.iter()).enumerate() {
            if old != new {
                assert!(
                    new.is_some_and(|new| added.contains(&new))
                        || old.is_none_or(|old| removed.contains(&old)),
                    "slot {slot} moved from {old:?} to {new:?} (added {added:?}, removed {removed:?})"
                );
            }
        }
    }

    fn assert_one_addition_moved_about_its_share(before: &SlotTable, after: &SlotTable, n: usize) {
        let share = SLOTS as f64 / n as f64;
        let moved = moved(before, after) as f64;
        assert!(
            (0.8 * share..=1.2 * share).contains(&moved),
            "adding the {n}th shard moved {moved} slots, share {share:.1}"
        );
    }

    /// `place` of shards 0..n for n in 0..=64, computed once for the tests that loop over n.
    fn placed_0_to(n: u32) -> &'static SlotTable {
        static TABLES: std::sync::OnceLock<Vec<SlotTable>> = std::sync::OnceLock::new();
        &TABLES.get_or_init(|| (0..=64).map(|n| place(&ids(0..n))).collect())[n as usize]
    }

    fn check_addition(before_shards: &[ShardId], added: ShardId) {
        check_addition_to(&place(before_shards), before_shards, added);
    }

    fn check_addition_to(before: &SlotTable, before_shards: &[ShardId], added: ShardId) {
        let mut after_shards = before_shards.to_vec();
        after_shards.push(added);
        let after = replace(before, &after_shards);
        assert_moved_only_for(before, &after, &[added], &[]);
        assert_one_addition_moved_about_its_share(before, &after, after_shards.len());
        assert_owned_and_balanced(&after, &after_shards);
    }

    fn check_removal(before_shards: &[ShardId], removed: ShardId) {
        check_removal_from(&place(before_shards), before_shards, removed);
    }

    fn check_removal_from(before: &SlotTable, before_shards: &[ShardId], removed: ShardId) {
        let after_shards: Vec<ShardId> = before_shards
            .iter()
            .copied()
            .filter(|&shard| shard != removed)
            .collect();
        let after = replace(before, &after_shards);
        assert_moved_only_for(before, &after, &[], &[removed]);
        assert_owned_and_balanced(&after, &after_shards);
    }

    /// The first point at or after `slot`'s position, found the slow way from the definition.
    fn first_clockwise_by_brute_force(shards: &[ShardId], slot: Slot) -> ShardId {
        let target = slot_position(slot);
        let points: Vec<(u64, ShardId)> = shards
            .iter()
            .flat_map(|&shard| (0..VNODES).map(move |i| (point_position(shard, i), shard)))
            .collect();
        let at_or_after = points
            .iter()
            .filter(|(position, _)| *position >= target)
            .min();
        at_or_after
            .or(points.iter().min())
            .map(|&(_, shard)| shard)
            .expect("some points")
    }

    fn shard_set(sizes: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<ShardId>> {
        prop::collection::btree_set(any::<u32>(), sizes).prop_map(ids)
    }

    #[test]
    fn cap_is_five_percent_over_the_mean_rounded_down() {
        assert_eq!(cap(0), 0);
        assert_eq!(cap(1), 17203);
        assert_eq!(cap(3), 5734);
        assert_eq!(cap(64), 268, "1.05 * 256 = 268.8");
        for n in 1..=1024 {
            assert!(
                cap(n) * n >= SLOTS,
                "{n} shards must have room for every slot"
            );
        }
        for n in 1..=64 {
            assert!(
                cap(n) as f64 <= 1.05 * SLOTS as f64 / n as f64,
                "{n} shards"
            );
        }
    }

    #[test]
    fn place_owns_every_slot_within_five_percent_for_1_to_64_shards() {
        for n in 1..=64 {
            let shards = ids(0..n);
            let table = placed_0_to(n);
            assert_owned_and_balanced(table, &shards);
            assert_eq!(
                loads(table).len(),
                shards.len(),
                "{n} shards: one owns nothing"
            );
        }
    }

    #[test]
    fn adding_one_shard_moves_only_its_share_to_it_for_1_to_63_shards() {
        for n in 1..=63 {
            check_addition_to(placed_0_to(n), &ids(0..n), ShardId(n));
        }
    }

    #[test]
    fn removing_one_shard_moves_only_its_slots_for_2_to_64_shards() {
        for n in 2..=64 {
            check_removal_from(placed_0_to(n), &ids(0..n), ShardId(n / 2));
        }
    }

    #[test]
    fn owner_is_the_first_point_clockwise() {
        for shards in [ids([7]), ids([0, 1]), ids([3, 1_000_000, 42, u32::MAX, 9])] {
            let ring = Ring::new(&shards);
            for slot in (0..SLOTS as Slot).step_by(61).chain([0, 16383]) {
                let expected = first_clockwise_by_brute_force(&shards, slot);
                assert_eq!(
                    ring.owner(slot),
                    Some(expected),
                    "slot {slot} of {shards:?}"
                );
            }
        }
        assert_eq!(Ring::new(&[]).owner(0), None);
    }

    #[test]
    fn clockwise_lists_every_shard_once_starting_with_the_owner() {
        let shards = ids([5, 9, 2, 40, 17]);
        let ring = Ring::new(&shards);
        for slot in (0..SLOTS as Slot).step_by(997) {
            let order: Vec<ShardId> = ring.clockwise(slot).collect();
            assert_eq!(order.first().copied(), ring.owner(slot));
            let distinct: BTreeSet<ShardId> = order.iter().copied().collect();
            assert_eq!(order.len(), shards.len());
            assert_eq!(distinct, shards.iter().copied().collect());
        }
        assert_eq!(Ring::new(&[]).clockwise(0).count(), 0);
    }

    #[test]
    fn place_is_deterministic_and_pinned() {
        let shards = ids(0..4);
        assert_eq!(place(&shards), place(&shards));
        // Every node must compute the same table: a change here breaks mixed-version clusters.
        let table = place(&shards);
        let first: Vec<Option<ShardId>> = table.iter().take(8).collect();
        assert_eq!(first, PINNED_FIRST_OWNERS.map(|s| Some(ShardId(s))));
        let counts: Vec<usize> = shards.iter().map(|&s| table.count(s)).collect();
        assert_eq!(counts, PINNED_COUNTS);
    }

    const PINNED_FIRST_OWNERS: [u32; 8] = [0, 0, 1, 1, 1, 1, 1, 1];
    const PINNED_COUNTS: [usize; 4] = [4050, 3915, 4119, 4300];

    #[test]
    fn neighbouring_slots_stay_together() {
        // What CLUSTER SLOTS sends every client: a few ranges per virtual point, not one per slot.
        for n in [3usize, 4, 16] {
            let ranges = place(&ids(0..n as u32)).ranges().len();
            assert!(ranges <= n * VNODES, "{n} shards: {ranges} ranges");
        }
    }

    #[test]
    fn replacing_from_nothing_is_placing() {
        for shards in [ids([1]), ids(0..5), ids([8, 3, 99, 12, 4, 7])] {
            assert_eq!(replace(&SlotTable::empty(), &shards), place(&shards));
            // All old shards gone at once: every slot is an orphan, placed afresh.
            assert_eq!(replace(&place(&ids([500, 501])), &shards), place(&shards));
        }
    }

    #[test]
    fn no_shards_own_nothing() {
        assert_eq!(place(&[]), SlotTable::empty());
        assert_eq!(replace(&place(&ids(0..3)), &[]), SlotTable::empty());
    }

    #[test]
    fn a_shard_above_the_cap_sheds_its_excess_to_the_least_loaded() {
        let mut current = SlotTable::all(ShardId(0));
        for slot in 0..1000 {
            current.set(slot, Some(ShardId(1)));
        }
        let shards = ids([0, 1]);
        let table = replace(&current, &shards);
        assert_eq!(table.count(ShardId(0)), cap(2));
        assert_eq!(table.count(ShardId(1)), SLOTS - cap(2));
        assert_moved_only_for(&current, &table, &[ShardId(1)], &[]);
    }

    #[test]
    fn jumps_between_1_and_64_shards_stay_owned_balanced_and_minimal() {
        let one = ids([0]);
        let all = ids(0..64);
        for (before_shards, after_shards) in [(&one, &all), (&all, &one)] {
            let before = place(before_shards);
            let after = replace(&before, after_shards);
            assert_owned_and_balanced(&after, after_shards);
            let added: Vec<ShardId> = after_shards
                .iter()
                .copied()
                .filter(|s| !before_shards.contains(s))
                .collect();
            let removed: Vec<ShardId> = before_shards
                .iter()
                .copied()
                .filter(|s| !after_shards.contains(s))
                .collect();
            assert_moved_only_for(&before, &after, &added, &removed);
        }
    }

    #[test]
    fn unowned_slots_are_placed_without_moving_owned_ones() {
        let shards = ids(0..4);
        let mut current = place(&shards);
        for slot in (0..SLOTS as Slot).step_by(7) {
            current.set(slot, None);
        }
        let table = replace(&current, &shards);
        assert_moved_only_for(&current, &table, &[], &[]);
        assert_owned_and_balanced(&table, &shards);
    }

    /// One change of the shard set in a random sequence.
    #[derive(Clone, Debug)]
    enum Change {
        Add(u32),
        Remove(Index),
        AddTwo(u32, u32),
        RemoveTwo(Index, Index),
        Swap(Index, u32),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            3 => any::<u32>().prop_map(Change::Add),
            3 => any::<Index>().prop_map(Change::Remove),
            1 => (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Change::AddTwo(a, b)),
            1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Change::RemoveTwo(a, b)),
            1 => (any::<Index>(), any::<u32>()).prop_map(|(a, b)| Change::Swap(a, b)),
        ]
    }

    /// The shard set after `change`, or `None` if it would leave 1..=64 shards or add a present one.
    fn apply(shards: &BTreeSet<ShardId>, change: &Change) -> Option<BTreeSet<ShardId>> {
        let present: Vec<ShardId> = shards.iter().copied().collect();
        let pick = |index: &Index| present[index.index(present.len())];
        let (added, removed) = match change {
            Change::Add(a) => (ids([*a]), vec![]),
            Change::Remove(r) => (vec![], vec![pick(r)]),
            Change::AddTwo(a, b) => (ids([*a, *b]), vec![]),
            Change::RemoveTwo(r, s) => (vec![], vec![pick(r), pick(s)]),
            Change::Swap(r, a) => (ids([*a]), vec![pick(r)]),
        };
        let mut after = shards.clone();
        for shard in &removed {
            after.remove(shard);
        }
        for shard in &added {
            if shards.contains(shard) || !after.insert(*shard) {
                return None;
            }
        }
        (1..=64).contains(&after.len()).then_some(after)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn place_balances_any_shard_ids(shards in shard_set(1..=64)) {
            let table = place(&shards);
            assert_owned_and_balanced(&table, &shards);
            prop_assert_eq!(loads(&table).len(), shards.len());
        }

        #[test]
        fn adding_any_shard_moves_only_its_share_to_it(
            shards in shard_set(2..=64),
            pick in any::<Index>(),
        ) {
            let added = shards[pick.index(shards.len())];
            let before: Vec<ShardId> = shards.iter().copied().filter(|&s| s != added).collect();
            check_addition(&before, added);
        }

        #[test]
        fn removing_any_shard_moves_only_its_slots(
            shards in shard_set(2..=64),
            pick in any::<Index>(),
        ) {
            check_removal(&shards, shards[pick.index(shards.len())]);
        }

        #[test]
        fn input_order_changes_neither_ring_nor_placement(
            shuffled in shard_set(1..=24).prop_flat_map(|s| Just(s).prop_shuffle()),
        ) {
            let mut sorted = shuffled.clone();
            sorted.sort();
            prop_assert_eq!(Ring::new(&shuffled), Ring::new(&sorted));
            let before = place(&sorted);
            prop_assert_eq!(&place(&shuffled), &before);
            let mut grown = shuffled.clone();
            if !grown.contains(&ShardId(u32::MAX)) {
                grown.insert(0, ShardId(u32::MAX));
            }
            let mut grown_sorted = grown.clone();
            grown_sorted.sort();
            prop_assert_eq!(replace(&before, &grown), replace(&before, &grown_sorted));
        }

        #[test]
        fn random_changes_keep_every_slot_owned_and_balanced(
            initial in prop::collection::btree_set(any::<u32>(), 1..=64),
            changes in prop::collection::vec(change(), 1..=12),
        ) {
            let mut shards: BTreeSet<ShardId> = initial.into_iter().map(ShardId).collect();
            let mut table = place(&shards.iter().copied().collect::<Vec<_>>());
            for change in &changes {
                let Some(after) = apply(&shards, change) else { continue };
                let after_list: Vec<ShardId> = after.iter().copied().collect();
                let next = replace(&table, &after_list);
                assert_owned_and_balanced(&next, &after_list);
                let added: Vec<ShardId> = after.difference(&shards).copied().collect();
                let removed: Vec<ShardId> = shards.difference(&after).copied().collect();
                assert_moved_only_for(&table, &next, &added, &removed);
                if added.len() == 1 && removed.is_empty() {
                    assert_one_addition_moved_about_its_share(&table, &next, after.len());
                }
                shards = after;
                table = next;
            }
        }
    }
}
