//! `create`: a container that is not started yet.

use std::rc::Rc;

use berth::v1::{containers_client::ContainersClient, Container, CreateContainerRequest};

use super::fan::per_host;
use super::spec::{env_lookup, spec_from_args};
use crate::cli::CreateArgs;
use crate::ctx::missing;
use crate::error::Result;
use crate::fleet::{host_table, with_host, Fleet, Member};
use crate::output::{self, print_json_line};

/// `create` on every targeted host: prints the new container's id (on
/// many hosts, a `HOST CONTAINER ID NAME` table).
pub async fn create(f: &Fleet, args: CreateArgs) -> Result<()> {
    let spec = spec_from_args(&args.spec, args.rm, env_lookup)?;
    let results = f
        .each(|_, ch| {
            let spec = spec.clone();
            async move {
                ContainersClient::new(ch)
                    .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                    .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                    .create(CreateContainerRequest { spec: Some(spec) })
                    .await?
                    .into_inner()
                    .container
                    .ok_or_else(|| missing("container"))
            }
        })
        .await;
    per_host(f, results, |ok| print_containers(f, ok))
}

/// Prints created or started containers: the full id of each (one agent),
/// a `HOST CONTAINER ID NAME` table (many), or the containers as JSON.
pub fn print_containers(f: &Fleet, ok: &[(Rc<Member>, Container)]) -> Result<()> {
    if f.json() {
        for (m, c) in ok {
            let v = output::message_json(c)?;
            print_json_line(&if f.is_single() {
                v
            } else {
                with_host(&m.name, v)
            });
        }
    } else if f.is_single() {
        for (_, c) in ok {
            println!("{}", c.id);
        }
    } else {
        let rows = ok
            .iter()
            .map(|(m, c)| (m.name.clone(), vec![c.id.clone(), c.name.clone()]))
            .collect();
        print!("{}", host_table(&["CONTAINER ID", "NAME"], rows));
    }
    Ok(())
}
