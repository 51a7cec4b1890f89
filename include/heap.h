/* IncroOS kernel heap: C interface.
 * Implemented in Rust (src/cabi.rs); see include/pmm.h. */
#ifndef INCROOS_HEAP_H
#define INCROOS_HEAP_H

#include <stddef.h>

/* The kernel initialises the heap at boot; calling this again does nothing. */
void heap_init(void);
/* size bytes, 16-byte aligned, or NULL. */
void *kmalloc(size_t size);
/* Frees what kmalloc returned; NULL is a no-op; bad pointers are logged and ignored. */
void kfree(void *ptr);
/* Bytes in allocated blocks. */
size_t heap_get_used(void);
/* Bytes in free blocks of the mapped heap. */
size_t heap_get_free(void);

#endif
