//! What differs between architectures: how a system call is made and where
//! the program starts. System call numbers and kernel constants are not
//! here: they come from linux-raw-sys (the kernel's headers, generated per
//! architecture), the crate rustix itself is built on.
//!
//! x86_64 and aarch64 are supported; the kernel's structures the monitor
//! passes itself (`struct sigaction`, `struct clone_args`, `struct ifreq`)
//! have the same layout on both.

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("berth-monitor's entry point and raw system calls exist for x86_64 and aarch64");

pub use imp::{exit_group, syscall};

#[cfg(target_arch = "x86_64")]
mod imp {
    /// Makes system call `nr` with up to five arguments; returns the
    /// kernel's raw result (a negative errno on failure).
    ///
    /// # Safety
    /// The caller upholds the contract of system call `nr` for these arguments.
    pub unsafe fn syscall(nr: u32, a: [usize; 5]) -> isize {
        let ret: isize;
        // SAFETY: the caller's contract; the kernel clobbers rcx and r11.
        unsafe {
            core::arch::asm!("syscall", inlateout("rax") nr as isize => ret,
                in("rdi") a[0], in("rsi") a[1], in("rdx") a[2], in("r10") a[3], in("r8") a[4],
                lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret
    }

    /// `exit_group(code)`.
    pub fn exit_group(code: i32) -> ! {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe {
            core::arch::asm!("syscall", in("rax") linux_raw_sys::general::__NR_exit_group as usize,
                in("rdi") code as isize, options(noreturn, nostack));
        }
    }

    // The kernel starts a static executable here with the stack holding
    // argc, then argv, a null, envp, a null and the auxiliary vector.
    // Clearing rbp ends frame-pointer chains; `entry` expects a 16-byte
    // aligned stack before the call pushes its return address.
    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym crate::rt::entry,
    );
}

#[cfg(target_arch = "aarch64")]
mod imp {
    /// Makes system call `nr` with up to five arguments; returns the
    /// kernel's raw result (a negative errno on failure).
    ///
    /// # Safety
    /// The caller upholds the contract of system call `nr` for these arguments.
    pub unsafe fn syscall(nr: u32, a: [usize; 5]) -> isize {
        let ret: isize;
        // SAFETY: the caller's contract; `svc 0` clobbers only x0.
        unsafe {
            core::arch::asm!("svc 0", in("x8") nr as usize,
                inlateout("x0") a[0] => ret, in("x1") a[1], in("x2") a[2], in("x3") a[3],
                in("x4") a[4], options(nostack));
        }
        ret
    }

    /// `exit_group(code)`.
    pub fn exit_group(code: i32) -> ! {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe {
            core::arch::asm!("svc 0", in("x8") linux_raw_sys::general::__NR_exit_group as usize,
                in("x0") code as isize, options(noreturn, nostack));
        }
    }

    // The kernel starts a static executable here with sp (16-byte aligned)
    // at argc, then argv, a null, envp, a null and the auxiliary vector.
    // Clearing the frame pointer and link register ends unwinding chains.
    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "mov x29, xzr",
        "mov x30, xzr",
        "mov x0, sp",
        "bl {entry}",
        "udf #0",
        entry = sym crate::rt::entry,
    );
}
