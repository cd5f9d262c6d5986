//! The compiled programs, run by the kernel: a forked child installs them
//! and reports what its system calls got.

use super::compile::{compile, encode, Program};
use super::profile::{go_arch, Host, Profile};
use super::*;

fn host() -> Host<'static> {
    Host {
        caps: DEFAULT_CAPS,
        arch: go_arch(),
        kernel: (6, 1),
    }
}

/// Forks; the child installs `programs` (in order) and runs `probe`, whose
/// return value becomes its exit status. The child only makes system
/// calls: it was forked from a multi-threaded process.
fn in_child(programs: &[Program], probe: fn() -> i32) -> i32 {
    // Built before the fork: the child must not allocate.
    let filters: Vec<Vec<libc::sock_filter>> = programs
        .iter()
        .map(|p| {
            p.iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect()
        })
        .collect();
    let mut fprogs: Vec<libc::sock_fprog> = filters
        .iter()
        .map(|f| libc::sock_fprog {
            len: f.len() as u16,
            filter: f.as_ptr().cast_mut(),
        })
        .collect();
    // SAFETY: the child calls only async-signal-safe functions (prctl,
    // seccomp and the probe's raw system calls) and leaves by _exit,
    // never returning into the test harness.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: see above; `fprogs` point into `filters`, alive.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(100);
                }
                for p in fprogs.iter_mut() {
                    let p: *mut libc::sock_fprog = p;
                    if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, p) != 0 {
                        libc::_exit(100);
                    }
                }
            }
            let code = probe();
            // SAFETY: see above.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            match nix::sys::wait::waitpid(child, None).expect("waitpid") {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                other => panic!("probe child ended with {other:?}"),
            }
        }
    }
}

/// The errno of a failed raw system call, 0 on success.
fn errno_of(ret: libc::c_long) -> i32 {
    if ret >= 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

fn default_programs() -> Vec<Program> {
    compile(&default::profile(), &host()).expect("the default profile compiles")
}

#[test]
fn the_default_profile_is_one_program() {
    // The allow-list and clone3's ENOSYS together: each program installed
    // costs an emulation of it for every call number.
    assert_eq!(default_programs().len(), 1);
}

#[test]
fn default_profile_refuses_namespaces_mounts_and_keyrings() {
    let programs = default_programs();
    // Each check sets one bit when the call got what it must not.
    let code = in_child(&programs, || {
        let mut bad = 0;
        // SAFETY: raw system calls with valid or harmlessly invalid
        // arguments; pointers are to static NUL-terminated strings.
        unsafe {
            if libc::syscall(libc::SYS_getpid) <= 0 {
                bad |= 1;
            }
            if errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)) != libc::EPERM {
                bad |= 2;
            }
            let (src, dst, fs) = (
                c"none".as_ptr(),
                c"/nonexistent".as_ptr(),
                c"tmpfs".as_ptr(),
            );
            if errno_of(libc::syscall(libc::SYS_mount, src, dst, fs, 0, 0)) != libc::EPERM {
                bad |= 4;
            }
            // KEYCTL_GET_KEYRING_ID of the session keyring.
            if errno_of(libc::syscall(libc::SYS_keyctl, 0, -3, 0)) != libc::EPERM {
                bad |= 8;
            }
            if errno_of(libc::syscall(libc::SYS_clone3, 0, 0)) != libc::ENOSYS {
                bad |= 16;
            }
            if errno_of(libc::syscall(
                libc::SYS_socket,
                libc::AF_VSOCK,
                libc::SOCK_STREAM,
                0,
            )) != libc::EPERM
            {
                bad |= 32;
            }
            // Allowed calls still work: a unix socket, the personality query.
            let mut fds = [0i32; 2];
            if libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0) < 0
                || libc::syscall(libc::SYS_pipe2, fds.as_mut_ptr(), 0) < 0
                || libc::syscall(libc::SYS_personality, 0xffff_ffffu64) < 0
            {
                bad |= 1;
            }
            // The kernel reads socket's family as an int: high bits must
            // not carry AF_VSOCK past the filter.
            if errno_of(libc::syscall(
                libc::SYS_socket,
                (1u64 << 32) | libc::AF_VSOCK as u64,
                libc::SOCK_STREAM,
                0,
            )) != libc::EPERM
            {
                bad |= 128;
            }
            // ADDR_NO_RANDOMIZE is refused.
            if errno_of(libc::syscall(libc::SYS_personality, 0x0040000)) != libc::EPERM {
                bad |= 64;
            }
        }
        bad
    });
    assert_eq!(code, 0, "bits of the checks that failed: {code:#b}");
}

#[test]
fn without_the_filter_the_same_probes_behave_otherwise() {
    // The probe above must be able to fail: unfiltered, mount gets ENOENT
    // (as root) or EPERM (not root), clone3 with no arguments EINVAL or
    // EFAULT, never ENOSYS on a kernel that has it.
    let code = in_child(&[], || {
        // SAFETY: as above.
        let e = errno_of(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) });
        i32::from(e == libc::ENOSYS)
    });
    assert_eq!(code, 0, "clone3 is ENOSYS without a filter");
}

#[test]
fn a_docker_deny_list_profile_is_honoured() {
    let p = Profile::parse(
        br#"{"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let programs = compile(&p, &host()).unwrap();
    assert_eq!(programs.len(), 1);
    let code = in_child(&programs, || {
        // SAFETY: as above.
        unsafe {
            let e = errno_of(libc::syscall(
                libc::SYS_mkdirat,
                libc::AT_FDCWD,
                c"/".as_ptr(),
                0,
            ));
            let pid = libc::syscall(libc::SYS_getpid);
            i32::from(e != libc::EACCES) | (i32::from(pid <= 0) << 1)
        }
    });
    assert_eq!(code, 0, "{code:#b}");
}

#[test]
fn a_profile_that_allows_everything_is_refused() {
    let p = Profile::parse(br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}"#).unwrap();
    assert!(matches!(
        compile(&p, &host()),
        Err(SeccompError::AllowsEverything)
    ));
}

#[test]
fn unknown_names_are_skipped_and_conditions_merge() {
    let p = Profile::parse(
        br#"{"defaultAction": "SCMP_ACT_ERRNO",
             "syscalls": [{"names": ["read", "no_such_call", "socketcall"], "action": "SCMP_ACT_ALLOW"},
                          {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                           "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
    )
    .unwrap();
    let programs = compile(&p, &host()).unwrap();
    // The unconditional rule for read wins: one short chain.
    assert_eq!(programs.len(), 1);
    assert!(programs[0].len() < 12, "{}", programs[0].len());
}

#[test]
fn the_store_compiles_once_and_names_by_digest() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("seccomp");
    let store = Seccomp::open(&dir).unwrap();
    let dc = default_caps();
    let default = store.program_file(&Choice::Unset, &dc).unwrap().unwrap();
    assert_eq!(
        store.program_file(&Choice::Default, &dc).unwrap(),
        Some(default.clone())
    );
    assert!(default.is_file());
    assert_eq!(
        std::fs::metadata(&default).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(store.program_file(&Choice::Unconfined, &dc).unwrap(), None);
    let json = br#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#;
    let custom = |json: &str, digest: &str| Choice::Custom {
        json: json.into(),
        digest: digest.into(),
    };
    let prepared = store
        .prepare(custom(std::str::from_utf8(json).unwrap(), ""), &dc)
        .unwrap();
    let Choice::Custom { json: kept, digest } = &prepared else {
        panic!("{prepared:?}");
    };
    assert!(kept.is_empty(), "the record keeps the digest, not the text");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let file = store.program_file(&prepared, &dc).unwrap().unwrap();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        encode(&compile(&Profile::parse(json).unwrap(), &host()).unwrap())
    );
    assert!(store
        .program_file(&custom("", "sha256:../../etc/passwd"), &dc)
        .is_err());
    assert!(store
        .program_file(&custom("", &format!("sha256:{}", "0".repeat(64))), &dc)
        .is_err());
    assert!(
        store.prepare(custom("", ""), &dc).is_err(),
        "no profile given"
    );
}

fn default_caps() -> Vec<String> {
    DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
}

#[test]
fn an_added_capability_unlocks_its_calls_in_the_default_profile() {
    fn settime() -> i32 {
        // An invalid clock: EINVAL once past the filter, EPERM from it.
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a raw system call with a valid pointer.
        errno_of(unsafe { libc::syscall(libc::SYS_clock_settime, -1i64, &ts) })
    }
    assert_eq!(in_child(&default_programs(), settime), libc::EPERM);
    let mut caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    caps.push("CAP_SYS_TIME");
    let with_time = compile(
        &default::profile(),
        &Host {
            caps: &caps,
            ..host()
        },
    )
    .unwrap();
    assert_eq!(in_child(&with_time, settime), libc::EINVAL);

    // The store compiles it once per capability set, apart from the default.
    let tmp = tempfile::tempdir().unwrap();
    let store = Seccomp::open(&tmp.path().join("seccomp")).unwrap();
    let names: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    let a = store.program_file(&Choice::Unset, &names).unwrap().unwrap();
    let b = store
        .program_file(&Choice::Default, &names)
        .unwrap()
        .unwrap();
    let d = store
        .program_file(&Choice::Unset, &default_caps())
        .unwrap()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, d);
    assert_eq!(std::fs::read(&a).unwrap(), encode(&with_time));
}

/// Writes the default profile's compiled file to `$BERTH_SECCOMP_DUMP`,
/// for `bench/seccomp/attach.c`:
/// `BERTH_SECCOMP_DUMP=/tmp/default.bpf cargo test -p berth-agent --lib dump_default -- --ignored`.
#[test]
#[ignore = "a benchmark helper, not a test"]
fn dump_default_program() {
    let path = std::env::var_os("BERTH_SECCOMP_DUMP").expect("BERTH_SECCOMP_DUMP");
    std::fs::write(path, encode(&default_programs())).expect("write");
    // And seccompiler's programs for the same profile, to compare.
    if let Some(old) = std::env::var_os("BERTH_SECCOMP_DUMP_OLD") {
        let programs = super::oracle::compile(&default::profile(), &host()).expect("compiles");
        std::fs::write(old, encode(&programs)).expect("write");
    }
}
