//! The fixed paths of every container: its standard device nodes, /dev
//! symlinks, and what of /proc and /sys is masked or read-only.

/// The standard device nodes a container gets, with their (fixed, Linux
/// `devices.txt`) character device numbers. Each is a node of the
/// container's own, made in its /dev like a `--device` node: never the
/// host's node bound in, whose inode a `chmod` or `chown` by container root
/// would change for the whole host.
pub const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The symlinks of a container's /dev, and what they point to.
pub const DEV_SYMLINKS: [(&str, &str); 6] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
];

/// Files hidden behind /dev/null. With [`MASKED_DIRS`], Docker's masked
/// paths (moby's `oci/defaults.go`, Docker 28): kernel interfaces that
/// leak host information (interrupt counts, timers, keys, the kernel's
/// memory) or drive host hardware (sound, firmware, power capping).
pub const MASKED_FILES: [&str; 7] = [
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
];

/// Directories hidden behind an empty read-only tmpfs.
pub const MASKED_DIRS: [&str; 5] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths left visible but read-only: Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
