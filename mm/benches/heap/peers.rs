//! The heap benchmark's subjects: this heap and its peers behind one
//! small trait, each built fresh over the same 16 MiB arena.

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::NonNull;

use mm::heap::{DebugChecks, Heap, NoGrow};
use mm::testing::Arena;

/// Bytes of the arena every allocator gets, fresh for each run.
pub const ARENA: usize = 16 << 20;

/// The subjects, as the tables and `build/bench/heap.csv` name them, in
/// the order of [`with_allocator`]'s numbers.
pub const NAMES: [&str; 7] = [
    "this-heap",
    "talc5",
    "talc4",
    "rlsf",
    "dlmalloc",
    "linked_list_allocator",
    "buddy_system_allocator",
];

/// The subjects that allocate in tens of nanoseconds; the others (the two
/// whose free lists are searched linearly) run 100-1000x longer and go in
/// a group of their own (see `main`).
pub const FAST: [usize; 5] = [0, 1, 2, 3, 4];
/// The list-based subjects.
pub const SLOW: [usize; 2] = [5, 6];

/// What the benchmark needs of an allocator.
pub trait Allocator {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8>;
    /// # Safety
    /// `pointer` came from `alloc` with `layout` and is live.
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout);
    /// # Safety
    /// As `free`.
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8>;
}

/// Realloc by alloc + copy + free, for allocators without one.
///
/// # Safety
/// As [`Allocator::free`].
unsafe fn move_realloc<A: Allocator + ?Sized>(
    a: &mut A,
    pointer: *mut u8,
    layout: Layout,
    new_size: usize,
) -> Option<*mut u8> {
    let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
    let moved = a.alloc(new_layout)?;
    // SAFETY: both blocks are live and at least min(old, new) bytes long.
    unsafe {
        std::ptr::copy_nonoverlapping(pointer, moved, layout.size().min(new_size));
        a.free(pointer, layout);
    }
    Some(moved)
}

struct Ours(Heap<'static, NoGrow>);

impl Allocator for Ours {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.alloc(layout).ok().map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, _: Layout) {
        self.0.free(pointer).unwrap();
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        self.0
            .realloc(pointer, layout, new_size)
            .ok()
            .map(NonNull::as_ptr)
    }
}

struct LinkedList(linked_list_allocator::Heap);

impl Allocator for LinkedList {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.allocate_first_fit(layout).ok().map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.deallocate(NonNull::new_unchecked(pointer), layout) }
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, pointer, layout, new_size) }
    }
}

/// talc 5 with `Manual`: the arena claimed once, failure on exhaustion.
struct Talc5(talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);

impl Allocator for Talc5 {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        // SAFETY: every request of the workloads has a non-zero size.
        unsafe { self.0.allocate(layout) }.map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.deallocate(pointer, layout) }
    }
    /// As talc 5's own `GlobalAlloc::realloc` (`TalcCell`): in place if it
    /// can (a shrink always is), else allocate, copy and free.
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract; new sizes are non-zero.
        if unsafe { self.0.try_realloc_in_place(pointer, layout, new_size) } {
            return Some(pointer);
        }
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, pointer, layout, new_size) }
    }
}

struct Talc4(talc4::Talc<talc4::ErrOnOom>);

impl Allocator for Talc4 {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        // SAFETY: talc's malloc has no preconditions beyond a claimed heap.
        unsafe { self.0.malloc(layout) }.ok().map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.free(NonNull::new_unchecked(pointer), layout) }
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        unsafe {
            let pointer = NonNull::new_unchecked(pointer);
            if new_size <= layout.size() {
                self.0.shrink(pointer, layout, new_size.max(1));
                Some(pointer.as_ptr())
            } else {
                self.0
                    .grow(pointer, layout, new_size)
                    .ok()
                    .map(NonNull::as_ptr)
            }
        }
    }
}

struct Rlsf(rlsf::Tlsf<'static, u32, u32, 20, 16>);

impl Allocator for Rlsf {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.allocate(layout).map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe {
            self.0
                .deallocate(NonNull::new_unchecked(pointer), layout.align())
        }
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        let new_layout = Layout::from_size_align(new_size, layout.align()).ok()?;
        // SAFETY: forwarded contract.
        unsafe {
            self.0
                .reallocate(NonNull::new_unchecked(pointer), new_layout)
        }
        .map(NonNull::as_ptr)
    }
}

/// dlmalloc's view of "the system": the arena, handed over whole on the
/// first request, and nothing after it (so dlmalloc, like the others,
/// fails when the 16 MiB are used up). The segment is marked external:
/// dlmalloc never gives it back or merges it.
struct ArenaSystem {
    base: *mut u8,
    handed_over: Cell<bool>,
}

/// dlmalloc's flag for a segment it did not allocate itself.
const EXTERN_SEGMENT: u32 = 1;

// SAFETY: the arena pointer is only an address for dlmalloc to manage;
// `ArenaSystem` is used by one thread at a time (its `Dlmalloc` is behind
// `&mut` or a mutex), so the `Cell` is never touched concurrently.
unsafe impl Send for ArenaSystem {}

// SAFETY: `alloc` hands out the arena once, whole, writable and unused by
// anyone else while the allocator lives; nothing is ever remapped or
// freed, and every refusal says so (null, `false`).
unsafe impl dlmalloc::Allocator for ArenaSystem {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if self.handed_over.get() || size > ARENA {
            return (std::ptr::null_mut(), 0, 0);
        }
        self.handed_over.set(true);
        (self.base, ARENA, EXTERN_SEGMENT)
    }
    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        std::ptr::null_mut()
    }
    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }
    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }
    fn can_release_part(&self, _: u32) -> bool {
        false
    }
    fn allocates_zeros(&self) -> bool {
        false // the arena holds the previous run's data
    }
    fn page_size(&self) -> usize {
        4096
    }
}

/// dlmalloc through its Rust API (`malloc`/`free`/`realloc` with the
/// layout, as its own `GlobalDlmalloc` calls it; `free` checks the size).
struct Dlmalloc(dlmalloc::Dlmalloc<ArenaSystem>);

impl Allocator for Dlmalloc {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        // SAFETY: a valid layout of non-zero size.
        let pointer = unsafe { self.0.malloc(layout.size(), layout.align()) };
        (!pointer.is_null()).then_some(pointer)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.free(pointer, layout.size(), layout.align()) }
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        let moved = unsafe {
            self.0
                .realloc(pointer, layout.size(), layout.align(), new_size)
        };
        (!moved.is_null()).then_some(moved)
    }
}

struct Buddy(buddy_system_allocator::Heap<32>);

impl Allocator for Buddy {
    fn alloc(&mut self, layout: Layout) -> Option<*mut u8> {
        self.0.alloc(layout).ok().map(NonNull::as_ptr)
    }
    unsafe fn free(&mut self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        self.0
            .dealloc(unsafe { NonNull::new_unchecked(pointer) }, layout)
    }
    unsafe fn realloc(
        &mut self,
        pointer: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> Option<*mut u8> {
        // SAFETY: forwarded contract.
        unsafe { move_realloc(self, pointer, layout, new_size) }
    }
}

/// Runs `f` with a fresh allocator number `which` (an index of [`NAMES`])
/// over `arena` (of [`ARENA`] bytes); `bitmaps` holds this heap's side
/// tables (`Heap::bitmap_words(ARENA)` words).
pub fn with_allocator<R>(
    which: usize,
    arena: &Arena,
    bitmaps: &mut [u64],
    f: &mut dyn FnMut(&mut dyn Allocator) -> R,
) -> R {
    assert_eq!(arena.len(), ARENA);
    let base = arena.base().as_ptr();
    match which {
        0 => {
            bitmaps.iter_mut().for_each(|w| *w = 0);
            // SAFETY: the arena is ours for the heap's lifetime; the bitmap
            // slice outlives it (the 'static is confined to this call).
            let bitmaps: &'static mut [u64] = unsafe { &mut *(bitmaps as *mut [u64]) };
            // SAFETY: as above.
            let heap = unsafe {
                Heap::new(
                    NonNull::new(base).unwrap(),
                    ARENA,
                    ARENA,
                    NoGrow,
                    bitmaps,
                    DebugChecks::Off,
                )
            }
            .unwrap();
            f(&mut Ours(heap))
        }
        1 => {
            let mut talc = talc::base::Talc::new(talc::source::Manual);
            // SAFETY: the arena is ours while the allocator lives.
            unsafe { talc.claim(base, ARENA) }.expect("talc 5 claims the arena");
            f(&mut Talc5(talc))
        }
        2 => {
            let mut talc = talc4::Talc::new(talc4::ErrOnOom);
            // SAFETY: as above.
            unsafe { talc.claim(talc4::Span::from_base_size(base, ARENA)) }.unwrap();
            f(&mut Talc4(talc))
        }
        3 => {
            let mut tlsf = rlsf::Tlsf::new();
            // SAFETY: as above.
            unsafe {
                tlsf.insert_free_block_ptr(NonNull::new_unchecked(
                    std::ptr::slice_from_raw_parts_mut(base, ARENA),
                ))
            };
            f(&mut Rlsf(tlsf))
        }
        4 => f(&mut Dlmalloc(dlmalloc::Dlmalloc::new_with_allocator(
            ArenaSystem {
                base,
                handed_over: Cell::new(false),
            },
        ))),
        5 => {
            let mut heap = linked_list_allocator::Heap::empty();
            // SAFETY: as above.
            unsafe { heap.init(base, ARENA) };
            f(&mut LinkedList(heap))
        }
        _ => {
            let mut heap = buddy_system_allocator::Heap::<32>::new();
            // SAFETY: as above.
            unsafe { heap.init(base as usize, ARENA) };
            f(&mut Buddy(heap))
        }
    }
}
