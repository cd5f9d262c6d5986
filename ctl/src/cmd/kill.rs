//! `kill`: sends a signal to containers.

use berth::v1::{containers_client::ContainersClient, KillContainerRequest};

use super::fan::{ids_verb, IdsOutput};
use crate::cli::KillArgs;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output;

/// The Kill request for one container; `signal` is already validated.
pub fn kill_request(id: &str, signal: &str) -> KillContainerRequest {
    KillContainerRequest {
        id: id.to_string(),
        signal: signal.to_string(),
    }
}

/// `kill`: prints each id as given; the JSON is the request that was
/// carried out (the response is empty).
pub async fn kill(f: &Fleet, args: KillArgs) -> Result<()> {
    let signal = args.signal.as_str();
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let req = kill_request(&id, signal);
            ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .kill(req.clone())
                .await?;
            Ok(req)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as cli;

    #[test]
    fn kill_requests() {
        let Command::Kill(k) = cli(&["kill", "-s", "15", "web"]) else {
            panic!()
        };
        assert_eq!(
            kill_request(&k.ids[0], &k.signal),
            KillContainerRequest {
                id: "web".into(),
                signal: "15".into()
            }
        );
    }
}
