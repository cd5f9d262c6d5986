//! `wait`: waits for containers to exit.

use berth::v1::{containers_client::ContainersClient, WaitContainerRequest};

use super::fan::fan_ids;
use crate::cli::IdsArgs;
use crate::ctx::missing;
use crate::error::{Error, Result};
use crate::fleet::{host_table, with_host, Fleet};
use crate::output::{self, print_json_line};

/// `wait`: prints each exit code (the Wait response with `-o json`). One
/// agent: exits with the last container's code; many hosts: a `HOST
/// CONTAINER EXIT CODE` table.
pub async fn wait(f: &Fleet, args: IdsArgs) -> Result<()> {
    let json = f.json();
    let outcome = fan_ids(
        f,
        &args.ids,
        "container",
        |ch, id| async move {
            let r = ContainersClient::new(ch)
                .max_decoding_message_size(crate::MAX_RESPONSE_BYTES)
                .max_encoding_message_size(crate::MAX_REQUEST_BYTES)
                .wait(WaitContainerRequest {
                    id,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let code = r
                .exit
                .as_ref()
                .ok_or_else(|| missing("exit status"))?
                .exit_code;
            Ok((code, r))
        },
        |d| {
            if json {
                print_json_line(&output::message_json(&d.value.1)?);
            } else {
                println!("{}", d.value.0);
            }
            Ok(())
        },
    )
    .await?;
    if f.is_single() {
        let last = outcome.done.last().map(|d| d.value.0);
        outcome.finish()?;
        return match last {
            Some(0) | None => Ok(()),
            Some(code) => Err(Error::Exit(code)),
        };
    }
    if json {
        for d in &outcome.done {
            print_json_line(&with_host(&d.host, output::message_json(&d.value.1)?));
        }
    } else {
        let rows = outcome
            .done
            .iter()
            .map(|d| (d.host.clone(), vec![d.id.clone(), d.value.0.to_string()]))
            .collect();
        print!("{}", host_table(&["CONTAINER", "EXIT CODE"], rows));
    }
    outcome.finish()
}
