//! `pause` and `unpause`: freeze and thaw containers.

use berth::v1::{
    containers_client::ContainersClient, PauseContainerRequest, ResumeContainerRequest,
};

use super::fan::ids_verb;
use super::start::container_output;
use crate::cli::IdsArgs;
use crate::error::Result;
use crate::fleet::Fleet;

/// `pause`: prints each id as given (the container with `-o json`).
pub async fn pause(f: &Fleet, args: IdsArgs) -> Result<()> {
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let r = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .pause(PauseContainerRequest { id })
                .await?;
            Ok(r.into_inner().container)
        },
        container_output("CONTAINER"),
    )
    .await?
    .finish()
}

/// `unpause`: prints each id as given (the container with `-o json`).
pub async fn unpause(f: &Fleet, args: IdsArgs) -> Result<()> {
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let r = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .resume(ResumeContainerRequest { id })
                .await?;
            Ok(r.into_inner().container)
        },
        container_output("CONTAINER"),
    )
    .await?
    .finish()
}
