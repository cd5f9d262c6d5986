//! mount(2) flags, as the plan uses them.

use core::ops::BitOr;

/// Flags of mount(2) (`MS_*`; their values are the same on every Linux
/// architecture).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MountFlags(pub(super) u64);

impl MountFlags {
    /// No flag.
    pub const EMPTY: Self = Self(0);
    /// `MS_RDONLY`.
    pub const RDONLY: Self = Self(1);
    /// `MS_NOSUID`.
    pub const NOSUID: Self = Self(2);
    /// `MS_NODEV`.
    pub const NODEV: Self = Self(4);
    /// `MS_NOEXEC`.
    pub const NOEXEC: Self = Self(8);
    /// `MS_BIND`.
    pub const BIND: Self = Self(4096);
    /// `MS_REC`.
    pub const REC: Self = Self(16384);
    /// `MS_STRICTATIME`.
    pub const STRICTATIME: Self = Self(1 << 24);

    /// The `MS_*` bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for MountFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}
