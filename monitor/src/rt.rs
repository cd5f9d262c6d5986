//! What a program needs before `main` when there is no C runtime: the entry
//! point, a memory allocator, a panic handler and the `mem*` functions the
//! compiler calls.
//!
//! The monitor is single-threaded for its whole life (it never creates a
//! thread, and the container init is a forked copy, not a thread), which is
//! what makes the allocator's unsynchronised state sound.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ffi::{c_char, CStr};
use core::ptr;
use core::sync::atomic::{AtomicI32, Ordering};

use alloc::vec::Vec;
use rustix::fd::AsRawFd;
use rustix::mm::{MapFlags, ProtFlags};

/// Where `_start` ([`crate::arch`]) goes.
///
/// # Safety
/// Called only by `_start`, with the initial stack pointer.
pub(crate) unsafe extern "C" fn entry(stack: *const usize) -> ! {
    // SAFETY: the initial stack layout is the kernel's ABI: argc, then argc
    // pointers to NUL-terminated strings that live as long as the process.
    let args: Vec<&'static [u8]> = unsafe {
        let argc = *stack;
        let argv = stack.add(1) as *const *const c_char;
        (0..argc)
            .map(|i| CStr::from_ptr(*argv.add(i)).to_bytes())
            .collect()
    };
    crate::main(&args)
}

/// The container init's fail pipe, once it has one (-1 before).
static PANIC_PIPE: AtomicI32 = AtomicI32::new(-1);

/// Makes a panic also write "125:<message>" to `fail`, the container init's
/// fail pipe, so that the monitor reports a failed start instead of taking
/// the silent exit for a successful exec. `fail` must stay open until the
/// process exits, which the init guarantees: it owns the pipe until then.
pub fn report_panics_to(fail: &impl AsRawFd) {
    PANIC_PIPE.store(fail.as_raw_fd(), Ordering::Relaxed);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // No allocation here: the panic may be an allocation failure.
    let mut out = crate::io::FixedBuf::<512>::new();
    let _ = core::fmt::write(&mut out, format_args!("125:berth-monitor: {info}"));
    let report = out.as_bytes();
    let pipe = PANIC_PIPE.load(Ordering::Relaxed);
    if pipe >= 0 {
        crate::sys::write_raw(pipe, report);
    }
    crate::io::write_stderr(&report[4..]);
    crate::io::write_stderr(b"\n");
    crate::sys::exit(125)
}

// The precompiled `core` and `alloc` of a stable toolchain are built to
// unwind, so they name the unwinder's entry points. This binary is built
// with panic = "abort": no unwinding ever starts, and these are never
// called; they only satisfy the linker.

/// Never called (see above).
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Never called (see above).
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::sys::exit(134)
}

/// Pages for dlmalloc, straight from the kernel.
struct Pages;

// SAFETY: `alloc` returns fresh, zeroed, page-aligned anonymous mappings of
// the size it reports; `free`/`free_part` unmap only what it mapped.
unsafe impl dlmalloc::Allocator for Pages {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        // SAFETY: a new private anonymous mapping aliases nothing.
        match unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                size,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        } {
            Ok(p) => (p.cast(), size, 0),
            Err(_) => (ptr::null_mut(), 0, 0),
        }
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, ptr: *mut u8, old: usize, new: usize) -> bool {
        // SAFETY: the tail [new, old) of a mapping made by `alloc`, which
        // dlmalloc no longer uses.
        unsafe { rustix::mm::munmap(ptr.add(new).cast(), old - new).is_ok() }
    }

    fn free(&self, ptr: *mut u8, size: usize) -> bool {
        // SAFETY: a whole mapping made by `alloc`, no longer in use.
        unsafe { rustix::mm::munmap(ptr.cast(), size).is_ok() }
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        true
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        4096
    }
}

struct Heap(UnsafeCell<dlmalloc::Dlmalloc<Pages>>);

// SAFETY: the process is single-threaded (see the module docs), so the heap
// is never used from two threads.
unsafe impl Sync for Heap {}

#[global_allocator]
static HEAP: Heap = Heap(UnsafeCell::new(dlmalloc::Dlmalloc::new_with_allocator(
    Pages,
)));

// SAFETY: forwards to dlmalloc, which upholds GlobalAlloc's contract; the
// exclusive access it needs comes from being single-threaded.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded, so this is the only access to the heap.
        unsafe { (*self.0.get()).malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { (*self.0.get()).calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`; `ptr` and `layout` are the caller's, who
        // got them from this allocator (GlobalAlloc's contract).
        unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `dealloc`.
        unsafe { (*self.0.get()).realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

// The compiler lowers copies and fills to calls of these C functions, which
// libc would provide.
//
// `rep movsb`/`rep stosb` are fast on every x86_64 of the last decade
// (ERMSB) and cannot be turned back into a call to themselves, as a plain
// loop could.
#[cfg(target_arch = "x86_64")]
mod mem {
    /// # Safety
    /// C's `memcpy` contract: valid, non-overlapping regions of `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe {
            core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _,
            inout("rsi") src => _, options(nostack, preserves_flags));
        }
        dst
    }

    /// # Safety
    /// C's `memmove` contract: valid regions of `n` bytes, which may overlap.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if (dst as usize).wrapping_sub(src as usize) >= n {
            // dst is below src, or past its end: a forward copy is safe.
            // SAFETY: the caller's contract.
            return unsafe { memcpy(dst, src, n) };
        }
        // SAFETY: the caller's contract; copying backwards (direction flag set,
        // and cleared again as the ABI requires) handles the overlap.
        unsafe {
            core::arch::asm!("std", "rep movsb", "cld", inout("rcx") n => _,
            inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
            options(nostack));
        }
        dst
    }

    /// # Safety
    /// C's `memset` contract: a valid region of `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe {
            core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _,
            in("al") c as u8, options(nostack, preserves_flags));
        }
        dst
    }
}

// Byte loops, volatile so that they are not recognised as a memcpy and
// compiled into a call to themselves. Slower than an assembly version; the
// monitor copies little (its launch spec, log chunks).
#[cfg(target_arch = "aarch64")]
mod mem {
    use core::ptr;

    /// # Safety
    /// C's `memcpy` contract: valid, non-overlapping regions of `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        for i in 0..n {
            // SAFETY: the caller's contract.
            unsafe { ptr::write_volatile(dst.add(i), ptr::read_volatile(src.add(i))) };
        }
        dst
    }

    /// # Safety
    /// C's `memmove` contract: valid regions of `n` bytes, which may overlap.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if (dst as usize).wrapping_sub(src as usize) >= n {
            // dst is below src, or past its end: a forward copy is safe.
            // SAFETY: the caller's contract.
            return unsafe { memcpy(dst, src, n) };
        }
        for i in (0..n).rev() {
            // SAFETY: the caller's contract; backwards handles the overlap.
            unsafe { ptr::write_volatile(dst.add(i), ptr::read_volatile(src.add(i))) };
        }
        dst
    }

    /// # Safety
    /// C's `memset` contract: a valid region of `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
        for i in 0..n {
            // SAFETY: the caller's contract.
            unsafe { ptr::write_volatile(dst.add(i), c as u8) };
        }
        dst
    }
}

/// # Safety
/// C's `memcmp` contract: valid regions of `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller's contract. Volatile, so this loop is not
        // recognised as a memcmp and compiled into a call to itself.
        let (x, y) = unsafe { (ptr::read_volatile(a.add(i)), ptr::read_volatile(b.add(i))) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// C's `strlen` contract: a valid NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: the caller's contract; volatile for the reason in `memcmp`.
    while unsafe { ptr::read_volatile(s.add(n)) } != 0 {
        n += 1;
    }
    n
}

/// # Safety
/// As [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { memcmp(a, b, n) }
}
