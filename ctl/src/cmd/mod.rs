//! The verbs, one file each. Every verb runs on a [`Fleet`]: a single
//! agent is a fleet of one and prints exactly as berthctl always printed one
//! agent's results; many hosts get a HOST column (a `host` field in JSON)
//! and the fan-out rules of [`fan`].

mod attach;
mod build;
mod build_context;
mod cp;
mod cp_local;
mod cp_rules;
mod create;
mod events;
mod exec;
mod fan;
mod image_history;
mod image_import;
mod image_inspect;
mod image_ls;
mod image_rm;
mod image_save;
mod image_tag;
mod info;
mod inspect;
mod kill;
mod login;
mod logs;
mod network;
mod pause;
mod port;
mod prune;
mod ps;
mod pull;
mod push;
mod rename;
mod restart;
mod rm;
mod rollout;
mod rollout_host;
mod run;
mod run_attached;
mod run_placed;
mod signals;
mod spec;
mod start;
mod stats;
mod stop;
mod stream_io;
mod top;
mod update;
mod version;
mod volume;
mod wait;

pub use build::BuildArgs;
pub use pull::{LoginArgs, LogoutArgs, PullArgs};
pub use push::PushArgs;
pub use volume::VolumeCommand;

use crate::cli::{Command, ContainerCommand, ImageCommand, SystemCommand};
use crate::error::{Error, Result};
use crate::fleet::Fleet;

/// Runs `command` on the targeted hosts.
pub async fn dispatch(f: &Fleet, command: Command) -> Result<()> {
    match command {
        Command::Run(a) => run::run(f, a).await,
        Command::Create(a) => create::create(f, a).await,
        Command::Start(a) => start::start(f, a).await,
        Command::Stop(a) => stop::stop(f, a).await,
        Command::Restart(a) => restart::restart(f, a).await,
        Command::Kill(a) => kill::kill(f, a).await,
        Command::Rm(a) => rm::rm(f, a).await,
        Command::Wait(a) => wait::wait(f, a).await,
        Command::Pause(a) => pause::pause(f, a).await,
        Command::Unpause(a) => pause::unpause(f, a).await,
        Command::Update(a) => update::update(f, a).await,
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            rename::rename(f, a).await
        }
        Command::Container(ContainerCommand::Prune(a)) => prune::container_prune(f, a).await,
        Command::Image(ImageCommand::Prune(a)) => prune::image_prune(f, a).await,
        Command::System(SystemCommand::Prune(a)) => prune::system_prune(f, a).await,
        Command::Inspect(a) => inspect::inspect(f, a).await,
        Command::Ps(a) => ps::ps(f, a).await,
        Command::Logs(a) => logs::logs(f, a).await,
        Command::Events(a) => events::events(f, a).await,
        Command::Stats(a) => stats::stats(f, a).await,
        Command::Top(a) => top::top(f, a).await,
        Command::Port(a) => port::port(f, a).await,
        Command::Network(c) => network::network(f, c).await,
        Command::Exec(a) => exec::exec(one_host(f, "exec")?, a).await,
        Command::Cp(a) => cp::cp(one_host(f, "cp")?, a).await,
        Command::Build(a) => build::build(one_host(f, "build")?, f.json(), a).await,
        Command::Attach(a) => attach::attach(one_host(f, "attach")?, a).await,
        Command::Image(ImageCommand::Import(a)) => image_import::import(f, a).await,
        Command::Image(ImageCommand::Ls(a)) | Command::Images(a) => image_ls::ls(f, a).await,
        Command::Image(ImageCommand::Rm(a)) => image_rm::rm(f, a).await,
        Command::Image(ImageCommand::Inspect(a)) => image_inspect::inspect(f, a).await,
        Command::Image(ImageCommand::Tag(a)) | Command::Tag(a) => image_tag::tag(f, a).await,
        Command::Image(ImageCommand::History(a)) | Command::History(a) => {
            image_history::history(f, a).await
        }
        Command::Image(ImageCommand::Save(a)) | Command::Save(a) => {
            image_save::save(one_host(f, "save")?, a).await
        }
        Command::Rollout(a) => rollout::rollout(f, a).await,
        Command::Pull(a) if f.is_single() => pull::pull(f.first()?, f.json(), a).await,
        Command::Pull(a) => pull::pull_fleet(f, a).await,
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) if f.is_single() => {
            push::push(f.first()?, f.json(), a).await
        }
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => push::push_fleet(f, a).await,
        Command::Login(a) => login::login(one_host(f, "login")?, f.json(), a).await,
        Command::Logout(a) => login::logout(one_host(f, "logout")?, f.json(), a).await,
        Command::Volume(c) => volume::volume(one_host(f, "volume")?, f.json(), c).await,
        Command::Info => info::info(f).await,
        Command::TopHosts => info::hosts(f, true).await,
        Command::Version => version::version(f).await,
        // Made locally, before any host is resolved (main.rs).
        Command::Certs(_) | Command::Completion(_) | Command::Man(_) => Ok(()),
    }
}

/// The one targeted host of a verb that works on one host at a time.
fn one_host<'a>(f: &'a Fleet, verb: &str) -> Result<&'a crate::fleet::Member> {
    if !f.is_single() {
        return Err(Error::Message(format!(
            "{verb} works on one host at a time for now: use -H HOST"
        )));
    }
    Ok(f.first()?)
}

/// Parses a command line (without the program name) for unit tests.
#[cfg(test)]
pub fn parse_command(args: &[&str]) -> Command {
    use clap::Parser;
    match crate::cli::Cli::try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())) {
        Ok(c) => c.command.0,
        Err(e) => panic!("{args:?}: {e}"),
    }
}
