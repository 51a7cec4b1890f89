/* The memory manager's C interface, exercised from freestanding C inside
 * the kernel (no libc). Compiled by build.rs into the kernel ELF; the
 * in-kernel tests in src/ktest/c_abi_tests.rs call these functions. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "heap.h"
#include "pmm.h"
#include "slab.h"
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
    /* 3000 bytes: above the quick lists' limit (2 KiB), whose blocks wait
     * uncoalesced until the heap trims (docs/heap.md, "Quick lists"). */
    char *a = kmalloc(3000), *b = kmalloc(3000), *c = kmalloc(3000);
    if (!a || !b || !c || ((uintptr_t)a & 15) || ((uintptr_t)b & 15) || ((uintptr_t)c & 15))
        return 14;
    for (int i = 0; i < 3000; i++) {
        a[i] = (char)i;
        b[i] = (char)~i;
    }
    for (int i = 0; i < 3000; i++)
        if (a[i] != (char)i || b[i] != (char)~i)
            return 15;
    if (heap_get_used() < used0 + 9000)
        return 16;
    kfree(b);
    kfree(a);
    kfree(c);
    if (heap_get_used() != used0)
        return 17;
    /* The three neighbours merged: one block of their total size fits where
     * the first one was (when they were neighbours: if the heap grew
     * between them, they are not). */
    int neighbours = a < b && b < c && c - a < 2 * 3100;
    char *merged = kmalloc(8600);
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

/* Object caches: a cache with a constructor, as a C driver would use one. */
struct thing {
    uint64_t magic;
    uint32_t id;
    uint32_t users;
    char name[80];
};

#define THING_MAGIC 0x7468696e67ULL /* "thing" */
#define THINGS 300

/* How often thing_ctor ran, for the Rust side to compare with the stats. */
int c_slab_constructed;
static struct thing *things[THINGS];

static void thing_ctor(void *object)
{
    struct thing *thing = object;
    thing->magic = THING_MAGIC;
    thing->id = 0;
    thing->users = 0;
    for (int i = 0; i < (int)sizeof(thing->name); i++)
        thing->name[i] = 0;
    c_slab_constructed++;
}

/* Returns 0 when every check passes, else the number of the first failed
 * one. Misuse the kernel logs and ignores: a double free, a pointer inside
 * an object, a foreign pointer, an object freed into another cache, a
 * destroy with objects in use, bad flags and arguments. */
int c_slab_abi_test(void)
{
    c_slab_constructed = 0;
    struct kmem_cache *cache = kmem_cache_create("c-thing", sizeof(struct thing), 0,
                                                 SLAB_HWCACHE_ALIGN, thing_ctor);
    if (!cache)
        return 1;
    if (c_slab_constructed != 0)
        return 2; /* constructors run when a slab is made, not before */

    /* Many objects: aligned to the cache line, constructed, distinct. */
    for (int i = 0; i < THINGS; i++) {
        struct thing *thing = kmem_cache_alloc(cache, i % 2 ? GFP_KERNEL : 0);
        if (!thing)
            return 3;
        if ((uintptr_t)thing & 63)
            return 4;
        if (thing->magic != THING_MAGIC || thing->id != 0 || thing->users != 0)
            return 5;
        thing->id = (uint32_t)i + 1;
        thing->users = 1;
        things[i] = thing;
    }
    if (c_slab_constructed < THINGS)
        return 6;
    for (int i = 0; i < THINGS; i++) {
        if (things[i]->id != (uint32_t)i + 1)
            return 7; /* an object overlapping another would have changed it */
        for (int j = 0; j < i; j++)
            if (things[i] == things[j])
                return 8;
    }

    /* Freed in their constructed state: they come back as they left. */
    for (int i = 0; i < THINGS; i++) {
        things[i]->id = 0;
        things[i]->users = 0;
        kmem_cache_free(cache, things[i]);
    }
    int constructed = c_slab_constructed;
    struct thing *again = kmem_cache_alloc(cache, GFP_KERNEL);
    if (!again || again->magic != THING_MAGIC || again->id != 0)
        return 9;
    if (c_slab_constructed != constructed)
        return 10; /* a kept slab: no constructor on reuse */

    /* Misuse: logged and ignored. */
    struct kmem_cache *other = kmem_cache_create("c-other", 24, 8, 0, NULL);
    if (!other)
        return 11;
    void *foreign = kmem_cache_alloc(other, 0);
    if (!foreign)
        return 12;
    kmem_cache_free(cache, (char *)again + 8); /* inside an object */
    kmem_cache_free(cache, &constructed);      /* not from any cache */
    kmem_cache_free(cache, foreign);           /* another cache's object */
    kmem_cache_free(cache, NULL);              /* no-op */
    if (kmem_cache_alloc(cache, 0x1234) != NULL)
        return 13; /* flags the kernel does not support */
    if (kmem_cache_create("c-bad", 0, 0, 0, NULL) != NULL)
        return 14; /* size 0 */
    if (kmem_cache_create("c-bad", 64, 24, 0, NULL) != NULL)
        return 15; /* alignment not a power of two */
    if (kmem_cache_create("c-bad", 64, 8, 0x80000UL, NULL) != NULL)
        return 16; /* flags the kernel does not support */
    kmem_cache_destroy(cache); /* refused: an object is in use */
    struct thing *still = kmem_cache_alloc(cache, 0);
    if (!still || still->magic != THING_MAGIC)
        return 17; /* the refused destroy kept the cache */

    kmem_cache_free(cache, still);
    kmem_cache_free(cache, again);
    kmem_cache_free(cache, again); /* double free */
    kmem_cache_free(other, foreign);
    kmem_cache_destroy(other);
    kmem_cache_destroy(cache);
    kmem_cache_destroy(NULL); /* no-op */
    return 0;
}
