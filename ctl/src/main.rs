//! berthctl, the command line of the berth container agent.
//!
//! Exit status: 0 on success; 1 on an error, reported as one line
//! `berthctl: <message>` on stderr; 125 when the agent cannot be reached;
//! 2 for an invalid command line; and for `run` (attached) and `wait`, the
//! container's own exit code.

mod cli;
mod container;
mod ctx;
mod error;
mod events;
#[cfg(test)]
mod fake;
mod image;
mod info;
mod output;
mod parse;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ImageCommand};
use crate::ctx::{report, Ctx};
use crate::error::Result;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let ctx = Ctx {
        host: cli.host,
        output: cli.output,
    };
    match cli.command {
        Command::Run(a) => container::run(&ctx, a).await,
        Command::Create(a) => container::create(&ctx, a).await,
        Command::Start(a) => container::start(&ctx, a).await,
        Command::Stop(a) => container::stop(&ctx, a).await,
        Command::Kill(a) => container::kill(&ctx, a).await,
        Command::Rm(a) => container::rm(&ctx, a).await,
        Command::Wait(a) => container::wait(&ctx, a).await,
        Command::Inspect(a) => container::inspect(&ctx, a).await,
        Command::Ps(a) => container::ps(&ctx, a).await,
        Command::Logs(a) => container::logs(&ctx, a).await,
        Command::Events(a) => events::events(&ctx, a).await,
        Command::Image(ImageCommand::Import(a)) => image::import(&ctx, a).await,
        Command::Image(ImageCommand::Ls) | Command::Images => image::ls(&ctx).await,
        Command::Image(ImageCommand::Rm(a)) => image::rm(&ctx, a).await,
        Command::Image(ImageCommand::Inspect(a)) => image::inspect(&ctx, a).await,
        Command::Pull(a) => image::pull(&ctx, a).await,
        Command::Login(a) => image::login(&ctx, a).await,
        Command::Logout(a) => image::logout(&ctx, a).await,
        Command::Info => info::info(&ctx).await,
        Command::Version => info::version(&ctx).await,
    }
}
