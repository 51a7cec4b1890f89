/* IncroOS virtual memory manager: C interface.
 * Implemented in Rust (src/cabi.rs); see include/pmm.h. */
#ifndef INCROOS_VMM_H
#define INCROOS_VMM_H

#include <stdbool.h>
#include <stdint.h>

/* Page-table entry flags: the hardware bits. */
#define PTE_PRESENT      (1ULL << 0)
#define PTE_WRITABLE     (1ULL << 1)
#define PTE_USER         (1ULL << 2)
#define PTE_WRITETHROUGH (1ULL << 3)
#define PTE_NOCACHE      (1ULL << 4)
#define PTE_ACCESSED     (1ULL << 5)
#define PTE_DIRTY        (1ULL << 6)
#define PTE_HUGE         (1ULL << 7)
#define PTE_GLOBAL       (1ULL << 8)
#define PTE_NX           (1ULL << 63)

/* The kernel initialises the VMM at boot; calling this again does nothing. */
void vmm_init(void);
/* Maps the 4 KiB page at virt to the frame at phys (a 2 MiB page if flags
 * has PTE_HUGE). false if misaligned, non-canonical, already mapped, in
 * conflict with a huge page, or out of memory for page tables. */
bool vmm_map_page(uint64_t virt, uint64_t phys, uint64_t flags);
/* Unmaps the page at virt; page tables it empties are freed. */
void vmm_unmap_page(uint64_t virt);
/* Physical address virt maps to, or 0 if it is not mapped. */
uint64_t vmm_get_physical(uint64_t virt);
/* Physical address of the PML4 in CR3. */
uint64_t vmm_get_cr3(void);

#endif
