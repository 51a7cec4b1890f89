//! Slab caches for small objects: 4 KiB pages cut into equal slots.
//!
//! Requests of at most [`SLAB_LIMIT`] bytes with alignment up to 16 are
//! served here instead of by the TLSF lists: one size class per 16-byte
//! step, each class owning pages that hold only slots of its size. Slots
//! have no header. Each page's class (1 byte) and bookkeeping (16 bytes)
//! live in tables outside the heap, indexed by page number, so they stay
//! in cache and the pages hold nothing but slots; the class byte also
//! tells slab pages from the rest of the heap. The TLSF heap supplies the pages (a
//! 4096-byte block whose payload starts on a page boundary) and takes empty
//! ones back.
//!
//! ```text
//! page P (4096-aligned), the payload of a TLSF block from P-8 to P+4088:
//!   P+0  slot 0 | slot 1 | ... | slot capacity-1 | slack | (next header)
//! classes[(P - base) / 4096]: class (NO_CLASS: not a slab page)
//! meta[(P - base) / 4096]: free-slot list head, slots in use, slots ever
//!   carved, partial-list links
//! ```
//!
//! A page is *full* (in no list), *partial* (in its class's partial list)
//! or *empty* (its class's single spare, or handed back at once). In front
//! of the pages, each class keeps up to [`RECENT_DEPTH`] recently freed
//! slots (LIFO): the next allocation of the class takes the slot freed
//! last, whose cache line is likely still warm, without touching the page
//! table. Every operation is O(1): allocation pops the recent list, else
//! the first partial page's free list (or carves its next never-used
//! slot); free pushes onto the recent list, or onto the slot's page when
//! that list is full.

use core::mem::size_of;

use crate::layout::PAGE_SIZE;
use core::ptr;

/// Largest request (bytes, debug overhead included) served by slabs.
pub const SLAB_LIMIT: usize = 256;
/// Size step between classes; also the slot alignment.
const STEP: usize = 16;
/// Number of size classes.
const CLASSES: usize = SLAB_LIMIT / STEP;
/// Slab pages are this large and this aligned.
pub const PAGE: usize = PAGE_SIZE as usize;
/// Bytes a slab page may use: the TLSF block of 4096 bytes that holds it
/// ends 8 bytes before the next page (where the next block's header is).
pub const PAGE_USABLE: usize = PAGE - 8;
/// "No page" / "no slot" in the table.
const NO_PAGE: u32 = u32::MAX;
const NO_SLOT: u16 = u16::MAX;
const NO_CLASS: u8 = u8::MAX;
/// Most recently freed slots kept per class before frees go to the pages.
pub const RECENT_DEPTH: u16 = 64;

const _: () = assert!(
    PAGE_USABLE / SLAB_LIMIT >= 8,
    "every class holds several slots"
);

/// Bookkeeping of one slab page.
#[repr(C)]
#[derive(Clone, Copy)]
struct SlabMeta {
    /// Offset of the first freed slot (NO_SLOT: none); each free slot's
    /// first two bytes hold the next one's offset.
    free: u16,
    /// Slots handed out and not freed.
    in_use: u16,
    /// Slots ever handed out from the never-used tail (bump index).
    carved: u16,
    /// 1 when the page is in its class's partial list.
    listed: u8,
    _reserved: u8,
    /// Partial-list neighbours (page numbers; NO_PAGE: none).
    next: u32,
    prev: u32,
}

const META_WORDS: usize = size_of::<SlabMeta>() / 8;
const _: () = assert!(size_of::<SlabMeta>() == 16 && core::mem::align_of::<SlabMeta>() <= 8);

/// The size class for a request of `bytes` (1..=SLAB_LIMIT; 0 counts as 1).
#[inline]
pub fn class_of(bytes: usize) -> usize {
    debug_assert!(bytes <= SLAB_LIMIT);
    bytes.max(1).div_ceil(STEP) - 1
}

/// Slot size of `class`.
pub const fn slot_size(class: usize) -> usize {
    (class + 1) * STEP
}

/// Slots in a page of `class`.
pub const fn capacity(class: usize) -> usize {
    CAPACITY[class] as usize
}

/// `capacity` per class, computed once (the hot paths avoid a division).
const CAPACITY: [u16; CLASSES] = {
    let mut table = [0; CLASSES];
    let mut class = 0;
    while class < CLASSES {
        table[class] = (PAGE_USABLE / slot_size(class)) as u16;
        class += 1;
    }
    table
};

/// Bytes of a page of `class` that slots occupy.
pub const fn slot_bytes(class: usize) -> usize {
    capacity(class) * slot_size(class)
}

/// The page holding `address`.
pub fn page_of(address: usize) -> usize {
    address & !(PAGE - 1)
}

/// Pages a heap of `max` bytes can span (one more, as it need not start
/// on a page boundary).
const fn pages_for(max: usize) -> usize {
    max / PAGE + 1
}

/// Table words the slabs of a heap of `max` bytes need: 16 bytes of
/// bookkeeping and a class byte per page.
pub const fn table_words(max: usize) -> usize {
    META_WORDS * pages_for(max) + pages_for(max).div_ceil(8)
}

/// What a consistency check of one page found.
pub struct PageUsage {
    /// Slot size of the page's class.
    pub slot_size: usize,
    /// Slots in use.
    pub in_use: usize,
    /// Slots free (freed or never carved, recent-list slots included).
    pub free: usize,
    /// Slots the page counts as used that are not live: they sit in the
    /// recent list.
    pub recent: usize,
    /// Whether the page is in its class's partial list.
    pub listed: bool,
}

/// The slab pages of one heap.
pub struct Slabs<'a> {
    /// Address of page number 0.
    /// The heap's memory pointer, for pointers with its provenance.
    memory: *mut u8,
    base: usize,
    /// Per page: its class, or NO_CLASS if it is not a slab page.
    classes: &'a mut [u8],
    meta: &'a mut [SlabMeta],
    /// Pages with free and used slots, per class (a list through `meta`).
    partial: [u32; CLASSES],
    /// One empty page kept per class so that a class hovering around a
    /// page boundary does not trade pages with the TLSF heap on every call.
    spare: [u32; CLASSES],
    /// Slab pages in existence.
    pages: usize,
    /// Recently freed slots per class (0: none), linked through their
    /// first word; still counted in their pages' `in_use`.
    recent: [usize; CLASSES],
    recent_count: [u16; CLASSES],
}

impl<'a> Slabs<'a> {
    /// Slabs for a heap whose memory starts at `memory`, of at most `max`
    /// bytes, keeping their table in `table` ([`table_words`]`(max)` words,
    /// any contents). `None` if `table` is too short.
    pub fn new(memory: *mut u8, max: usize, table: &'a mut [u64]) -> Option<Self> {
        let start = memory.addr();
        let pages = pages_for(max);
        let table = table.get_mut(..table_words(max))?;
        table.fill(0);
        let (meta, classes) = table.split_at_mut(META_WORDS * pages);
        // SAFETY: `meta` is `META_WORDS * pages` initialised u64 words;
        // SlabMeta is repr(C) with integer fields only (every bit pattern
        // valid), 16 bytes, alignment at most 8; the new slice takes over
        // the borrow of `meta` for 'a.
        let meta =
            unsafe { core::slice::from_raw_parts_mut(meta.as_mut_ptr().cast::<SlabMeta>(), pages) };
        // SAFETY: `classes` is at least `pages` bytes of initialised u64
        // words, viewed as bytes (alignment 1, any value valid); the new
        // slice takes over the borrow for 'a.
        let classes =
            unsafe { core::slice::from_raw_parts_mut(classes.as_mut_ptr().cast::<u8>(), pages) };
        classes.fill(NO_CLASS);
        Some(Self {
            memory,
            base: page_of(start),
            classes,
            meta,
            partial: [NO_PAGE; CLASSES],
            spare: [NO_PAGE; CLASSES],
            pages: 0,
            recent: [0; CLASSES],
            recent_count: [0; CLASSES],
        })
    }

    /// A pointer to `address` of the heap's memory, with its provenance.
    #[inline]
    fn at(&self, address: usize) -> *mut u8 {
        self.memory.with_addr(address)
    }

    fn number(&self, page: usize) -> u32 {
        ((page - self.base) / PAGE) as u32
    }

    fn address(&self, number: u32) -> usize {
        self.base + number as usize * PAGE
    }

    /// The class of the slab page holding `address` (inside the heap), or
    /// `None` if that page is not a slab page.
    #[inline]
    pub fn class_at(&self, address: usize) -> Option<usize> {
        let class = self.classes[(address - self.base) / PAGE];
        (class != NO_CLASS).then_some(class as usize)
    }

    /// Whether `address`, in a slab page of `class`, is the start of a
    /// slot the page has handed out at some time (live or freed since),
    /// rather than a place no allocation ever started.
    pub fn was_handed_out(&self, address: usize, class: usize) -> bool {
        let page = page_of(address);
        let offset = address - page;
        let carved = self.meta[self.number(page) as usize].carved as usize;
        offset.is_multiple_of(slot_size(class)) && offset / slot_size(class) < carved
    }

    /// The class of page `number` if it exists and is a slab page (for
    /// checks that must not trust the number).
    fn checked_class(&self, number: usize) -> Option<usize> {
        let class = *self.classes.get(number)?;
        (class != NO_CLASS).then_some(class as usize)
    }

    /// Whether `address` (inside the heap) lies in a slab page.
    pub fn contains(&self, address: usize) -> bool {
        self.class_at(address).is_some()
    }

    /// Makes `page` a slab page of `class`, or (`None`) no slab page.
    fn mark(&mut self, page: usize, class: Option<usize>) {
        let number = self.number(page) as usize;
        match class {
            Some(class) => {
                self.classes[number] = class as u8;
                self.pages += 1;
            }
            None => {
                self.classes[number] = NO_CLASS;
                self.pages -= 1;
            }
        }
    }

    fn link(&mut self, number: u32) {
        let class = self.classes[number as usize] as usize;
        let head = self.partial[class];
        if head != NO_PAGE {
            self.meta[head as usize].prev = number;
        }
        let meta = &mut self.meta[number as usize];
        meta.next = head;
        meta.prev = NO_PAGE;
        meta.listed = 1;
        self.partial[class] = number;
    }

    fn unlink(&mut self, number: u32) {
        let class = self.classes[number as usize] as usize;
        let meta = &mut self.meta[number as usize];
        let (next, prev) = (meta.next, meta.prev);
        meta.listed = 0;
        if next != NO_PAGE {
            self.meta[next as usize].prev = prev;
        }
        if prev != NO_PAGE {
            self.meta[prev as usize].next = next;
        } else {
            self.partial[class] = next;
        }
    }

    /// The slot of `class` freed last, taken from the recent list, if any.
    #[inline(always)]
    pub fn pop_recent(&mut self, class: usize) -> Option<usize> {
        let slot = self.recent[class];
        if slot == 0 {
            return None;
        }
        // SAFETY: a slot in the recent list; its first word links on
        // (written by `push_recent`).
        self.recent[class] = unsafe { ptr::read(self.at(slot).cast::<usize>()) };
        self.recent_count[class] -= 1;
        Some(slot)
    }

    /// A free slot of `class` already at hand: the recent list's, else one
    /// from a partial or the spare page; `None` if only a new page would do.
    pub fn slot_at_hand(&mut self, class: usize) -> Option<usize> {
        match self.pop_recent(class) {
            Some(slot) => Some(slot),
            None => self.alloc_from_pages(class),
        }
    }

    /// Takes a free slot of `class` from a partial page or the spare page;
    /// `None` if the class has neither (the caller supplies a new page).
    /// The recent list is not looked at (see `pop_recent`).
    #[inline]
    pub fn alloc_from_pages(&mut self, class: usize) -> Option<usize> {
        let mut number = self.partial[class];
        if number == NO_PAGE {
            number = core::mem::replace(&mut self.spare[class], NO_PAGE);
            if number == NO_PAGE {
                return None;
            }
            self.link(number);
        }
        let page = self.address(number);
        let meta = &mut self.meta[number as usize];
        let slot = if meta.free != NO_SLOT {
            let slot = page + meta.free as usize;
            // SAFETY: a freed slot of this page; its first two bytes hold
            // the next free slot's offset (written by `free_to_page`).
            meta.free = unsafe { ptr::read(self.memory.with_addr(slot).cast::<u16>()) };
            slot
        } else {
            let slot = page + meta.carved as usize * slot_size(class);
            meta.carved += 1;
            slot
        };
        meta.in_use += 1;
        if meta.in_use as usize == capacity(class) {
            self.unlink(number);
        }
        Some(slot)
    }

    /// Makes `page` an empty page of `class` and takes its first slot.
    ///
    /// # Safety
    /// `page` must be 4096-aligned, inside the heap these slabs serve, with
    /// [`PAGE_USABLE`] bytes of writable memory owned by the heap and used
    /// for nothing else until this module hands the page back (from `free_to_page`
    /// or `take_spare`).
    pub unsafe fn alloc_from_new(&mut self, page: usize, class: usize) -> usize {
        debug_assert!(page.is_multiple_of(PAGE) && class < CLASSES && !self.contains(page));
        let number = self.number(page);
        self.meta[number as usize] = SlabMeta {
            free: NO_SLOT,
            in_use: 0,
            carved: 0,
            listed: 0,
            _reserved: 0,
            next: NO_PAGE,
            prev: NO_PAGE,
        };
        self.mark(page, Some(class));
        self.spare[class] = number;
        let slot = self.alloc_from_pages(class);
        debug_assert!(slot.is_some());
        slot.unwrap_or(page)
    }

    /// Puts `slot` (of `class`, from `class_at`) on the class's recent
    /// list if that has room; `false` if it is full (and `slot` untouched:
    /// then `free_to_page` takes it).
    ///
    /// # Safety
    /// `slot` must be a slot this `Slabs` handed out and that was not
    /// freed since; the caller must not use it afterwards.
    #[inline(always)]
    pub unsafe fn push_recent(&mut self, slot: usize, class: usize) -> bool {
        debug_assert_eq!(self.class_at(slot), Some(class));
        if self.recent_count[class] >= RECENT_DEPTH {
            return false;
        }
        // SAFETY: the slot is ours again (contract above) and at least 16
        // bytes long, so its first word can hold the link.
        unsafe { ptr::write(self.at(slot).cast::<usize>(), self.recent[class]) };
        self.recent[class] = slot;
        self.recent_count[class] += 1;
        true
    }

    /// Returns `slot` (of `class`) to its page. Returns a page that became
    /// empty and is no longer a slab page, with its class (the caller hands
    /// it back to the heap).
    ///
    /// # Safety
    /// As for `push_recent`.
    #[inline(always)]
    pub unsafe fn free_to_page(&mut self, slot: usize, class: usize) -> Option<(usize, usize)> {
        let page = page_of(slot);
        let number = self.number(page);
        let meta = &mut self.meta[number as usize];
        // SAFETY: the slot is ours again (contract above) and at least 16
        // bytes long, so its first two bytes can hold the link.
        unsafe { ptr::write(self.memory.with_addr(slot).cast::<u16>(), meta.free) };
        meta.free = (slot - page) as u16;
        meta.in_use -= 1;
        let (in_use, listed) = (meta.in_use, meta.listed != 0);
        if in_use == 0 {
            if listed {
                self.unlink(number);
            }
            if self.spare[class] == NO_PAGE {
                self.spare[class] = number;
                return None;
            }
            self.mark(page, None);
            return Some((page, class));
        }
        if !listed {
            self.link(number); // it was full
        }
        None
    }

    /// Moves recently freed slots back to their pages until a page is no
    /// longer needed (returned as by `free_to_page`) or none are left (`None`).
    pub fn drain_recent(&mut self) -> Option<(usize, usize)> {
        for class in 0..CLASSES {
            while let Some(slot) = self.pop_recent(class) {
                // SAFETY: a slot handed out and freed into the recent list,
                // which no longer holds it.
                if let Some(page) = unsafe { self.free_to_page(slot, class) } {
                    return Some(page);
                }
            }
        }
        None
    }

    /// Removes one spare (empty) page from the slabs and returns it with
    /// its class, for the heap to take back.
    pub fn take_spare(&mut self) -> Option<(usize, usize)> {
        let class = self.spare.iter().position(|&number| number != NO_PAGE)?;
        let number = core::mem::replace(&mut self.spare[class], NO_PAGE);
        let page = self.address(number);
        self.mark(page, None);
        Some((page, class))
    }

    /// Checks one page: class in range, free list on slot boundaries below
    /// the carved mark and without cycles, and every slot's liveness (from
    /// `is_live`) agreeing with the list and the counter.
    ///
    /// # Safety
    /// `page` must be a slab page of these slabs (`contains(page)`), its
    /// memory readable.
    pub unsafe fn verify_page(
        &self,
        page: usize,
        is_live: impl Fn(usize) -> bool,
    ) -> Result<PageUsage, &'static str> {
        let number = self.number(page);
        let meta = self.meta[number as usize];
        let class = self.classes[number as usize] as usize;
        if class >= CLASSES {
            return Err("slab page class out of range");
        }
        let (size, slots) = (slot_size(class), capacity(class));
        let carved = meta.carved as usize;
        if carved > slots || meta.in_use as usize > carved {
            return Err("slab page counters out of range");
        }
        let mut free = [0u64; PAGE_USABLE / STEP / 64 + 1];
        let mut offset = meta.free;
        let mut listed_free = 0;
        while offset != NO_SLOT {
            let offset_bytes = offset as usize;
            if offset_bytes >= carved * size || !offset_bytes.is_multiple_of(size) {
                return Err("slab free list leaves the carved slots");
            }
            let index = offset_bytes / size;
            if free[index / 64] & (1 << (index % 64)) != 0 {
                return Err("slab free list has a cycle");
            }
            free[index / 64] |= 1 << (index % 64);
            listed_free += 1;
            // SAFETY: a free slot of this page (checked above), readable
            // by the caller's contract.
            offset = unsafe { ptr::read(self.at(page + offset_bytes).cast::<u16>()) };
        }
        if carved - listed_free != meta.in_use as usize {
            return Err("slab in-use counter disagrees with its free list");
        }
        let mut recent = 0;
        for index in 0..slots {
            let used = index < carved && free[index / 64] & (1 << (index % 64)) == 0;
            let live = is_live(page + index * size);
            if live && !used {
                return Err("live bitmap marks a free slab slot");
            }
            // Used by the page but not live: waiting in the recent list.
            recent += usize::from(used && !live);
        }
        let in_use = meta.in_use as usize;
        let should_list = in_use != 0 && in_use != slots;
        if (meta.listed != 0) != should_list {
            return Err("slab page is in the wrong list");
        }
        if in_use == 0 && self.spare[class] != number {
            return Err("an empty slab page is not its class's spare");
        }
        Ok(PageUsage {
            slot_size: size,
            in_use: in_use - recent,
            free: slots - in_use + recent,
            recent,
            listed: should_list,
        })
    }

    /// Checks the partial lists, spares and recent lists against the page
    /// bitmap and the page count; returns how many pages the partial lists
    /// hold and how many slots the recent lists hold.
    pub fn verify_lists(
        &self,
        is_live: impl Fn(usize) -> bool,
    ) -> Result<(usize, usize), &'static str> {
        let marked = self
            .classes
            .iter()
            .filter(|&&class| class != NO_CLASS)
            .count();
        if marked != self.pages {
            return Err("slab page classes disagree with the page count");
        }
        let mut listed = 0;
        for class in 0..CLASSES {
            let mut number = self.partial[class];
            let mut prev = NO_PAGE;
            while number != NO_PAGE {
                listed += 1;
                let page_class = self.checked_class(number as usize);
                if page_class.is_none() || listed > self.pages {
                    return Err("slab partial list leads outside the slab pages");
                }
                let meta = self.meta[number as usize];
                if page_class != Some(class) || meta.listed == 0 || meta.prev != prev {
                    return Err("slab partial list broken");
                }
                prev = number;
                number = meta.next;
            }
        }
        for (class, &number) in self.spare.iter().enumerate() {
            if number != NO_PAGE && self.checked_class(number as usize) != Some(class) {
                return Err("a spare slab page is not a page of its class");
            }
        }
        let mut recent = 0;
        for class in 0..CLASSES {
            let mut slot = self.recent[class];
            let mut count = 0;
            while slot != 0 {
                count += 1;
                if count > self.recent_count[class]
                    || slot < self.base
                    || self.checked_class((slot - self.base) / PAGE) != Some(class)
                    || !(slot - page_of(slot)).is_multiple_of(slot_size(class))
                    || is_live(slot)
                {
                    return Err("a recent-list slot is live or not a slot of its class");
                }
                // SAFETY: a slot of one of our pages (checked above).
                slot = unsafe { ptr::read(self.at(slot).cast::<usize>()) };
            }
            if count != self.recent_count[class] {
                return Err("recent-list count is wrong");
            }
            recent += count as usize;
        }
        Ok((listed, recent))
    }

    /// Slab pages in existence.
    pub fn pages(&self) -> usize {
        self.pages
    }
}
