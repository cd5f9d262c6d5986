//! Entry points for the fuzz targets (feature `fuzzing`, see `fuzz/`): a
//! profile's programs from berth's emitter and from the seccompiler
//! oracle, and the BPF interpreter that runs both.

use berth_runtime::seccomp::SockFilter;

pub use super::bpf_interp::Data;
use super::profile::{go_arch, Host, Profile};
use super::{SeccompError, DEFAULT_CAPS};

/// The largest program the kernel takes.
pub use berth_runtime::seccomp::MAX_PROGRAM_INSNS;

/// `seccomp_data.arch` of this machine's native ABI.
pub fn native_arch() -> u32 {
    super::compile::audit_arch().unwrap_or(0)
}

/// The first x32 call number (on x86_64 every one kills the process).
pub const X32_BIT: u32 = super::compile::X32_BIT;

/// A container with Docker's default capabilities on a 6.1 kernel.
fn host() -> Host<'static> {
    Host {
        caps: DEFAULT_CAPS,
        arch: go_arch(),
        kernel: (6, 1),
    }
}

/// The profile's programs as berthd compiles them.
pub fn compile(profile: &Profile) -> Result<Vec<Vec<SockFilter>>, SeccompError> {
    super::compile::compile(profile, &host())
}

/// The profile's programs as the seccompiler-based compiler berth
/// shipped before made them (the tests' oracle).
pub fn oracle(profile: &Profile) -> Result<Vec<Vec<SockFilter>>, SeccompError> {
    super::oracle::compile(profile, &host())
}

/// What a stack of programs returns for `data` (panics where the kernel's
/// verifier would refuse the program).
pub fn run_all(programs: &[Vec<SockFilter>], data: &Data) -> u32 {
    super::bpf_interp::run_all(programs, data)
}

/// Which rules apply to the fuzz targets' host.
pub fn applies(rule: &super::profile::Rule) -> bool {
    rule.applies(&host())
}
