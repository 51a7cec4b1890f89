//! In-kernel tests of memory pressure outside the user fault path: a heap
//! growth that finds no frame grows on the pages the heap gives back from
//! inside its own free blocks, and an object cache that needs a slab the
//! PMM cannot give takes what the heap gives back, and page tables made
//! under the VMM's lock take the empty slabs of caches not in use.

use x86_64::{PhysAddr, VirtAddr};

use super::{Context, Expect, Test, TestResult};
use crate::kernel_mm::slab::ObjectCache;
use crate::kernel_mm::{heap, phys_to_virt, pmm, reclaim, vmm};
use crate::{kassert, kassert_eq, kprintln};
use mm::layout::PAGE_SIZE;
use mm::paging::{NX, WRITABLE};

/// The tests of reclaiming outside the user fault path.
pub static TESTS: &[Test] = &[
    Test {
        name: "reclaim::a_heap_growth_out_of_frames_grows_on_pages_given_back",
        run: heap_growth_reclaims,
        // The heap warns of the growth that found no frame.
        expects: Expect::NOTHING.logging(&["kernel_mm::heap"]),
    },
    Test {
        name: "reclaim::a_slab_out_of_frames_takes_what_the_heap_gives_back",
        run: slab_reclaims,
        expects: Expect::NOTHING,
    },
    Test {
        name: "reclaim::page_tables_out_of_frames_take_empty_slabs",
        run: tables_reclaim_slabs,
        expects: Expect::NOTHING,
    },
];

/// Every free frame of the PMM, held in a chain through the frames
/// themselves (holding them takes no heap), all freed on drop: a failed
/// check that returns early leaves the machine its memory.
pub struct HeldFrames {
    /// Physical address of the last frame taken (0: none).
    head: u64,
    /// Frames held.
    pub count: u64,
}

impl HeldFrames {
    /// Takes every frame the PMM will give.
    pub fn all() -> Self {
        let mut held = Self { head: 0, count: 0 };
        while let Some(frame) = pmm::alloc_page() {
            let address = frame.start_address();
            // SAFETY: the frame was just allocated for this chain alone and
            // is reached through the direct map; its first word links it.
            unsafe { phys_to_virt(address).as_mut_ptr::<u64>().write(held.head) };
            held.head = address.as_u64();
            held.count += 1;
        }
        held
    }
}

impl Drop for HeldFrames {
    fn drop(&mut self) {
        while self.head != 0 {
            let address = PhysAddr::new(self.head);
            // SAFETY: `head` is a frame of the chain built in `all`, still
            // ours; its first word links the next one.
            self.head = unsafe { phys_to_virt(address).as_ptr::<u64>().read() };
            if let Err(error) = pmm::free_page(address) {
                log::error!(
                    "ktest: a held frame {:#x} did not free: {error}",
                    address.as_u64()
                );
            }
        }
    }
}

/// Size of the blocks the test allocates and of the two it frees (below
/// the size whose free gives pages back, so both stay mapped).
const HOLE: usize = 256 * 1024;

/// With every frame held and free memory in two 256 KiB holes below live
/// blocks, a request larger than any free block needs the heap to grow:
/// the growth finds no frame, the heap gives back the holes' interior and
/// grows on it.
fn heap_growth_reclaims(_: &Context<'_>) -> TestResult {
    // Four blocks; by address, the first and third become the holes, the
    // second and fourth stay live between and after them.
    let mut guard = Blocks(core::array::from_fn(|_| heap::kmalloc(HOLE)));
    kassert!(
        guard.0.iter().all(|b| !b.is_null()),
        "no room for the holes"
    );
    guard.0.sort_unstable();
    for hole in [0, 2] {
        let pointer = core::mem::replace(&mut guard.0[hole], core::ptr::null_mut());
        kassert!(heap::kfree(pointer).is_ok(), "a hole did not free");
    }
    let request = heap::largest_free_block() + 64 * 1024;
    let released = heap::pages_released();
    let held = HeldFrames::all();
    kassert_eq!(pmm::stats().free, 0);
    let block = heap::kmalloc(request);
    let given = heap::pages_released() - released;
    kassert!(
        !block.is_null(),
        "the request failed with the holes' pages there"
    );
    kassert!(
        given >= 2 * (HOLE as u64 / PAGE_SIZE - 3),
        "the holes gave too little"
    );
    // SAFETY: a fresh block of `request` bytes.
    unsafe { block.write_bytes(0x5A, request) };
    kassert!(heap::kfree(block).is_ok(), "the request did not free");
    kprintln!(
        "    {} frames held; the heap gave back {given} pages and grew {} KiB on them",
        held.count,
        request / 1024
    );
    drop(held);
    kassert!(heap::verify().is_ok(), "the heap is inconsistent");
    Ok(())
}

/// The test's blocks (null: freed already), the others freed on drop.
struct Blocks([*mut u8; 4]);

impl Drop for Blocks {
    fn drop(&mut self) {
        for &pointer in self.0.iter().filter(|pointer| !pointer.is_null()) {
            heap::kfree_or_log(pointer);
        }
    }
}

/// The cache [`slab_reclaims`] allocates from: objects of 512 bytes.
static OBJECTS: ObjectCache<[u64; 64]> = ObjectCache::new("ktest-reclaim");

/// With every frame held, an object cache with no slab left allocates: the
/// PMM has no frame for the slab, the heap gives back its spare pages,
/// and the slab comes from them.
fn slab_reclaims(_: &Context<'_>) -> TestResult {
    // Registered (which may use the heap), then without any slab.
    kassert!(OBJECTS.alloc([0; 64]).is_ok(), "no first object");
    OBJECTS.shrink();
    kassert_eq!(OBJECTS.stats().map(|s| s.slabs), Some(0));
    let (reclaims, pages) = reclaim::stats();
    let held = HeldFrames::all();
    let object = OBJECTS.alloc([7; 64]);
    let (reclaims_after, pages_after) = reclaim::stats();
    let count = held.count;
    drop(held);
    let Ok(object) = object else {
        return Err(super::Failure::here(
            "no object after the heap gave pages back",
        ));
    };
    kassert_eq!(object[63], 7);
    kassert_eq!(reclaims_after, reclaims + 1);
    kassert!(pages_after > pages, "the heap gave nothing back");
    kprintln!(
        "    {count} frames held; the heap gave back {} pages, a slab came from them",
        pages_after - pages
    );
    drop(object);
    kassert!(OBJECTS.destroy().is_ok(), "the cache did not go");
    Ok(())
}

/// The cache whose empty slab [`tables_reclaim_slabs`] leaves: objects of
/// 8 KiB, so a slab spans several pages.
static LARGE: ObjectCache<[u64; 1024]> = ObjectCache::new("ktest-reclaim-large");

/// Where [`tables_reclaim_slabs`] maps: a PML4 slot of its own in the
/// lower half, so the page needs three new tables.
const TABLES_AREA: u64 = 0x0000_6100_0000_0000;

/// With every frame held and one cache keeping an empty slab (its
/// reserve), a fresh page in a new PML4 slot needs a frame and three page
/// tables, taken under the VMM's lock: the cache not in use gives its
/// slab back and the mapping is made of it.
fn tables_reclaim_slabs(_: &Context<'_>) -> TestResult {
    // One object allocated and freed: its slab stays as the reserve.
    kassert!(LARGE.alloc([1; 1024]).is_ok(), "no first object");
    let stats = LARGE.stats();
    kassert_eq!(stats.map(|s| (s.slabs, s.in_use)), Some((1, 0)));
    let slab_pages = stats.map_or(0, |s| 1u64 << s.slab_order);
    kassert!(slab_pages >= 4, "a slab smaller than a page and its tables");
    let start = VirtAddr::new(TABLES_AREA);
    let (reclaims, pages) = reclaim::stats();
    let held = HeldFrames::all();
    let mapping = vmm::map_fresh(start, PAGE_SIZE, WRITABLE | NX);
    let (reclaims_after, pages_after) = reclaim::stats();
    let count = held.count;
    let made = mapping.is_ok();
    drop(mapping);
    drop(held);
    kassert!(made, "no mapping with an empty slab to take");
    kassert_eq!(reclaims_after, reclaims + 1);
    kassert_eq!(pages_after - pages, slab_pages);
    kassert_eq!(LARGE.stats().map(|s| s.slabs), Some(0));
    kassert!(
        vmm::translate(start).is_none(),
        "the mapping is still there"
    );
    kprintln!("    {count} frames held; a {slab_pages}-page slab gave the page and its tables");
    kassert!(LARGE.destroy().is_ok(), "the cache did not go");
    Ok(())
}
