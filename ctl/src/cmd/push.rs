//! `push` (`image push`): the agent pushes a stored image to a registry;
//! berthctl shows the progress as `pull` does.

use berth::v1::{
    images_client::ImagesClient, PushImageProgress, PushImageRequest, RegistryCredentials,
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::fan::{per_host, prefix_width};
use super::pull::{credentials, registry_error, Display};
use crate::error::{Error, Result};
use crate::fleet::{with_host, Fleet, Member};
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

/// One host's push, shown on `display`: the last message (the manifest
/// digest the registry now has).
async fn push_on(
    channel: Channel,
    request: PushImageRequest,
    display: &mut Display,
    json: bool,
) -> Result<PushImageProgress> {
    let mut stream = ImagesClient::new(channel)
        .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
        .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
        .push(request)
        .await
        .map_err(registry_error)?
        .into_inner();
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
    last.ok_or_else(|| Error::Message("the push ended before the manifest".into()))
}

fn request(reference: &str, credentials: Option<RegistryCredentials>) -> PushImageRequest {
    PushImageRequest {
        image: reference.to_string(),
        target: String::new(),
        credentials,
    }
}

/// `push REF`: pushes through the agent, showing per-layer progress; ends
/// with the manifest digest the registry now has.
pub async fn push(m: &Member, json: bool, args: PushArgs) -> Result<()> {
    let credentials = credentials(args.username, args.password_stdin).await?;
    let mut display = Display::new(json);
    let last = push_on(
        m.channel().await?,
        request(&args.reference, credentials),
        &mut display,
        json,
    )
    .await?;
    if json {
        print_json_line(&output::message_json(&last)?);
    } else {
        println!("Pushed: {} ({})", last.reference, last.manifest_digest);
    }
    Ok(())
}

/// `push REF` on many hosts: each agent pushes its own image of that name,
/// all at once (at most `--parallel`), each layer's changes as lines that
/// start with the host, then one `Pushed` line per host; hosts that failed
/// are reported after, as `pull` does. No per-host timeout: a push takes
/// as long as the registry.
pub async fn push_fleet(f: &Fleet, args: PushArgs) -> Result<()> {
    let credentials = credentials(args.username.clone(), args.password_stdin).await?;
    let width = prefix_width(f);
    let json = f.json();
    let results = f
        .each_untimed(|m, ch| {
            let request = request(&args.reference, credentials.clone());
            async move {
                let mut display = Display::for_host(json, &m.name, width);
                push_on(ch, request, &mut display, json).await
            }
        })
        .await;
    per_host(f, results, |ok| {
        for (m, last) in ok {
            if json {
                print_json_line(&with_host(&m.name, output::message_json(last)?));
            } else {
                println!(
                    "{:<width$} | Pushed: {} ({})",
                    m.name, last.reference, last.manifest_digest
                );
            }
        }
        Ok(())
    })
}
