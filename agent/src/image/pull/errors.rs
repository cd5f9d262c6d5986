//! How registry client (oci-client) errors become [`ImageError`]s.

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::image::ImageError;

/// Rebuilds an error for another waiter of a shared job (io::Error is not Clone).
pub(super) fn dup(e: &ImageError) -> ImageError {
    match e {
        ImageError::NotFound(m) => ImageError::NotFound(m.clone()),
        ImageError::Ambiguous(m) => ImageError::Ambiguous(m.clone()),
        ImageError::InvalidReference(m) => ImageError::InvalidReference(m.clone()),
        ImageError::InvalidArchive(m) => ImageError::InvalidArchive(m.clone()),
        ImageError::Unauthorized(m) => ImageError::Unauthorized(m.clone()),
        ImageError::Unavailable(m) => ImageError::Unavailable(m.clone()),
        ImageError::Registry(m) => ImageError::Registry(m.clone()),
        ImageError::Corrupt(m) => ImageError::Corrupt(m.clone()),
        ImageError::Unsupported(m) => ImageError::Unsupported(m.clone()),
        ImageError::NoSpace(m) => ImageError::NoSpace(m.clone()),
        ImageError::Io { context, source } => ImageError::io(
            context.clone(),
            std::io::Error::new(source.kind(), source.to_string()),
        ),
    }
}

/// Maps a registry client error to ours, naming what we were doing.
pub(super) fn oci_err(what: &str, e: OciDistributionError) -> ImageError {
    let msg = format!("{what}: {e}");
    match &e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => ImageError::Unauthorized(msg),
        OciDistributionError::ImageManifestNotFoundError(_) => ImageError::NotFound(msg),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|x| &x.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                ImageError::Unauthorized(msg)
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            }) {
                ImageError::NotFound(msg)
            } else {
                ImageError::Registry(msg)
            }
        }
        OciDistributionError::ServerError { code, .. } => match code {
            401 | 403 => ImageError::Unauthorized(msg),
            404 => ImageError::NotFound(msg),
            500..=599 => ImageError::Unavailable(msg),
            _ => ImageError::Registry(msg),
        },
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            ImageError::Unavailable(msg)
        }
        OciDistributionError::DigestError(_) => ImageError::Corrupt(msg),
        _ => ImageError::Registry(msg),
    }
}
