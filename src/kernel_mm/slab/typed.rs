//! Typed object caches: [`ObjectCache<T>`] hands out [`CacheBox<T>`]s,
//! owned values in the cache's slabs that drop `T` and free themselves.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of, ManuallyDrop};
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use super::{CacheId, CacheInfo, DestroyRefused};
use mm::slab::{CacheStats, MAX_ALIGN, MAX_OBJECT_SIZE};
use mm::MmError;

/// A named cache of `T`s. Const-constructible for statics; registered
/// with the kernel's registry on its first allocation (and again after a
/// `destroy`), so it shows in `slabinfo` from then on.
///
/// ```ignore
/// static TASKS: ObjectCache<Task> = ObjectCache::new("task");
/// let task = TASKS.alloc(Task::new())?; // a CacheBox<'static, Task>
/// ```
pub struct ObjectCache<T> {
    name: &'static str,
    /// The registered cache, as `CacheId::pack` (0: not registered).
    id: AtomicU64,
    _objects: PhantomData<fn() -> T>,
}

impl<T> ObjectCache<T> {
    /// Refuses, at compile time, a `T` no cache can hold.
    const FITS: () = assert!(
        align_of::<T>() <= MAX_ALIGN && size_of::<T>() <= MAX_OBJECT_SIZE,
        "an object cache holds objects of at most 8 KiB aligned to at most 4 KiB"
    );

    /// A cache named `name`, not registered yet.
    pub const fn new(name: &'static str) -> Self {
        let () = Self::FITS;
        Self {
            name,
            id: AtomicU64::new(0),
            _objects: PhantomData,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The registered cache, registering it if it is not.
    fn id(&self) -> Result<CacheId, MmError> {
        if let Some(id) = CacheId::unpack(self.id.load(Ordering::Acquire)) {
            return Ok(id);
        }
        let id = super::create(self.name, size_of::<T>().max(1), align_of::<T>())?;
        match self
            .id
            .compare_exchange(0, id.pack(), Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(id),
            // Another CPU registered it first: ours is empty, drop it.
            Err(winner) => {
                let _ = super::destroy(id);
                CacheId::unpack(winner).ok_or(MmError::NoSuchCache)
            }
        }
    }

    /// Moves `value` into an object of the cache. `OutOfFrames` if a new
    /// slab was needed and the PMM had none, `TooManyCaches` if the cache
    /// could not be registered (then `value` is dropped).
    pub fn alloc(&self, value: T) -> Result<CacheBox<'_, T>, MmError> {
        let id = self.id()?;
        let (id, object) = match super::alloc(id) {
            Ok(object) => (id, object),
            // Destroyed behind our back (through a C handle): register anew.
            Err(MmError::NoSuchCache) => {
                let _ = self
                    .id
                    .compare_exchange(id.pack(), 0, Ordering::AcqRel, Ordering::Acquire);
                let id = self.id()?;
                (id, super::alloc(id)?)
            }
            Err(error) => return Err(error),
        };
        let object = object.cast::<T>();
        // SAFETY: a fresh object of the cache, at least size_of::<T>()
        // bytes aligned to align_of::<T>() (the cache's geometry), ours
        // alone.
        unsafe { object.as_ptr().write(value) };
        Ok(CacheBox {
            object,
            id,
            _cache: PhantomData,
            _owns: PhantomData,
        })
    }

    /// The cache's name and figures (`None` before its first allocation).
    pub fn info(&self) -> Option<CacheInfo> {
        CacheId::unpack(self.id.load(Ordering::Acquire)).and_then(|id| super::info(id).ok())
    }

    /// The cache's counters (`None` before its first allocation).
    pub fn stats(&self) -> Option<CacheStats> {
        self.info().map(|info| info.stats)
    }

    /// The cache's consistency check (`slab::verify`; `None` before its
    /// first allocation).
    pub fn verify(&self) -> Option<Result<(), &'static str>> {
        CacheId::unpack(self.id.load(Ordering::Acquire)).map(super::verify)
    }

    /// Gives the cache's empty slabs back to the PMM; returns the pages.
    pub fn shrink(&self) -> usize {
        CacheId::unpack(self.id.load(Ordering::Acquire))
            .and_then(|id| super::shrink(id).ok())
            .unwrap_or(0)
    }

    /// Unregisters the cache and gives all its slabs back; refused, with
    /// the count, while `CacheBox`es of it are alive (a run-time cache's
    /// boxes borrow it, so dropping it cannot race them; a static's boxes
    /// can only be counted). The next `alloc` registers it again.
    pub fn destroy(&self) -> Result<(), DestroyRefused> {
        let Some(id) = CacheId::unpack(self.id.load(Ordering::Acquire)) else {
            return Ok(());
        };
        match super::destroy(id) {
            Ok(())
            | Err(DestroyRefused {
                error: MmError::NoSuchCache,
                ..
            }) => {
                let _ = self
                    .id
                    .compare_exchange(id.pack(), 0, Ordering::AcqRel, Ordering::Acquire);
                Ok(())
            }
            Err(refused) => Err(refused),
        }
    }
}

impl<T> Drop for ObjectCache<T> {
    /// Destroys the cache. Its boxes borrowed it, so none is alive unless
    /// one was leaked with `mem::forget`: then its slabs stay (safe, lost).
    fn drop(&mut self) {
        if let Err(refused) = self.destroy() {
            log::warn!(
                "slab: cache {:?} dropped with {refused}: its slabs leak",
                self.name
            );
        }
    }
}

/// A `T` in an object cache: derefs to it; drops it and frees the object
/// when dropped.
pub struct CacheBox<'a, T> {
    object: NonNull<T>,
    id: CacheId,
    _cache: PhantomData<&'a ObjectCache<T>>,
    _owns: PhantomData<T>,
}

// SAFETY: a CacheBox owns its T like a Box does; sending it sends the T
// (hence T: Send), and the free on drop goes through the cache's lock from
// any CPU.
unsafe impl<T: Send> Send for CacheBox<'_, T> {}
// SAFETY: sharing a CacheBox shares only `&T` (hence T: Sync).
unsafe impl<T: Sync> Sync for CacheBox<'_, T> {}

impl<T> CacheBox<'_, T> {
    /// The value, moved out; the object goes back to the cache.
    pub fn into_inner(this: Self) -> T {
        let this = ManuallyDrop::new(this);
        // SAFETY: the object holds a valid T that we own; it is read once
        // and the box is never dropped (ManuallyDrop), so it is not dropped
        // twice.
        let value = unsafe { ptr::read(this.object.as_ptr()) };
        this.release();
        value
    }

    /// Where the value lives.
    pub fn as_ptr(this: &Self) -> *const T {
        this.object.as_ptr()
    }

    /// Frees the object (its value already moved out or dropped).
    fn release(&self) {
        // SAFETY: the object came from cache `id`, which cannot be
        // destroyed while it is in use, and nothing uses it any more.
        if let Err(error) = unsafe { super::free(self.id, self.object.as_ptr().cast()) } {
            log::error!("slab: a CacheBox's object was refused: {error}");
        }
    }
}

impl<T> Deref for CacheBox<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the object holds a valid T owned by this box.
        unsafe { self.object.as_ref() }
    }
}

impl<T> DerefMut for CacheBox<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, borrowed mutably through the box.
        unsafe { self.object.as_mut() }
    }
}

impl<T> Drop for CacheBox<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the object holds a valid T owned by this box, dropped
        // once here; `release` then frees the memory only.
        unsafe { ptr::drop_in_place(self.object.as_ptr()) };
        self.release();
    }
}

impl<T: fmt::Debug> fmt::Debug for CacheBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display> fmt::Display for CacheBox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
