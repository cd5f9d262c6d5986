//! `rename`: a container's new name (Docker prints nothing).

use berth::v1::containers_client::ContainersClient;
use berth::v1::{RenameContainerRequest, RenameContainerResponse};

use super::fan::{ids_verb, Done, IdsOutput};
use crate::cli::RenameArgs;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output;

/// `rename CONTAINER NEW_NAME`: silent on success, as Docker's; the
/// Rename response with `-o json`.
pub async fn rename(f: &Fleet, a: RenameArgs) -> Result<()> {
    let new_name = a.new_name;
    ids_verb(
        f,
        &[a.container],
        "container",
        |ch, id| {
            let new_name = new_name.clone();
            async move {
                let r = ContainersClient::new(ch)
                    .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                    .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                    .rename(RenameContainerRequest { id, new_name })
                    .await?;
                Ok(r.into_inner())
            }
        },
        IdsOutput {
            header: "CONTAINER",
            json: &|d: &Done<RenameContainerResponse>| output::message_json(&d.value),
            text: &|_| String::new(),
        },
    )
    .await?
    .finish()
}
