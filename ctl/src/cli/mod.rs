//! The command line, as clap derive types. Values that have a syntax of their
//! own (sizes, CPUs, labels, signals) are checked here by `parse`, so a typo
//! is a usage error before anything is sent to the agent.

use std::cell::RefCell;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::parse;

mod args;
mod certs;
mod image;
mod network;
mod prune;
mod rollout;
mod unsupported;
pub use args::*;
pub use certs::*;
pub use image::*;
pub use network::*;
pub use prune::*;
pub use rollout::*;

/// The help section of the options that choose the agents a command talks
/// to: every command has them, so they follow the command's own options.
const TARGET_HOSTS: &str = "Target hosts";
/// The help section of the TLS client options.
const TLS: &str = "TLS";

/// berthctl: the command line of the berth container agent.
#[derive(Debug, Parser)]
#[command(name = "berthctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Agent address (a unix socket path, unix:///path, http://host:port or
    /// https://host:port), or inventory host names and addresses separated
    /// by commas [default: /run/berth/berthd.sock].
    #[arg(
        short = 'H',
        long,
        env = "BERTH_HOST",
        global = true, help_heading = TARGET_HOSTS,
        value_name = "HOST[,HOST...]"
    )]
    pub host: Option<String>,
    /// The inventory of hosts (default: $XDG_CONFIG_HOME/berth/hosts.toml,
    /// i.e. ~/.config/berth/hosts.toml).
    #[arg(long, env = "BERTH_INVENTORY", global = true, help_heading = TARGET_HOSTS, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Target every host of the inventory.
    #[arg(long, global = true, help_heading = TARGET_HOSTS)]
    pub all: bool,
    /// Target the inventory hosts of this group (repeatable).
    #[arg(long = "group", global = true, help_heading = TARGET_HOSTS, value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Target only inventory hosts with this label (repeatable; all must match).
    #[arg(long = "selector", global = true, help_heading = TARGET_HOSTS, value_name = "KEY=VALUE", value_parser = parse::label)]
    pub selectors: Vec<(String, String)>,
    /// At most this many hosts are talked to at once.
    #[arg(long, global = true, help_heading = TARGET_HOSTS, default_value_t = 32, value_name = "N")]
    pub parallel: usize,
    /// Give up on a host that has not answered within this time (10s, 1m).
    #[arg(long, global = true, help_heading = TARGET_HOSTS, default_value = "30s", value_parser = parse::duration, value_name = "DURATION")]
    pub host_timeout: Duration,
    /// CA certificate that https:// agents' certificates must chain to (for
    /// addresses not in the inventory).
    #[arg(long, env = "BERTH_TLS_CA", global = true, help_heading = TLS, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (for addresses not in the inventory).
    #[arg(long, env = "BERTH_TLS_CERT", global = true, help_heading = TLS, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Key of --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY", global = true, help_heading = TLS, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Output format: aligned tables for people, or one JSON object per line.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Chosen,
}

/// Parses berthctl's own command line; exits with a usage error (status 2)
/// or the help text as clap does.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    try_parse_from(args.clone()).unwrap_or_else(|e| {
        if let Some(msg) = unsupported_message(&e, &args) {
            eprintln!("berthctl: {msg}");
            std::process::exit(2);
        }
        e.exit()
    })
}

/// "not supported yet: ..." when clap refused a Docker command or option
/// berthctl does not have (see `unsupported`).
pub fn unsupported_message(e: &clap::Error, args: &[OsString]) -> Option<String> {
    let root = with_selection(Selection::Root, <Cli as clap::CommandFactory>::command);
    unsupported::explain(e, subcommand_name(&root, args).as_deref())
}

/// Parses `args` (the program name first) as [`Cli::try_parse_from`] would,
/// but builds only the subcommand that `args` names.
///
/// clap copies every global option (11 here) into every subcommand of a
/// command it parses with, and builds each subcommand's arguments: for
/// berthctl's 30 subcommands that was a quarter of the CPU time of a
/// `berthctl run` (BENCHMARKS.md). The subcommands' arguments are deferred
/// (`#[command(defer = true)]`) and, when `args` name a known subcommand,
/// the command that is parsed holds only that one. Anything else (no
/// subcommand, `help`, a typo, an unknown root option) is parsed with the
/// whole tree, so help, suggestions and errors are clap's own.
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let root = with_selection(Selection::Root, <Cli as clap::CommandFactory>::command);
    let name = subcommand_name(&root, &args);
    save_output_is_a_file(name.as_deref(), &mut args);
    let selection = match name {
        Some(name) => Selection::Named(name),
        None => Selection::All,
    };
    with_selection(selection, || Cli::try_parse_from(args))
}

/// `save -o FILE` (Docker's spelling) names the archive file, where every
/// other command's `-o` is the global output format: after `save` (or
/// `image save`), `-o`/`--output` are rewritten to `--file`, up to `--`.
fn save_output_is_a_file(subcommand: Option<&str>, args: &mut [OsString]) {
    let start = match subcommand {
        Some("save") => args.iter().position(|a| a == "save"),
        Some("image") => args
            .windows(2)
            .position(|w| w[0] == "image" && w[1] == "save")
            .map(|i| i + 1),
        _ => None,
    };
    let Some(start) = start else { return };
    for arg in args.iter_mut().skip(start + 1) {
        let Some(s) = arg.to_str() else { continue };
        if s == "--" {
            break;
        }
        let rewritten = if s == "-o" || s == "--output" {
            "--file".to_string()
        } else if let Some(v) = s.strip_prefix("--output=") {
            format!("--file={v}")
        } else if let Some(v) = s.strip_prefix("-o").filter(|v| !v.is_empty()) {
            format!("--file={}", v.strip_prefix('=').unwrap_or(v))
        } else {
            continue;
        };
        *arg = rewritten.into();
    }
}

/// Which subcommands [`Chosen`] adds to the command being built.
#[derive(Debug, Clone, PartialEq)]
enum Selection {
    /// All of them (what `Cli::command()` gives, e.g. for help).
    All,
    /// None: the root's own options, to find where the subcommand is.
    Root,
    /// Only this one (a name or an alias); all if there is no such one.
    Named(String),
}

thread_local! {
    static SELECTION: RefCell<Selection> = const { RefCell::new(Selection::All) };
}

fn with_selection<R>(selection: Selection, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SELECTION.with(|s| *s.borrow_mut() = Selection::All);
        }
    }
    SELECTION.with(|s| *s.borrow_mut() = selection);
    let _reset = Reset;
    f()
}

/// Every subcommand, on a scratch command; cheap, as their arguments are
/// deferred until a subcommand is built.
fn all_commands() -> clap::Command {
    Command::augment_subcommands(clap::Command::new("berthctl"))
}

/// The first argument of `args` (after the program name) that is neither a
/// root option nor the value of one: the subcommand's name. None when an
/// argument is not a root option that `root` knows (clap reports it), or
/// at `--`.
fn subcommand_name(root: &clap::Command, args: &[OsString]) -> Option<String> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        if arg == "--" {
            return None;
        }
        let takes_value = if let Some(long) = arg.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((name, _)) => (name, true),
                None => (long, false),
            };
            let opt = root.get_arguments().find(|a| {
                a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
            })?;
            opt.get_action().takes_values() && !value
        } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            // A cluster (`-ajson`): flags, then at most one option whose
            // value is the rest of the cluster or the next argument.
            let mut needs_next = false;
            for (i, c) in shorts.char_indices() {
                let opt = root.get_arguments().find(|a| a.get_short() == Some(c))?;
                if opt.get_action().takes_values() {
                    needs_next = i + c.len_utf8() == shorts.len();
                    break;
                }
            }
            needs_next
        } else {
            return Some(arg.to_string());
        };
        // A value that looks like an option may be one to clap: then the
        // line is wrong, and clap with the whole tree says best how (its
        // tips search every subcommand named on the line).
        if takes_value {
            let value = rest.next()?.to_str()?;
            if value.starts_with('-') && value != "-" {
                return None;
            }
        }
    }
    None
}

/// The subcommand of a [`Cli`]; see [`try_parse_from`] for why it is not
/// the [`Command`] enum itself.
#[derive(Debug)]
pub struct Chosen(pub Command);

impl FromArgMatches for Chosen {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Command::from_arg_matches(matches).map(Chosen)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

impl Subcommand for Chosen {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        match SELECTION.with(|s| s.borrow().clone()) {
            Selection::All => Command::augment_subcommands(cmd),
            Selection::Root => cmd,
            Selection::Named(name) => match all_commands().find_subcommand(&name) {
                Some(sub) => cmd.subcommand(sub.clone()),
                None => Command::augment_subcommands(cmd),
            },
        }
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        Command::augment_subcommands_for_update(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        Command::has_subcommand(name)
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns and plain lines.
    Table,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create and start a container, and (unless -d) stream its output and
    /// exit with its exit code.
    #[command(override_usage = "berthctl run [OPTIONS] IMAGE [--] [COMMAND [ARG...]]")]
    Run(RunArgs),
    /// Create a container without starting it; prints its id.
    #[command(override_usage = "berthctl create [OPTIONS] IMAGE [--] [COMMAND [ARG...]]")]
    Create(CreateArgs),
    /// Start one or more created or exited containers (-a/-i: attached,
    /// exiting with its exit code).
    Start(StartArgs),
    /// Stop running containers: the stop signal, then SIGKILL after a timeout.
    Stop(StopArgs),
    /// Restart containers: stop them as `stop` does (if running), then
    /// start them again.
    Restart(StopArgs),
    /// Send a signal to containers.
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Wait for containers to exit; prints their exit codes.
    Wait(IdsArgs),
    /// Freeze all processes of running containers.
    Pause(IdsArgs),
    /// Thaw paused containers.
    #[command(alias = "resume")]
    Unpause(IdsArgs),
    /// Change the limits or restart policy of containers, live.
    Update(UpdateArgs),
    /// Give a container a new name.
    Rename(RenameArgs),
    /// Container commands: prune (remove stopped containers), rename.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// System commands: prune (remove what nothing uses).
    #[command(subcommand)]
    System(SystemCommand),
    /// Show containers in detail, as a JSON array.
    Inspect(InspectArgs),
    /// List containers (running ones unless -a).
    Ps(PsArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// Stream the agent's events.
    Events(EventsArgs),
    /// Live resource usage of containers (CPU, memory, block I/O, pids);
    /// running ones unless -a or named.
    Stats(StatsArgs),
    /// The processes of a container.
    Top(TopArgs),
    /// A container's published ports ("80/tcp -> 0.0.0.0:8080").
    Port(PortArgs),
    /// Run a command in a running container; exits with its exit code.
    Exec(ExecArgs),
    /// Copy files and directories between a container and here, as tar
    /// streams (`CONTAINER:PATH` on one side; `-` is a tar on stdin or
    /// stdout).
    Cp(CpArgs),
    /// Attach this terminal (or stdin and output) to a running container;
    /// exits with its exit code.
    Attach(AttachArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage user-defined networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Give an image one more reference (same as `image tag`).
    Tag(ImageTagArgs),
    /// List images (same as `image ls`).
    Images(ImageLsArgs),
    /// Show how an image was made (same as `image history`).
    History(ImageHistoryArgs),
    /// Save images to a tar archive (same as `image save`).
    Save(ImageSaveArgs),
    /// Replace a service's containers host by host: start the new ones next
    /// to the old, wait until they settle (or pass --health-cmd), then
    /// remove the old; stop at the first host that fails.
    #[command(
        override_usage = "berthctl rollout [OPTIONS] --name NAME IMAGE [--] [COMMAND [ARG...]]"
    )]
    Rollout(RolloutArgs),
    /// Pull an image from a registry (the agent pulls it), showing progress.
    Pull(crate::cmd::PullArgs),
    /// Push an image to a registry (the agent pushes it), showing progress.
    Push(crate::cmd::PushArgs),
    /// Build an image from a Dockerfile: the agent runs each step in its
    /// own containers, with a layer cache (the context directory is sent,
    /// less what its .dockerignore excludes).
    Build(crate::cmd::BuildArgs),
    /// Manage volumes (one host at a time).
    #[command(subcommand)]
    Volume(crate::cmd::VolumeCommand),
    /// Check and store registry credentials on the agent's host.
    Login(crate::cmd::LoginArgs),
    /// Forget the registry credentials stored on the agent's host.
    Logout(crate::cmd::LogoutArgs),
    /// Show facts about the agent and its host; for many hosts, one line
    /// each: health, version, latency, cgroup version, capacity and load.
    Info,
    /// Targeted hosts, least loaded first: health, latency, capacity, load.
    TopHosts,
    /// Make a CA and server/client certificates for mutual TLS.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Show berthctl's version and the agent's.
    Version,
    /// Print the shell completion script for bash, zsh or fish, e.g.
    /// `berthctl completion bash > /etc/bash_completion.d/berthctl`.
    Completion(CompletionArgs),
    /// Write berthctl's man pages (berthctl.1, berthctl-run.1, ...) into a
    /// directory, e.g. `berthctl man --dir /usr/local/share/man/man1`.
    Man(ManArgs),
}

#[cfg(test)]
mod doc_commands;
#[cfg(test)]
mod tests;
