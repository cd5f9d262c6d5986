//! Seccomp profiles in Docker's JSON format: parsing and compiling never
//! panic; a compiled program is one the kernel's verifier takes (known
//! instructions, every jump forward and inside the program, a return at
//! the end, at most `MAX_PROGRAM_INSNS`), kills every other ABI, and gives
//! every call the verdict the seccompiler programs berth shipped before
//! (the tests' oracle) give.
#![no_main]

use std::collections::BTreeSet;
use std::str::FromStr;

use berth_runtime::seccomp::SockFilter;
use berthd::fuzzing::seccomp::{
    applies, compile, native_arch, oracle, run_all, Data, MAX_PROGRAM_INSNS, X32_BIT,
};
use berthd::seccomp::profile::Profile;
use libfuzzer_sys::fuzz_target;

const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `struct seccomp_data` is 64 bytes.
const SECCOMP_DATA_LEN: u32 = 64;

/// What the kernel's verifier (`bpf_check_classic`, `seccomp_check_filter`)
/// checks, for the instructions berth emits.
fn verify(p: &[SockFilter]) {
    assert!(
        !p.is_empty() && p.len() <= MAX_PROGRAM_INSNS,
        "{} instructions",
        p.len()
    );
    for (i, insn) in p.iter().enumerate() {
        let inside = |off: usize| {
            assert!(
                i + 1 + off < p.len(),
                "jump at {i} by {off} leaves the program of {}",
                p.len()
            )
        };
        match insn.code {
            LD_W_ABS => assert!(
                insn.k % 4 == 0 && insn.k < SECCOMP_DATA_LEN,
                "load at {i} from {}",
                insn.k
            ),
            ALU_AND_K => {}
            JMP_JA => inside(insn.k as usize),
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                inside(usize::from(insn.jt));
                inside(usize::from(insn.jf));
            }
            RET_K => {}
            other => panic!("instruction {other:#x} at {i}"),
        }
    }
    assert_eq!(
        p.last().map(|i| i.code),
        Some(RET_K),
        "no return at the end"
    );
}

/// Values of an argument around `v`.
fn around(v: u64, out: &mut BTreeSet<u64>) {
    out.extend([
        v,
        v.wrapping_add(1),
        v.wrapping_sub(1),
        v ^ (1 << 32),
        v ^ (1 << 63),
        v & 0xffff_ffff,
        v & !0xffff_ffff,
        v | 0xffff_ffff_0000_0000,
    ]);
}

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = Profile::parse(data) else {
        return;
    };
    let Ok(new) = compile(&profile) else {
        return;
    };
    assert_eq!(new.len(), 1, "one program");
    verify(&new[0]);
    let native = native_arch();
    for arch in [0x4000_0003, 0xc000_00b7, 0xc000_003e, 0] {
        if arch == native {
            continue;
        }
        for nr in [0, 1, 59, 231, u32::MAX] {
            let d = Data {
                nr,
                arch,
                args: [0; 6],
            };
            assert_eq!(run_all(&new, &d), RET_KILL_PROCESS, "{d:?}");
        }
    }
    let Ok(old) = oracle(&profile) else {
        return;
    };
    // The calls the profile names, some it does not, and per argument the
    // values around the rules' conditions.
    let mut nrs: BTreeSet<u32> = [0, 1, 2, 59, 500, 1000, X32_BIT - 1, u32::MAX].into();
    let mut values: [BTreeSet<u64>; 6] = Default::default();
    for rule in profile.syscalls.iter().filter(|r| applies(r)) {
        for name in rule.all_names() {
            if let Ok(nr) = syscalls::Sysno::from_str(name) {
                nrs.insert(nr.id() as u32);
            }
        }
        for a in &rule.args {
            if let Some(vals) = values.get_mut(usize::from(a.index)) {
                around(a.value, vals);
                around(a.value_two, vals);
                around(a.value & a.value_two, vals);
                around(a.value_two | !a.value, vals);
            }
        }
    }
    let mut cases: Vec<[u64; 6]> = vec![[0; 6], [u64::MAX; 6], [1, 2, 3, 4, 5, 6]];
    for (i, vals) in values.iter().enumerate() {
        for v in vals {
            let mut c = [0u64; 6];
            c[i] = *v;
            cases.push(c);
            let mut c = [u64::MAX; 6];
            c[i] = *v;
            cases.push(c);
        }
    }
    // Every argument at once at the same position of its values.
    let longest = values.iter().map(BTreeSet::len).max().unwrap_or(0);
    for k in 0..longest {
        let mut c = [0u64; 6];
        for (i, vals) in values.iter().enumerate() {
            c[i] = vals.iter().nth(k % vals.len().max(1)).copied().unwrap_or(0);
        }
        cases.push(c);
    }
    for nr in nrs {
        if nr >= X32_BIT && nr != u32::MAX && std::env::consts::ARCH == "x86_64" {
            continue;
        }
        for args in &cases {
            let d = Data {
                nr,
                arch: native,
                args: *args,
            };
            let (got, want) = (run_all(&new, &d), run_all(&old, &d));
            assert_eq!(
                got, want,
                "verdict for {d:?}: {got:#x}, seccompiler {want:#x}"
            );
        }
    }
});
