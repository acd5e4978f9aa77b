//! A shard's memory for entry blobs.
//!
//! Small blobs live in 64 KiB pages and are addressed by 32-bit [`Ref`]s (page number and offset
//! in 2-byte units), so an entry costs no pointer-sized fields. Freed blocks go to exact-size free
//! lists (2-byte granularity up to [`MAX_SMALL`]); an allocation takes an exact fit, else splits a
//! larger free block, else bumps from the current page. Blobs over [`MAX_SMALL`] get their own heap
//! allocation and can grow in place (amortised, so repeated `APPEND` stays cheap).
//!
//! Every byte handed out is tracked per page, so [`Arena::fragmentation`] tells how much memory
//! sits in free lists, and [`Arena::begin_compaction`] picks sparse pages to empty.

use std::ptr::NonNull;

/// Bytes per page.
pub const PAGE_SIZE: usize = 64 * 1024;
/// Allocation granularity in bytes; a [`Ref`]'s offset counts these units.
pub const GRANULE: usize = 2;
/// Largest block kept in pages; bigger blobs are separate allocations.
pub const MAX_SMALL: usize = 4096;
/// Smallest block (a free block must hold its free-list link).
pub const MIN_BLOCK: usize = 4;

const OFFSET_BITS: u32 = 15;
const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;
const LARGE_BIT: u32 = 1 << 31;
const MAX_PAGES: usize = 1 << (31 - OFFSET_BITS);
const CLASSES: usize = MAX_SMALL / GRANULE + 1;
const NO_BLOCK: u32 = u32::MAX;

/// A 32-bit handle to a block: page and offset for small blocks, or an index for large ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ref(pub u32);

impl Ref {
    /// The "no entry" value used for list ends.
    pub const NIL: Ref = Ref(u32::MAX);

    /// Whether this is [`Ref::NIL`].
    #[inline]
    pub fn is_nil(self) -> bool {
        self.0 == u32::MAX
    }

    #[inline]
    fn small(page: usize, offset: usize) -> Ref {
        debug_assert!(page < MAX_PAGES && offset.is_multiple_of(GRANULE) && offset < PAGE_SIZE);
        Ref(((page as u32) << OFFSET_BITS) | (offset / GRANULE) as u32)
    }

    #[inline]
    fn is_large(self) -> bool {
        self.0 & LARGE_BIT != 0
    }

    #[inline]
    fn page(self) -> usize {
        (self.0 >> OFFSET_BITS) as usize
    }

    #[inline]
    fn offset(self) -> usize {
        (self.0 & OFFSET_MASK) as usize * GRANULE
    }

    #[inline]
    fn large_index(self) -> usize {
        (self.0 & !LARGE_BIT) as usize
    }
}

/// Hints the CPU to bring the cache line at `ptr` into its caches. Never faults, whatever `ptr` is.
#[inline]
pub fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it does not access memory in the language's sense and
    // cannot fault, even for an invalid address. SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Rounds a block size up to the allocation granularity and minimum.
#[inline]
pub fn block_size(len: usize) -> usize {
    len.max(MIN_BLOCK).next_multiple_of(GRANULE)
}

/// The arena is full: no more pages or large slots can be addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard arena address space exhausted")]
pub struct ArenaFull;

/// One page: a fixed heap allocation that never moves while it lives.
struct Page {
    ptr: NonNull<u8>,
}

impl Page {
    fn new() -> Page {
        let boxed: Box<[u8]> = vec![0u8; PAGE_SIZE].into_boxed_slice();
        let ptr = NonNull::new(Box::into_raw(boxed).cast::<u8>()).expect("box pointer is non-null");
        Page { ptr }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `Box::into_raw` of a `[u8; PAGE_SIZE]` slice in `Page::new`
        // and is released exactly once, here.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                PAGE_SIZE,
            )));
        }
    }
}

/// The memory of one shard. Not thread-safe by itself: the shard's lock guards it.
pub struct Arena {
    pages: Vec<Option<Page>>,
    vacant_pages: Vec<usize>,
    page_live: Vec<u32>,
    retiring: Vec<bool>,
    bump_page: usize,
    bump_offset: usize,
    free_heads: Box<[u32]>,
    free_nonempty: Box<[u64]>,
    free_bytes: usize,
    large: Vec<Option<Vec<u8>>>,
    vacant_large: Vec<usize>,
    large_bytes: usize,
}

// SAFETY: an `Arena` owns its pages outright (no sharing, no thread-local state); moving it to
// another thread moves that ownership. All access goes through `&mut self` or `&self` guarded
// by the shard's mutex.
unsafe impl Send for Arena {}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    /// An empty arena; the first page is allocated on first use.
    pub fn new() -> Arena {
        Arena {
            pages: Vec::new(),
            vacant_pages: Vec::new(),
            page_live: Vec::new(),
            retiring: Vec::new(),
            bump_page: usize::MAX,
            bump_offset: PAGE_SIZE,
            free_heads: vec![NO_BLOCK; CLASSES].into_boxed_slice(),
            free_nonempty: vec![0u64; CLASSES.div_ceil(64)].into_boxed_slice(),
            free_bytes: 0,
            large: Vec::new(),
            vacant_large: Vec::new(),
            large_bytes: 0,
        }
    }

    /// Allocates a block of at least `len` bytes (see [`block_size`]); its contents are unspecified.
    pub fn alloc(&mut self, len: usize) -> Result<Ref, ArenaFull> {
        let size = block_size(len);
        if size > MAX_SMALL {
            return self.alloc_large(size);
        }
        let class = size / GRANULE;
        let r = if let Some(r) = self.pop_free(class) {
            r
        } else if let Some(r) = self.split_larger(size) {
            r
        } else {
            self.bump(size)?
        };
        self.page_live[r.page()] += size as u32;
        Ok(r)
    }

    /// Returns a block of `len` bytes (the same `len` it was allocated or resized with).
    pub fn free(&mut self, r: Ref, len: usize) {
        let size = block_size(len);
        if r.is_large() {
            let index = r.large_index();
            let block = self.large[index]
                .take()
                .expect("freeing a live large block");
            self.large_bytes -= block.capacity();
            self.vacant_large.push(index);
            return;
        }
        self.page_live[r.page()] -= size as u32;
        if !self.retiring[r.page()] {
            self.push_free(r, size);
        }
    }

    /// Tries to change a block's length without moving it: true if it now holds `new_len` bytes.
    /// Small blocks succeed when the rounded size is unchanged; large ones can always grow in place.
    pub fn resize_in_place(&mut self, r: Ref, old_len: usize, new_len: usize) -> bool {
        let (old, new) = (block_size(old_len), block_size(new_len));
        if r.is_large() {
            if new <= MAX_SMALL {
                return false;
            }
            let block = self.large[r.large_index()]
                .as_mut()
                .expect("live large block");
            let before = block.capacity();
            if new > before {
                // Amortised growth: at least double, so repeated appends stay O(1) each.
                block.reserve_exact(new.max(before * 2) - block.len());
            } else if new < before / 4 {
                block.truncate(new);
                block.shrink_to_fit();
            }
            block.resize(new, 0);
            self.large_bytes = self.large_bytes - before + block.capacity();
            return true;
        }
        old == new
    }

    /// The address of a block's first byte. Valid until the block is freed or moved.
    #[inline]
    pub fn ptr(&self, r: Ref) -> *mut u8 {
        if r.is_large() {
            let block = self.large[r.large_index()]
                .as_ref()
                .expect("live large block");
            block.as_ptr().cast_mut()
        } else {
            let page = self.pages[r.page()].as_ref().expect("live page");
            // SAFETY: offsets are below PAGE_SIZE by construction of `Ref::small`.
            unsafe { page.ptr.as_ptr().add(r.offset()) }
        }
    }

    /// Bytes obtained from the allocator: pages plus large blocks.
    pub fn reserved_bytes(&self) -> usize {
        (self.pages.len() - self.vacant_pages.len()) * PAGE_SIZE + self.large_bytes
    }

    /// Bytes sitting in free lists (reusable, but not holding data).
    pub fn free_bytes(&self) -> usize {
        self.free_bytes
    }

    /// Free-list bytes as a fraction of page bytes (0 when there are no pages).
    pub fn fragmentation(&self) -> f64 {
        let pages = (self.pages.len() - self.vacant_pages.len()) * PAGE_SIZE;
        if pages == 0 {
            0.0
        } else {
            self.free_bytes as f64 / pages as f64
        }
    }

    /// Starts emptying sparse pages: picks the pages (other than the one being filled) with
    /// fewer than `max_live` live bytes, takes their free blocks off the free lists and marks
    /// them so blocks freed there are not reused. The caller then moves every block found in
    /// them ([`is_retiring`](Self::is_retiring)) and calls [`finish_compaction`](Self::finish_compaction).
    pub fn begin_compaction(&mut self, max_live: usize) -> Vec<usize> {
        let pages: Vec<usize> = (0..self.pages.len())
            .filter(|&p| {
                self.pages[p].is_some()
                    && p != self.bump_page
                    && (self.page_live[p] as usize) < max_live
            })
            .collect();
        for &p in &pages {
            self.retiring[p] = true;
        }
        if !pages.is_empty() {
            self.unlist_retiring_free_blocks();
        }
        pages
    }

    /// Whether `r` lies in a page being emptied.
    #[inline]
    pub fn is_retiring(&self, r: Ref) -> bool {
        !r.is_large() && self.retiring[r.page()]
    }

    /// Ends a compaction: releases the pages that hold no live block any more and makes the
    /// others (if a move failed) ordinary pages again. Returns how many pages were released.
    pub fn finish_compaction(&mut self, pages: &[usize]) -> usize {
        let mut released = 0;
        for &p in pages {
            self.retiring[p] = false;
            if self.page_live[p] == 0 {
                self.pages[p] = None;
                self.vacant_pages.push(p);
                released += 1;
            }
        }
        released
    }

    fn unlist_retiring_free_blocks(&mut self) {
        for class in 1..CLASSES {
            let mut prev = NO_BLOCK;
            let mut cur = self.free_heads[class];
            while cur != NO_BLOCK {
                let next = self.read_link(Ref(cur));
                if self.retiring[Ref(cur).page()] {
                    if prev == NO_BLOCK {
                        self.free_heads[class] = next;
                    } else {
                        self.write_link(Ref(prev), next);
                    }
                    self.free_bytes -= class * GRANULE;
                } else {
                    prev = cur;
                }
                cur = next;
            }
            if self.free_heads[class] == NO_BLOCK {
                self.free_nonempty[class / 64] &= !(1 << (class % 64));
            }
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        *self = Arena::new();
    }

    fn alloc_large(&mut self, size: usize) -> Result<Ref, ArenaFull> {
        let block = vec![0u8; size];
        self.large_bytes += block.capacity();
        let index = match self.vacant_large.pop() {
            Some(index) => {
                self.large[index] = Some(block);
                index
            }
            None => {
                if self.large.len() >= (LARGE_BIT - 1) as usize {
                    self.large_bytes -= size;
                    return Err(ArenaFull);
                }
                self.large.push(Some(block));
                self.large.len() - 1
            }
        };
        Ok(Ref(LARGE_BIT | index as u32))
    }

    fn bump(&mut self, size: usize) -> Result<Ref, ArenaFull> {
        if self.bump_offset + size > PAGE_SIZE {
            let tail = PAGE_SIZE - self.bump_offset;
            if self.bump_page != usize::MAX && tail >= MIN_BLOCK {
                // Keep the page's tail as a free block rather than losing it.
                let r = Ref::small(self.bump_page, self.bump_offset);
                self.push_free(r, tail);
            }
            self.bump_page = self.new_page()?;
            self.bump_offset = 0;
        }
        let r = Ref::small(self.bump_page, self.bump_offset);
        self.bump_offset += size;
        Ok(r)
    }

    fn new_page(&mut self) -> Result<usize, ArenaFull> {
        if let Some(p) = self.vacant_pages.pop() {
            self.pages[p] = Some(Page::new());
            self.page_live[p] = 0;
            return Ok(p);
        }
        if self.pages.len() >= MAX_PAGES {
            return Err(ArenaFull);
        }
        self.pages.push(Some(Page::new()));
        self.page_live.push(0);
        self.retiring.push(false);
        Ok(self.pages.len() - 1)
    }

    fn pop_free(&mut self, class: usize) -> Option<Ref> {
        let head = self.free_heads[class];
        if head == NO_BLOCK {
            return None;
        }
        let next = self.read_link(Ref(head));
        self.free_heads[class] = next;
        if next == NO_BLOCK {
            self.free_nonempty[class / 64] &= !(1 << (class % 64));
        }
        self.free_bytes -= class * GRANULE;
        Some(Ref(head))
    }

    /// Takes the smallest free block that leaves a usable remainder, keeps the remainder free.
    fn split_larger(&mut self, size: usize) -> Option<Ref> {
        let want = (size + 16) / GRANULE;
        let class = self.next_nonempty_class(want)?;
        let r = self.pop_free(class)?;
        let remainder = class * GRANULE - size;
        let rest = Ref::small(r.page(), r.offset() + size);
        self.push_free(rest, remainder);
        Some(r)
    }

    fn next_nonempty_class(&self, from: usize) -> Option<usize> {
        if from >= CLASSES {
            return None;
        }
        let mut word = from / 64;
        let mut bits = self.free_nonempty[word] & (u64::MAX << (from % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            if word == self.free_nonempty.len() {
                return None;
            }
            bits = self.free_nonempty[word];
        }
    }

    fn push_free(&mut self, r: Ref, size: usize) {
        debug_assert!((MIN_BLOCK..=MAX_SMALL).contains(&size) && size.is_multiple_of(GRANULE));
        let class = size / GRANULE;
        self.write_link(r, self.free_heads[class]);
        self.free_heads[class] = r.0;
        self.free_nonempty[class / 64] |= 1 << (class % 64);
        self.free_bytes += size;
    }

    #[inline]
    fn read_link(&self, r: Ref) -> u32 {
        // SAFETY: `r` is a free small block of at least MIN_BLOCK (4) bytes inside a live page.
        unsafe { self.ptr(r).cast::<u32>().read_unaligned() }
    }

    #[inline]
    fn write_link(&mut self, r: Ref, next: u32) {
        // SAFETY: as in `read_link`; the block is free, so no entry aliases it.
        unsafe { self.ptr(r).cast::<u32>().write_unaligned(next) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(arena: &Arena, r: Ref, len: usize, byte: u8) {
        // SAFETY: test blocks are `len` bytes long.
        unsafe { std::ptr::write_bytes(arena.ptr(r), byte, len) }
    }

    fn check(arena: &Arena, r: Ref, len: usize, byte: u8) -> bool {
        // SAFETY: test blocks are `len` bytes long.
        let data = unsafe { std::slice::from_raw_parts(arena.ptr(r), len) };
        data.iter().all(|&b| b == byte)
    }

    #[test]
    fn blocks_do_not_overlap_and_keep_their_bytes() {
        let mut arena = Arena::new();
        let blocks: Vec<(Ref, usize)> = (0..5000)
            .map(|i| {
                let len = 14 + (i * 37) % 600;
                let r = arena.alloc(len).unwrap();
                fill(&arena, r, len, (i % 251) as u8);
                (r, len)
            })
            .collect();
        for (i, &(r, len)) in blocks.iter().enumerate() {
            assert!(
                check(&arena, r, len, (i % 251) as u8),
                "block {i} was overwritten"
            );
        }
    }

    #[test]
    fn freed_blocks_are_reused_before_new_pages() {
        let mut arena = Arena::new();
        let refs: Vec<Ref> = (0..1000).map(|_| arena.alloc(130).unwrap()).collect();
        let reserved = arena.reserved_bytes();
        let page_tails = arena.free_bytes();
        assert!(page_tails < 130, "only a page's unusable tail is free");
        for r in &refs {
            arena.free(*r, 130);
        }
        assert_eq!(arena.free_bytes(), 1000 * 130 + page_tails);
        for _ in 0..1000 {
            arena.alloc(130).unwrap();
        }
        assert_eq!(arena.reserved_bytes(), reserved);
        assert_eq!(arena.free_bytes(), page_tails);
    }

    #[test]
    fn a_larger_free_block_is_split_for_a_smaller_request() {
        let mut arena = Arena::new();
        let big = arena.alloc(1000).unwrap();
        arena.alloc(10).unwrap();
        arena.free(big, 1000);
        let pages = arena.reserved_bytes();
        let small = arena.alloc(100).unwrap();
        assert_eq!(small, big, "the freed block's start is reused");
        assert_eq!(arena.free_bytes(), 900);
        assert_eq!(arena.reserved_bytes(), pages);
    }

    #[test]
    fn large_blocks_grow_in_place() {
        let mut arena = Arena::new();
        let r = arena.alloc(10_000).unwrap();
        fill(&arena, r, 10_000, 7);
        assert!(arena.resize_in_place(r, 10_000, 50_000));
        assert!(check(&arena, r, 10_000, 7));
        assert!(arena.reserved_bytes() >= 50_000);
        arena.free(r, 50_000);
        assert_eq!(arena.reserved_bytes(), 0);
    }

    #[test]
    fn sparse_pages_can_be_emptied_and_released() {
        let mut arena = Arena::new();
        let refs: Vec<Ref> = (0..2000).map(|_| arena.alloc(100).unwrap()).collect();
        let pages_before = arena.reserved_bytes() / PAGE_SIZE;
        for (i, r) in refs.iter().enumerate() {
            if i % 10 != 0 {
                arena.free(*r, 100);
            }
        }
        let sparse = arena.begin_compaction(PAGE_SIZE / 2);
        assert!(!sparse.is_empty());
        for (i, r) in refs.iter().enumerate() {
            if i % 10 == 0 && arena.is_retiring(*r) {
                fill(&arena, *r, 100, 9);
                let moved = arena.alloc(100).unwrap();
                assert!(
                    !arena.is_retiring(moved),
                    "a block was allocated in a page being emptied"
                );
                arena.free(*r, 100);
            }
        }
        assert_eq!(arena.finish_compaction(&sparse), sparse.len());
        assert!(arena.reserved_bytes() / PAGE_SIZE < pages_before);
        assert_eq!(arena.free_bytes() % 2, 0);
    }
}
