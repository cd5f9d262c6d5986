//! `rm`: removes containers.

use berth::v1::{containers_client::ContainersClient, RemoveContainerRequest};

use super::fan::{ids_verb, IdsOutput};
use crate::cli::RmArgs;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output;

/// `rm`: prints each id as given (the Remove response with `-o json`).
pub async fn rm(f: &Fleet, args: RmArgs) -> Result<()> {
    let (force, remove_volumes) = (args.force, args.volumes);
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let r = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .remove(RemoveContainerRequest {
                    id,
                    force,
                    remove_volumes,
                })
                .await?;
            Ok(r.into_inner())
        },
        IdsOutput {
            header: "CONTAINER",
            json: &|d| output::message_json(&d.value),
            text: &|d| format!("{}\n", d.id),
        },
    )
    .await?
    .finish()
}
