//! `image rm`: untags images, and deletes those left without a reference.

use berth::v1::{images_client::ImagesClient, RemoveImageRequest, RemoveImageResponse};

use super::fan::{ids_verb, Done, IdsOutput};
use crate::cli::ImageRmArgs;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output;

/// `image rm`: "Untagged: ref" per removed reference, "Deleted: id" when
/// the image itself went (the Remove response with `-o json`).
pub async fn rm(f: &Fleet, args: ImageRmArgs) -> Result<()> {
    let force = args.force;
    ids_verb(
        f,
        &args.images,
        "image",
        |ch, image| async move {
            let r = ImagesClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .remove(RemoveImageRequest { image, force })
                .await?;
            Ok(r.into_inner())
        },
        IdsOutput {
            header: "IMAGE",
            json: &|d: &Done<RemoveImageResponse>| output::message_json(&d.value),
            text: &|d| {
                let mut s = String::new();
                for u in &d.value.untagged {
                    s.push_str(&format!("Untagged: {u}\n"));
                }
                if !d.value.deleted.is_empty() {
                    s.push_str(&format!("Deleted: {}\n", d.value.deleted));
                }
                s
            },
        },
    )
    .await?
    .finish()
}
