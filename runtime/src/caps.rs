//! Capabilities a container keeps: Docker's default set.

use caps::{CapSet, Capability, CapsHashSet};

/// Docker's default capabilities; everything else is removed from the
/// bounding set, so not even a setuid binary can regain it.
pub const DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Limits the calling process to [`DEFAULT`]: bounding, inheritable,
/// permitted and effective sets (root in the container then holds exactly
/// these after exec; other users hold none, as with Docker).
pub fn drop_to_default() -> Result<(), caps::errors::CapsError> {
    let keep: CapsHashSet = DEFAULT.into_iter().collect();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    caps::set(None, CapSet::Inheritable, &keep)?;
    // setuid/setgid still need CAP_SETUID/CAP_SETGID, which stay in the set.
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    Ok(())
}
