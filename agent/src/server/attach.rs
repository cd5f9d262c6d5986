//! Containers.Attach: a client on a container's stdin, stdout and stderr,
//! or its terminal.

use std::pin::Pin;

use berth::v1 as pb;
use tokio_stream::Stream;
use tonic::{Response, Status, Streaming};

use super::containers::ContainersService;

/// The responses of one Attach call.
pub type AttachStream = Pin<Box<dyn Stream<Item = Result<pb::AttachResponse, Status>> + Send>>;

/// Attach (not supported yet).
pub async fn attach(
    _svc: &ContainersService,
    _requests: Streaming<pb::AttachRequest>,
) -> Result<Response<AttachStream>, Status> {
    Err(Status::unimplemented("not supported yet: attach"))
}
