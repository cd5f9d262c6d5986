//! The two `bpf(2)` commands berthd needs: load a cgroup device program and
//! attach it to a cgroup (the v2 device cgroup). libc has no `bpf_attr`, so
//! the two members of the union used here are spelled out below, laid out
//! as linux/bpf.h lays them out.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `prog_name`; the kernel
/// accepts a shorter attr and zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads `insns` (eBPF instructions, 8 bytes each, as `struct bpf_insn`)
/// as a `BPF_PROG_TYPE_CGROUP_DEVICE` program and attaches it to the cgroup
/// directory `cgroup`. Attached without `BPF_F_ALLOW_OVERRIDE` or
/// `BPF_F_ALLOW_MULTI`, so nothing below the cgroup can attach a program of
/// its own in its place. The attachment holds the program: it lives until
/// the cgroup is removed, whatever happens to berthd.
pub fn attach_cgroup_device_program(cgroup: &Path, insns: &[u8]) -> io::Result<()> {
    if insns.is_empty() || !insns.len().is_multiple_of(8) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let dir = std::fs::File::open(cgroup)?;
    let license = b"Apache-2.0\0";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"berth_devcg");
    let load = |log: &mut [u8]| {
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: (insns.len() / 8) as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            prog_name: name,
            ..Default::default()
        };
        // SAFETY: `attr` is a valid BPF_PROG_LOAD attr of the size passed;
        // the instruction, license and log buffers it points to outlive
        // the call.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        }
    };
    // Without the verifier's log: with one, kernels before 6.4 fail a load
    // whose log outgrows the buffer with ENOSPC (a device list of a few
    // entries did, on 6.1). The log is asked for only to explain a refusal.
    let mut fd = load(&mut []);
    if fd < 0 {
        let err = io::Error::last_os_error();
        let mut log = vec![0u8; 64 << 10];
        fd = load(&mut log);
        if fd < 0 {
            let verifier = String::from_utf8_lossy(&log);
            let verifier = verifier.trim_end_matches('\0').trim();
            if verifier.is_empty() {
                return Err(err);
            }
            return Err(io::Error::new(
                err.kind(),
                format!("{err}; verifier: {verifier:.300}"),
            ));
        }
    }
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attach = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: `attach` is a valid BPF_PROG_ATTACH attr of the size passed;
    // both fds it names are open for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
