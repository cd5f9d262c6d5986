//! The one answer of every CRI call berth does not serve yet.
//!
//! A half-built capability must say so: kubelet and crictl get
//! UNIMPLEMENTED with the call's name, never an empty or made-up success.

use tonic::Status;

/// The prefix of every "not supported yet" message of the CRI server.
pub const NOT_SUPPORTED: &str = "berth CRI: not supported yet";

/// UNIMPLEMENTED for `what` (an RPC name such as "RunPodSandbox", or a
/// request field).
pub fn not_supported(what: &str) -> Status {
    Status::unimplemented(format!("{NOT_SUPPORTED}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_call() {
        let s = not_supported("RunPodSandbox");
        assert_eq!(s.code(), tonic::Code::Unimplemented);
        assert_eq!(s.message(), "berth CRI: not supported yet: RunPodSandbox");
    }
}
