//! `push` (`image push`): the agent pushes a stored image to a registry;
//! berthctl shows the progress as `pull` does.

use berth::v1::{images_client::ImagesClient, PushImageRequest};
use tokio_stream::StreamExt;

use super::pull::{credentials, registry_error, Display};
use crate::error::{Error, Result};
use crate::fleet::Member;
use crate::output::{self, print_json_line};

// `push` and `image push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Image to push, by the reference to push it to, e.g.
    /// registry:5000/team/app:v1 (`tag` gives an image such a name).
    pub reference: String,
    /// User name for this push only (otherwise the agent uses what `login`
    /// stored for the registry, or none).
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

/// `push REF`: pushes through the agent, showing per-layer progress; ends
/// with the manifest digest the registry now has.
pub async fn push(m: &Member, json: bool, args: PushArgs) -> Result<()> {
    let credentials = credentials(args.username, args.password_stdin).await?;
    let mut stream = ImagesClient::new(m.channel().await?)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
        .push(PushImageRequest {
            image: args.reference.clone(),
            target: String::new(),
            credentials,
        })
        .await
        .map_err(registry_error)?
        .into_inner();
    let mut display = Display::new(json);
    let mut announced = false;
    let mut last = None;
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|e| {
            display.finish();
            registry_error(e)
        })?;
        if !announced && !msg.reference.is_empty() && !json {
            announced = true;
            display.println(format!(
                "The push refers to {} ({})",
                msg.reference, msg.manifest_digest
            ));
        }
        display.update(&msg.layers)?;
        if msg.done {
            last = Some(msg);
        }
    }
    display.finish();
    let last = last.ok_or_else(|| Error::Message("the push ended before the manifest".into()))?;
    if json {
        print_json_line(&output::message_json(&last)?);
    } else {
        println!("Pushed: {} ({})", last.reference, last.manifest_digest);
    }
    Ok(())
}
