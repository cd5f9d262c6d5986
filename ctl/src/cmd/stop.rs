//! `stop`: the stop signal, then SIGKILL after a timeout.

use berth::v1::{containers_client::ContainersClient, StopContainerRequest};

use super::fan::{ids_verb, IdsOutput};
use crate::cli::StopArgs;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::output;

/// The Stop request for one container.
pub fn stop_request(id: &str, time: Option<u32>) -> StopContainerRequest {
    StopContainerRequest {
        id: id.to_string(),
        timeout_seconds: time,
    }
}

/// `stop`: prints each id as given; the JSON (the Stop response) also says
/// whether SIGKILL was needed.
pub async fn stop(f: &Fleet, args: StopArgs) -> Result<()> {
    let time = args.time;
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let r = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .stop(stop_request(&id, time))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as cli;

    #[test]
    fn stop_requests() {
        let Command::Stop(s) = cli(&["stop", "-t", "0", "web"]) else {
            panic!()
        };
        assert_eq!(
            stop_request(&s.ids[0], s.time),
            StopContainerRequest {
                id: "web".into(),
                timeout_seconds: Some(0)
            }
        );
        let Command::Stop(s) = cli(&["stop", "web"]) else {
            panic!()
        };
        assert_eq!(stop_request(&s.ids[0], s.time).timeout_seconds, None);
    }

    #[tokio::test]
    async fn multi_id_commands_go_on_after_a_failure() {
        let fake = crate::fake::Fake::default();
        let f = fake.serve().await;
        let Command::Stop(a) = cli(&["stop", "-t", "1", "missing", "fake"]) else {
            panic!()
        };
        let r = stop(&f, a).await;
        assert!(matches!(r, Err(crate::error::Error::Exit(1))), "{r:?}");
        assert_eq!(fake.calls(), ["stop missing", "stop fake"]);
    }
}
