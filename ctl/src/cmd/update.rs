//! `update`: changes limits and the restart policy of containers, live.

use berth::v1::{containers_client::ContainersClient, Resources, UpdateContainerRequest};

use super::fan::ids_verb;
use super::start::container_output;
use crate::cli::UpdateArgs;
use crate::error::{Error, Result};
use crate::fleet::Fleet;

/// `update`: prints each id as given (the container with `-o json`).
pub async fn update(f: &Fleet, args: UpdateArgs) -> Result<()> {
    let resources = Resources {
        memory_bytes: args.memory.unwrap_or(0),
        memory_swap_bytes: args.memory_swap.unwrap_or(0),
        nano_cpus: args.cpus.unwrap_or(0),
        cpu_shares: args.cpu_shares.unwrap_or(0),
        pids_limit: args.pids_limit.unwrap_or(0),
        cpuset_cpus: args.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: args.cpuset_mems.clone().unwrap_or_default(),
    };
    let resources = (resources != Resources::default()).then_some(resources);
    if resources.is_none() && args.restart.is_none() {
        return Err(Error::Message(
            "nothing to update: give a limit (--memory, --cpus, ...) or --restart".into(),
        ));
    }
    let restart_policy = args.restart;
    let resources = &resources;
    ids_verb(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let req = UpdateContainerRequest {
                id,
                resources: resources.clone(),
                restart_policy,
            };
            let r = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .update(req)
                .await?;
            Ok(r.into_inner().container)
        },
        container_output("CONTAINER"),
    )
    .await?
    .finish()
}
