//! A shard's memory for entry blobs.
//!
//! Small blobs live in 64 KiB pages and are addressed by 32-bit [`Ref`]s (page number and offset
//! in 2-byte units), so an entry costs no pointer-sized fields. Freed blocks go to exact-size,
//! doubly linked free lists (2-byte granularity up to [`MAX_SMALL`]); an allocation takes an
//! exact fit, else splits a larger free block, else bumps from the current page. Blobs over
//! [`MAX_SMALL`] get their own heap allocation and can grow in place (amortised, so repeated
//! `APPEND` stays cheap).
//!
//! The blocks of a page tile it, and a free block says so and says its size (see
//! [`FREE_MARK`]), so a page can be walked block by block. That is how memory goes back:
//!
//! * A page whose last live block is freed leaves the free lists and is released at once (to
//!   the store's [`PagePool`], which keeps a few spare pages for any shard and hands the rest
//!   back to the allocator). A workload that deletes or evicts in the order it wrote never
//!   leaves empty pages behind.
//! * [`Arena::begin_evacuation`] takes a sparse page's free blocks off the lists so the shard
//!   can move its blobs elsewhere ([`Arena::next_block`] walks it) and release it: compaction.
//!
//! Near the memory limit the shard asks for [`SMALL_PAGE`]s instead (16 KiB, for blocks up to
//! [`SMALL_PAGE_MAX_BLOCK`]): the last page a shard takes is the one it may leave partly
//! unused, and a small one leaves less.
//!
//! Every byte handed out is counted per page, so the arena knows its live, free and reserved
//! bytes, and how many bytes it has handed back to the allocator.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;

/// Bytes per page.
pub const PAGE_SIZE: usize = 64 * 1024;
/// Bytes of a small page, taken instead of a page near the memory limit (see
/// [`Arena::alloc`]) for blocks up to [`SMALL_PAGE_MAX_BLOCK`].
pub const SMALL_PAGE: usize = 16 * 1024;
/// Largest block that goes into a small page.
pub const SMALL_PAGE_MAX_BLOCK: usize = 2048;
/// Allocation granularity in bytes; a [`Ref`]'s offset counts these units.
pub const GRANULE: usize = 2;
/// Largest block kept in pages; bigger blobs are separate allocations.
pub const MAX_SMALL: usize = 4096;
/// Smallest block: a free block holds its two free-list links, its mark and its size.
pub const MIN_BLOCK: usize = 12;

const OFFSET_BITS: u32 = 15;
const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;
const LARGE_BIT: u32 = 1 << 31;
const MAX_PAGES: usize = 1 << (31 - OFFSET_BITS);
const CLASSES: usize = MAX_SMALL / GRANULE + 1;
const NO_BLOCK: u32 = u32::MAX;
const NO_PAGE: usize = usize::MAX;
/// A free block is split for a smaller one only if this much remains (a usable free block).
const SPLIT_REMAINDER: usize = 16;

/// Whether a free block of `block` bytes can hold a block of `want` bytes (both rounded by
/// [`block_size`]): exactly, or split with a usable remainder.
fn fits(block: usize, want: usize) -> bool {
    block == want || block >= want + SPLIT_REMAINDER
}

/// Free block layout: next and previous block of its size class, the mark, the size.
const FREE_NEXT: usize = 0;
const FREE_PREV: usize = 4;
const FREE_MARK_AT: usize = 8;
/// The low four bits of byte 8 of a block that holds no entry. An entry keeps its flags there,
/// and no entry has this pair of them (`entry.rs` checks it), so a page can be walked block by
/// block, telling free blocks from entries.
pub(crate) const FREE_MARK: u8 = 4 | 8;
const FREE_SIZE: usize = 10;

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

/// One page ([`PAGE_SIZE`] or [`SMALL_PAGE`] bytes): a fixed heap allocation that never moves
/// while it lives. Its bytes start uninitialised: nothing reads a block before writing it.
pub struct Page {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: a `Page` owns its allocation outright; moving it to another thread moves that
// ownership, and nothing else points into it once it has left its arena.
unsafe impl Send for Page {}

impl Page {
    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 16).expect("a page's layout is valid")
    }

    fn new(size: usize) -> Page {
        let layout = Self::layout(size);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        match NonNull::new(ptr) {
            Some(ptr) => Page { ptr, size },
            None => std::alloc::handle_alloc_error(layout),
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc` with this layout in `Page::new` and is released
        // exactly once, here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.size)) }
    }
}

/// Empty pages ([`PAGE_SIZE`] ones) shared by every shard of a store: a page released by one
/// shard is the next page another one takes, without a round trip through the allocator. It
/// keeps at most `capacity` pages; the rest go back to the allocator.
pub struct PagePool {
    spare: Mutex<Vec<Page>>,
    capacity: usize,
}

impl PagePool {
    /// A pool that keeps up to `capacity` spare pages.
    pub fn new(capacity: usize) -> PagePool {
        PagePool {
            spare: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
        }
    }

    /// Spare pages held now.
    pub fn spare(&self) -> usize {
        self.spare.lock().len()
    }

    fn take(&self) -> Page {
        self.spare
            .lock()
            .pop()
            .unwrap_or_else(|| Page::new(PAGE_SIZE))
    }

    /// Keeps `page` as a spare, or frees it when the pool is full. Returns whether it was freed.
    fn put(&self, page: Page) -> bool {
        let mut spare = self.spare.lock();
        if spare.len() < self.capacity {
            spare.push(page);
            false
        } else {
            drop(spare);
            drop(page);
            true
        }
    }
}

/// One block of a page, as [`Arena::next_block`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Where it is.
    pub at: Ref,
    /// Its size in bytes.
    pub size: usize,
    /// Whether it is free (else it holds a blob).
    pub free: bool,
}

/// Gives the length of the blob that starts at a pointer (for blocks that are not free).
pub type BlobLen = fn(*mut u8) -> usize;

/// The memory of one shard. Not thread-safe by itself: the shard's lock guards it.
pub struct Arena {
    pool: Arc<PagePool>,
    blob_len: BlobLen,
    pages: Vec<Option<Page>>,
    vacant_pages: Vec<usize>,
    page_live: Vec<u32>,
    page_bytes: usize,
    bump_page: usize,
    bump_offset: usize,
    /// The page being emptied by compaction: its free blocks are off the lists, and blocks
    /// freed in it stay off them.
    evacuating: usize,
    free_heads: Box<[u32]>,
    free_nonempty: Box<[u64]>,
    free_bytes: usize,
    live_bytes: usize,
    large: Vec<Option<Vec<u8>>>,
    vacant_large: Vec<usize>,
    large_bytes: usize,
    returned: u64,
}

// SAFETY: an `Arena` owns its pages outright (no sharing, no thread-local state); moving it to
// another thread moves that ownership. All access goes through `&mut self` or `&self` guarded
// by the shard's mutex.
unsafe impl Send for Arena {}

impl Arena {
    /// An empty arena that takes and releases pages through `pool` and reads the length of a
    /// blob it holds with `blob_len`; the first page is taken on first use.
    pub fn new(pool: Arc<PagePool>, blob_len: BlobLen) -> Arena {
        Arena {
            pool,
            blob_len,
            pages: Vec::new(),
            vacant_pages: Vec::new(),
            page_live: Vec::new(),
            page_bytes: 0,
            bump_page: NO_PAGE,
            bump_offset: 0,
            evacuating: NO_PAGE,
            free_heads: vec![NO_BLOCK; CLASSES].into_boxed_slice(),
            free_nonempty: vec![0u64; CLASSES.div_ceil(64)].into_boxed_slice(),
            free_bytes: 0,
            live_bytes: 0,
            large: Vec::new(),
            vacant_large: Vec::new(),
            large_bytes: 0,
            returned: 0,
        }
    }

    /// Allocates a block of at least `len` bytes (see [`block_size`]); its contents are
    /// unspecified. If it needs a new page and `small_page` is set (the store is near its memory
    /// limit), a block of up to [`SMALL_PAGE_MAX_BLOCK`] gets a [`SMALL_PAGE`]: a shard then
    /// keeps less of a page unused when it stops growing.
    pub fn alloc(&mut self, len: usize, small_page: bool) -> Result<Ref, ArenaFull> {
        match self.alloc_in_place(len) {
            Some(r) => Ok(r),
            None => self.alloc_new(len, small_page),
        }
    }

    /// A small block of at least `len` bytes that needs no new page: a free block that fits
    /// (split if it is larger, see [`fits`]), or room left in the page being filled. `None` if
    /// the block is large or would take a new page (then [`alloc_new`](Self::alloc_new)).
    pub fn alloc_in_place(&mut self, len: usize) -> Option<Ref> {
        let size = block_size(len);
        if size > MAX_SMALL {
            return None;
        }
        let r = match self.pop_free(size / GRANULE) {
            Some(r) => r,
            None => match self.split_larger(size) {
                Some(r) => r,
                None if size <= self.bump_room() => self.bump(size),
                None => return None,
            },
        };
        Some(self.taken(r, size))
    }

    /// A block of at least `len` bytes that [`alloc_in_place`](Self::alloc_in_place) could not
    /// give: a large block, or a small one from a new page (see [`alloc`](Self::alloc) for
    /// `small_page`).
    pub fn alloc_new(&mut self, len: usize, small_page: bool) -> Result<Ref, ArenaFull> {
        let size = block_size(len);
        if size > MAX_SMALL {
            return self.alloc_large(size);
        }
        self.start_page(small_page && size <= SMALL_PAGE_MAX_BLOCK)?;
        let r = self.bump(size);
        Ok(self.taken(r, size))
    }

    /// Counts block `r` of `size` bytes as live, and clears a free mark it may still carry (a
    /// block taken from a free list, or from a page back from the pool), so that a page walk
    /// between now and the blob's first write cannot take it for a free block.
    fn taken(&mut self, r: Ref, size: usize) -> Ref {
        self.page_live[r.page()] += size as u32;
        self.live_bytes += size;
        // SAFETY: `r` is a block of at least MIN_BLOCK (> FREE_MARK_AT) bytes in a live page,
        // just taken by the caller, which writes its blob next.
        unsafe { self.ptr(r).add(FREE_MARK_AT).write(0) };
        r
    }

    /// Whether an allocation of `len` bytes would take a new page: a small block that no free
    /// block fits and the page being filled has no room for.
    pub fn needs_page(&self, len: usize) -> bool {
        let size = block_size(len);
        size <= MAX_SMALL
            && self.free_heads[size / GRANULE] == NO_BLOCK
            && self
                .next_nonempty_class((size + SPLIT_REMAINDER) / GRANULE)
                .is_none()
            && size > self.bump_room()
    }

    /// Whether freeing block `r` of `len` bytes would let an allocation of `want` bytes go
    /// without a new page: the block fits it (exactly, or split with a usable remainder), or
    /// it is the last live block of its page, which is then released for the taking.
    pub fn freeing_serves(&self, r: Ref, len: usize, want: usize) -> bool {
        if r.is_large() {
            return false;
        }
        let size = block_size(len);
        fits(size, block_size(want)) || self.page_live[r.page()] as usize == size
    }

    /// The page a block lies in (`None` for a large block).
    pub fn page_of(&self, r: Ref) -> Option<usize> {
        (!r.is_large()).then(|| r.page())
    }

    /// Bytes of `page` (which must be held).
    fn page_size(&self, page: usize) -> usize {
        self.pages[page].as_ref().expect("a held page").size
    }

    /// Bytes left at the end of the page being bump-allocated from.
    fn bump_room(&self) -> usize {
        if self.bump_page == NO_PAGE {
            0
        } else {
            self.page_size(self.bump_page) - self.bump_offset
        }
    }

    /// Returns a block of `len` bytes (the same `len` it was allocated or resized with). A page
    /// left without live blocks is released (the page being bump-allocated from too: the next
    /// allocation takes a page from the pool).
    pub fn free(&mut self, r: Ref, len: usize) {
        if r.is_large() {
            let index = r.large_index();
            let block = self.large[index]
                .take()
                .expect("freeing a live large block");
            self.large_bytes -= block.capacity();
            self.returned += block.capacity() as u64;
            self.vacant_large.push(index);
            return;
        }
        let size = block_size(len);
        let page = r.page();
        self.page_live[page] -= size as u32;
        self.live_bytes -= size;
        if page == self.evacuating {
            self.mark_free(r, size);
            return;
        }
        self.push_free(r, size);
        if self.page_live[page] == 0 {
            self.release_page(page);
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
            let after = block.capacity();
            self.large_bytes = self.large_bytes - before + after;
            self.returned += before.saturating_sub(after) as u64;
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

    /// Pages held.
    pub fn pages(&self) -> usize {
        self.pages.len() - self.vacant_pages.len()
    }

    /// Bytes obtained from the allocator: pages plus large blocks.
    pub fn reserved_bytes(&self) -> usize {
        self.page_bytes + self.large_bytes
    }

    /// Bytes of the pages held.
    pub fn page_bytes(&self) -> usize {
        self.page_bytes
    }

    /// Bytes of blocks that hold blobs: small blocks plus large blocks (their capacity).
    pub fn live_bytes(&self) -> usize {
        self.live_bytes + self.large_bytes
    }

    /// Bytes sitting in free lists (reusable, but not holding data).
    pub fn free_bytes(&self) -> usize {
        self.free_bytes
    }

    /// Bytes handed back to the allocator since the last call (pages the pool did not keep,
    /// large blocks freed or shrunk): memory the allocator holds free until it reuses or trims
    /// it.
    pub fn take_returned_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.returned)
    }

    /// Bytes of pages that hold no blob: free-list blocks, the unused end of the page being
    /// filled, and page tails too small to list. What compaction can win back.
    pub fn slack_bytes(&self) -> usize {
        self.page_bytes - self.live_bytes
    }

    /// The page least used (live bytes against its size), its live bytes and its size; `None`
    /// if there is no page. The page being filled counts only with `with_bump`, and when it is at most
    /// a quarter used and the free lists could hold its blobs twice over: emptying it is how a
    /// shard gives back a page it took but barely used.
    pub fn sparsest_page(&self, with_bump: bool) -> Option<(usize, usize, usize)> {
        let bump_ok =
            |live: usize, size: usize| with_bump && live <= size / 4 && 2 * live <= self.free_bytes;
        (0..self.pages.len())
            .filter_map(|p| {
                let (live, size) = (self.page_live[p] as usize, self.pages[p].as_ref()?.size);
                (p != self.bump_page || bump_ok(live, size)).then_some((p, live, size))
            })
            .min_by_key(|&(_, live, size)| live * PAGE_SIZE / size)
    }

    /// Starts emptying `page`: takes its free blocks off the free lists so that nothing is
    /// allocated there, and keeps blocks freed in it off them (if it is the page being filled,
    /// it stops being that first). The caller moves every blob
    /// [`next_block`](Self::next_block) finds in it, then calls
    /// [`end_evacuation`](Self::end_evacuation).
    pub fn begin_evacuation(&mut self, page: usize) {
        debug_assert!(self.evacuating == NO_PAGE);
        if page == self.bump_page {
            self.close_bump_page();
        }
        self.unlist_page(page, self.page_size(page));
        self.evacuating = page;
    }

    /// Stops bump-allocating from the current page: its unused end becomes free blocks (of at
    /// most [`MAX_SMALL`] bytes each), so that the page is tiled to its end like any other.
    fn close_bump_page(&mut self) {
        let end = self.page_size(self.bump_page);
        let page = std::mem::replace(&mut self.bump_page, NO_PAGE);
        let mut offset = std::mem::replace(&mut self.bump_offset, 0);
        while end - offset >= MIN_BLOCK {
            let rest = end - offset;
            let size = if rest <= MAX_SMALL {
                rest
            } else {
                // Leave at least MIN_BLOCK for the next piece.
                MAX_SMALL.min(rest - MIN_BLOCK)
            };
            self.push_free(Ref::small(page, offset), size);
            offset += size;
        }
    }

    /// Ends an evacuation: releases the page if it holds no live block any more (true), or, if
    /// a move failed, puts its free blocks back on the lists (false).
    pub fn end_evacuation(&mut self) -> bool {
        let page = std::mem::replace(&mut self.evacuating, NO_PAGE);
        if page == NO_PAGE {
            return false;
        }
        if self.page_live[page] == 0 {
            self.drop_page(page);
            return true;
        }
        let (mut offset, end) = (0, self.page_size(page));
        while let Some(block) = self.block_at(page, offset, end) {
            if block.free {
                self.list(block.at, block.size);
            }
            offset += block.size;
        }
        false
    }

    /// The block of `page` at `offset`, or `None` past its last block.
    pub fn next_block(&self, page: usize, offset: usize) -> Option<Block> {
        let end = if page == self.bump_page {
            self.bump_offset
        } else {
            self.page_size(page)
        };
        self.block_at(page, offset, end)
    }

    fn block_at(&self, page: usize, offset: usize, end: usize) -> Option<Block> {
        if offset + MIN_BLOCK > end {
            return None;
        }
        let at = Ref::small(page, offset);
        let ptr = self.ptr(at);
        // SAFETY: `at` is the start of a block of at least MIN_BLOCK bytes inside a live page
        // (the blocks of a page tile it up to `end`), and byte 8 of a free block is its mark
        // while byte 8 of a blob holds its flags.
        let free = unsafe { ptr.add(FREE_MARK_AT).read() } & 0x0F == FREE_MARK;
        let size = if free {
            self.read_u16(at, FREE_SIZE) as usize
        } else {
            block_size((self.blob_len)(ptr))
        };
        // Blocks tile their page: a size that does not is a corrupt mark.
        debug_assert!(
            size >= MIN_BLOCK && offset + size <= end,
            "block of {size} bytes at {offset} of a page walked up to {end}"
        );
        Some(Block { at, size, free })
    }

    /// Drops everything. Every page and large block goes back to the allocator.
    pub fn clear(&mut self) {
        let returned = self.returned + self.reserved_bytes() as u64;
        *self = Arena::new(self.pool.clone(), self.blob_len);
        self.returned = returned;
    }

    fn alloc_large(&mut self, size: usize) -> Result<Ref, ArenaFull> {
        let index = match self.vacant_large.pop() {
            Some(index) => index,
            None => {
                if self.large.len() >= (LARGE_BIT - 1) as usize {
                    return Err(ArenaFull);
                }
                self.large.push(None);
                self.large.len() - 1
            }
        };
        let block = vec![0u8; size];
        self.large_bytes += block.capacity();
        self.large[index] = Some(block);
        Ok(Ref(LARGE_BIT | index as u32))
    }

    /// Takes `size` bytes from the page being filled, which has room for them.
    fn bump(&mut self, size: usize) -> Ref {
        let r = Ref::small(self.bump_page, self.bump_offset);
        self.bump_offset += size;
        r
    }

    /// Makes a new page the one being filled; the old one's tail becomes a free block.
    fn start_page(&mut self, small: bool) -> Result<(), ArenaFull> {
        let page = self.new_page(small)?;
        let tail = self.bump_room();
        if tail >= MIN_BLOCK {
            // Keep the page's tail as a free block rather than losing it. (The page holds
            // live blocks: one that empties is released, and stops being the bump page.)
            self.push_free(Ref::small(self.bump_page, self.bump_offset), tail);
        }
        self.bump_page = page;
        self.bump_offset = 0;
        Ok(())
    }

    fn new_page(&mut self, small: bool) -> Result<usize, ArenaFull> {
        let index = match self.vacant_pages.pop() {
            Some(p) => p,
            None => {
                if self.pages.len() >= MAX_PAGES {
                    return Err(ArenaFull);
                }
                self.pages.push(None);
                self.page_live.push(0);
                self.pages.len() - 1
            }
        };
        let page = if small {
            Page::new(SMALL_PAGE)
        } else {
            self.pool.take()
        };
        self.page_bytes += page.size;
        self.pages[index] = Some(page);
        self.page_live[index] = 0;
        Ok(index)
    }

    /// Takes a page without live blocks off the free lists and gives it back.
    fn release_page(&mut self, page: usize) {
        debug_assert_eq!(self.page_live[page], 0);
        if page == self.bump_page {
            self.unlist_page(page, self.bump_offset);
            self.bump_page = NO_PAGE;
            self.bump_offset = 0;
        } else {
            self.unlist_page(page, self.page_size(page));
        }
        self.drop_page(page);
    }

    fn drop_page(&mut self, page: usize) {
        let freed = self.pages[page].take().expect("releasing a live page");
        self.vacant_pages.push(page);
        let size = freed.size;
        self.page_bytes -= size;
        if size != PAGE_SIZE || self.pool.put(freed) {
            self.returned += size as u64;
        }
    }

    /// Takes every free block of `page` below `end` off the free lists.
    fn unlist_page(&mut self, page: usize, end: usize) {
        let mut offset = 0;
        while let Some(block) = self.block_at(page, offset, end) {
            if block.free {
                self.unlist(block.at, block.size);
            }
            offset += block.size;
        }
    }

    fn pop_free(&mut self, class: usize) -> Option<Ref> {
        let head = self.free_heads[class];
        if head == NO_BLOCK {
            return None;
        }
        let r = Ref(head);
        self.unlist(r, class * GRANULE);
        Some(r)
    }

    /// Takes the smallest free block that leaves a usable remainder, keeps the remainder free.
    fn split_larger(&mut self, size: usize) -> Option<Ref> {
        let want = (size + SPLIT_REMAINDER) / GRANULE;
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

    /// Marks a block free and puts it at the head of its size class's list.
    fn push_free(&mut self, r: Ref, size: usize) {
        self.mark_free(r, size);
        self.list(r, size);
    }

    /// Writes a free block's mark and size (it stays off the lists).
    fn mark_free(&mut self, r: Ref, size: usize) {
        debug_assert!((MIN_BLOCK..=MAX_SMALL).contains(&size) && size.is_multiple_of(GRANULE));
        // SAFETY: `r` is a block of `size` >= MIN_BLOCK bytes inside a live page that no entry
        // uses any more.
        unsafe { self.ptr(r).add(FREE_MARK_AT).write(FREE_MARK) };
        self.write_u16(r, FREE_SIZE, size as u16);
    }

    /// Puts a marked free block at the head of its size class's list.
    fn list(&mut self, r: Ref, size: usize) {
        let class = size / GRANULE;
        let head = self.free_heads[class];
        self.write_u32(r, FREE_NEXT, head);
        self.write_u32(r, FREE_PREV, NO_BLOCK);
        if head != NO_BLOCK {
            self.write_u32(Ref(head), FREE_PREV, r.0);
        }
        self.free_heads[class] = r.0;
        self.free_nonempty[class / 64] |= 1 << (class % 64);
        self.free_bytes += size;
    }

    /// Takes a listed free block of `size` bytes off its list (it stays marked free).
    fn unlist(&mut self, r: Ref, size: usize) {
        let class = size / GRANULE;
        let next = self.read_u32(r, FREE_NEXT);
        let prev = self.read_u32(r, FREE_PREV);
        if prev == NO_BLOCK {
            self.free_heads[class] = next;
            if next == NO_BLOCK {
                self.free_nonempty[class / 64] &= !(1 << (class % 64));
            }
        } else {
            self.write_u32(Ref(prev), FREE_NEXT, next);
        }
        if next != NO_BLOCK {
            self.write_u32(Ref(next), FREE_PREV, prev);
        }
        self.free_bytes -= size;
    }

    #[inline]
    fn read_u32(&self, r: Ref, at: usize) -> u32 {
        // SAFETY: `r` is a free small block of at least MIN_BLOCK bytes inside a live page, and
        // `at` is one of its fields.
        unsafe { self.ptr(r).add(at).cast::<u32>().read_unaligned() }
    }

    #[inline]
    fn write_u32(&mut self, r: Ref, at: usize, value: u32) {
        // SAFETY: as in `read_u32`; the block is free, so no entry aliases it.
        unsafe { self.ptr(r).add(at).cast::<u32>().write_unaligned(value) }
    }

    #[inline]
    fn read_u16(&self, r: Ref, at: usize) -> u16 {
        // SAFETY: as in `read_u32`.
        unsafe { self.ptr(r).add(at).cast::<u16>().read_unaligned() }
    }

    #[inline]
    fn write_u16(&mut self, r: Ref, at: usize, value: u16) {
        // SAFETY: as in `write_u32`.
        unsafe { self.ptr(r).add(at).cast::<u16>().write_unaligned(value) }
    }

    /// Checks that the free lists, the page counters and the tiling of every page agree;
    /// panics with a description if not.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        let mut listed = std::collections::HashSet::new();
        let mut free_bytes = 0;
        for class in 1..CLASSES {
            let mut prev = NO_BLOCK;
            let mut cur = self.free_heads[class];
            assert_eq!(
                cur != NO_BLOCK,
                self.free_nonempty[class / 64] & (1 << (class % 64)) != 0,
                "non-empty bit of class {class}"
            );
            while cur != NO_BLOCK {
                assert_eq!(self.read_u32(Ref(cur), FREE_PREV), prev, "free back link");
                assert_eq!(self.read_u16(Ref(cur), FREE_SIZE) as usize, class * GRANULE);
                assert!(listed.insert(cur), "a block is listed twice");
                free_bytes += class * GRANULE;
                prev = cur;
                cur = self.read_u32(Ref(cur), FREE_NEXT);
            }
        }
        assert_eq!(free_bytes, self.free_bytes, "free byte count");
        let (mut live_total, mut page_bytes) = (0, 0);
        for page in (0..self.pages.len()).filter(|&p| self.pages[p].is_some()) {
            let (mut offset, mut live) = (0, 0);
            while let Some(block) = self.next_block(page, offset) {
                if block.free {
                    assert!(
                        listed.remove(&block.at.0) || page == self.evacuating,
                        "a free block is not listed"
                    );
                } else {
                    live += block.size;
                }
                offset += block.size;
            }
            assert_eq!(
                live, self.page_live[page] as usize,
                "live bytes of page {page}"
            );
            assert!(live > 0 || page == self.evacuating, "an empty page is kept");
            live_total += live;
            page_bytes += self.page_size(page);
        }
        assert!(listed.is_empty(), "a listed block lies outside every page");
        assert_eq!(live_total, self.live_bytes, "live byte count");
        assert_eq!(page_bytes, self.page_bytes, "page byte count");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> Arena {
        Arena::new(Arc::new(PagePool::new(0)), len_of)
    }

    /// Test blocks hold their length in their first two bytes, 0 at byte 8 (where a free
    /// block has its mark) and `byte` everywhere else.
    fn fill(arena: &Arena, r: Ref, len: usize, byte: u8) {
        // SAFETY: test blocks are `len` (at least 14) bytes long.
        unsafe {
            std::ptr::write_bytes(arena.ptr(r), byte, len);
            arena.ptr(r).cast::<u16>().write_unaligned(len as u16);
            arena.ptr(r).add(8).write(0);
        }
    }

    fn len_of(ptr: *mut u8) -> usize {
        // SAFETY: test blocks start with their length.
        unsafe { ptr.cast::<u16>().read_unaligned() as usize }
    }

    fn check(arena: &Arena, r: Ref, len: usize, byte: u8) -> bool {
        // SAFETY: test blocks are `len` bytes long.
        let data = unsafe { std::slice::from_raw_parts(arena.ptr(r), len) };
        len_of(arena.ptr(r)) == len
            && data[2..8].iter().all(|&b| b == byte)
            && data[9..].iter().all(|&b| b == byte)
    }

    #[test]
    fn blocks_do_not_overlap_and_keep_their_bytes() {
        let mut arena = arena();
        let blocks: Vec<(Ref, usize)> = (0..5000)
            .map(|i| {
                let len = 14 + (i * 37) % 600;
                let r = arena.alloc(len, false).unwrap();
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
        arena.check_invariants();
    }

    #[test]
    fn freed_blocks_are_reused_before_new_pages() {
        let mut arena = arena();
        let keep = arena.alloc(130, false).unwrap();
        fill(&arena, keep, 130, 1);
        let refs: Vec<Ref> = (0..1000)
            .map(|_| {
                let r = arena.alloc(130, false).unwrap();
                fill(&arena, r, 130, 2);
                r
            })
            .collect();
        let reserved = arena.reserved_bytes();
        let page_tails = arena.free_bytes();
        assert!(page_tails < 130, "only a page's unusable tail is free");
        // Every other block, so that no page empties.
        for r in refs.iter().step_by(2) {
            arena.free(*r, 130);
        }
        assert_eq!(arena.free_bytes(), 500 * 130 + page_tails);
        for _ in 0..500 {
            let r = arena.alloc(130, false).unwrap();
            fill(&arena, r, 130, 3);
        }
        assert_eq!(arena.reserved_bytes(), reserved);
        assert_eq!(arena.free_bytes(), page_tails);
        arena.check_invariants();
    }

    #[test]
    fn a_larger_free_block_is_split_for_a_smaller_request() {
        let mut arena = arena();
        let big = arena.alloc(1000, false).unwrap();
        fill(&arena, big, 1000, 1);
        let small = arena.alloc(20, false).unwrap();
        fill(&arena, small, 20, 1);
        arena.free(big, 1000);
        let pages = arena.reserved_bytes();
        let reused = arena.alloc(100, false).unwrap();
        fill(&arena, reused, 100, 1);
        assert_eq!(reused, big, "the freed block's start is reused");
        assert_eq!(arena.free_bytes(), 900);
        assert_eq!(arena.reserved_bytes(), pages);
        arena.check_invariants();
    }

    #[test]
    fn large_blocks_grow_in_place() {
        let mut arena = arena();
        let r = arena.alloc(10_000, false).unwrap();
        fill(&arena, r, 10_000, 7);
        assert!(arena.resize_in_place(r, 10_000, 50_000));
        assert!(arena.ptr(r).is_aligned());
        // SAFETY: the block holds 50_000 bytes, the first 10_000 written above.
        let data = unsafe { std::slice::from_raw_parts(arena.ptr(r), 10_000) };
        assert!(data[9..].iter().all(|&b| b == 7));
        assert!(arena.reserved_bytes() >= 50_000);
        arena.free(r, 50_000);
        assert_eq!(arena.reserved_bytes(), 0);
        assert!(arena.take_returned_bytes() >= 50_000);
    }

    #[test]
    fn a_page_is_released_when_its_last_block_is_freed() {
        let pool = Arc::new(PagePool::new(1));
        let mut arena = Arena::new(pool.clone(), len_of);
        let refs: Vec<Ref> = (0..3000)
            .map(|_| {
                let r = arena.alloc(100, false).unwrap();
                fill(&arena, r, 100, 5);
                r
            })
            .collect();
        let pages = arena.pages();
        assert_eq!(pages, 5);
        // Free the first three pages' blocks in order, as LRU eviction does.
        for r in &refs[..2000] {
            arena.free(*r, 100);
            arena.check_invariants();
        }
        assert!(arena.pages() < pages, "emptied pages were kept");
        assert_eq!(pool.spare(), 1, "the pool keeps one spare page");
        assert!(
            arena.take_returned_bytes() > 0,
            "pages beyond the pool's were freed"
        );
        assert!(arena.free_bytes() < PAGE_SIZE);
        for r in &refs[2000..] {
            assert!(check(&arena, *r, 100, 5));
            arena.free(*r, 100);
        }
        assert_eq!(arena.live_bytes(), 0);
        assert_eq!(arena.pages(), 0, "an empty page is kept");
        assert_eq!(arena.free_bytes(), 0);
        arena.check_invariants();
    }

    #[test]
    fn small_pages_serve_small_blocks_near_the_limit() {
        let pool = Arc::new(PagePool::new(4));
        let mut arena = Arena::new(pool.clone(), len_of);
        let refs: Vec<Ref> = (0..300)
            .map(|_| {
                let r = arena.alloc(100, true).unwrap();
                fill(&arena, r, 100, 4);
                r
            })
            .collect();
        assert_eq!(
            arena.page_bytes(),
            2 * SMALL_PAGE,
            "30000 bytes in two small pages"
        );
        let big = arena.alloc(3000, true).unwrap();
        fill(&arena, big, 3000, 4);
        assert_eq!(
            arena.page_bytes(),
            2 * SMALL_PAGE + PAGE_SIZE,
            "a full page for 3000"
        );
        arena.check_invariants();
        for r in &refs {
            assert!(check(&arena, *r, 100, 4));
            arena.free(*r, 100);
        }
        assert_eq!(arena.page_bytes(), PAGE_SIZE);
        assert_eq!(pool.spare(), 0, "small pages do not go to the pool");
        assert_eq!(arena.take_returned_bytes(), 2 * SMALL_PAGE as u64);
        arena.free(big, 3000);
        assert_eq!((arena.page_bytes(), pool.spare()), (0, 1));
        arena.check_invariants();
    }

    #[test]
    fn sparse_pages_can_be_emptied_and_released() {
        let mut arena = arena();
        let mut refs: Vec<(Ref, usize)> = (0..3000)
            .map(|i| {
                let len = 20 + i % 200;
                let r = arena.alloc(len, false).unwrap();
                fill(&arena, r, len, 9);
                (r, len)
            })
            .collect();
        let pages_before = arena.pages();
        for (i, &(r, len)) in refs.iter().enumerate() {
            if i % 10 != 0 {
                arena.free(r, len);
            }
        }
        refs = refs.into_iter().step_by(10).collect();
        let mut released = 0;
        while let Some((page, live, _)) = arena.sparsest_page(true) {
            if live > PAGE_SIZE / 2 || released == pages_before {
                break;
            }
            arena.begin_evacuation(page);
            let mut offset = 0;
            while let Some(block) = arena.next_block(page, offset) {
                offset += block.size;
                if block.free {
                    continue;
                }
                let len = len_of(arena.ptr(block.at));
                let moved = arena.alloc(len, false).unwrap();
                assert_ne!(
                    moved.page(),
                    page,
                    "a block was allocated in the page being emptied"
                );
                // SAFETY: both blocks hold `len` bytes and are distinct.
                unsafe {
                    std::ptr::copy_nonoverlapping(arena.ptr(block.at), arena.ptr(moved), len)
                };
                let entry = refs.iter_mut().find(|(r, _)| *r == block.at).unwrap();
                entry.0 = moved;
                arena.free(block.at, len);
            }
            assert!(arena.end_evacuation());
            released += 1;
            arena.check_invariants();
        }
        assert!(released > 0);
        assert!(arena.pages() < pages_before);
        for &(r, len) in &refs {
            assert!(check(&arena, r, len, 9));
        }
    }
}
