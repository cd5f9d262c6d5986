//! berth's emitter against the seccompiler programs it replaced: both run
//! in the BPF interpreter for every call number 0..=500, the x32 numbers,
//! other architectures and, for every call with argument conditions, the
//! values around each condition's boundaries, on the default profile and
//! Docker-format profiles; the verdicts must be the same.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use syscalls::Sysno;

use super::bpf_interp::{run, run_all, Data};
use super::compile::{compile, Program, RET_KILL_PROCESS, X32_BIT};
use super::profile::{go_arch, Host, Op, Profile};
use super::{default, oracle, DEFAULT_CAPS};

const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

fn host() -> Host<'static> {
    Host {
        caps: DEFAULT_CAPS,
        arch: go_arch(),
        kernel: (6, 1),
    }
}

/// Values of an argument on both sides of each boundary of `op`.
fn around(op: Op, value: u64, value_two: u64) -> Vec<u64> {
    let mut v = vec![0, 1, u64::MAX, 0xffff_ffff, 1 << 32];
    for x in [value, value_two] {
        v.extend([
            x,
            x.wrapping_add(1),
            x.wrapping_sub(1),
            x ^ (1 << 32),
            x ^ (1 << 63),
            x | 0xffff_ffff_0000_0000,
            x & 0xffff_ffff,
            x & !0xffff_ffff,
            x.wrapping_add(1 << 32),
            x.wrapping_sub(1 << 32),
        ]);
    }
    if op == Op::MaskedEq {
        let (mask, want) = (value, value_two);
        let low_bit = mask & mask.wrapping_neg();
        let high_bit = if mask == 0 {
            0
        } else {
            1 << (63 - mask.leading_zeros())
        };
        v.extend([
            want | !mask,
            want ^ mask,
            want ^ low_bit,
            want ^ high_bit,
            mask,
            want & mask,
        ]);
    }
    v
}

/// For each call a rule names with conditions: the argument vectors to
/// try (every combination of the values around the conditions of the
/// arguments it tests).
fn arg_cases(profile: &Profile) -> BTreeMap<u32, Vec<[u64; 6]>> {
    let mut per_call: BTreeMap<u32, BTreeMap<u8, BTreeSet<u64>>> = BTreeMap::new();
    for rule in profile.syscalls.iter().filter(|r| r.applies(&host())) {
        for name in rule.all_names() {
            let Ok(nr) = Sysno::from_str(name) else {
                continue;
            };
            let slots = per_call.entry(nr.id() as u32).or_default();
            for a in &rule.args {
                slots
                    .entry(a.index)
                    .or_default()
                    .extend(around(a.op, a.value, a.value_two));
            }
        }
    }
    let mut out = BTreeMap::new();
    for (nr, slots) in per_call {
        let mut cases = vec![[0u64; 6]];
        for (index, values) in slots {
            cases = cases
                .iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = *c;
                        c[usize::from(index)] = *v;
                        c
                    })
                })
                .collect();
        }
        assert!(cases.len() <= 200_000, "call {nr}: {} cases", cases.len());
        out.insert(nr, cases);
    }
    out
}

/// Checks the new program against the old programs for `profile`;
/// returns the number of cases compared.
fn check(profile: &Profile) -> usize {
    let new = compile(profile, &host()).expect("compiles");
    let old = oracle::compile(profile, &host()).expect("the oracle compiles");
    assert_eq!(new.len(), 1, "one program");
    let program = &new[0];
    let cases = arg_cases(profile);
    let mut n = 0;
    let mut same = |data: Data| {
        let (got, want) = (run(program, &data), run_all(&old, &data));
        assert_eq!(
            got, want,
            "verdict for {data:?}: {got:#x}, seccompiler {want:#x}"
        );
        n += 1;
    };
    let native = compile_arch();
    for nr in 0..=500u32 {
        for args in [[0; 6], [u64::MAX; 6], [1, 2, 3, 4, 5, 6]] {
            same(Data {
                nr,
                arch: native,
                args,
            });
        }
        for args in cases.get(&nr).into_iter().flatten() {
            same(Data {
                nr,
                arch: native,
                args: *args,
            });
        }
    }
    // Numbers past the table, up to the x32 range, and -1 (no call).
    let far = [501, 1000, 4095, 65_535, X32_BIT - 1, u32::MAX];
    for nr in far {
        same(Data {
            nr,
            arch: native,
            args: [0; 6],
        });
    }
    // Other ABIs: the process is killed, by both.
    for arch in [AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64, 0] {
        if arch == native {
            continue;
        }
        for nr in [0, 1, 2, 11, 56, 59, 231, 435, u32::MAX] {
            let data = Data {
                nr,
                arch,
                args: [0; 6],
            };
            assert_eq!(run(program, &data), RET_KILL_PROCESS, "{data:?}");
            same(data);
        }
    }
    n
}

fn compile_arch() -> u32 {
    super::compile::audit_arch().expect("a supported architecture")
}

/// What is new: on x86_64 every x32 number kills the process, where the
/// old programs gave it the default (or, in a deny list, allowed it).
fn check_x32(program: &Program) {
    if std::env::consts::ARCH != "x86_64" {
        return;
    }
    for nr in (0..=500)
        .map(|n| X32_BIT + n)
        .chain([0x7fff_ffff, u32::MAX - 1])
    {
        let data = Data {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args: [0; 6],
        };
        assert_eq!(run(program, &data), RET_KILL_PROCESS, "x32 call {nr:#x}");
    }
}

fn profile(json: &str) -> Profile {
    Profile::parse(json.as_bytes()).expect("a valid profile")
}

#[test]
fn the_default_profile_gives_seccompilers_verdicts() {
    let p = default::profile();
    let n = check(&p);
    assert!(n > 1500, "{n} cases");
    let program = &compile(&p, &host()).unwrap()[0];
    check_x32(program);
    // The reason for the emitter: a short program (seccompiler's was 1,567
    // instructions in two programs).
    assert!(program.len() < 160, "{} instructions", program.len());
}

#[test]
fn docker_deny_lists_give_the_same_verdicts() {
    for json in [
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "syscalls": [
              {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
              {"names": ["no_such_call_here"], "action": "SCMP_ACT_ERRNO"}]}"#,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    ] {
        let p = profile(json);
        check(&p);
        check_x32(&compile(&p, &host()).unwrap()[0]);
    }
}

/// Every comparison, conditions on several arguments, every action, and
/// rules of different actions for one call (the most severe wins).
#[test]
fn argument_filters_and_mixed_actions_give_the_same_verdicts() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_KILL_PROCESS",
          "syscalls": [
            {"names": ["read", "write", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 2080505856, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_LT"},
                      {"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_GE"},
                      {"index": 1, "value": 15, "op": "SCMP_CMP_LE"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LE"}]},
            {"names": ["prctl"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8589934592, "op": "SCMP_CMP_GT"}]},
            {"names": ["prctl"], "action": "SCMP_ACT_TRAP",
             "args": [{"index": 0, "value": 12884901888, "op": "SCMP_CMP_GE"}]},
            {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": 18446744069414584324, "valueTwo": 4294967300, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["mmap"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 3, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["mprotect"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": 7, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["ptrace"], "action": "SCMP_ACT_TRAP"},
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["umount2"], "action": "SCMP_ACT_LOG"},
            {"names": ["kexec_load"], "action": "SCMP_ACT_KILL"},
            {"names": ["chmod"], "action": "SCMP_ACT_TRACE", "errnoRet": 5},
            {"names": ["chmod"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_LE"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 17,
             "args": [{"index": 1, "value": 256, "op": "SCMP_CMP_GE"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 1, "value": 16, "op": "SCMP_CMP_LT"}]},
            {"names": ["fchmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["fchmod"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getuid"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_NE"}]},
            {"names": ["getuid"], "action": "SCMP_ACT_ALLOW"}
          ]}"#,
    );
    check(&p);
    check_x32(&compile(&p, &host()).unwrap()[0]);
}

/// Many calls with conditions of their own: leaves far from the search
/// nodes, reached through `JA` (a conditional jump reaches 255).
#[test]
fn a_large_profile_is_reached_through_long_jumps() {
    let rules: Vec<String> = Sysno::iter()
        .take(300)
        .enumerate()
        .map(|(i, nr)| {
            let op = ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_GT", "SCMP_CMP_LE"][i % 4];
            format!(
                r#"{{"names": ["{}"], "action": "SCMP_ACT_ALLOW",
                    "args": [{{"index": {}, "value": {}, "op": "{op}"}}]}}"#,
                nr.name(),
                i % 6,
                (i as u64) << (i % 40)
            )
        })
        .collect();
    let json = format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{}]}}"#,
        rules.join(",")
    );
    let p = profile(&json);
    let program = &compile(&p, &host()).unwrap()[0];
    assert!(program.len() > 1000, "{}", program.len());
    assert!(
        program.iter().any(|i| i.code == super::compile::JMP_JA),
        "no long jump"
    );
    check(&p);
}
