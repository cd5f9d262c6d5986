//! The container's ids and the host's: identity, or with `--userns auto`
//! the container's range (its id 0 is the range's first host id).

use berth_runtime::launch::IdMapping;

/// The host's "nobody": what a host id outside the container's range
/// looks like from inside it (the kernel's overflow id).
pub const OVERFLOW_ID: u32 = 65534;

/// How a container's ids map to the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdMap(Option<IdMapping>);

impl IdMap {
    /// The container's mapping (`None`: the host's ids).
    pub fn new(userns: Option<IdMapping>) -> Self {
        IdMap(userns)
    }

    /// The host uid and gid of the container's `uid` and `gid`; `None`
    /// when the container does not map one of them.
    pub fn to_host(&self, uid: u64, gid: u64) -> Option<(u32, u32)> {
        let uid = u32::try_from(uid).ok()?;
        let gid = u32::try_from(gid).ok()?;
        match self.0 {
            None => Some((uid, gid)),
            Some(m) if uid < m.size && gid < m.size => {
                Some((m.uid.checked_add(uid)?, m.gid.checked_add(gid)?))
            }
            Some(_) => None,
        }
    }

    /// The container's view of the host `uid` and `gid` (unmapped ids
    /// are [`OVERFLOW_ID`], as the kernel shows them).
    pub fn from_host(&self, uid: u32, gid: u32) -> (u32, u32) {
        match self.0 {
            None => (uid, gid),
            Some(m) => {
                let one = |id: u32, base: u32| {
                    id.checked_sub(base)
                        .filter(|d| *d < m.size)
                        .unwrap_or(OVERFLOW_ID)
                };
                (one(uid, m.uid), one(gid, m.gid))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_are_identity_without_a_user_namespace() {
        let m = IdMap::new(None);
        assert_eq!(m.to_host(0, 0), Some((0, 0)));
        assert_eq!(m.to_host(1000, 50), Some((1000, 50)));
        assert_eq!(m.to_host(u64::from(u32::MAX) + 1, 0), None);
        assert_eq!(m.from_host(7, 8), (7, 8));
    }

    #[test]
    fn a_user_namespace_maps_its_range_only() {
        let m = IdMap::new(Some(IdMapping {
            uid: 100_000_000,
            gid: 100_065_536,
            size: 65536,
        }));
        assert_eq!(m.to_host(0, 0), Some((100_000_000, 100_065_536)));
        assert_eq!(m.to_host(1000, 1), Some((100_001_000, 100_065_537)));
        assert_eq!(m.to_host(65536, 0), None);
        assert_eq!(m.to_host(0, 65536), None);
        assert_eq!(m.from_host(100_001_000, 100_065_537), (1000, 1));
        assert_eq!(m.from_host(0, 5), (OVERFLOW_ID, OVERFLOW_ID));
        assert_eq!(
            m.from_host(100_065_536, 100_065_536 + 65536),
            (OVERFLOW_ID, OVERFLOW_ID)
        );
    }
}
