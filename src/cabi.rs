//! The C interface of the original memory manager (`include/*.h`) and of
//! the object caches (`include/slab.h`, Linux's `kmem_cache_*`), as thin
//! wrappers over the Rust API: errors become the C conventions (0 for no
//! frame, `false` for a failed map, NULL for a failed `kmalloc` or
//! `kmem_cache_alloc`), and misuse is logged, never fatal.
//!
//! [`PROTOTYPES`] lists every export as the headers declare it; a host test
//! compares it with the headers, and each export is checked against its
//! entry's Rust type at compile time, so header, table and code cannot
//! drift apart.

/// Every C export: (name, C return type, C parameters), as in the headers.
pub const PROTOTYPES: &[(&str, &str, &str)] = &[
    ("pmm_init", "void", "void"),
    ("pmm_alloc_page", "uint64_t", "void"),
    ("pmm_free_page", "void", "uint64_t phys"),
    ("pmm_get_free_pages", "uint64_t", "void"),
    ("pmm_get_total_pages", "uint64_t", "void"),
    ("vmm_init", "void", "void"),
    (
        "vmm_map_page",
        "bool",
        "uint64_t virt, uint64_t phys, uint64_t flags",
    ),
    ("vmm_unmap_page", "void", "uint64_t virt"),
    ("vmm_get_physical", "uint64_t", "uint64_t virt"),
    ("vmm_get_cr3", "uint64_t", "void"),
    ("heap_init", "void", "void"),
    ("kmalloc", "void *", "size_t size"),
    ("kfree", "void", "void *ptr"),
    ("heap_get_used", "size_t", "void"),
    ("heap_get_free", "size_t", "void"),
    (
        "kmem_cache_create",
        "struct kmem_cache *",
        "const char *name, size_t size, size_t align, unsigned long flags, void (*ctor)(void *)",
    ),
    (
        "kmem_cache_alloc",
        "void *",
        "struct kmem_cache *cache, gfp_t flags",
    ),
    (
        "kmem_cache_free",
        "void",
        "struct kmem_cache *cache, void *object",
    ),
    ("kmem_cache_destroy", "void", "struct kmem_cache *cache"),
];

/// C's `gfp_t` (include/slab.h: `typedef unsigned int gfp_t`).
pub type GfpT = core::ffi::c_uint;
/// include/slab.h's `GFP_KERNEL` (Linux's value; the kernel never sleeps
/// in an allocation, so it means the same as 0).
pub const GFP_KERNEL: GfpT = 0x0cc0;
/// include/slab.h's `SLAB_HWCACHE_ALIGN`: objects aligned to a cache line.
pub const SLAB_HWCACHE_ALIGN: core::ffi::c_ulong = 0x2000;
/// A cache line, the alignment `SLAB_HWCACHE_ALIGN` asks for.
pub const CACHE_LINE: usize = 64;

/// The constants of include/slab.h: (name, value).
pub const SLAB_CONSTANTS: &[(&str, u64)] = &[
    ("GFP_KERNEL", GFP_KERNEL as u64),
    ("SLAB_HWCACHE_ALIGN", SLAB_HWCACHE_ALIGN),
];

/// The `PTE_*` constants of include/vmm.h: (name, value).
pub const PTE_FLAGS: &[(&str, u64)] = &[
    ("PTE_PRESENT", 1 << 0),
    ("PTE_WRITABLE", 1 << 1),
    ("PTE_USER", 1 << 2),
    ("PTE_WRITETHROUGH", 1 << 3),
    ("PTE_NOCACHE", 1 << 4),
    ("PTE_ACCESSED", 1 << 5),
    ("PTE_DIRTY", 1 << 6),
    ("PTE_HUGE", 1 << 7),
    ("PTE_GLOBAL", 1 << 8),
    ("PTE_NX", 1 << 63),
];

// The table's values are the Rust flags' bits.
const _: () = {
    use mm::paging::{
        ACCESSED, DIRTY, GLOBAL, HUGE, NOCACHE, NX, PRESENT, USER, WRITABLE, WRITETHROUGH,
    };
    let rust = [
        PRESENT,
        WRITABLE,
        USER,
        WRITETHROUGH,
        NOCACHE,
        ACCESSED,
        DIRTY,
        HUGE,
        GLOBAL,
        NX,
    ];
    let mut index = 0;
    while index < rust.len() {
        assert!(rust[index].bits() == PTE_FLAGS[index].1);
        index += 1;
    }
};

#[cfg(target_os = "none")]
mod exports {
    use core::ffi::{c_char, c_ulong, c_void};

    use x86_64::structures::paging::PageTableFlags;
    use x86_64::PhysAddr;

    use super::{GfpT, CACHE_LINE, GFP_KERNEL, SLAB_HWCACHE_ALIGN};
    use crate::kernel_mm::slab::{self, KmemCache};
    use crate::kernel_mm::{heap, pmm, vmm};
    use mm::paging::{PageSize, HUGE};
    use mm::slab::{Constructor, NAME_BYTES};

    #[no_mangle]
    extern "C" fn pmm_init() {
        log::info!("pmm_init: the PMM was initialised at boot; nothing to do");
    }

    #[no_mangle]
    extern "C" fn pmm_alloc_page() -> u64 {
        pmm::alloc_page().map_or(0, |frame| frame.start_address().as_u64())
    }

    #[no_mangle]
    extern "C" fn pmm_free_page(phys: u64) {
        // free_page logs refusals; C callers get no error to check.
        match PhysAddr::try_new(phys) {
            Ok(address) => {
                let _ = pmm::free_page(address);
            }
            Err(_) => log::warn!("pmm_free_page({phys:#x}): not a physical address"),
        }
    }

    #[no_mangle]
    extern "C" fn pmm_get_free_pages() -> u64 {
        pmm::stats().free
    }

    #[no_mangle]
    extern "C" fn pmm_get_total_pages() -> u64 {
        pmm::stats().total
    }

    #[no_mangle]
    extern "C" fn vmm_init() {
        log::info!("vmm_init: the VMM was initialised at boot; nothing to do");
    }

    /// # Safety
    /// The C caller owns the frame at `phys` for this mapping (include/vmm.h):
    /// it must not alias memory the kernel's Rust code holds.
    #[no_mangle]
    unsafe extern "C" fn vmm_map_page(virt: u64, phys: u64, flags: u64) -> bool {
        let flags = PageTableFlags::from_bits_truncate(flags);
        let size = if flags.contains(HUGE) {
            PageSize::Size2MiB
        } else {
            PageSize::Size4KiB
        };
        let result = mm::checked_virt(virt).and_then(|virt| {
            let phys = mm::checked_phys(phys)?;
            // SAFETY: the C caller's contract above.
            unsafe { vmm::map(virt, phys, size, flags - HUGE) }
        });
        match result {
            Ok(()) => true,
            Err(error) => {
                log::warn!("vmm_map_page({virt:#x}, {phys:#x}): {error}");
                false
            }
        }
    }

    /// # Safety
    /// Nothing may still use the page (include/vmm.h).
    #[no_mangle]
    unsafe extern "C" fn vmm_unmap_page(virt: u64) {
        // SAFETY: the C caller's contract above.
        let result = mm::checked_virt(virt).and_then(|virt| unsafe { vmm::unmap(virt) });
        if let Err(error) = result {
            log::warn!("vmm_unmap_page({virt:#x}): {error}");
        }
    }

    #[no_mangle]
    extern "C" fn vmm_get_physical(virt: u64) -> u64 {
        mm::checked_virt(virt)
            .ok()
            .and_then(vmm::translate)
            .map_or(0, |t| t.phys.as_u64())
    }

    #[no_mangle]
    extern "C" fn vmm_get_cr3() -> u64 {
        vmm::current_cr3().start_address().as_u64()
    }

    #[no_mangle]
    extern "C" fn heap_init() {
        log::info!("heap_init: the heap was initialised at boot; nothing to do");
    }

    #[no_mangle]
    extern "C" fn kmalloc(size: usize) -> *mut c_void {
        heap::kmalloc(size).cast()
    }

    #[no_mangle]
    extern "C" fn kfree(pointer: *mut c_void) {
        // C callers get no error: refusals (double free, foreign pointer)
        // are logged.
        heap::kfree_or_log(pointer.cast());
    }

    #[no_mangle]
    extern "C" fn heap_get_used() -> usize {
        heap::used()
    }

    #[no_mangle]
    extern "C" fn heap_get_free() -> usize {
        heap::free()
    }

    /// # Safety
    /// `name` is NULL or a NUL-terminated string; `ctor`, if any, is a
    /// function sound to call on `size` writable bytes aligned to `align`
    /// that nothing else uses, which does not use object caches
    /// (include/slab.h).
    #[no_mangle]
    unsafe extern "C" fn kmem_cache_create(
        name: *const c_char,
        size: usize,
        align: usize,
        flags: c_ulong,
        ctor: Option<Constructor>,
    ) -> *mut KmemCache {
        let mut buffer = [0u8; NAME_BYTES];
        // SAFETY: the C caller's contract above.
        let name = unsafe { c_name(name, &mut buffer) };
        if flags & !SLAB_HWCACHE_ALIGN != 0 {
            log::warn!("kmem_cache_create({name:?}): flags {flags:#x} not supported");
            return core::ptr::null_mut();
        }
        let align = if flags & SLAB_HWCACHE_ALIGN != 0 {
            align.max(CACHE_LINE)
        } else {
            align
        };
        let created = match ctor {
            // SAFETY: the C caller's contract above.
            Some(ctor) => unsafe { slab::create_with_constructor(name, size, align, ctor) },
            None => slab::create(name, size, align),
        };
        match created {
            Ok(id) => slab::c_handle(id),
            Err(error) => {
                log::warn!("kmem_cache_create({name:?}, size {size}, align {align}): {error}");
                core::ptr::null_mut()
            }
        }
    }

    /// The first bytes of the C string `name` (up to NUL, NAME_BYTES, or
    /// the first byte that is not UTF-8), `"?"` for NULL.
    ///
    /// # Safety
    /// `name` is NULL or a NUL-terminated string.
    unsafe fn c_name(name: *const c_char, buffer: &mut [u8; NAME_BYTES]) -> &str {
        if name.is_null() {
            return "?";
        }
        let mut len = 0;
        while len < NAME_BYTES {
            // SAFETY: the string goes on at least up to its NUL, which has
            // not come yet (the caller's contract).
            let byte = unsafe { name.add(len).read() } as u8;
            if byte == 0 {
                break;
            }
            buffer[len] = byte;
            len += 1;
        }
        match core::str::from_utf8(&buffer[..len]) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&buffer[..error.valid_up_to()]).unwrap_or("?"),
        }
    }

    #[no_mangle]
    extern "C" fn kmem_cache_alloc(cache: *mut KmemCache, flags: GfpT) -> *mut c_void {
        if flags != 0 && flags != GFP_KERNEL {
            log::warn!("kmem_cache_alloc({cache:p}): gfp flags {flags:#x} not supported");
            return core::ptr::null_mut();
        }
        let Some(id) = slab::from_c_handle(cache) else {
            log::warn!("kmem_cache_alloc({cache:p}): not a cache");
            return core::ptr::null_mut();
        };
        // Out of memory is no misuse: NULL, as kmalloc.
        slab::alloc(id).map_or(core::ptr::null_mut(), |object| object.as_ptr().cast())
    }

    /// # Safety
    /// If `object` is an object of `cache` in use, the C caller owns it
    /// and does not use it afterwards (include/slab.h).
    #[no_mangle]
    unsafe extern "C" fn kmem_cache_free(cache: *mut KmemCache, object: *mut c_void) {
        if object.is_null() {
            return;
        }
        let Some(id) = slab::from_c_handle(cache) else {
            log::error!("kmem_cache_free({cache:p}, {object:p}): not a cache");
            return;
        };
        // SAFETY: the C caller's contract above.
        if let Err(error) = unsafe { slab::free(id, object.cast()) } {
            let name = slab::info(id).map(|info| info.name).unwrap_or_default();
            log::error!("kmem_cache_free({name:?}, {object:p}) refused: {error}");
        }
    }

    #[no_mangle]
    extern "C" fn kmem_cache_destroy(cache: *mut KmemCache) {
        if cache.is_null() {
            return;
        }
        let Some(id) = slab::from_c_handle(cache) else {
            log::error!("kmem_cache_destroy({cache:p}): not a cache");
            return;
        };
        let name = slab::info(id).map(|info| info.name).unwrap_or_default();
        if let Err(refused) = slab::destroy(id) {
            log::error!("kmem_cache_destroy({name:?}) refused: {refused}");
        }
    }

    // Each export has the Rust type its PROTOTYPES entry implies.
    const _: [extern "C" fn(); 3] = [pmm_init, vmm_init, heap_init];
    const _: [extern "C" fn() -> u64; 4] = [
        pmm_alloc_page,
        pmm_get_free_pages,
        pmm_get_total_pages,
        vmm_get_cr3,
    ];
    const _: extern "C" fn(u64) = pmm_free_page;
    const _: unsafe extern "C" fn(u64) = vmm_unmap_page;
    const _: unsafe extern "C" fn(u64, u64, u64) -> bool = vmm_map_page;
    const _: extern "C" fn(u64) -> u64 = vmm_get_physical;
    const _: extern "C" fn(usize) -> *mut c_void = kmalloc;
    const _: extern "C" fn(*mut c_void) = kfree;
    const _: [extern "C" fn() -> usize; 2] = [heap_get_used, heap_get_free];
    const _: unsafe extern "C" fn(
        *const c_char,
        usize,
        usize,
        c_ulong,
        Option<unsafe extern "C" fn(*mut c_void)>,
    ) -> *mut KmemCache = kmem_cache_create;
    const _: extern "C" fn(*mut KmemCache, GfpT) -> *mut c_void = kmem_cache_alloc;
    const _: unsafe extern "C" fn(*mut KmemCache, *mut c_void) = kmem_cache_free;
    const _: extern "C" fn(*mut KmemCache) = kmem_cache_destroy;
}

#[cfg(test)]
mod tests {
    use super::{PROTOTYPES, PTE_FLAGS, SLAB_CONSTANTS};

    fn headers() -> String {
        ["pmm.h", "vmm.h", "heap.h", "slab.h"]
            .iter()
            .map(|name| {
                let path = format!("{}/include/{name}", env!("CARGO_MANIFEST_DIR"));
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
            })
            .collect()
    }

    /// Every declaration `type name(params);` in the headers, normalised.
    fn declarations(text: &str) -> Vec<(String, String, String)> {
        text.lines()
            .map(str::trim)
            .filter(|line| line.ends_with(");") && !line.starts_with('#') && !line.starts_with('/'))
            .map(|line| {
                let open = line.find('(').unwrap();
                let head = &line[..open];
                let params = line[open + 1..line.len() - 2].trim().to_string();
                let split = head.rfind([' ', '*']).unwrap() + 1;
                let name = head[split..].to_string();
                let ret = head[..split].trim().to_string();
                (name, ret, params)
            })
            .collect()
    }

    #[test]
    fn headers_declare_exactly_the_exports() {
        let mut declared = declarations(&headers());
        let mut expected: Vec<_> = PROTOTYPES
            .iter()
            .map(|(n, r, p)| (n.to_string(), r.to_string(), p.to_string()))
            .collect();
        declared.sort();
        expected.sort();
        assert_eq!(declared, expected);
    }

    #[test]
    fn pte_constants_equal_the_hardware_bits() {
        let text = headers();
        for (name, value) in PTE_FLAGS {
            let line = text
                .lines()
                .find(|line| line.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} missing from include/vmm.h"));
            let shift: u32 = line
                .split("1ULL << ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches(')').trim().parse().ok())
                .unwrap_or_else(|| panic!("cannot read {line:?}"));
            assert_eq!(1u64 << shift, *value, "{name}");
        }
    }

    #[test]
    fn slab_constants_equal_the_rust_values() {
        let text = headers();
        let c_types = text
            .lines()
            .any(|line| line.trim() == "typedef unsigned int gfp_t;");
        assert!(c_types, "gfp_t is not `unsigned int` in include/slab.h");
        for (name, value) in SLAB_CONSTANTS {
            let line = text
                .lines()
                .find(|line| line.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} missing from include/slab.h"));
            let hex = line
                .split("0x")
                .nth(1)
                .map(|rest| rest.trim_end_matches([')', 'u', 'U', 'L']).trim())
                .unwrap_or_else(|| panic!("cannot read {line:?}"));
            let parsed = u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(parsed, *value, "{name}");
        }
    }
}
