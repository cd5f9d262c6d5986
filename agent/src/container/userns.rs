//! `--userns auto`: the uid/gid ranges containers get.
//!
//! Each such container gets [`RANGE`] uids and gids of its own, recorded in
//! its record at Create. The ranges come from `/etc/subuid` and
//! `/etc/subgid` entries of the user [`SUBID_USER`] when both files have
//! one (every entry of the user counts, each cut in slots of [`RANGE`]),
//! else from berth's own default: [`DEFAULT_SLOTS`] slots from host id
//! [`DEFAULT_BASE`] (100000000, far above the ids of host users and of the
//! usual subuid entries, which start at 100000, and below 2^31, which some
//! programs take for negative). Slot `i` is the `i`-th uid slot with the
//! `i`-th gid slot.
//!
//! Which ranges are taken is never stored apart: it is what the records of
//! the containers in the table say (loaded from disk at start), so a range
//! is free again once its container is removed, and a crash cannot leave a
//! counter and the records disagreeing. A record's range is honoured even
//! if the configuration changed since: a slot is free only if it overlaps
//! no recorded range.

use berth_runtime::launch::IdMapping;

/// Ids per container: uid and gid 0 to 65535 in the container.
pub const RANGE: u32 = 65536;
/// The first Linux that mounts the way `--userns auto` needs: overlay
/// layers given as file descriptors (6.13), including `O_PATH` ones and the
/// detached, idmapped mounts `open_tree` makes (6.15).
pub const MIN_KERNEL: (u32, u32) = (6, 15);

/// Whether this kernel (its release, as in `/proc/sys/kernel/osrelease`)
/// can run `--userns auto` containers; `Err` says why not.
pub fn kernel_support(release: &str) -> Result<(), String> {
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    let version = match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => return Err("its release cannot be read".into()),
    };
    if version >= MIN_KERNEL {
        return Ok(());
    }
    Err(format!(
        "it needs Linux {}.{} or later (idmapped image layers under overlay); this is {}",
        MIN_KERNEL.0,
        MIN_KERNEL.1,
        crate::error::capped(release.trim())
    ))
}

/// [`kernel_support`] of the running kernel.
pub fn host_kernel_support() -> Result<(), String> {
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => kernel_support(&release),
        Err(e) => Err(format!("reading the kernel release: {e}")),
    }
}

/// The user whose subordinate ids berth uses when it has some.
pub const SUBID_USER: &str = "berth";
/// The first host id of berth's default ranges.
pub const DEFAULT_BASE: u32 = 100_000_000;
/// How many containers berth's default ranges serve at once.
pub const DEFAULT_SLOTS: u32 = 4096;
/// The most slots taken from subordinate id entries.
const MAX_SLOTS: usize = 65536;

/// The ranges this agent hands out, one slot per container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRanges {
    /// Host uid of each slot's first id.
    uids: Vec<u32>,
    /// Host gid of each slot's first id.
    gids: Vec<u32>,
    /// Where they come from, for messages.
    pub source: &'static str,
}

impl IdRanges {
    /// The host's: `/etc/subuid` and `/etc/subgid` entries of
    /// [`SUBID_USER`], else the default.
    pub fn from_host() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Self::from_subid(&read("/etc/subuid"), &read("/etc/subgid"), SUBID_USER)
            .unwrap_or_else(Self::default_ranges)
    }

    /// berth's own: [`DEFAULT_SLOTS`] slots from [`DEFAULT_BASE`].
    pub fn default_ranges() -> Self {
        let slots: Vec<u32> = (0..DEFAULT_SLOTS)
            .map(|i| DEFAULT_BASE + i * RANGE)
            .collect();
        IdRanges {
            uids: slots.clone(),
            gids: slots,
            source: "berth's default range (host ids from 100000000)",
        }
    }

    /// From the text of subuid and subgid files (`name:start:count` lines):
    /// `None` unless both give `user` at least one whole slot.
    pub fn from_subid(subuid: &str, subgid: &str, user: &str) -> Option<Self> {
        let uids = slots(subuid, user);
        let gids = slots(subgid, user);
        let n = uids.len().min(gids.len());
        (n > 0).then(|| IdRanges {
            uids: uids[..n].to_vec(),
            gids: gids[..n].to_vec(),
            source: "/etc/subuid and /etc/subgid entries of user berth",
        })
    }

    /// How many containers can have a range at once.
    pub fn slots(&self) -> usize {
        self.uids.len()
    }

    /// The first slot that overlaps none of `used`, if any.
    pub fn allocate<'a>(
        &self,
        used: impl Iterator<Item = &'a IdMapping> + Clone,
    ) -> Option<IdMapping> {
        self.uids
            .iter()
            .zip(&self.gids)
            .map(|(&uid, &gid)| IdMapping {
                uid,
                gid,
                size: RANGE,
            })
            .find(|m| !used.clone().any(|u| u.uids_overlap(m) || u.gids_overlap(m)))
    }
}

/// The slot starts `user`'s entries give, in file order. Entries that are
/// malformed, name someone else, or would end past the last id are skipped;
/// an entry's remainder smaller than a slot is unused.
fn slots(text: &str, user: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.trim().splitn(3, ':');
        let (Some(name), Some(start), Some(count)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(start), Ok(count)) = (start.parse::<u64>(), count.parse::<u64>()) else {
            continue;
        };
        // The ids must stay below 2^32 - 1 ((uid_t)-1 is "no id").
        if name != user || start + count > u64::from(u32::MAX) {
            continue;
        }
        let mut at = start;
        while at + u64::from(RANGE) <= start + count && out.len() < MAX_SLOTS {
            out.push(at as u32);
            at += u64::from(RANGE);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uid: u32, gid: u32) -> IdMapping {
        IdMapping {
            uid,
            gid,
            size: RANGE,
        }
    }

    #[test]
    fn the_default_ranges_are_disjoint_and_allocated_lowest_first() {
        let r = IdRanges::default_ranges();
        assert_eq!(r.slots(), DEFAULT_SLOTS as usize);
        let mut used = Vec::new();
        for i in 0..3 {
            let got = r.allocate(used.iter()).unwrap();
            assert_eq!(got, m(DEFAULT_BASE + i * RANGE, DEFAULT_BASE + i * RANGE));
            used.push(got);
        }
        // A removed container's range is the first free one again.
        used.remove(1);
        assert_eq!(
            r.allocate(used.iter()),
            Some(m(DEFAULT_BASE + RANGE, DEFAULT_BASE + RANGE))
        );
        // The last id stays below 2^31.
        let last = u64::from(DEFAULT_BASE) + u64::from(DEFAULT_SLOTS) * u64::from(RANGE);
        assert!(last <= 1 << 31);
    }

    #[test]
    fn kernels_before_6_15_are_not_supported() {
        assert_eq!(kernel_support("6.18.44-fc-v1272\n"), Ok(()));
        assert_eq!(kernel_support("6.15.0"), Ok(()));
        assert_eq!(kernel_support("7.0.1-rc2"), Ok(()));
        let old = kernel_support("6.1.0-28-amd64").unwrap_err();
        assert!(
            old.contains("6.15") && old.contains("6.1.0-28-amd64"),
            "{old}"
        );
        assert!(kernel_support("5.19").is_err());
        assert!(kernel_support("garbage").is_err());
    }

    #[test]
    fn exhaustion_is_none() {
        let r = IdRanges::from_subid("berth:100000:131072\n", "berth:200000:131072\n", "berth")
            .unwrap();
        assert_eq!(r.slots(), 2);
        let a = r.allocate([].iter()).unwrap();
        let b = r.allocate([a].iter()).unwrap();
        assert_eq!((a, b), (m(100000, 200000), m(165536, 265536)));
        assert_eq!(r.allocate([a, b].iter()), None);
    }

    #[test]
    fn subid_entries_of_other_users_and_bad_lines_are_ignored() {
        let subuid = "alice:100000:65536\nberth:x:65536\n# comment\nberth:300000:70000\n\
                      berth:4294967000:65536\nberth:500000:65536\n";
        let subgid = "berth:700000:196608\n";
        let r = IdRanges::from_subid(subuid, subgid, "berth").unwrap();
        // 300000 (70000 ids: one slot), 500000; past 2^32 skipped.
        assert_eq!(r.uids, vec![300000, 500000]);
        assert_eq!(r.gids, vec![700000, 765536]);
        assert!(IdRanges::from_subid(subuid, "", "berth").is_none());
        assert!(IdRanges::from_subid("berth:1:65535\n", subgid, "berth").is_none());
    }

    #[test]
    fn a_recorded_range_is_honoured_even_off_the_slot_grid() {
        let r = IdRanges::default_ranges();
        // A record from another configuration, straddling slots 0 and 1.
        let odd = m(DEFAULT_BASE + 100, 5);
        assert_eq!(
            r.allocate([odd].iter()),
            Some(m(DEFAULT_BASE + 2 * RANGE, DEFAULT_BASE + 2 * RANGE))
        );
        // Gids count as much as uids.
        let gid_only = m(1, DEFAULT_BASE);
        assert_eq!(
            r.allocate([gid_only].iter()),
            Some(m(DEFAULT_BASE + RANGE, DEFAULT_BASE + RANGE))
        );
    }
}
