//! The error type of the image store and of pulls.
//!
//! Callers decide by [`ImageError::kind`], never by parsing messages; the
//! one mapping to gRPC status codes is `server::image_status`. Errors keep
//! their sources: a registry failure carries oci-client's error, a local
//! one the `io::Error`.

use std::io;
use std::sync::Arc;

use oci_client::errors::OciDistributionError;

/// A boxed error, for sources of several types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What kind of failure an [`ImageError`] is: what a caller (or a client)
/// can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such image, tag, manifest or repository (locally or in the registry).
    NotFound,
    /// An id prefix matches more than one image.
    Ambiguous,
    /// A malformed or inapplicable reference, or missing input.
    InvalidReference,
    /// A malformed, unsupported or malicious archive.
    InvalidArchive,
    /// The registry wants credentials, or refused the ones given.
    Unauthenticated,
    /// The registry accepted the credentials but denies the access.
    PermissionDenied,
    /// The registry could not be reached, failed, or the transfer broke
    /// off; trying again may work (and resumes downloads).
    Unavailable,
    /// The registry answered something unusable (malformed metadata, an
    /// unexpected error).
    BadResponse,
    /// Content does not match its digest: nothing of it is kept.
    Corrupt,
    /// A valid image in a format berth does not support (yet).
    Unsupported,
    /// Not enough disk space for unpacking.
    NoSpace,
    /// The image's layer blobs were not kept (it was stored before berth
    /// kept them): it cannot be saved or pushed until pulled or imported
    /// again.
    ContentNotKept,
    /// A local failure (I/O, a task that died), not the client's fault.
    Internal,
}

impl ErrorKind {
    /// A stable, machine-readable name of the kind (for a
    /// `google.rpc.ErrorInfo` reason), e.g. `REGISTRY_UNAUTHENTICATED`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "IMAGE_NOT_FOUND",
            ErrorKind::Ambiguous => "IMAGE_ID_AMBIGUOUS",
            ErrorKind::InvalidReference => "INVALID_REFERENCE",
            ErrorKind::InvalidArchive => "INVALID_ARCHIVE",
            ErrorKind::Unauthenticated => "REGISTRY_UNAUTHENTICATED",
            ErrorKind::PermissionDenied => "REGISTRY_PERMISSION_DENIED",
            ErrorKind::Unavailable => "REGISTRY_UNAVAILABLE",
            ErrorKind::BadResponse => "REGISTRY_BAD_RESPONSE",
            ErrorKind::Corrupt => "CONTENT_DIGEST_MISMATCH",
            ErrorKind::Unsupported => "IMAGE_FORMAT_UNSUPPORTED",
            ErrorKind::NoSpace => "NO_SPACE",
            ErrorKind::ContentNotKept => "IMAGE_CONTENT_NOT_KEPT",
            ErrorKind::Internal => "INTERNAL",
        }
    }
}

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image matches the given name or id.
    #[error("image not found: {}", crate::error::capped(.0))]
    NotFound(String),
    /// An id prefix matches more than one image.
    #[error("ambiguous image id prefix: {}", crate::error::capped(.0))]
    Ambiguous(String),
    /// A reference (image name) is malformed, missing where one is needed,
    /// or cannot be applied (e.g. one name for an archive holding several images).
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    /// The archive is malformed, unsupported or malicious: bad JSON, a digest
    /// mismatch, a path escaping the layer, an unsupported compression, ...
    #[error("invalid image archive: {0}")]
    InvalidArchive(#[source] Detail),
    /// A registry request failed; `kind` says how (credentials refused,
    /// unreachable, unknown manifest, ...), `source` is oci-client's error.
    #[error("{}{context}: {source}", label(*.kind))]
    Registry {
        /// What the pull was doing ("fetching manifest ...").
        context: String,
        /// How it failed.
        kind: ErrorKind,
        /// The registry client's error.
        #[source]
        source: Box<OciDistributionError>,
    },
    /// The transfer of a blob broke off (the registry went away, the
    /// stream ended early). Pulling again resumes what was downloaded.
    #[error("registry unavailable: {context}{}", suffix(.source))]
    Unavailable {
        /// What broke off, and after how many bytes.
        context: String,
        /// The stream's error, when it reported one.
        #[source]
        source: Option<io::Error>,
    },
    /// The registry answered something unusable (a malformed manifest or
    /// config, inconsistent metadata).
    #[error("registry error: {context}{}", suffix(.source))]
    BadResponse {
        /// What is wrong with the answer.
        context: String,
        /// Why it could not be used (a JSON error, a digest check).
        #[source]
        source: Option<BoxError>,
    },
    /// Content does not match its digest (or a layer its diff_id): it is
    /// discarded, nothing of it is kept.
    #[error("content verification failed: {0}")]
    Corrupt(#[source] Detail),
    /// A valid image in a format berth does not support (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A layer blob of the image is not stored (see
    /// [`ErrorKind::ContentNotKept`]).
    #[error("{0}: its layer blobs were not kept (the image was stored before berth kept them, or a pull found the layer already unpacked); remove the image, then pull or import it again")]
    ContentNotKept(String),
    /// Unpacking would take more than the state file system has free
    /// beyond its reserve (see `archive::space_budget`); nothing is kept.
    #[error("not enough disk space: {0}")]
    NoSpace(String),
    /// A local I/O failure (disk full, permissions, ...), not the client's fault.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, including the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A missing image could not be pulled for a container (auto-pull);
    /// of the kind of the pull's error.
    #[error(
        "image {} is not stored and pulling it failed: {source}",
        crate::error::capped(image)
    )]
    AutoPull {
        /// The image the container named.
        image: String,
        /// Why the pull failed.
        #[source]
        source: Box<ImageError>,
    },
    /// The outcome of work shared by several pulls (a layer or config
    /// download), as each of them gets it.
    #[error(transparent)]
    Shared(Arc<ImageError>),
}

/// What went wrong, and the error behind it when there is one (an I/O
/// error reading a stream, a JSON error).
#[derive(Debug)]
pub struct Detail {
    message: String,
    source: Option<BoxError>,
}

impl Detail {
    /// A detail that is all in its message.
    pub fn msg(message: impl Into<String>) -> Self {
        Detail {
            message: message.into(),
            source: None,
        }
    }

    /// A detail caused by `source` (shown after the message).
    pub fn caused(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Detail {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.message, suffix(&self.source))
    }
}

impl std::error::Error for Detail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// How a registry failure's message starts, as the messages of the other
/// variants do.
fn label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "image not found: ",
        ErrorKind::Unauthenticated => "registry authentication failed: ",
        ErrorKind::PermissionDenied => "registry denied access: ",
        ErrorKind::Unavailable => "registry unavailable: ",
        ErrorKind::Corrupt => "content verification failed: ",
        ErrorKind::Unsupported => "not supported: ",
        _ => "registry error: ",
    }
}

/// ": <source>" when there is one.
fn suffix<E: std::fmt::Display>(source: &Option<E>) -> String {
    source
        .as_ref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

impl ImageError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Ambiguous(_) => ErrorKind::Ambiguous,
            ImageError::InvalidReference(_) => ErrorKind::InvalidReference,
            ImageError::InvalidArchive(_) => ErrorKind::InvalidArchive,
            ImageError::Registry { kind, .. } => *kind,
            ImageError::Unavailable { .. } => ErrorKind::Unavailable,
            ImageError::BadResponse { .. } => ErrorKind::BadResponse,
            ImageError::Corrupt(_) => ErrorKind::Corrupt,
            ImageError::Unsupported(_) => ErrorKind::Unsupported,
            ImageError::NoSpace(_) => ErrorKind::NoSpace,
            ImageError::ContentNotKept(_) => ErrorKind::ContentNotKept,
            ImageError::Io { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                ErrorKind::NoSpace
            }
            ImageError::Io { .. } => ErrorKind::Internal,
            ImageError::AutoPull { source, .. } => source.kind(),
            ImageError::Shared(e) => e.kind(),
        }
    }

    /// Shorthand for [`ImageError::InvalidArchive`].
    pub(crate) fn archive(msg: impl Into<String>) -> Self {
        ImageError::InvalidArchive(Detail::msg(msg))
    }

    /// An [`ImageError::InvalidArchive`] caused by `source`.
    pub(crate) fn archive_caused(msg: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ImageError::InvalidArchive(Detail::caused(msg, source))
    }

    /// Shorthand for [`ImageError::Corrupt`].
    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        ImageError::Corrupt(Detail::msg(msg))
    }

    /// Shorthand for [`ImageError::Io`].
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    /// A [`ImageError::BadResponse`] caused by `source`.
    pub(crate) fn bad_response(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ImageError::BadResponse {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A [`ImageError::BadResponse`] that is all in its message.
    pub(crate) fn bad_response_msg(context: impl Into<String>) -> Self {
        ImageError::BadResponse {
            context: context.into(),
            source: None,
        }
    }
}

/// Attaches a context message to `io::Result`s, turning them into [`ImageError::Io`].
pub(crate) trait IoContext<T> {
    /// Wraps the error with a lazily built context message.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, ImageError> {
        self.map_err(|e| ImageError::io(f(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_errors_keep_their_kind_and_message() {
        let inner = Arc::new(ImageError::corrupt("layer x"));
        let e = ImageError::Shared(inner);
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(e.to_string(), "content verification failed: layer x");
    }

    #[test]
    fn sources_are_kept_and_shown() {
        let e = ImageError::Unavailable {
            context: "downloading layer d: transfer broke off after 3 of 9 bytes".into(),
            source: Some(io::Error::other("connection reset")),
        };
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().ends_with(": connection reset"), "{e}");
        let e = ImageError::archive_caused("layer l: bad tar stream", io::Error::other("eof"));
        assert_eq!(
            e.to_string(),
            "invalid image archive: layer l: bad tar stream: eof"
        );
        let detail = std::error::Error::source(&e).expect("the detail");
        assert!(detail.source().is_some(), "the io::Error behind it");
        let e = ImageError::bad_response_msg("nested too deep");
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.to_string(), "registry error: nested too deep");
    }
}
