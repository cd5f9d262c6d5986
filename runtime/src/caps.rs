//! Capabilities by name and number, and the set a container runs with.
//!
//! berthd turns a container's `cap_add`/`cap_drop` into a [`CapSet`] (as
//! Docker does); the monitor's init keeps exactly that set in its bounding,
//! permitted and effective sets.

use alloc::string::String;
use alloc::vec::Vec;

/// Capability names by number (linux/capability.h), without `CAP_`.
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A set of capabilities, bit N for capability N.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CapSet(pub u64);

/// Every capability berth knows by name.
pub const ALL: CapSet = CapSet((1u64 << NAMES.len()) - 1);

/// Docker's default set: CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD,
/// NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE,
/// SYS_CHROOT, KILL, AUDIT_WRITE.
pub const DEFAULT: CapSet = CapSet(
    1 << 0 // CHOWN
        | 1 << 1 // DAC_OVERRIDE
        | 1 << 4 // FSETID
        | 1 << 3 // FOWNER
        | 1 << 27 // MKNOD
        | 1 << 13 // NET_RAW
        | 1 << 6 // SETGID
        | 1 << 7 // SETUID
        | 1 << 31 // SETFCAP
        | 1 << 8 // SETPCAP
        | 1 << 10 // NET_BIND_SERVICE
        | 1 << 18 // SYS_CHROOT
        | 1 << 5 // KILL
        | 1 << 29, // AUDIT_WRITE
);

impl Default for CapSet {
    fn default() -> Self {
        DEFAULT
    }
}

impl CapSet {
    /// Whether capability `cap` is in the set.
    pub const fn has(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// The names in the set, with `CAP_`, in number order.
    pub fn names(self) -> Vec<String> {
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.has(*i as u32))
            .map(|(_, n)| alloc::format!("CAP_{n}"))
            .collect()
    }
}

/// The number of a capability named with or without `CAP_`, in any case.
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// Why a `cap_add`/`cap_drop` list is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapError {
    /// A name that is no capability (the index in its list).
    Unknown(usize),
}

/// The set of `docker run --cap-add ADD --cap-drop DROP`: "ALL" in `add`
/// starts from every capability, "ALL" in `drop` from none, otherwise
/// from [`DEFAULT`]; then `drop` is removed and `add` added.
pub fn resolve<A: AsRef<str>, D: AsRef<str>>(
    add: &[A],
    drop: &[D],
) -> Result<CapSet, (bool, CapError)> {
    let is_all = |s: &str| s.eq_ignore_ascii_case("ALL") || s.eq_ignore_ascii_case("CAP_ALL");
    let parse = |list: &[&str], which: bool| -> Result<u64, (bool, CapError)> {
        let mut bits = 0u64;
        for (i, name) in list.iter().enumerate() {
            if is_all(name) {
                continue;
            }
            let n = number(name).ok_or((which, CapError::Unknown(i)))?;
            bits |= 1 << n;
        }
        Ok(bits)
    };
    let add: Vec<&str> = add.iter().map(AsRef::as_ref).collect();
    let drop: Vec<&str> = drop.iter().map(AsRef::as_ref).collect();
    let add_bits = parse(&add, true)?;
    let drop_bits = parse(&drop, false)?;
    let start = if add.iter().any(|s| is_all(s)) {
        ALL.0
    } else if drop.iter().any(|s| is_all(s)) {
        0
    } else {
        DEFAULT.0
    };
    Ok(CapSet((start & !drop_bits) | add_bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("sys_time"), Some(25));
        assert_eq!(number("cap_checkpoint_restore"), Some(40));
        assert_eq!(number("NET_FOO"), None);
        assert_eq!(DEFAULT.names().len(), 14);
        assert!(DEFAULT.names().contains(&"CAP_AUDIT_WRITE".into()));
    }

    #[test]
    fn docker_semantics() {
        let none: [&str; 0] = [];
        assert_eq!(resolve(&none, &none), Ok(DEFAULT));
        let s = resolve(&["SYS_TIME"], &["cap_net_raw"]).unwrap();
        assert!(s.has(25) && !s.has(13) && s.has(0));
        assert_eq!(resolve(&["CHOWN"], &["ALL"]), Ok(CapSet(1)));
        assert_eq!(
            resolve(&["ALL"], &["SYS_ADMIN"]),
            Ok(CapSet(ALL.0 & !(1 << 21)))
        );
        assert_eq!(resolve(&["all"], &["ALL"]), Ok(ALL));
        assert_eq!(
            resolve(&["CHOWN", "BOGUS"], &none),
            Err((true, CapError::Unknown(1)))
        );
        assert_eq!(
            resolve(&none, &["BOGUS"]),
            Err((false, CapError::Unknown(0)))
        );
    }
}
