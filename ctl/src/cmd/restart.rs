//! `restart`: `stop` (when running), then `start`, per container.

use berth::v1::{containers_client::ContainersClient, StartContainerRequest};

use super::fan::ids_verb;
use super::start::container_output;
use super::stop::stop_request;
use crate::cli::StopArgs;
use crate::error::Result;
use crate::fleet::Fleet;

/// `restart`: each container is stopped as `stop -t` would (the agent's
/// Stop is a no-op on one that is not running) and started again; prints
/// each id as given (the container with `-o json`). A container that could
/// not be stopped is not started, and the others go on.
pub async fn restart(f: &Fleet, args: StopArgs) -> Result<()> {
    let time = args.time;
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let mut c = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES);
            c.stop(stop_request(&id, time)).await?;
            let r = c.start(StartContainerRequest { id }).await?;
            Ok(r.into_inner().container)
        },
        container_output("CONTAINER"),
    )
    .await?
    .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as cli;

    #[tokio::test]
    async fn restart_stops_then_starts_and_goes_on_after_a_failure() {
        let fake = crate::fake::Fake::default();
        let f = fake.serve().await;
        let Command::Restart(a) = cli(&["restart", "-t", "1", "missing", "fake"]) else {
            panic!()
        };
        let r = restart(&f, a).await;
        assert!(matches!(r, Err(crate::error::Error::Exit(1))), "{r:?}");
        assert_eq!(fake.calls(), ["stop missing", "stop fake", "start fake"]);
    }
}
