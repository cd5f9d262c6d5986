//! How registry client (oci-client) errors become [`ImageError`]s: which
//! [`ErrorKind`] each is.

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::image::{ErrorKind, ImageError};

/// Wraps a registry client error, naming what we were doing.
pub(super) fn oci_err(what: &str, e: OciDistributionError) -> ImageError {
    ImageError::Registry {
        context: what.to_string(),
        kind: classify(&e),
        source: Box::new(e),
    }
}

/// The kind of a registry client error.
fn classify(e: &OciDistributionError) -> ErrorKind {
    match e {
        // A 401, or a token server refusing the credentials.
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => ErrorKind::Unauthenticated,
        OciDistributionError::ImageManifestNotFoundError(_) => ErrorKind::NotFound,
        OciDistributionError::RegistryError { envelope, .. } => {
            let has = |f: fn(&OciErrorCode) -> bool| envelope.errors.iter().any(|x| f(&x.code));
            if has(|c| matches!(c, OciErrorCode::Unauthorized)) {
                ErrorKind::Unauthenticated
            } else if has(|c| matches!(c, OciErrorCode::Denied)) {
                ErrorKind::PermissionDenied
            } else if has(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            }) {
                ErrorKind::NotFound
            } else if has(|c| matches!(c, OciErrorCode::Toomanyrequests)) {
                ErrorKind::Unavailable
            } else {
                ErrorKind::BadResponse
            }
        }
        OciDistributionError::ServerError { code, .. } => match code {
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            429 | 500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::BadResponse,
        },
        // A refusal some requests (a HEAD for a blob) report as a plain
        // HTTP error rather than a registry error.
        OciDistributionError::RequestError(e) => match e.status().map(|s| s.as_u16()) {
            Some(401) => ErrorKind::Unauthenticated,
            Some(403) => ErrorKind::PermissionDenied,
            _ => ErrorKind::Unavailable,
        },
        OciDistributionError::IoError(_) => ErrorKind::Unavailable,
        OciDistributionError::DigestError(_) => ErrorKind::Corrupt,
        OciDistributionError::UnsupportedMediaTypeError(_)
        | OciDistributionError::IncompatibleLayerMediaTypeError(_)
        | OciDistributionError::UnsupportedSchemaVersionError(_) => ErrorKind::Unsupported,
        _ => ErrorKind::BadResponse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_failures_get_their_kinds() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "http://r/v2/x".into(),
            message: String::new(),
        };
        for (e, kind) in [
            (server(401), ErrorKind::Unauthenticated),
            (server(403), ErrorKind::PermissionDenied),
            (server(404), ErrorKind::NotFound),
            (server(503), ErrorKind::Unavailable),
            (server(418), ErrorKind::BadResponse),
            (
                OciDistributionError::UnauthorizedError { url: "u".into() },
                ErrorKind::Unauthenticated,
            ),
            (
                OciDistributionError::AuthenticationFailure("no".into()),
                ErrorKind::Unauthenticated,
            ),
            (
                OciDistributionError::ImageManifestNotFoundError("t".into()),
                ErrorKind::NotFound,
            ),
            (
                OciDistributionError::UnsupportedMediaTypeError("x".into()),
                ErrorKind::Unsupported,
            ),
            (
                OciDistributionError::IoError(std::io::Error::other("reset")),
                ErrorKind::Unavailable,
            ),
        ] {
            let what = e.to_string();
            let err = oci_err("fetching", e);
            assert_eq!(err.kind(), kind, "{what}");
            assert!(std::error::Error::source(&err).is_some());
        }
    }
}
