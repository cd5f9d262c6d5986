//! `image tag` (`tag`): gives an image one more reference.

use berth::v1::{images_client::ImagesClient, Image, TagImageRequest};

use super::fan::{ids_verb, Done, IdsOutput};
use crate::cli::ImageTagArgs;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output;

/// `image tag SOURCE TARGET`: silent on success, as `docker tag` (the
/// image, with its references, with `-o json`); on many hosts, each host
/// tags its own image of that name.
pub async fn tag(f: &Fleet, args: ImageTagArgs) -> Result<()> {
    let target = args.target;
    ids_verb(
        f,
        std::slice::from_ref(&args.source),
        "image",
        |ch, source| {
            let target = target.clone();
            async move {
                let r = ImagesClient::new(ch)
                    .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                    .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                    .tag(TagImageRequest { source, target })
                    .await?;
                Ok(r.into_inner().image.unwrap_or_default())
            }
        },
        IdsOutput {
            header: "IMAGE",
            json: &|d: &Done<Image>| output::message_json(&d.value),
            text: &|_| String::new(),
        },
    )
    .await?
    .finish()
}
