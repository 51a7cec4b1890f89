//! In-kernel tests of the C interface: C code calls the whole API.

use super::{Context, Expect, Test, TestResult};
use crate::cabi::PTE_FLAGS;
use crate::kernel_mm::{heap, pmm, slab};
use crate::{kassert, kassert_eq};

extern "C" {
    /// tests/c/mm_abi_test.c: 0 on success, else the failed check's number.
    fn c_mm_abi_test() -> i32;
    /// tests/c/mm_abi_test.c: the PTE_* values as the C compiler sees them.
    fn c_pte_values(out: *mut u64);
    /// tests/c/mm_abi_test.c: 0 on success, else the failed check's number.
    fn c_slab_abi_test() -> i32;
    /// tests/c/mm_abi_test.c: how often the test's constructor ran.
    static c_slab_constructed: i32;
}

/// The C interface tests.
pub static TESTS: &[Test] = &[
    Test {
        name: "cabi::header_pte_values_match_rust",
        run: header_pte_values_match_rust,
        expects: Expect::NOTHING,
    },
    Test {
        name: "cabi::c_code_drives_pmm_vmm_and_heap",
        run: c_code_drives_pmm_vmm_and_heap,
        expects: Expect::BAD_FREES.logging(&["cabi::exports", "kernel_mm::pmm", "kernel_mm::heap"]),
    },
    Test {
        name: "cabi::c_code_drives_kmem_caches",
        run: c_code_drives_kmem_caches,
        expects: Expect::BAD_FREES.logging(&["cabi::exports"]),
    },
];

fn header_pte_values_match_rust(_: &Context<'_>) -> TestResult {
    let mut values = [0u64; 10];
    // SAFETY: c_pte_values writes exactly 10 values into the array.
    unsafe { c_pte_values(values.as_mut_ptr()) };
    for (seen, (_, expected)) in values.iter().zip(PTE_FLAGS) {
        kassert_eq!(seen, expected);
    }
    Ok(())
}

fn c_code_drives_pmm_vmm_and_heap(_: &Context<'_>) -> TestResult {
    let (frames, bytes) = (pmm::stats(), heap::used());
    // SAFETY: the C test only calls the exported API and touches memory it
    // maps or allocates through it.
    let failed_check = unsafe { c_mm_abi_test() };
    kassert_eq!(failed_check, 0);
    kassert_eq!(pmm::stats(), frames);
    kassert_eq!(heap::used(), bytes);
    kassert!(heap::verify().is_ok());
    Ok(())
}

/// The C test creates caches (one with a constructor), allocates, checks
/// and frees 300 objects, provokes every refusal, and destroys them: the
/// caches are gone from the registry and every frame is back in the PMM.
fn c_code_drives_kmem_caches(_: &Context<'_>) -> TestResult {
    let (frames, refused) = (pmm::stats(), slab::refused_frees());
    let caches = slab::totals().caches;
    // SAFETY: the C test only calls the exported API and touches the
    // objects it allocates through it.
    let failed_check = unsafe { c_slab_abi_test() };
    kassert_eq!(failed_check, 0);
    // Once per object of each slab made: 96-byte objects on 64-byte lines.
    let per_slab = mm::slab::Geometry::new(96, 64).map_or(0, |g| g.objects);
    // SAFETY: a plain int the C test wrote; it runs no more.
    let constructed = unsafe { c_slab_constructed } as usize;
    kassert!(per_slab > 0 && constructed >= 300 && constructed.is_multiple_of(per_slab));
    // The interior, foreign, wrong-cache and double frees.
    kassert_eq!(slab::refused_frees() - refused, 4);
    kassert!(
        slab::find("c-thing").is_none(),
        "the C cache was not destroyed"
    );
    kassert_eq!(slab::totals().caches, caches);
    kassert_eq!(pmm::stats(), frames);
    Ok(())
}
