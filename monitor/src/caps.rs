//! Capabilities a container keeps: Docker's default set, or what its
//! `cap_add`/`cap_drop` made of it.

use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::io::{Context, Result};

/// Removes from the bounding set every capability not in `keep` (bit N:
/// capability N; Docker's default set unless the container asked
/// otherwise), so not even a setuid binary can regain one; returns the
/// capabilities the container gets: `keep` within what this process holds
/// (a capability the kernel or berthd lacks cannot be given).
///
/// The effective and permitted sets stay as they are until [`apply`],
/// after the user is set: setgroups, setgid and setuid need CAP_SETGID and
/// CAP_SETUID even when the container has them dropped.
pub fn limit_bounding(keep: u64) -> Result<u64> {
    let held = rustix::thread::capabilities(None)
        .ctx("reading capabilities")?
        .permitted
        .bits();
    let set = keep & held;
    // Every capability this kernel has, also ones newer than this code:
    // the kernel says EINVAL past its last one.
    for cap in 0..64u32 {
        if set & (1 << cap) != 0 {
            continue;
        }
        match crate::sys::drop_bounding_capability(cap) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => return Err(e).ctx(alloc::format!("dropping capability {cap}")),
        }
    }
    Ok(set)
}

/// Sets the permitted and effective sets to `set` for root, to nothing for
/// another user (who holds none, as with Docker; setuid has cleared them
/// already). The inheritable set is empty, as Docker's (runc's fix of
/// CVE-2022-24769): a program with file capabilities gets only what its
/// file grants within the bounding set, never more through inheritable
/// ones. The kernel keeps ambient capabilities within permitted and
/// inheritable, so the ambient set (berthd's, if it had one) is emptied
/// with it.
pub fn apply(set: u64, root: bool) -> Result<()> {
    let set = CapabilitySet::from_bits_retain(if root { set } else { 0 });
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: set,
            permitted: set,
            inheritable: CapabilitySet::empty(),
        },
    )
    .ctx("setting capabilities")
}
