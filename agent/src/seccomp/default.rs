//! berth's default profile: an allow-list with the reach of Docker's
//! default profile (moby `profiles/seccomp/default.json`), for a container
//! with Docker's default capabilities.
//!
//! Anything not listed fails with EPERM. Not listed, among others: making
//! namespaces (`unshare`, `setns`, `clone` with a namespace flag) and
//! mounting (`mount`, `umount2`, `pivot_root`, the new mount API), the
//! kernel keyring (`keyctl`, `add_key`, `request_key`), `bpf`,
//! `perf_event_open`, `userfaultfd`, `io_uring_*`, loading kernels and
//! modules, `open_by_handle_at`, setting clocks, swap, `reboot`, `acct`,
//! `quotactl` and `syslog`. Those are the surface of most recent local
//! privilege escalations; a container that needs them runs with
//! `seccomp=unconfined` or a profile of its own.
//!
//! As in Docker's profile, a capability the container is given
//! (`--cap-add`) allows the calls it is about ([`BY_CAPABILITY`]): the
//! profile is compiled for each container's capabilities, so a container
//! with CAP_SYS_TIME may set the clock and one with CAP_SYS_ADMIN may
//! mount and make namespaces, as with Docker.

use super::profile::{Action, Arg, Filter, Op, Profile, Rule};

/// Calls every container may make, whatever its arguments.
const ALLOWED: &[&str] = &[
    // Files and directories.
    "access",
    "chdir",
    "chmod",
    "chown",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "flock",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "link",
    "linkat",
    "lseek",
    "lstat",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    "name_to_handle_at",
    "cachestat",
    // Extended attributes.
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "setxattr",
    // Waiting for files and events.
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "fanotify_mark",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "poll",
    "ppoll",
    "pipe",
    "pipe2",
    "pselect6",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    // Asynchronous I/O (not io_uring).
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_setup",
    "io_submit",
    "ioprio_get",
    "ioprio_set",
    // Memory.
    "brk",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // Processes and threads.
    "arch_prctl",
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "kill",
    "modify_ldt",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setpgid",
    "setpriority",
    "setrlimit",
    "setsid",
    "tgkill",
    "tkill",
    "vfork",
    "wait4",
    "waitid",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    // Users and groups (capabilities decide what succeeds).
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getresgid",
    "getresuid",
    "getuid",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setuid",
    // Signals.
    "pause",
    "restart_syscall",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    // Time (reading it; setting it needs CAP_SYS_TIME, which containers lack).
    "adjtimex",
    "alarm",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "times",
    // Futexes.
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    // System V and POSIX IPC (in the container's own IPC namespace).
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // Sockets.
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketpair",
    // The rest.
    "getrandom",
    "ioctl",
    "sysinfo",
    "uname",
    // Debugging one's own processes: safe since kernel 4.8, where ptrace
    // can no longer get around seccomp (kcmp stays out, as in Docker's).
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    // CAP_SYS_CHROOT is in the default set.
    "chroot",
];

/// Calls allowed only to a container holding a capability (moby's
/// `includes.caps` rules). Not listed, and so refused whatever the
/// capabilities, as everywhere in this profile: the kernel keyring,
/// `userfaultfd`, `io_uring_*`, `kexec_*`, swap, `pivot_root`.
pub const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// `clone` flags that make namespaces: CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET.
const CLONE_NAMESPACES: u64 = 0x7E02_0000;
/// `socket` family the container must not use: AF_VSOCK reaches the
/// hypervisor host, outside every namespace.
const AF_VSOCK: u64 = 40;
/// `personality` values a program may set: PER_LINUX, UNAME26,
/// PER_LINUX32, PER_LINUX32 | UNAME26, and 0xffffffff (the query); not
/// ADDR_NO_RANDOMIZE and friends, which weaken the container's own
/// protections.
const PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];
const EPERM: u32 = 1;
/// ENOSYS: for `clone3`, so that libcs fall back to `clone`, whose flags
/// (unlike `clone3`'s, in memory) a filter can read.
const ENOSYS: u32 = 38;

/// The default profile.
pub fn profile() -> Profile {
    let allow = |names: &[&str], args: Vec<Arg>| Rule {
        names: names.iter().map(|s| s.to_string()).collect(),
        name: None,
        action: Action::Allow,
        errno_ret: None,
        args,
        includes: Filter::default(),
        excludes: Filter::default(),
    };
    let arg = |index, op, value, value_two| Arg {
        index,
        value,
        value_two,
        op,
    };
    let mut rules = vec![
        allow(ALLOWED, vec![]),
        allow(&["clone"], vec![arg(0, Op::MaskedEq, CLONE_NAMESPACES, 0)]),
        // The kernel takes socket's family as an int, so the test is on
        // the low half: `arg != 40` on 64 bits (Docker's rule) lets
        // `socket(1 << 32 | 40, ...)` make a vsock socket.
        allow(&["socket"], vec![]),
        Rule {
            action: Action::Errno,
            errno_ret: Some(EPERM),
            ..allow(
                &["socket"],
                vec![arg(0, Op::MaskedEq, 0xffff_ffff, AF_VSOCK)],
            )
        },
    ];
    for p in PERSONALITIES {
        rules.push(allow(&["personality"], vec![arg(0, Op::Eq, *p, 0)]));
    }
    for (cap, names) in BY_CAPABILITY {
        rules.push(Rule {
            includes: Filter {
                caps: vec![cap.to_string()],
                ..Filter::default()
            },
            ..allow(names, vec![])
        });
    }
    // With CAP_SYS_ADMIN clone3 is allowed above (namespaces are too).
    rules.push(Rule {
        action: Action::Errno,
        errno_ret: Some(ENOSYS),
        excludes: Filter {
            caps: vec!["CAP_SYS_ADMIN".into()],
            ..Filter::default()
        },
        ..allow(&["clone3"], vec![])
    });
    Profile {
        default_action: Action::Errno,
        default_errno_ret: Some(EPERM),
        syscalls: rules,
    }
}
