//! `start`: starts created or exited containers.

use berth::v1::{containers_client::ContainersClient, AttachOpen, StartContainerRequest};

use super::attach::{self as attaching, Session};
use super::fan::{ids_verb, Done, IdsOutput};
use super::stream_io::local_size;
use crate::cli::StartArgs;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::output;

/// `start`: prints each id as given (the container with `-o json`); with
/// `-a` or `-i`, attached to the one container.
pub async fn start(f: &Fleet, args: StartArgs) -> Result<()> {
    if args.attach || args.interactive {
        return start_attached(f, args).await;
    }
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let r = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .start(StartContainerRequest { id })
                .await?;
            Ok(r.into_inner().container)
        },
        container_output("CONTAINER"),
    )
    .await?
    .finish()
}

/// `start -a`/`-i`: Attach with `start`, so no output is missed, then as
/// `attach` (the exit code is the container's).
async fn start_attached(f: &Fleet, args: StartArgs) -> Result<()> {
    let [id] = args.ids.as_slice() else {
        return Err(Error::Message(
            "start -a/-i attaches to one container at a time".into(),
        ));
    };
    if !f.is_single() {
        return Err(Error::Message(
            "start -a/-i works on one host at a time: use -H HOST".into(),
        ));
    }
    let mut client = attaching::client(f.first()?).await?;
    let c = attaching::inspect(&mut client, id).await?;
    let s = Session {
        open: AttachOpen {
            id: c.id.clone(),
            stdin: attaching::stdin_for(&c, args.interactive),
            start: true,
            terminal_size: local_size(),
        },
        detach_keys: args.detach_keys,
        sig_proxy: true,
        escalate: false,
        shown: super::stream_io::Shown::ALL,
    };
    attaching::attached(client, s).await
}

/// Printing for verbs answered with the container (start, pause, unpause,
/// update): its id as given, or the container as JSON.
pub fn container_output(header: &str) -> IdsOutput<'_, Option<berth::v1::Container>> {
    IdsOutput {
        header,
        json: &|d: &Done<Option<berth::v1::Container>>| match &d.value {
            Some(c) => output::message_json(c),
            // An agent that did not send it back: the id is all there is.
            None => Ok(serde_json::json!({ "id": d.id })),
        },
        text: &|d| format!("{}\n", d.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::cmd::parse_command as command;
    use crate::fake::Fake;

    #[tokio::test]
    async fn start_a_attaches_with_start_and_exits_with_the_code() {
        let fake = Fake::default();
        fake.0.lock().map(|mut s| s.exit_code = 2).ok();
        let f = fake.serve().await;
        let Command::Start(a) = command(&["start", "-a", "fake"]) else {
            panic!()
        };
        let r = start(&f, a).await;
        assert!(matches!(r, Err(Error::Exit(2))), "{r:?}");
        // -i on a container without open_stdin attaches no stdin.
        let Command::Start(a) = command(&["start", "-ai", "fake"]) else {
            panic!()
        };
        let r = start(&f, a).await;
        assert!(matches!(r, Err(Error::Exit(2))), "{r:?}");
        let attach = format!("attach {} stdin=false start=true", crate::fake::ID);
        assert_eq!(
            fake.calls(),
            [
                "inspect fake".to_string(),
                attach.clone(),
                "inspect fake".to_string(),
                attach
            ]
        );
        let Command::Start(a) = command(&["start", "-a", "one", "two"]) else {
            panic!()
        };
        let r = start(&f, a).await;
        assert!(matches!(r, Err(Error::Message(ref m)) if m.contains("one container")));
    }
}
