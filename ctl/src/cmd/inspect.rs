//! `inspect`: containers in detail.

use berth::v1::{containers_client::ContainersClient, InspectContainerRequest};

use super::fan::{fan_ids, Outcome};
use crate::cli::InspectArgs;
use crate::ctx::missing;
use crate::error::Result;
use crate::fleet::{with_host, with_host_field, Fleet};
use crate::output::{self, format};

/// `inspect`: the containers found as one pretty JSON array, as `docker
/// inspect` (one object per line with `-o json`), each object with its
/// `host` on many hosts; exit status 1 if any was not found.
pub async fn inspect(f: &Fleet, args: InspectArgs) -> Result<()> {
    let format = args
        .format
        .as_deref()
        .map(format::parse)
        .transpose()?
        .flatten();
    let outcome = fan_ids(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .inspect(InspectContainerRequest { id })
                .await?
                .into_inner()
                .container
                .ok_or_else(|| missing("container"))
        },
        |_| Ok(()),
    )
    .await?;
    print_found(f, outcome, format.as_ref(), output::message_json)
}

/// Prints what an inspect found (as `--format` says, if given), after
/// the errors of one agent and before those of many hosts.
pub fn print_found<T>(
    f: &Fleet,
    outcome: Outcome<T>,
    format: Option<&format::Format>,
    json: impl Fn(&T) -> Result<serde_json::Value>,
) -> Result<()> {
    let mut list = Vec::with_capacity(outcome.done.len());
    for d in &outcome.done {
        let v = json(&d.value)?;
        list.push(match (format.is_some(), f.is_single()) {
            (false, true) => v,
            (false, false) => with_host(&d.host, v),
            (true, true) => format::pascal(v),
            (true, false) => with_host_field(&d.host, format::pascal(v)),
        });
    }
    match format {
        Some(format) => print!("{}", format.render(&list, &[("Host", "HOST")])?),
        None => output::print_inspected(list, f.json()),
    }
    outcome.finish()
}
