//! The one mapping of image errors to gRPC statuses.
//!
//! The code follows the error's [`ErrorKind`]; the message is the error's
//! own (with its sources), so it says what was being done and why it failed.
//! [`ErrorKind::reason`] is the stable reason of the `google.rpc.ErrorInfo`
//! that `status.rs` attaches.

use tonic::{Code, Status};

use crate::image::{ErrorKind, ImageError};

/// The gRPC code for an image error kind.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Ambiguous | ErrorKind::InvalidReference | ErrorKind::InvalidArchive => {
            Code::InvalidArgument
        }
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::BadResponse => Code::Unknown,
        ErrorKind::Corrupt => Code::DataLoss,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::NoSpace => Code::ResourceExhausted,
        ErrorKind::ContentNotKept => Code::FailedPrecondition,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status an image error answers a request with (the agent's one
/// mapping, in `status.rs`, with the error's details).
pub fn image_status(e: ImageError) -> Status {
    Status::from(crate::error::Error::from(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_kinds_and_messages_are_the_errors() {
        let s = image_status(ImageError::NotFound("busybox".into()));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "image not found: busybox");
        assert_eq!(
            image_status(ImageError::NoSpace("layer".into())).code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            image_status(ImageError::io("x", std::io::Error::other("y"))).code(),
            Code::Internal
        );
        assert_eq!(
            image_status(ImageError::Shared(std::sync::Arc::new(
                ImageError::corrupt("l")
            )))
            .code(),
            Code::DataLoss
        );
    }

    #[test]
    fn every_kind_has_its_own_reason() {
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::Ambiguous,
            ErrorKind::InvalidReference,
            ErrorKind::InvalidArchive,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::Unavailable,
            ErrorKind::BadResponse,
            ErrorKind::Corrupt,
            ErrorKind::Unsupported,
            ErrorKind::NoSpace,
            ErrorKind::ContentNotKept,
            ErrorKind::Internal,
        ];
        let reasons: std::collections::HashSet<_> = kinds.iter().map(|k| k.reason()).collect();
        assert_eq!(reasons.len(), kinds.len());
        assert_eq!(code(ErrorKind::PermissionDenied), Code::PermissionDenied);
        assert_eq!(code(ErrorKind::Unavailable), Code::Unavailable);
    }
}
