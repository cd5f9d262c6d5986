//! `image inspect`: images in detail.

use berth::v1::{images_client::ImagesClient, InspectImageRequest};

use super::fan::fan_ids;
use super::inspect::print_found;
use crate::cli::ImageInspectArgs;
use crate::ctx::missing;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output::{self, format};

/// `image inspect`: a pretty JSON array (one object per line with `-o
/// json`), each object with its `host` on many hosts.
pub async fn inspect(f: &Fleet, args: ImageInspectArgs) -> Result<()> {
    let format = args
        .format
        .as_deref()
        .map(format::parse)
        .transpose()?
        .flatten();
    let outcome = fan_ids(
        f,
        &args.images,
        "image",
        |ch, image| async move {
            ImagesClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .inspect(InspectImageRequest { image })
                .await?
                .into_inner()
                .image
                .ok_or_else(|| missing("image"))
        },
        |_| Ok(()),
    )
    .await?;
    print_found(f, outcome, format.as_ref(), output::message_json)
}
