//! Links berth-monitor as a static executable with no C runtime: the
//! program starts at its own `_start` (src/rt.rs) and makes its system
//! calls itself, so nothing of glibc runs or is mapped. glibc's start-up
//! alone costs ~0.7 ms of CPU per process on a VM, where each `cpuid` it
//! executes traps to the hypervisor (BENCHMARKS.md).
fn main() {
    // Not position-independent: nothing would apply its relocations, that
    // is the C runtime's job.
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
