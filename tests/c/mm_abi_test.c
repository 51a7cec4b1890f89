/* The memory manager's C interface, exercised from freestanding C inside
 * the kernel (no libc). Compiled by build.rs into the kernel ELF; the
 * in-kernel tests in src/ktest/c_abi_tests.rs call these functions. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "heap.h"
#include "pmm.h"
#include "vmm.h"

/* A lower-half address nothing else maps. */
#define TEST_VIRT 0x0000500000000000ULL
#define DIRECT_MAP 0xFFFF800000000000ULL

/* The PTE_* values as this compiler sees include/vmm.h. */
void c_pte_values(uint64_t out[10])
{
    const uint64_t values[10] = {
        PTE_PRESENT, PTE_WRITABLE, PTE_USER, PTE_WRITETHROUGH, PTE_NOCACHE,
        PTE_ACCESSED, PTE_DIRTY, PTE_HUGE, PTE_GLOBAL, PTE_NX,
    };
    for (int i = 0; i < 10; i++)
        out[i] = values[i];
}

/* Returns 0 when every check passes, else the number of the first failed one. */
int c_mm_abi_test(void)
{
    /* Calling the init functions again is harmless. */
    pmm_init();
    vmm_init();
    heap_init();

    /* PMM: counters, allocation, free, double free. */
    uint64_t total = pmm_get_total_pages();
    uint64_t free0 = pmm_get_free_pages();
    if (total == 0 || free0 == 0 || free0 > total)
        return 1;
    uint64_t frame = pmm_alloc_page();
    if (frame == 0 || (frame & 0xFFF) != 0)
        return 2;
    if (pmm_get_free_pages() != free0 - 1)
        return 3;

    /* VMM: map the frame, write through it, translate, refuse misuse. */
    if (!vmm_map_page(TEST_VIRT, frame, PTE_PRESENT | PTE_WRITABLE | PTE_NX))
        return 4;
    volatile uint64_t *page = (volatile uint64_t *)TEST_VIRT;
    page[0] = 0xC0FFEE;
    page[511] = 42;
    if (vmm_get_physical(TEST_VIRT + 8) != frame + 8)
        return 5;
    if (vmm_map_page(TEST_VIRT, frame, PTE_PRESENT))
        return 6; /* already mapped */
    if (vmm_map_page(TEST_VIRT + 0x1001, frame, PTE_PRESENT))
        return 7; /* misaligned */
    if (vmm_map_page(0x0000800000000000ULL, frame, PTE_PRESENT))
        return 8; /* non-canonical */
    volatile uint64_t *direct = (volatile uint64_t *)(DIRECT_MAP + frame);
    if (direct[0] != 0xC0FFEE || direct[511] != 42)
        return 9;
    vmm_unmap_page(TEST_VIRT);
    if (vmm_get_physical(TEST_VIRT) != 0)
        return 10;
    vmm_unmap_page(TEST_VIRT); /* not mapped: logged, harmless */
    uint64_t cr3 = vmm_get_cr3();
    if (cr3 == 0 || (cr3 & 0xFFF) != 0)
        return 11;

    pmm_free_page(frame);
    if (pmm_get_free_pages() != free0)
        return 12;
    pmm_free_page(frame); /* double free: logged, ignored */
    pmm_free_page(frame + 3); /* misaligned: logged, ignored */
    if (pmm_get_free_pages() != free0)
        return 13;

    /* Heap: alignment, contents, counters, coalescing, misuse. */
    size_t used0 = heap_get_used();
    char *a = kmalloc(1000), *b = kmalloc(1000), *c = kmalloc(1000);
    if (!a || !b || !c || ((uintptr_t)a & 15) || ((uintptr_t)b & 15) || ((uintptr_t)c & 15))
        return 14;
    for (int i = 0; i < 1000; i++) {
        a[i] = (char)i;
        b[i] = (char)~i;
    }
    for (int i = 0; i < 1000; i++)
        if (a[i] != (char)i || b[i] != (char)~i)
            return 15;
    if (heap_get_used() < used0 + 3000)
        return 16;
    kfree(b);
    kfree(a);
    kfree(c);
    if (heap_get_used() != used0)
        return 17;
    /* The three neighbours merged: one block of their total size fits where
     * the first one was (when they were neighbours: if the heap grew
     * between them, they are not). */
    int neighbours = a < b && b < c && c - a < 2 * 1100;
    char *merged = kmalloc(2900);
    if (!merged || (neighbours && merged != a))
        return 18;
    kfree(merged);
    size_t free_before = heap_get_free();
    kfree(NULL);
    kfree(merged); /* double free: logged, ignored */
    kfree((void *)page); /* not from the heap: logged, ignored */
    if (heap_get_used() != used0 || heap_get_free() != free_before)
        return 19;
    if (kmalloc(SIZE_MAX) != NULL)
        return 20;
    return 0;
}
