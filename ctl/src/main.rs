//! berthctl, the command line of the berth container agent.
//!
//! Exit status: 0 on success; 1 on an error, reported as one line
//! `berthctl: <message>` on stderr; 125 when the agent cannot be reached;
//! 2 for an invalid command line; and for `run` (attached) and `wait`, the
//! container's own exit code.

mod certs;
mod cli;
mod cmd;
mod completion;
mod ctx;
mod detach_keys;
mod error;
#[cfg(test)]
mod fake;
mod fleet;
mod inventory;
mod output;
mod parse;
mod place;
mod security;
mod term;

use std::process::ExitCode;

/// Most bytes of a response berthctl decodes: berthd's largest (its
/// `server::oversize::MAX_RESPONSE_BYTES`), as List grows with the number
/// of containers.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Most bytes of a request berthctl sends: what berthd decodes (its
/// `server::oversize::MAX_REQUEST_BYTES`), so a too-large request fails
/// here with a clear error instead of on the wire.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

use crate::cli::{CertsCommand, Cli, Command};
use crate::ctx::report;
use crate::error::Result;

fn main() -> ExitCode {
    let cli = cli::parse();
    // One thread is plenty for a client and keeps start-up cheap.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            // Exit statuses are 0..=255; a container's code is already in range.
            ExitCode::from(e.exit_code().rem_euclid(256) as u8)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    // Certificates, completions and man pages are made locally: no agent,
    // no inventory.
    match cli.command.0 {
        Command::Certs(CertsCommand::Init(a)) => return certs::cmd_init(a),
        Command::Certs(CertsCommand::Issue(a)) => return certs::cmd_issue(a),
        Command::Completion(a) => return completion::completion(a),
        Command::Man(a) => return completion::man(a),
        _ => {}
    }
    // One agent or many, every verb takes the same path.
    let fleet = fleet::resolve(&cli)?;
    cmd::dispatch(&fleet, cli.command.0).await
}
