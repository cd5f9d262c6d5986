//! berthctl, the command line of the berth container agent.
//!
//! Exit status: 0 on success; 1 on an error, reported as one line
//! `berthctl: <message>` on stderr; 125 when the agent cannot be reached;
//! 2 for an invalid command line; and for `run` (attached) and `wait`, the
//! container's own exit code.

mod certs;
mod cli;
mod container;
mod ctx;
mod error;
mod events;
#[cfg(test)]
mod fake;
mod fleet;
mod fleet_cmd;
mod fleet_events;
mod image;
mod info;
mod inventory;
mod output;
mod parse;
mod place;

use std::process::ExitCode;

use crate::cli::{CertsCommand, Cli, Command, ImageCommand};
use crate::ctx::{report, Ctx};
use crate::error::Result;
use crate::fleet::{Fleet, Mode};

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
    // Certificates are made locally: no agent, no inventory.
    if let Command::Certs(c) = cli.command.0 {
        return match c {
            CertsCommand::Init(a) => certs::cmd_init(a),
            CertsCommand::Issue(a) => certs::cmd_issue(a),
        };
    }
    let (parallel, timeout) = (cli.parallel.max(1), cli.host_timeout);
    match fleet::resolve(&cli)? {
        Mode::Single(ctx) => match cli.command.0 {
            // Commands that only make sense over hosts work on one too.
            Command::TopHosts => {
                fleet_cmd::hosts(&Fleet::of_one(&ctx, parallel, timeout)?, true).await
            }
            Command::Run(a) if a.place.is_some() => {
                fleet_cmd::run(&Fleet::of_one(&ctx, parallel, timeout)?, a).await
            }
            command => single(&ctx, command).await,
        },
        Mode::Fleet(f) => on_fleet(&f, cli.command.0).await,
    }
}

/// A command against one agent, exactly as berthctl has always done it.
async fn single(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Run(a) => container::run(ctx, a).await,
        Command::Create(a) => container::create(ctx, a).await,
        Command::Start(a) => container::start(ctx, a).await,
        Command::Stop(a) => container::stop(ctx, a).await,
        Command::Kill(a) => container::kill(ctx, a).await,
        Command::Rm(a) => container::rm(ctx, a).await,
        Command::Wait(a) => container::wait(ctx, a).await,
        Command::Pause(a) => container::pause(ctx, a).await,
        Command::Unpause(a) => container::unpause(ctx, a).await,
        Command::Update(a) => container::update(ctx, a).await,
        Command::Inspect(a) => container::inspect(ctx, a).await,
        Command::Ps(a) => container::ps(ctx, a).await,
        Command::Logs(a) => container::logs(ctx, a).await,
        Command::Events(a) => events::events(ctx, a).await,
        Command::Image(ImageCommand::Import(a)) => image::import(ctx, a).await,
        Command::Image(ImageCommand::Ls) | Command::Images => image::ls(ctx).await,
        Command::Image(ImageCommand::Rm(a)) => image::rm(ctx, a).await,
        Command::Image(ImageCommand::Inspect(a)) => image::inspect(ctx, a).await,
        Command::Pull(a) => image::pull(ctx, a).await,
        Command::Login(a) => image::login(ctx, a).await,
        Command::Logout(a) => image::logout(ctx, a).await,
        Command::Info => info::info(ctx).await,
        Command::Version => info::version(ctx).await,
        Command::TopHosts | Command::Certs(_) => Ok(()),
    }
}

/// A command against every targeted host.
async fn on_fleet(f: &Fleet, command: Command) -> Result<()> {
    match command {
        Command::Run(a) => fleet_cmd::run(f, a).await,
        Command::Create(a) => fleet_cmd::create(f, a).await,
        Command::Start(a) => fleet_cmd::start(f, a).await,
        Command::Stop(a) => fleet_cmd::stop(f, a).await,
        Command::Kill(a) => fleet_cmd::kill(f, a).await,
        Command::Rm(a) => fleet_cmd::rm(f, a).await,
        Command::Wait(a) => fleet_cmd::wait(f, a).await,
        Command::Pause(_)
        | Command::Unpause(_)
        | Command::Update(_)
        | Command::Pull(_)
        | Command::Login(_)
        | Command::Logout(_) => Err(error::Error::Message(
            "pause, unpause, update, pull, login and logout work on one host at a time for now: use -H HOST".into(),
        )),
        Command::Inspect(a) => fleet_cmd::inspect(f, a).await,
        Command::Ps(a) => fleet_cmd::ps(f, a).await,
        Command::Logs(a) => fleet_cmd::logs(f, a).await,
        Command::Events(a) => fleet_events::events(f, a).await,
        Command::Image(ImageCommand::Import(a)) => fleet_cmd::image_import(f, a).await,
        Command::Image(ImageCommand::Ls) | Command::Images => fleet_cmd::image_ls(f).await,
        Command::Image(ImageCommand::Rm(a)) => fleet_cmd::image_rm(f, a).await,
        Command::Image(ImageCommand::Inspect(a)) => fleet_cmd::image_inspect(f, a).await,
        Command::Info => fleet_cmd::hosts(f, false).await,
        Command::TopHosts => fleet_cmd::hosts(f, true).await,
        Command::Version => fleet_cmd::version(f).await,
        Command::Certs(_) => Ok(()),
    }
}
