/* IncroOS object caches: C interface with Linux's names and shapes.
 * Implemented in Rust (src/cabi.rs over src/kernel_mm/slab.rs); checked
 * against the Rust exports by `cargo host-test cabi` and exercised from C
 * by tests/c/mm_abi_test.c. See docs/slab.md. */
#ifndef INCROOS_SLAB_H
#define INCROOS_SLAB_H

#include <stddef.h>

/* Allocation flags. The kernel never sleeps in an allocation: 0 and
 * GFP_KERNEL (Linux's value) mean the same; any other bit is refused. */
typedef unsigned int gfp_t;
#define GFP_KERNEL ((gfp_t)0x0cc0u)

/* Cache flags: 0, or objects aligned to a 64-byte cache line at least.
 * Any other bit is refused. */
#define SLAB_HWCACHE_ALIGN 0x00002000UL

/* A cache of objects of one size; opaque. */
struct kmem_cache;

/* A cache of objects of size bytes (1 to 8192) aligned to align (0 for 8,
 * else a power of two up to 4096), named name (copied, cut to 32 bytes).
 * ctor, if not NULL, runs once on every object when its slab is made, with
 * the cache's lock held: it must not use object caches. Objects must be
 * freed in their constructed state. NULL if the arguments are refused
 * (logged) or the registry of 32 caches is full. */
struct kmem_cache *kmem_cache_create(const char *name, size_t size, size_t align, unsigned long flags, void (*ctor)(void *));
/* An object of the cache, or NULL (out of memory, or refused flags or
 * cache: logged). */
void *kmem_cache_alloc(struct kmem_cache *cache, gfp_t flags);
/* Returns an object to its cache; NULL is a no-op. A double free, a
 * pointer inside an object or outside the cache, or an object of another
 * cache is logged and ignored. */
void kmem_cache_free(struct kmem_cache *cache, void *object);
/* Destroys an empty cache, its pages back to the PMM; NULL is a no-op.
 * While objects are in use it is refused (logged, with their count) and
 * the cache stays. */
void kmem_cache_destroy(struct kmem_cache *cache);

#endif
