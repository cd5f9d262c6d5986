//! `start`: starts created or exited containers.

use berth::v1::{containers_client::ContainersClient, StartContainerRequest};

use super::fan::{ids_verb, Done, IdsOutput};
use crate::cli::IdsArgs;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output;

/// `start`: prints each id as given (the container with `-o json`).
pub async fn start(f: &Fleet, args: IdsArgs) -> Result<()> {
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let r = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .start(StartContainerRequest { id })
                .await?;
            Ok(r.into_inner().container)
        },
        container_output("CONTAINER"),
    )
    .await?
    .finish()
}

/// Printing for verbs answered with the container (start, pause, unpause,
/// update): its id as given, or the container as JSON.
pub fn container_output(header: &str) -> IdsOutput<'_, Option<berth::v1::Container>> {
    IdsOutput {
        header,
        json: &|d: &Done<Option<berth::v1::Container>>| match &d.value {
            Some(c) => output::message_json(c),
            // An agent that did not send it back: the id is all there is.
            None => Ok(serde_json::json!({ "id": d.id })),
        },
        text: &|d| format!("{}\n", d.id),
    }
}
