//! The one mapping from the runtime's errors to gRPC statuses.
//!
//! Every status carries a `google.rpc.ErrorInfo` (a stable `reason`, the
//! domain [`DOMAIN`], and metadata such as the container's id and state)
//! and, for invalid input, a `google.rpc.BadRequest` naming the field, so
//! clients can act on errors without parsing messages. The messages stay
//! as they were.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::container::ContainerError;
use crate::copy::CopyError;
use crate::error::Error;
use crate::events::Gap;
use crate::exec::ExecError;
use crate::image::ImageError;
use crate::network::NetworkError;
use crate::volume::VolumeError;

/// The `ErrorInfo.domain` of every error berthd returns.
pub const DOMAIN: &str = "berth.dev";

/// What a status says besides its code and message.
struct Details {
    code: Code,
    reason: &'static str,
    metadata: Vec<(&'static str, String)>,
    /// A `BadRequest` field violation: the field.
    field: Option<&'static str>,
}

impl Details {
    fn new(code: Code, reason: &'static str) -> Self {
        Details {
            code,
            reason,
            metadata: Vec::new(),
            field: None,
        }
    }

    fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }

    fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    fn status(self, message: String) -> Status {
        let metadata: HashMap<String, String> = self
            .metadata
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut details = ErrorDetails::with_error_info(self.reason, DOMAIN, metadata);
        if let Some(field) = self.field {
            details.add_bad_request_violation(field, message.clone());
        }
        Status::with_error_details(self.code, message, details)
    }
}

fn container(e: &ContainerError) -> Details {
    use ContainerError as E;
    let capped = |s: &str| crate::error::capped(s).into_owned();
    match e {
        E::NoKey => Details::new(Code::InvalidArgument, "CONTAINER_KEY_MISSING").field("id"),
        E::NotFound { key } => {
            Details::new(Code::NotFound, "CONTAINER_NOT_FOUND").with("key", capped(key))
        }
        E::Ambiguous { key, count } => Details::new(Code::InvalidArgument, "CONTAINER_AMBIGUOUS")
            .with("key", capped(key))
            .with("matches", count.to_string())
            .field("id"),
        E::NameInUse { name } => {
            Details::new(Code::AlreadyExists, "CONTAINER_NAME_IN_USE").with("name", capped(name))
        }
        E::InvalidSpec { field, .. } => Details::new(Code::InvalidArgument, "INVALID_SPEC")
            .with("field", *field)
            .field(field),
        E::ImageNotFound { image } => {
            Details::new(Code::NotFound, "IMAGE_NOT_FOUND").with("image", capped(image))
        }
        E::Image(e) => image(e),
        E::LimitUnsupported(_) => Details::new(Code::FailedPrecondition, "LIMIT_UNSUPPORTED"),
        E::PrivilegedNotAllowed => Details::new(Code::FailedPrecondition, "PRIVILEGED_NOT_ALLOWED"),
        E::PodGone { .. } => Details::new(Code::FailedPrecondition, "POD_GONE"),
        E::OwnedByPod { .. } => Details::new(Code::FailedPrecondition, "OWNED_BY_POD"),
        E::LimitRejected(_) => {
            Details::new(Code::InvalidArgument, "LIMIT_REJECTED").field("resources")
        }
        E::InvalidTransition { id, source } => {
            Details::new(Code::FailedPrecondition, "INVALID_STATE")
                .with("id", id.clone())
                .with("state", source.state)
                .with("operation", source.op)
        }
        E::CannotExec { id, exit_code, .. } => {
            Details::new(Code::FailedPrecondition, "CANNOT_EXECUTE")
                .with("id", id.clone())
                .with("exit_code", exit_code.to_string())
        }
        E::EndedWhilePausing { id, state } => {
            Details::new(Code::FailedPrecondition, "INVALID_STATE")
                .with("id", id.clone())
                .with("state", state.as_str())
                .with("operation", "pause")
        }
        E::RemovedWithoutRun { id } => {
            Details::new(Code::NotFound, "CONTAINER_REMOVED_WITHOUT_RUN").with("id", id.clone())
        }
        E::NoExitAfterKill { id } => {
            Details::new(Code::Internal, "CONTAINER_STUCK").with("id", id.clone())
        }
        E::Network(e) => network(e),
        E::UsernsUnsupported(_) => Details::new(Code::Unimplemented, "USERNS_UNSUPPORTED"),
        E::UsernsKernel(_) => Details::new(Code::FailedPrecondition, "USERNS_UNSUPPORTED"),
        E::UsernsExhausted { slots, .. } => {
            Details::new(Code::ResourceExhausted, "USERNS_EXHAUSTED")
                .with("ranges", slots.to_string())
        }
        E::MountUnsupported(_) => Details::new(Code::Unimplemented, "MOUNT_UNSUPPORTED"),
        E::StorageUnsupported(_) => {
            Details::new(Code::FailedPrecondition, "STORAGE_OPT_UNSUPPORTED")
        }
        E::Volume(e) => volume(e),
        E::Vanished { .. } | E::Cgroup { .. } | E::Launch(_) | E::Io { .. } | E::Task { .. } => {
            Details::new(Code::Internal, "INTERNAL")
        }
    }
}

fn volume(e: &VolumeError) -> Details {
    let capped = |s: &str| crate::error::capped(s).into_owned();
    match e {
        VolumeError::InvalidName { name } => {
            Details::new(Code::InvalidArgument, "INVALID_VOLUME_NAME")
                .with("name", capped(name))
                .field("name")
        }
        VolumeError::Invalid { field, .. } => {
            Details::new(Code::InvalidArgument, "INVALID_REQUEST").field(field)
        }
        VolumeError::Unsupported(_) => Details::new(Code::Unimplemented, "VOLUME_UNSUPPORTED"),
        VolumeError::NotFound { name } => {
            Details::new(Code::NotFound, "VOLUME_NOT_FOUND").with("name", capped(name))
        }
        VolumeError::Exists { name } => {
            Details::new(Code::AlreadyExists, "VOLUME_EXISTS").with("name", capped(name))
        }
        VolumeError::InUse { name, users } => {
            Details::new(Code::FailedPrecondition, "VOLUME_IN_USE")
                .with("name", capped(name))
                .with("containers", users.join(","))
        }
        VolumeError::Io { .. } => Details::new(Code::Internal, "INTERNAL"),
    }
}

fn cni(e: &crate::network::cni::CniError) -> Details {
    use crate::network::cni::CniError as E;
    match e {
        E::Invalid(_) => Details::new(Code::InvalidArgument, "INVALID_SPEC")
            .with("field", "cni_conflist")
            .field("cni_conflist"),
        E::NoPlugin { plugin, .. } => Details::new(Code::FailedPrecondition, "CNI_PLUGIN_MISSING")
            .with("plugin", plugin.clone()),
        E::Plugin { plugin, .. } | E::Timeout { plugin, .. } => {
            Details::new(Code::FailedPrecondition, "CNI_PLUGIN_FAILED")
                .with("plugin", plugin.clone())
        }
        E::Exec { .. } | E::BadResult(_) | E::Store { .. } => {
            Details::new(Code::Internal, "INTERNAL")
        }
    }
}

fn network(e: &NetworkError) -> Details {
    match e {
        NetworkError::Invalid(_) => Details::new(Code::InvalidArgument, "INVALID_SPEC")
            .with("field", "network")
            .field("network"),
        NetworkError::Unsupported(what) => {
            Details::new(Code::Unimplemented, "NETWORK_UNSUPPORTED").with("feature", *what)
        }
        NetworkError::PeerNotRunning { name } => {
            Details::new(Code::FailedPrecondition, "NETWORK_CONTAINER_NOT_RUNNING")
                .with("container", name.clone())
        }
        NetworkError::InvalidPorts(_) => Details::new(Code::InvalidArgument, "INVALID_SPEC")
            .with("field", "ports")
            .field("ports"),
        NetworkError::Exhausted(_) => Details::new(Code::ResourceExhausted, "NETWORK_FULL"),
        NetworkError::SubnetInUse { .. } => {
            Details::new(Code::FailedPrecondition, "NETWORK_SUBNET_IN_USE")
        }
        NetworkError::PortTaken { port, .. } => {
            Details::new(Code::AlreadyExists, "PORT_ALLOCATED").with("port", port.clone())
        }
        NetworkError::PortBusy { port, .. } => {
            Details::new(Code::FailedPrecondition, "PORT_IN_USE").with("port", port.clone())
        }
        NetworkError::NotFound { key } => {
            Details::new(Code::NotFound, "NETWORK_NOT_FOUND").with("key", key.clone())
        }
        NetworkError::Ambiguous { key } => {
            Details::new(Code::InvalidArgument, "NETWORK_AMBIGUOUS").with("key", key.clone())
        }
        NetworkError::NameInUse { name } => {
            Details::new(Code::AlreadyExists, "NETWORK_NAME_IN_USE").with("name", name.clone())
        }
        NetworkError::Overlap { subnet, .. } => {
            Details::new(Code::FailedPrecondition, "NETWORK_SUBNET_OVERLAP")
                .with("subnet", subnet.clone())
        }
        NetworkError::PoolExhausted => {
            Details::new(Code::ResourceExhausted, "NETWORK_POOL_EXHAUSTED")
        }
        NetworkError::InUse { name } => {
            Details::new(Code::FailedPrecondition, "NETWORK_IN_USE").with("network", name.clone())
        }
        NetworkError::Predefined { name } => {
            Details::new(Code::FailedPrecondition, "NETWORK_PREDEFINED")
                .with("network", name.clone())
        }
        NetworkError::InvalidField { field, .. } => {
            Details::new(Code::InvalidArgument, "INVALID_REQUEST").field(field)
        }
        NetworkError::AlreadyConnected { network, .. } => {
            Details::new(Code::AlreadyExists, "NETWORK_ALREADY_CONNECTED")
                .with("network", network.clone())
        }
        NetworkError::NotConnected { network, .. } => {
            Details::new(Code::FailedPrecondition, "NETWORK_NOT_CONNECTED")
                .with("network", network.clone())
        }
        NetworkError::NotBridged { mode, .. } => {
            Details::new(Code::FailedPrecondition, "NETWORK_MODE_NOT_CONNECTABLE")
                .with("mode", *mode)
        }
        NetworkError::TooManyNetworks { .. } => {
            Details::new(Code::ResourceExhausted, "NETWORK_TOO_MANY")
        }
        NetworkError::AddressInUse { ip } => {
            Details::new(Code::AlreadyExists, "NETWORK_ADDRESS_IN_USE").with("ip", ip.clone())
        }
        NetworkError::Cni(e) => cni(e),
        NetworkError::NoIpv6(_) => Details::new(Code::FailedPrecondition, "NETWORK_NO_IPV6"),
        NetworkError::Join { .. }
        | NetworkError::Netlink(_)
        | NetworkError::Nft(_)
        | NetworkError::Host { .. } => Details::new(Code::Internal, "INTERNAL"),
    }
}

fn attach(e: &crate::server::attach::AttachError) -> Details {
    use crate::server::attach::AttachError as A;
    match e {
        A::NotRunning { id, state } => {
            Details::new(Code::FailedPrecondition, "CONTAINER_NOT_RUNNING")
                .with("id", id.clone())
                .with("state", *state)
        }
        A::NoStdin { id } => {
            Details::new(Code::FailedPrecondition, "CONTAINER_STDIN_CLOSED").with("id", id.clone())
        }
        A::Busy => Details::new(Code::ResourceExhausted, "ATTACH_CLIENTS_EXHAUSTED"),
        A::Socket(_) => Details::new(Code::Internal, "INTERNAL"),
    }
}

fn exec(e: &ExecError) -> Details {
    match e {
        ExecError::NotRunning { id, state } => {
            Details::new(Code::FailedPrecondition, "CONTAINER_NOT_RUNNING")
                .with("id", id.clone())
                .with("state", *state)
        }
        ExecError::CannotExec { exit_code, .. } => {
            Details::new(Code::FailedPrecondition, "CANNOT_EXECUTE")
                .with("exit_code", exit_code.to_string())
        }
        ExecError::NotFound { exec_id } => Details::new(Code::NotFound, "EXEC_NOT_FOUND")
            .with("exec_id", crate::error::capped(exec_id).into_owned()),
        ExecError::Helper(_) | ExecError::Io { .. } => Details::new(Code::Internal, "INTERNAL"),
    }
}

fn copy(e: &CopyError) -> Details {
    use CopyError as C;
    match e {
        C::InvalidPath(_) => Details::new(Code::InvalidArgument, "INVALID_PATH").field("path"),
        C::PathNotFound { .. } => Details::new(Code::NotFound, "PATH_NOT_FOUND"),
        C::NotADirectory { .. } => Details::new(Code::FailedPrecondition, "NOT_A_DIRECTORY"),
        C::NotRunning { id, state, .. } => Details::new(Code::FailedPrecondition, "CP_UNSUPPORTED")
            .with("id", id.clone())
            .with("state", *state),
        C::UnderMount { target } => Details::new(Code::FailedPrecondition, "CP_UNSUPPORTED")
            .with("mount", crate::error::capped(target).into_owned()),
        C::InvalidArchive { .. } => {
            Details::new(Code::InvalidArgument, "INVALID_ARCHIVE").field("data")
        }
        C::Conflict { .. } => Details::new(Code::FailedPrecondition, "CP_CONFLICT"),
        C::ReadOnly { .. } => Details::new(Code::FailedPrecondition, "READ_ONLY"),
        C::Aborted(_) => Details::new(Code::Cancelled, "CANCELLED"),
        C::Io { .. } => Details::new(Code::Internal, "INTERNAL"),
    }
}

fn image(e: &ImageError) -> Details {
    let kind = e.kind();
    Details::new(super::image_status::code(kind), kind.reason())
}

fn details(e: &Error) -> Details {
    match e {
        Error::Container(e) => container(e),
        Error::Image(e) => image(e),
        Error::Volume(e) => volume(e),
        Error::Exec(e) => exec(e),
        Error::Attach(e) => attach(e),
        Error::Copy(e) => copy(e),
        Error::InvalidSignal(_) => {
            Details::new(Code::InvalidArgument, "INVALID_SIGNAL").field("signal")
        }
        Error::InvalidRequest { field, .. } => {
            Details::new(Code::InvalidArgument, "INVALID_REQUEST").field(field)
        }
        Error::ImageInUse { users, .. } => Details::new(Code::FailedPrecondition, "IMAGE_IN_USE")
            .with("containers", users.join(",")),
        Error::Internal { .. } => Details::new(Code::Internal, "INTERNAL"),
    }
}

/// Whether `e` or an error behind it is a full file system or an
/// exhausted disk quota: whatever was being done, that is
/// `RESOURCE_EXHAUSTED` (freeing space helps), not an internal error.
fn no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        if no_space(&e) {
            return Details::new(Code::ResourceExhausted, "NO_SPACE")
                .status(format!("file system full: {e}"));
        }
        details(&e).status(e.to_string())
    }
}

impl From<ContainerError> for Status {
    fn from(e: ContainerError) -> Status {
        Error::from(e).into()
    }
}

impl From<NetworkError> for Status {
    fn from(e: NetworkError) -> Status {
        ContainerError::from(e).into()
    }
}

impl From<VolumeError> for Status {
    fn from(e: VolumeError) -> Status {
        Error::from(e).into()
    }
}

impl From<CopyError> for Status {
    fn from(e: CopyError) -> Status {
        Error::from(e).into()
    }
}

impl From<ImageError> for Status {
    fn from(e: ImageError) -> Status {
        Error::from(e).into()
    }
}

/// Why a subscription cannot read from where it asked: `OUT_OF_RANGE` with
/// the oldest retained seq in the metadata (`oldest_seq`), `DATA_LOSS` with
/// the missing one (`seq`).
pub fn gap(gap: Gap) -> Status {
    match gap {
        Gap::Retired { oldest } => Details::new(Code::OutOfRange, "EVENTS_NOT_RETAINED")
            .with("oldest_seq", oldest.to_string())
            .status(format!(
                "events before seq {oldest} are no longer retained; resubscribe with from_seq >= {oldest}"
            )),
        Gap::Missing { seq } => Details::new(Code::DataLoss, "EVENT_MISSING")
            .with("seq", seq.to_string())
            .status(format!(
                "event {seq} is not in the event log (its write failed; the agent's log says why); \
                 resubscribe with from_seq > {seq}"
            )),
        Gap::Unreadable(e) => Details::new(Code::Internal, "EVENT_LOG_UNREADABLE")
            .status(format!("reading the event log: {e}")),
    }
}

/// A subscription from a seq beyond the next one to be published:
/// `OUT_OF_RANGE` at once, with that next seq (`next_seq`).
pub fn beyond(from: u64, next: u64) -> Status {
    Details::new(Code::OutOfRange, "EVENTS_NOT_YET_PUBLISHED")
        .with("next_seq", next.to_string())
        .field("from_seq")
        .status(format!(
            "event {from} has not been published: the next is {next}; resubscribe with from_seq <= {next}"
        ))
}

/// A following log reader that rotation outran: the file it was reading
/// was rotated away twice, so output after it may be lost.
pub fn log_overrun() -> Status {
    Details::new(Code::DataLoss, "LOG_ROTATED_PAST_READER").status(
        "the log was rotated more than once while this reader was behind: output after \
         the last entry sent may be lost; read again with tail to continue"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::state::{Op, State};

    fn info(s: &Status) -> tonic_types::ErrorInfo {
        s.get_details_error_info().expect("an ErrorInfo")
    }

    #[test]
    fn codes_reasons_and_metadata() {
        let s = Status::from(ContainerError::NotFound { key: "nope".into() });
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "no such container: nope");
        let i = info(&s);
        assert_eq!(
            (i.reason.as_str(), i.domain.as_str()),
            ("CONTAINER_NOT_FOUND", DOMAIN)
        );
        assert_eq!(i.metadata["key"], "nope");

        let Err(t) = State::Exited.apply(Op::Signal) else {
            panic!("exited cannot be signalled")
        };
        let s = Status::from(ContainerError::transition("c1", t));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "container is exited: cannot signal it (it is not running)"
        );
        let i = info(&s);
        assert_eq!(i.metadata["id"], "c1");
        assert_eq!(i.metadata["state"], "exited");

        let s = Status::from(ContainerError::NameInUse { name: "web".into() });
        assert_eq!(s.code(), Code::AlreadyExists);

        let s = Status::from(ImageError::NoSpace("layer".into()));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(info(&s).reason, "NO_SPACE");
        let s = Status::from(ImageError::Unavailable {
            context: "fetching a layer".into(),
            source: None,
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(info(&s).reason, "REGISTRY_UNAVAILABLE");
    }

    #[test]
    fn a_full_disk_is_resource_exhausted_with_what_was_written() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let s = Status::from(ContainerError::io(
                "saving container c1",
                std::io::Error::from_raw_os_error(errno),
            ));
            assert_eq!(s.code(), Code::ResourceExhausted);
            assert_eq!(info(&s).reason, "NO_SPACE");
            assert!(s
                .message()
                .starts_with("file system full: saving container c1"));
            let s = Status::from(ImageError::Io {
                context: "writing layer /x".into(),
                source: std::io::Error::from_raw_os_error(errno),
            });
            assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
            let s = Status::from(Error::internal(
                "appending to the event log",
                std::io::Error::from_raw_os_error(errno),
            ));
            assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        }
        let s = Status::from(ContainerError::io(
            "x",
            std::io::Error::from_raw_os_error(libc::EIO),
        ));
        assert_eq!(s.code(), Code::Internal);
    }

    #[test]
    fn invalid_input_names_the_field() {
        let s = Status::from(ContainerError::invalid("working_dir", "not absolute"));
        assert_eq!(s.code(), Code::InvalidArgument);
        let br = s.get_details_bad_request().expect("a BadRequest");
        assert_eq!(br.field_violations[0].field, "working_dir");
        assert_eq!(br.field_violations[0].description, "not absolute");
        let s = Status::from(Error::from(crate::signal::parse("SIGNOPE").unwrap_err()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.get_details_bad_request().unwrap().field_violations[0].field,
            "signal"
        );
    }

    #[test]
    fn out_of_range_names_the_oldest_retained_seq() {
        let s = gap(Gap::Retired { oldest: 42 });
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(info(&s).metadata["oldest_seq"], "42");
        assert!(s.message().contains("from_seq >= 42"));
        let s = gap(Gap::Missing { seq: 7 });
        assert_eq!(s.code(), Code::DataLoss);
        assert_eq!(info(&s).metadata["seq"], "7");
    }

    #[test]
    fn volume_errors_have_their_codes_and_reasons() {
        let s = Status::from(VolumeError::InUse {
            name: "db".into(),
            users: vec!["0123456789ab".into()],
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(info(&s).reason, "VOLUME_IN_USE");
        assert_eq!(info(&s).metadata["containers"], "0123456789ab");
        let long = "x".repeat(1000);
        let s = Status::from(VolumeError::InvalidName { name: long.clone() });
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().len() < 300);
        assert!(info(&s).metadata["name"].len() < 100);
        let s = Status::from(VolumeError::NotFound { name: long });
        assert_eq!(s.code(), Code::NotFound);
        let s = Status::from(ContainerError::MountUnsupported("propagation".into()));
        assert_eq!(s.code(), Code::Unimplemented);
        assert_eq!(info(&s).reason, "MOUNT_UNSUPPORTED");
        assert!(s.message().starts_with("not supported yet"));
        let s = Status::from(ContainerError::from(VolumeError::Unsupported("x".into())));
        assert_eq!(s.code(), Code::Unimplemented);
    }
}
