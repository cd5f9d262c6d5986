//! The test oracle: the compiler berth shipped before its own emitter
//! ([`super::compile`]), on seccompiler. A profile became a stack of
//! programs, each with one action on a match and one otherwise, which the
//! kernel runs all of, taking the most severe result:
//!
//! 1. unless the default is "allow": every call some rule names (with
//!    its argument conditions) is allowed, anything else gets the default;
//! 2. for each other action of the rules: the calls of those rules get it,
//!    anything else is allowed.
//!
//! The equivalence tests run both through the BPF interpreter.

use std::collections::BTreeMap;
use std::str::FromStr;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use syscalls::Sysno;

use super::profile::{Action, Arg, Host, Op, Profile};
use super::SeccompError;
use berth_runtime::seccomp::SockFilter;

const EPERM: u32 = 1;

/// The calls of one program, by number: `None` matches any arguments,
/// `Some(rules)` any of the rules.
type Calls = BTreeMap<i64, Option<Vec<SeccompRule>>>;

/// Builds the programs for `profile` as applied to a container on `host`,
/// in the order they must be installed.
pub fn compile(profile: &Profile, host: &Host) -> Result<Vec<Vec<SockFilter>>, SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SeccompError::Unsupported(format!("this architecture: {e}")))?;
    let default = action(profile.default_action, profile.default_errno_ret);
    // Every (action, syscall) with the rules' conditions; `None` is a rule
    // without conditions, which matches any arguments.
    let mut by_action: Vec<(SeccompAction, Calls)> = Vec::new();
    let mut named = Calls::new();
    for rule in profile.syscalls.iter().filter(|r| r.applies(host)) {
        let act = action(rule.action, rule.errno_ret);
        let cond = if rule.args.is_empty() {
            None
        } else {
            let c = rule.args.iter().map(condition).collect::<Result<_, _>>()?;
            Some(SeccompRule::new(c).map_err(filter_err)?)
        };
        for name in rule.all_names() {
            // Profiles list the calls of every architecture.
            let Ok(nr) = Sysno::from_str(name) else {
                continue;
            };
            let nr = i64::from(nr.id());
            add(&mut named, nr, cond.clone());
            let slot = match by_action.iter().position(|(a, _)| *a == act) {
                Some(i) => i,
                None => {
                    by_action.push((act.clone(), BTreeMap::new()));
                    by_action.len() - 1
                }
            };
            add(&mut by_action[slot].1, nr, cond.clone());
        }
    }
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        programs.push(program(named, default, SeccompAction::Allow, arch)?);
    }
    for (act, calls) in by_action {
        if act != SeccompAction::Allow {
            programs.push(program(calls, SeccompAction::Allow, act, arch)?);
        }
    }
    if programs.is_empty() {
        // Everything is allowed: the same as no filter; the caller decides.
        return Err(SeccompError::AllowsEverything);
    }
    Ok(programs
        .into_iter()
        .map(|p| {
            p.into_iter()
                .map(|i| SockFilter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect()
        })
        .collect())
}

/// Adds a rule for `nr`: a rule without conditions makes any conditions
/// of others for the same call moot (the rules of one call are or-ed).
fn add(map: &mut Calls, nr: i64, cond: Option<SeccompRule>) {
    match (map.entry(nr).or_insert_with(|| Some(Vec::new())), cond) {
        (slot @ Some(_), None) => *slot = None,
        (Some(rules), Some(c)) => rules.push(c),
        (None, _) => {}
    }
}

fn program(
    calls: Calls,
    mismatch: SeccompAction,
    on_match: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    // seccompiler: an empty rule list is a match on the call alone.
    let rules = calls
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();
    SeccompFilter::new(rules, mismatch, on_match, arch)
        .and_then(BpfProgram::try_from)
        .map_err(filter_err)
}

fn filter_err(e: seccompiler::BackendError) -> SeccompError {
    SeccompError::Filter(e.to_string())
}

fn action(a: Action, errno: Option<u32>) -> SeccompAction {
    match a {
        Action::Allow => SeccompAction::Allow,
        Action::Errno => SeccompAction::Errno(errno.unwrap_or(EPERM)),
        Action::KillThread => SeccompAction::KillThread,
        Action::KillProcess => SeccompAction::KillProcess,
        Action::Trap => SeccompAction::Trap,
        Action::Trace => SeccompAction::Trace(errno.unwrap_or(0)),
        Action::Log => SeccompAction::Log,
        // Refused when the profile is parsed.
        Action::Notify => SeccompAction::KillProcess,
    }
}

fn condition(a: &Arg) -> Result<SeccompCondition, SeccompError> {
    let (op, value) = match a.op {
        Op::Ne => (SeccompCmpOp::Ne, a.value),
        Op::Lt => (SeccompCmpOp::Lt, a.value),
        Op::Le => (SeccompCmpOp::Le, a.value),
        Op::Eq => (SeccompCmpOp::Eq, a.value),
        Op::Ge => (SeccompCmpOp::Ge, a.value),
        Op::Gt => (SeccompCmpOp::Gt, a.value),
        // Docker: (arg & value) == value_two.
        Op::MaskedEq => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
    };
    // libseccomp compares all 64 bits of an argument.
    SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, value).map_err(filter_err)
}
