//! The device cgroup: which device nodes a container may open or make.
//!
//! A container's /dev and root are `nodev`, so a node it makes cannot be
//! opened there; the device cgroup is the second wall behind that, as in
//! runc and Docker: it holds wherever a node turns up (a mount the container
//! gains later, a node bind-mounted in, a process joining the cgroup). On
//! cgroup v1 it is the `devices` controller's allow-list; on v2 an eBPF
//! program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's
//! cgroup ([`program`] builds it; `sys::bpf` loads and attaches it).

use std::fmt;

/// A device class, as the device cgroup names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
    /// Both (`a`).
    All,
}

/// One allow rule: a class, a major and minor number (`None`: any), and the
/// access it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    /// Character, block or both.
    pub kind: DeviceKind,
    /// Major number; `None` matches any.
    pub major: Option<u32>,
    /// Minor number; `None` matches any.
    pub minor: Option<u32>,
    /// May open it for reading.
    pub read: bool,
    /// May open it for writing.
    pub write: bool,
    /// May make a node for it (`mknod`).
    pub mknod: bool,
}

/// Which devices a container may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAccess {
    /// [`default_rules`] and then `extra` (`--device` passthrough).
    Default {
        /// Devices allowed beyond the defaults.
        extra: Vec<DeviceRule>,
    },
    /// Every device: a privileged container. No rule is installed, so the
    /// container has what berthd's own cgroup has.
    All,
}

impl Default for DeviceAccess {
    fn default() -> Self {
        DeviceAccess::Default { extra: Vec::new() }
    }
}

impl DeviceAccess {
    /// The allow rules to install, or `None` to install nothing (all).
    pub fn rules(&self) -> Option<Vec<DeviceRule>> {
        match self {
            DeviceAccess::All => None,
            DeviceAccess::Default { extra } => {
                let mut rules = default_rules();
                rules.extend(extra.iter().cloned());
                Some(rules)
            }
        }
    }
}

impl DeviceRule {
    /// A character device rule with read, write and mknod.
    const fn char_rwm(major: u32, minor: Option<u32>) -> Self {
        DeviceRule {
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            read: true,
            write: true,
            mknod: true,
        }
    }

    /// The access as the bits of `bpf_cgroup_dev_ctx.access_type >> 16`.
    fn access_bits(&self) -> i32 {
        (if self.mknod { ACC_MKNOD } else { 0 })
            | (if self.read { ACC_READ } else { 0 })
            | (if self.write { ACC_WRITE } else { 0 })
    }
}

/// runc's default allow-list, which Docker uses: making any node (it is
/// useless behind `nodev` and this list), and opening only the harmless
/// character devices a process expects: null, zero, full, random, urandom,
/// tty, console, ptmx and the container's own pseudo-terminals.
/// (runc also allows /dev/net/tun; berth leaves it to `--device`.)
pub fn default_rules() -> Vec<DeviceRule> {
    let mknod_any = |kind| DeviceRule {
        kind,
        major: None,
        minor: None,
        read: false,
        write: false,
        mknod: true,
    };
    vec![
        mknod_any(DeviceKind::Char),
        mknod_any(DeviceKind::Block),
        DeviceRule::char_rwm(1, Some(3)), // null
        DeviceRule::char_rwm(1, Some(5)), // zero
        DeviceRule::char_rwm(1, Some(7)), // full
        DeviceRule::char_rwm(1, Some(8)), // random
        DeviceRule::char_rwm(1, Some(9)), // urandom
        DeviceRule::char_rwm(5, Some(0)), // tty
        DeviceRule::char_rwm(5, Some(1)), // console
        DeviceRule::char_rwm(5, Some(2)), // ptmx
        DeviceRule::char_rwm(136, None),  // pts/*
    ]
}

/// The rule in the v1 `devices.allow` syntax: `c 1:3 rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
            DeviceKind::All => 'a',
        };
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if on {
                access.push(c);
            }
        }
        write!(f, "{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

// The ABI of BPF_PROG_TYPE_CGROUP_DEVICE (linux/bpf.h):
// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; },
// access_type = (access << 16) | type. The program returns 1 to allow.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction (`struct bpf_insn`), as the kernel reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Jump offset, in instructions after this one.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_AND_K: u8 = 0x57; // dst &= imm
const ALU64_RSH_K: u8 = 0x77; // dst >>= imm
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const ALU64_MOV_X: u8 = 0xbf; // dst = src
const JMP_JNE_K: u8 = 0x55; // if dst != imm goto +off
const JMP_JNE_X: u8 = 0x5d; // if dst != src goto +off
const JMP_EXIT: u8 = 0x95; // return r0

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The v2 device program for `rules`: rule by rule, the first that matches
/// the device's class, major, minor and the whole requested access allows
/// it; nothing matching denies it.
///
/// Registers: r2 the class, r3 the requested access, r4 the major, r5 the
/// minor (loaded once from the context in r1); r1 is scratch afterwards.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules {
        // Every check jumps past the rest of the block when it fails; the
        // offsets are filled in once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        match rule.kind {
            DeviceKind::Char => block.push(insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR)),
            DeviceKind::Block => block.push(insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK)),
            DeviceKind::All => {}
        }
        let access = rule.access_bits();
        if access != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Allowed only if the request asks for nothing beyond `access`.
            block.push(insn(ALU64_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU64_AND_K, 1, 0, 0, access));
            block.push(insn(JMP_JNE_X, 1, 3, 0, 0));
        }
        if let Some(major) = rule.major {
            block.push(insn(JMP_JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JMP_JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K || ins.code == JMP_JNE_X {
                // To the first instruction after the block.
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// [`program`] as the bytes `bpf(BPF_PROG_LOAD)` reads: `struct bpf_insn`
/// in the machine's byte order.
pub fn program_bytes(rules: &[DeviceRule]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in program(rules) {
        out.push(i.code);
        out.push(i.regs);
        out.extend_from_slice(&i.off.to_ne_bytes());
        out.extend_from_slice(&i.imm.to_ne_bytes());
    }
    out
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
