//! Capabilities a container keeps: Docker's default set.

use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::io::{Context, Result};

/// Docker's default capabilities; everything else is removed from the
/// bounding set, so not even a setuid binary can regain it.
const DEFAULT: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// Limits the calling process to [`DEFAULT`]: bounding, permitted and
/// effective sets (root in the container then holds exactly these after
/// exec; other users hold none, as with Docker). The inheritable set is
/// empty, as Docker's (runc's fix of CVE-2022-24769): a program with file
/// capabilities gets only what its file grants within the bounding set,
/// never more through inheritable ones. The kernel keeps ambient
/// capabilities within permitted and inheritable, so the ambient set
/// (berthd's, if it had one) is emptied with it.
pub fn drop_to_default() -> Result<()> {
    // Every capability this kernel has, also ones newer than this code:
    // the kernel says EINVAL past its last one.
    for cap in 0..64u32 {
        if DEFAULT.bits() & (1 << cap) != 0 {
            continue;
        }
        match crate::sys::drop_bounding_capability(cap) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => return Err(e).ctx(alloc::format!("dropping capability {cap}")),
        }
    }
    // setuid/setgid still need CAP_SETUID/CAP_SETGID, which stay in the set.
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: DEFAULT,
            permitted: DEFAULT,
            inheritable: CapabilitySet::empty(),
        },
    )
    .ctx("setting capabilities")
}
