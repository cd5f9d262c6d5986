//! A profile to the BPF program the kernel runs at every system call.
//!
//! berth emits the program itself, one per profile:
//!
//! 1. the architecture: anything but the host's native ABI (32-bit x86 on
//!    x86_64, through `int 0x80`) kills the process;
//! 2. the call number, by a balanced binary search (`JGE` nodes) over the
//!    intervals of numbers that get the same verdict;
//! 3. in the leaves, the argument conditions of the calls that have some,
//!    each 64-bit argument compared as two 32-bit halves; all returns are
//!    shared at the end of the program.
//!
//! On x86_64 the x32 ABI (numbers with bit 30 set, `0x4000_0000` to
//! `0xffff_fffe`) is another ABI too and kills the process, as libseccomp
//! does for a filter without the x32 architecture (its "bad architecture"
//! action; Docker's profile lists x32 and allows it, berth does not: x32 is
//! disabled on most kernels and nothing in a container image needs it).
//! Number -1 (`0xffff_ffff`), which is no call (a tracer uses it to skip
//! one), gets the default action.
//!
//! The kernel must see the same verdicts the earlier stack of seccompiler
//! programs gave (one allow-list, one program per other action, the kernel
//! taking the most severe result), so the rules of a call are merged the
//! same way: when several rules match a call, the most severe action wins
//! (kill process > kill thread > trap > errno > trace > log > allow, the
//! kernel's order), and for the same action with different data (two
//! errnos) the action that first appears later in the profile wins (its
//! program was installed later). A call no rule matches gets the default.
//!
//! The linear chain seccompiler emitted (1,557 instructions for the
//! default profile) made the kernel's action-cache preparation at install
//! walk it for every number of both ABIs, 0.6 ms per container start; this
//! program has about 100 instructions (BENCHMARKS.md, "Where the seccomp
//! cost goes").

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use berth_runtime::seccomp::{SockFilter, MAX_PROGRAM_INSNS};
use syscalls::Sysno;

use super::profile::{Action, Arg, Host, Op, Profile};
use super::SeccompError;

/// One program, as the kernel takes it.
pub type Program = Vec<SockFilter>;

// Classic BPF operations (linux/bpf_common.h).
pub(super) const LD_W_ABS: u16 = 0x20;
pub(super) const ALU_AND_K: u16 = 0x54;
pub(super) const JMP_JA: u16 = 0x05;
pub(super) const JMP_JEQ_K: u16 = 0x15;
pub(super) const JMP_JGT_K: u16 = 0x25;
pub(super) const JMP_JGE_K: u16 = 0x35;
pub(super) const RET_K: u16 = 0x06;

// `struct seccomp_data`: int nr, u32 arch, u64 ip, u64 args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Offset of the low (little-endian: first) half of argument `i`.
fn off_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}
fn off_hi(i: u8) -> u32 {
    off_lo(i) + 4
}

// Return values (linux/seccomp.h).
pub(super) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(super) const RET_KILL_THREAD: u32 = 0;
pub(super) const RET_TRAP: u32 = 0x0003_0000;
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
pub(super) const RET_TRACE: u32 = 0x7ff0_0000;
pub(super) const RET_LOG: u32 = 0x7ffc_0000;
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;
const RET_DATA: u32 = 0xffff;
const EPERM: u32 = 1;

/// First number of the x32 ABI (`__X32_SYSCALL_BIT`).
pub(super) const X32_BIT: u32 = 0x4000_0000;

/// The native ABI of the host, as `seccomp_data.arch` names it.
pub(super) fn audit_arch() -> Result<u32, SeccompError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(0xc000_003e),
        "aarch64" => Ok(0xc000_00b7),
        "riscv64" => Ok(0xc000_00f3),
        other => Err(SeccompError::Unsupported(format!(
            "the architecture {other}"
        ))),
    }
}

/// One condition on an argument (see [`Op`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Cond {
    index: u8,
    op: Op,
    value: u64,
    value_two: u64,
}

impl From<&Arg> for Cond {
    fn from(a: &Arg) -> Self {
        Cond {
            index: a.index,
            op: a.op,
            value: a.value,
            value_two: a.value_two,
        }
    }
}

/// What one call number gets: its rules, most severe first, each a return
/// value and the conditions that must all hold (none: always); when none
/// matches, `default`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Leaf {
    rules: Vec<(u32, Vec<Cond>)>,
    default: u32,
}

impl Leaf {
    fn ret(value: u32) -> Leaf {
        Leaf {
            rules: Vec::new(),
            default: value,
        }
    }

    /// Drops what cannot change the verdict: rules after one without
    /// conditions, and rules at the end that give the default anyway.
    fn normalize(mut self) -> Leaf {
        if let Some(i) = self.rules.iter().position(|(_, c)| c.is_empty()) {
            self.rules.truncate(i + 1);
            if let Some((ret, _)) = self.rules.pop() {
                self.default = ret;
            }
        }
        while self.rules.last().is_some_and(|(r, _)| *r == self.default) {
            self.rules.pop();
        }
        self.rules.dedup();
        self
    }
}

/// A rule of one call: (severity, later first appearance first), its
/// return value, its conditions.
type Ranked = ((i32, Reverse<usize>), u32, Vec<Cond>);

/// Builds the program for `profile` as applied to a container on `host`.
/// The result is a list (the file format holds several) of one program.
pub fn compile(profile: &Profile, host: &Host) -> Result<Vec<Program>, SeccompError> {
    let arch = audit_arch()?;
    let x32 = std::env::consts::ARCH == "x86_64";
    let default = ret_value(profile.default_action, profile.default_errno_ret);
    // Every rule for every number, with its precedence: the kernel's order
    // of actions, then (same action) the later first appearance first.
    let mut order: Vec<u32> = Vec::new();
    let mut by_nr: BTreeMap<u32, Vec<Ranked>> = BTreeMap::new();
    for rule in profile.syscalls.iter().filter(|r| r.applies(host)) {
        let ret = ret_value(rule.action, rule.errno_ret);
        let conds: Vec<Cond> = rule.args.iter().map(Cond::from).collect();
        for name in rule.all_names() {
            // Profiles list the calls of every architecture.
            let Ok(nr) = Sysno::from_str(name) else {
                continue;
            };
            let ordinal = match order.iter().position(|r| *r == ret) {
                Some(i) => i,
                None => {
                    order.push(ret);
                    order.len() - 1
                }
            };
            let key = (severity(ret), Reverse(ordinal));
            by_nr
                .entry(nr.id() as u32)
                .or_default()
                .push((key, ret, conds.clone()));
        }
    }
    let mut named: Vec<(u32, Leaf)> = Vec::with_capacity(by_nr.len());
    for (nr, mut rules) in by_nr {
        // Stable: rules of one action keep the profile's order.
        rules.sort_by_key(|(key, _, _)| *key);
        let leaf = Leaf {
            rules: rules.into_iter().map(|(_, r, c)| (r, c)).collect(),
            default,
        };
        named.push((nr, leaf.normalize()));
    }
    if default == RET_ALLOW && named.iter().all(|(_, l)| *l == Leaf::ret(RET_ALLOW)) {
        // The same as no filter; the caller decides.
        return Err(SeccompError::AllowsEverything);
    }
    let intervals = intervals(named, default, x32);
    let program = emit(&intervals, arch);
    if program.len() > MAX_PROGRAM_INSNS {
        return Err(SeccompError::Filter(format!(
            "{} instructions, more than the kernel's {MAX_PROGRAM_INSNS}",
            program.len()
        )));
    }
    Ok(vec![program])
}

/// The kernel's order of actions: lower is more severe
/// (`ACTION_ONLY` in kernel/seccomp.c).
pub(super) fn severity(ret: u32) -> i32 {
    (ret & 0xffff_0000) as i32
}

fn ret_value(a: Action, data: Option<u32>) -> u32 {
    match a {
        Action::Allow => RET_ALLOW,
        Action::Errno => RET_ERRNO | (data.unwrap_or(EPERM) & RET_DATA),
        Action::KillThread => RET_KILL_THREAD,
        Action::KillProcess => RET_KILL_PROCESS,
        Action::Trap => RET_TRAP,
        Action::Trace => RET_TRACE | (data.unwrap_or(0) & RET_DATA),
        Action::Log => RET_LOG,
        // Refused when the profile is parsed.
        Action::Notify => RET_KILL_PROCESS,
    }
}

/// The whole range of numbers, `0..=u32::MAX`, as (first number, leaf),
/// adjacent intervals with equal leaves merged.
fn intervals(named: Vec<(u32, Leaf)>, default: u32, x32: bool) -> Vec<(u32, Leaf)> {
    let mut out: Vec<(u32, Leaf)> = Vec::new();
    let mut push = |start: u32, leaf: Leaf| {
        if out.last().is_none_or(|(_, l)| *l != leaf) {
            out.push((start, leaf));
        }
    };
    let mut next = 0u32;
    for (nr, leaf) in named {
        if nr > next {
            push(next, Leaf::ret(default));
        }
        push(nr, leaf);
        next = nr + 1;
    }
    push(next, Leaf::ret(default));
    if x32 {
        push(X32_BIT, Leaf::ret(RET_KILL_PROCESS));
        push(u32::MAX, Leaf::ret(default));
    }
    out
}

/// Where an instruction is, counted from the end of the program: code is
/// emitted backwards, so every jump's target is in place before the jump.
type Label = usize;

#[derive(Default)]
struct Emitter {
    /// The program, last instruction first.
    rev: Vec<SockFilter>,
    returns: HashMap<u32, Label>,
}

impl Emitter {
    /// Puts `code` before everything emitted so far; returns its label.
    fn stmt(&mut self, code: u16, k: u32) -> Label {
        self.rev.push(SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        });
        self.rev.len() - 1
    }

    /// A conditional jump to `t` or `f`; a target farther than a jump's
    /// 255 instructions is reached through a `JA` put right after it.
    fn jump(&mut self, code: u16, k: u32, t: Label, f: Label) -> Label {
        let (t, f) = if f == t {
            let both = self.near(t);
            (both, both)
        } else {
            (self.near(t), self.near(f))
        };
        let at = self.rev.len();
        self.rev.push(SockFilter {
            code,
            jt: (at - t - 1) as u8,
            jf: (at - f - 1) as u8,
            k,
        });
        at
    }

    /// `target`, or a `JA` to it when a jump emitted next (after up to
    /// two such) could not reach it.
    fn near(&mut self, target: Label) -> Label {
        if self.rev.len() + 2 - target - 1 > 255 {
            self.stmt(JMP_JA, (self.rev.len() - target - 1) as u32)
        } else {
            target
        }
    }

    fn ret(&mut self, value: u32) -> Label {
        if let Some(l) = self.returns.get(&value) {
            return *l;
        }
        let l = self.stmt(RET_K, value);
        self.returns.insert(value, l);
        l
    }

    /// The test of one 64-bit condition: to `t` if it holds, else to `f`.
    fn cond(&mut self, c: &Cond, t: Label, f: Label) -> Label {
        let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
        let (lo_at, hi_at) = (off_lo(c.index), off_hi(c.index));
        match c.op {
            Op::Eq | Op::Ne => {
                let (t, f) = if c.op == Op::Eq { (t, f) } else { (f, t) };
                self.jump(JMP_JEQ_K, lo, t, f);
                let low = self.stmt(LD_W_ABS, lo_at);
                self.jump(JMP_JEQ_K, hi, low, f);
                self.stmt(LD_W_ABS, hi_at)
            }
            Op::MaskedEq => {
                let (mhi, mlo) = ((c.value >> 32) as u32, c.value as u32);
                // Bits of the wanted value outside the mask are ignored, as
                // seccompiler and libseccomp do.
                let want = c.value_two & c.value;
                let (whi, wlo) = ((want >> 32) as u32, want as u32);
                self.jump(JMP_JEQ_K, wlo, t, f);
                if mlo != u32::MAX {
                    self.stmt(ALU_AND_K, mlo);
                }
                let low = self.stmt(LD_W_ABS, lo_at);
                if mhi == 0 && whi == 0 {
                    // The high half cannot differ.
                    return low;
                }
                self.jump(JMP_JEQ_K, whi, low, f);
                if mhi != u32::MAX {
                    self.stmt(ALU_AND_K, mhi);
                }
                self.stmt(LD_W_ABS, hi_at)
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                // arg > v (or >= v): high half greater, or equal and the
                // low half greater (or not less); lt and le are their
                // negations.
                let (low_op, t, f) = match c.op {
                    Op::Gt => (JMP_JGT_K, t, f),
                    Op::Ge => (JMP_JGE_K, t, f),
                    Op::Le => (JMP_JGT_K, f, t),
                    _ => (JMP_JGE_K, f, t),
                };
                self.jump(low_op, lo, t, f);
                let low = self.stmt(LD_W_ABS, lo_at);
                let equal = self.jump(JMP_JEQ_K, hi, low, f);
                self.jump(JMP_JGT_K, hi, t, equal);
                self.stmt(LD_W_ABS, hi_at)
            }
        }
    }

    /// The code of one leaf; for one without conditions, its return.
    fn leaf(&mut self, leaf: &Leaf) -> Label {
        let mut next = self.ret(leaf.default);
        for (ret, conds) in leaf.rules.iter().rev() {
            let mut ok = self.ret(*ret);
            for c in conds.iter().rev() {
                ok = self.cond(c, ok, next);
            }
            next = ok;
        }
        next
    }

    /// The binary search over `iv` (first number, leaf code), the call
    /// number in the accumulator.
    fn tree(&mut self, iv: &[(u32, Label)]) -> Label {
        if iv.len() == 1 {
            return iv[0].1;
        }
        let mid = iv.len() / 2;
        let right = self.tree(&iv[mid..]);
        // Emitted last, the lower half comes right after the node.
        let left = self.tree(&iv[..mid]);
        self.jump(JMP_JGE_K, iv[mid].0, right, left)
    }
}

fn emit(intervals: &[(u32, Leaf)], arch: u32) -> Program {
    let mut e = Emitter::default();
    // Returns first: they end the program, where every leaf jumps.
    let kill = e.ret(RET_KILL_PROCESS);
    let mut code: HashMap<&Leaf, Label> = HashMap::new();
    let mut iv = Vec::with_capacity(intervals.len());
    for (start, leaf) in intervals {
        let label = match code.get(leaf) {
            Some(l) => *l,
            None => {
                let l = e.leaf(leaf);
                code.insert(leaf, l);
                l
            }
        };
        iv.push((*start, label));
    }
    let search = e.tree(&iv);
    if search + 1 != e.rev.len() {
        // A single interval: its code is not next.
        e.stmt(JMP_JA, (e.rev.len() - search - 1) as u32);
    }
    let nr = e.stmt(LD_W_ABS, OFF_NR);
    e.jump(JMP_JEQ_K, arch, nr, kill);
    e.stmt(LD_W_ABS, OFF_ARCH);
    e.rev.reverse();
    e.rev
}

/// The programs as the monitor reads them (see `berth_runtime::seccomp`).
pub fn encode(programs: &[Program]) -> Vec<u8> {
    berth_runtime::seccomp::encode(programs)
}
