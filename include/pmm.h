/* IncroOS physical memory manager: C interface.
 * Implemented in Rust (src/cabi.rs); checked against the Rust exports by
 * `cargo host-test cabi` and exercised from C by tests/c/mm_abi_test.c. */
#ifndef INCROOS_PMM_H
#define INCROOS_PMM_H

#include <stdint.h>

/* The kernel initialises the PMM at boot; calling this again does nothing. */
void pmm_init(void);
/* Physical address of a free 4 KiB frame, or 0 if none is left. */
uint64_t pmm_alloc_page(void);
/* Returns a frame. Double frees and foreign addresses are logged and ignored. */
void pmm_free_page(uint64_t phys);
/* Free frames. */
uint64_t pmm_get_free_pages(void);
/* Frames managed (free + used + reserved). */
uint64_t pmm_get_total_pages(void);

#endif
