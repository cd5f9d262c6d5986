//! Seccomp profiles in Docker's JSON format (`docker run --security-opt
//! seccomp=PROFILE.json`), the format operators already have profiles in.
//!
//! Only what decides the filter is read: the default action, the rules
//! (syscall names, action, errno, argument conditions) and the
//! conditions under which a rule applies (capabilities, architectures,
//! kernel version). Fields that only tell libseccomp how to build its
//! filter (`architectures`, `archMap`, `flags`, `listenerPath`) are
//! accepted and ignored: berth builds a filter for the host's native
//! architecture only (see [`super::compile`]).

use serde::Deserialize;

use super::SeccompError;

/// A whole profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What happens to a system call that no rule names.
    pub default_action: Action,
    /// The errno of a default action `SCMP_ACT_ERRNO` (EPERM if absent).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// One rule: these system calls, when the arguments match, get `action`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// System call names (names unknown on this architecture are skipped,
    /// as runc does: profiles list every architecture's calls).
    #[serde(default)]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default)]
    pub name: Option<String>,
    /// What happens when the rule matches.
    pub action: Action,
    /// The errno of `SCMP_ACT_ERRNO` (EPERM if absent), or the data of
    /// `SCMP_ACT_TRACE`.
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Conditions on the arguments, all of which must hold.
    #[serde(default)]
    pub args: Vec<Arg>,
    /// The rule applies only if all of these hold.
    #[serde(default)]
    pub includes: Filter,
    /// The rule does not apply if any of these holds.
    #[serde(default)]
    pub excludes: Filter,
}

/// A condition on one argument.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Argument number, 0 to 5.
    pub index: u8,
    /// The value compared with (the mask, for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// For `SCMP_CMP_MASKED_EQ`: what the masked argument must equal.
    #[serde(default)]
    pub value_two: u64,
    /// The comparison.
    pub op: Op,
}

/// When a rule applies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`): `includes` needs all of them,
    /// `excludes` none.
    #[serde(default)]
    pub caps: Vec<String>,
    /// Architectures in Go's spelling (`amd64`, `arm64`).
    #[serde(default)]
    pub arches: Vec<String>,
    /// Oldest kernel ("4.8") for `includes`; ignored in `excludes`.
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// What a rule (or the default) does to a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    /// Let it run.
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    /// Fail it with an errno.
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    /// Kill the calling thread (libseccomp's `SCMP_ACT_KILL`).
    #[serde(rename = "SCMP_ACT_KILL", alias = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    /// Kill the whole process.
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    /// Send SIGSYS.
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    /// Notify a ptrace tracer.
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    /// Let it run and log it.
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    /// Hand it to a user-space supervisor: not supported.
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

/// An argument comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Op {
    /// `arg != value`
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    /// `arg < value`
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    /// `arg <= value`
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    /// `arg == value`
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    /// `arg >= value`
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    /// `arg > value`
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    /// `arg & value == value_two`
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

/// The largest profile accepted, in bytes: Docker's default profile is
/// about 20 KB.
pub const MAX_PROFILE_BYTES: usize = 256 << 10;

impl Profile {
    /// Parses a profile in Docker's JSON format.
    pub fn parse(json: &[u8]) -> Result<Profile, SeccompError> {
        if json.len() > MAX_PROFILE_BYTES {
            return Err(SeccompError::TooLarge {
                bytes: json.len(),
                max: MAX_PROFILE_BYTES,
            });
        }
        let p: Profile = serde_json::from_slice(json).map_err(|e| SeccompError::json(&e))?;
        if p.default_action == Action::Notify
            || p.syscalls.iter().any(|r| r.action == Action::Notify)
        {
            return Err(SeccompError::Unsupported("SCMP_ACT_NOTIFY".into()));
        }
        for r in &p.syscalls {
            if let Some(a) = r.args.iter().find(|a| a.index > 5) {
                return Err(SeccompError::InvalidRule(format!(
                    "argument index {} (system calls have 6)",
                    a.index
                )));
            }
        }
        Ok(p)
    }
}

/// What a rule's `includes`/`excludes` are checked against.
#[derive(Debug, Clone)]
pub struct Host<'a> {
    /// The container's capabilities (`CAP_CHOWN`, ...).
    pub caps: &'a [&'a str],
    /// This architecture in Go's spelling.
    pub arch: &'a str,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Rule {
    /// Whether the rule applies to a container on `host`.
    pub fn applies(&self, host: &Host) -> bool {
        let has = |c: &String| host.caps.iter().any(|h| h.eq_ignore_ascii_case(c));
        let inc = &self.includes;
        if !inc.caps.iter().all(has) {
            return false;
        }
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.arch) {
            return false;
        }
        if let Some(k) = &inc.min_kernel {
            match parse_kernel(k) {
                Some(min) if host.kernel >= min => {}
                _ => return false,
            }
        }
        let exc = &self.excludes;
        !(exc.caps.iter().any(has) || exc.arches.iter().any(|a| a == host.arch))
    }

    /// All names of the rule.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .chain(self.name.iter())
            .map(String::as_str)
    }
}

/// "4.8" or "5.10.0-foo" to (major, minor).
pub fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// This architecture in Go's spelling, as profiles name it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_docker_profile() {
        let p = Profile::parse(
            br#"{
              "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
              "architectures": ["SCMP_ARCH_X86_64"],
              "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"name": "ptrace", "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}}
              ]}"#,
        )
        .unwrap();
        assert_eq!(p.default_action, Action::Errno);
        assert_eq!(p.syscalls.len(), 4);
        assert_eq!(p.syscalls[1].args[0].op, Op::MaskedEq);
        assert_eq!(p.syscalls[2].errno_ret, Some(38));
        assert_eq!(p.syscalls[3].all_names().collect::<Vec<_>>(), ["ptrace"]);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let notify = br#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]}"#;
        assert!(matches!(
            Profile::parse(notify),
            Err(SeccompError::Unsupported(_))
        ));
        let arg7 = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#;
        assert!(matches!(
            Profile::parse(arg7),
            Err(SeccompError::InvalidRule(_))
        ));
        assert!(matches!(
            Profile::parse(b"{\"defaultAction\": \"SCMP_ACT_WHAT\"}"),
            Err(SeccompError::Json(_))
        ));
        let big = vec![b' '; MAX_PROFILE_BYTES + 1];
        assert!(matches!(
            Profile::parse(&big),
            Err(SeccompError::TooLarge { .. })
        ));
    }

    #[test]
    fn includes_and_excludes() {
        let host = Host {
            caps: &["CAP_CHOWN", "CAP_SYS_CHROOT"],
            arch: "amd64",
            kernel: (6, 1),
        };
        let rule = |json: &str| -> Rule { serde_json::from_str(json).unwrap() };
        assert!(rule(r#"{"names":["chroot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_CHROOT"]}}"#).applies(&host));
        assert!(!rule(
            r#"{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}"#
        )
        .applies(&host));
        assert!(!rule(
            r#"{"names":["clone"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_CHOWN"]}}"#
        )
        .applies(&host));
        assert!(rule(
            r#"{"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}}"#
        )
        .applies(&host));
        assert!(!rule(
            r#"{"names":["x"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"6.10"}}"#
        )
        .applies(&host));
        assert!(!rule(
            r#"{"names":["x"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}}"#
        )
        .applies(&host));
        assert!(!rule(
            r#"{"names":["x"],"action":"SCMP_ACT_ALLOW","excludes":{"arches":["amd64"]}}"#
        )
        .applies(&host));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("6.18.44-fc-v1147"), Some((6, 18)));
        assert_eq!(parse_kernel("5"), Some((5, 0)));
        assert_eq!(parse_kernel("x.1"), None);
    }
}
