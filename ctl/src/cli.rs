//! The command line, as clap derive types. Values that have a syntax of their
//! own (sizes, CPUs, labels, signals) are checked here by `parse`, so a typo
//! is a usage error before anything is sent to the agent.

use std::cell::RefCell;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::parse;

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
        global = true,
        value_name = "HOST[,HOST...]"
    )]
    pub host: Option<String>,
    /// The inventory of hosts (default: $XDG_CONFIG_HOME/berth/hosts.toml,
    /// i.e. ~/.config/berth/hosts.toml).
    #[arg(long, env = "BERTH_INVENTORY", global = true, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Target every host of the inventory.
    #[arg(long, global = true)]
    pub all: bool,
    /// Target the inventory hosts of this group (repeatable).
    #[arg(long = "group", global = true, value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Target only inventory hosts with this label (repeatable; all must match).
    #[arg(long = "selector", global = true, value_name = "KEY=VALUE", value_parser = parse::label)]
    pub selectors: Vec<(String, String)>,
    /// At most this many hosts are talked to at once.
    #[arg(long, global = true, default_value_t = 32, value_name = "N")]
    pub parallel: usize,
    /// Give up on a host that has not answered within this time (10s, 1m).
    #[arg(long, global = true, default_value = "30s", value_parser = parse::duration, value_name = "DURATION")]
    pub host_timeout: Duration,
    /// CA certificate that https:// agents' certificates must chain to (for
    /// addresses not in the inventory).
    #[arg(long, env = "BERTH_TLS_CA", global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (for addresses not in the inventory).
    #[arg(long, env = "BERTH_TLS_CERT", global = true, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Key of --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY", global = true, value_name = "FILE")]
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
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
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
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let root = with_selection(Selection::Root, <Cli as clap::CommandFactory>::command);
    let selection = match subcommand_name(&root, &args) {
        Some(name) => Selection::Named(name),
        None => Selection::All,
    };
    with_selection(selection, || Cli::try_parse_from(args))
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
    /// Start one or more created or exited containers.
    Start(IdsArgs),
    /// Stop running containers: the stop signal, then SIGKILL after a timeout.
    Stop(StopArgs),
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
    /// Show containers in detail, as a JSON array.
    Inspect(IdsArgs),
    /// List containers (running ones unless -a).
    Ps(PsArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// Stream the agent's events.
    Events(EventsArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List images (same as `image ls`).
    Images,
    /// Pull an image from a registry (the agent pulls it), showing progress.
    Pull(crate::cmd::PullArgs),
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
}

/// What a container runs and with which limits; shared by `run` and `create`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Name of the container (generated when not given).
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable KEY=value; a bare KEY takes its value from here.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User: name, uid, name:group or uid:gid.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Hostname inside the container.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Label key=value (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY[=VALUE]", value_parser = parse::label)]
    pub labels: Vec<(String, String)>,
    /// Replace the image's entrypoint; an empty string clears it.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Memory limit, e.g. 64m (b, k, m, g; 1024-based).
    #[arg(short = 'm', long, value_parser = parse::size)]
    pub memory: Option<i64>,
    /// Memory plus swap limit, or -1 for unlimited swap.
    #[arg(long, value_parser = parse::swap_size, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// CPU limit in CPUs, e.g. 0.5.
    #[arg(long, value_parser = parse::nano_cpus)]
    pub cpus: Option<i64>,
    /// Relative CPU weight (2..262144, default 1024).
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// CPUs the container may use ("0-1", "0,2").
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Signal that `stop` sends (name or number).
    #[arg(long, value_parser = parse::signal)]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL.
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Restart policy: no, on-failure[:MAX-RETRIES], always, unless-stopped.
    #[arg(long, value_name = "POLICY", value_parser = parse::restart_policy)]
    pub restart: Option<berth::v1::RestartPolicy>,
    /// The image (reference or id), then the command and its arguments,
    /// which replace the image's Cmd. Everything after the image belongs to
    /// the command, flags included, as with `docker run`; hence one list.
    #[arg(
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        value_name = "IMAGE"
    )]
    pub image_and_command: Vec<String>,
}

impl SpecArgs {
    /// The image reference or id.
    pub fn image(&self) -> &str {
        self.image_and_command.first().map_or("", String::as_str)
    }

    /// The command and its arguments; a `--` right after the image only
    /// separates them from berthctl's flags.
    pub fn command(&self) -> &[String] {
        let rest = self.image_and_command.get(1..).unwrap_or_default();
        match rest.first() {
            Some(first) if first == "--" => &rest[1..],
            _ => rest,
        }
    }
}

/// How `run --place` chooses hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Placement {
    /// Each replica on the host with the smallest share of its memory and
    /// CPUs already reserved (then fewest running containers).
    LeastLoaded,
    /// Replicas on as many different hosts as possible, least loaded first.
    Spread,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Start in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Choose hosts among the targeted ones instead of running on every one
    /// (replicas always run detached).
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub place: Option<Placement>,
    /// With --place: how many containers to start (--name NAME makes them
    /// NAME-1, NAME-2, ...).
    #[arg(long, default_value_t = 1, requires = "place", value_name = "N")]
    pub replicas: u32,
    /// What to run.
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// What to run.
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// Commands that take one or more containers.
#[derive(Debug, Args)]
pub struct IdsArgs {
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `update`: only the given limits change.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Memory limit (b, k, m, g).
    #[arg(short = 'm', long, value_parser = parse::size)]
    pub memory: Option<i64>,
    /// Memory plus swap limit, or -1 for unlimited swap.
    #[arg(long, value_parser = parse::swap_size, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Number of CPUs (fractions allowed).
    #[arg(long, value_parser = parse::nano_cpus)]
    pub cpus: Option<i64>,
    /// Relative CPU weight.
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// Maximum number of processes.
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// CPUs the container may use ("0-1", "0,2").
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Restart policy: no, on-failure[:MAX-RETRIES], always, unless-stopped.
    #[arg(long, value_name = "POLICY", value_parser = parse::restart_policy)]
    pub restart: Option<berth::v1::RestartPolicy>,
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (the container's stop timeout if unset).
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS"
    )]
    pub time: Option<u32>,
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send, by name or number.
    #[arg(short = 's', long, default_value = "SIGKILL", value_parser = parse::signal)]
    pub signal: String,
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones. (`--all` alone targets
    /// all hosts.)
    #[arg(short = 'a', long = "all-containers")]
    pub all_containers: bool,
    /// Filter: label=KEY[=VALUE], name=SUBSTRING, status=created|running|exited.
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Print only container ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show full ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep streaming new output until the container exits.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines ("all" for everything).
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Only output since a time: a duration (10m), RFC 3339, or Unix seconds.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Prefix each entry with its time.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Container id, id prefix or name.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Filter: type=container|image, event=ACTION, container=ID|NAME, label=KEY[=VALUE].
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Replay stored events from this sequence number first.
    #[arg(long, value_name = "N")]
    pub since_seq: Option<u64>,
}

/// `image ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ImageCommand {
    /// Import an OCI layout or `docker save` tar archive ("-" reads stdin).
    Import(ImportArgs),
    /// List images.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove image references, and images left without any.
    #[command(visible_alias = "remove")]
    Rm(ImageRmArgs),
    /// Show images in detail, as a JSON array.
    Inspect(ImageIdsArgs),
}

/// `image import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Archive to import, or "-" for standard input.
    pub file: String,
    /// Reference to give the image (e.g. busybox:test).
    #[arg(short = 'r', long)]
    pub reference: Option<String>,
}

/// `image rm`.
#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// Remove even while containers use the image.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Image references, ids or id prefixes.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Commands that take one or more images.
#[derive(Debug, Args)]
pub struct ImageIdsArgs {
    /// Image references, ids or id prefixes.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `certs ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum CertsCommand {
    /// Create the fleet's CA (ca.pem, ca-key.pem) in the certs directory.
    Init(CertsInitArgs),
    /// Issue a server certificate (for berthd --listen) or a client
    /// certificate (for berthctl), signed by the CA: NAME.pem, NAME-key.pem.
    Issue(CertsIssueArgs),
}

/// `certs init`.
#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Directory of the CA and certificates (default: ~/.config/berth/certs).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Common name of the CA.
    #[arg(long, default_value = "berth fleet CA")]
    pub name: String,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    pub days: u32,
    /// Replace an existing CA (every certificate it signed stops working).
    #[arg(long)]
    pub force: bool,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertKind {
    /// An agent's certificate: TLS server authentication.
    Server,
    /// berthctl's certificate: TLS client authentication.
    Client,
}

/// `certs issue`.
#[derive(Debug, Args)]
pub struct CertsIssueArgs {
    /// server or client.
    #[arg(value_enum)]
    pub kind: CertKind,
    /// Name of the certificate (file names and common name).
    pub name: String,
    /// Subject alternative name: a DNS name or an IP address the agent is
    /// reached at (repeatable; default: NAME).
    #[arg(long = "san", value_name = "NAME|IP")]
    pub sans: Vec<String>,
    /// Directory of the CA and certificates (default: ~/.config/berth/certs).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Validity in days.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
    /// Replace existing files of that name.
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a command line given without the program name.
    pub(crate) fn parse(args: &[&str]) -> Cli {
        match try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())) {
            Ok(cli) => cli,
            Err(e) => panic!("{args:?} should parse: {e}"),
        }
    }

    fn fails(args: &[&str]) -> bool {
        try_parse_from(std::iter::once("berthctl").chain(args.iter().copied())).is_err()
    }

    /// What clap makes of `args` with the whole tree, and with only the
    /// subcommand that `args` name: the same, value or error message.
    fn same_as_whole_tree(args: &[&str]) {
        let line = || std::iter::once("berthctl").chain(args.iter().copied());
        let show = |r: Result<Cli, clap::Error>| match r {
            Ok(cli) => format!("{cli:?}"),
            Err(e) => format!("{:?}: {}", e.kind(), e.render()),
        };
        assert_eq!(
            show(try_parse_from(line())),
            show(Cli::try_parse_from(line())),
            "{args:?}"
        );
    }

    #[test]
    fn parsing_only_the_named_subcommand_changes_nothing() {
        let lines: &[&[&str]] = &[
            &["ps"],
            &["-H", "unix:///x", "ps", "-a"],
            &["-H", "--forse", "ps", "rm"],
            &["-H", "-a", "ps"],
            &["-H", "-", "ps"],
            &["--host", "--", "ps"],
            &["ps", "-H", "/x", "-o", "json"],
            &["-H/x", "-ojson", "ps"],
            &["--host=/x", "--output=json", "ps"],
            &[
                "--all",
                "--group",
                "g",
                "--group",
                "h",
                "--selector",
                "a=b",
                "ps",
            ],
            &["ps", "--all", "--parallel", "3", "--host-timeout", "5s"],
            &[
                "--tls-ca",
                "ca",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "info",
            ],
            &["--inventory", "hosts.toml", "top-hosts"],
            &["run", "--rm", "-m", "64m", "busybox", "sh", "-c", "x -H y"],
            &["run", "-d", "--name", "web", "busybox", "--", "-H", "ps"],
            &["image", "ls"],
            &["image", "list"],
            &["-o", "json", "image", "import", "-", "--reference", "x:y"],
            &["resume", "a"],
            &["rm", "-f", "a", "b"],
            &["logs", "-f", "--tail", "5", "web"],
            &["certs", "init", "--dir", "d"],
            // Errors, help and version: clap's own, from the whole tree
            // or from the one subcommand.
            &[],
            &["--help"],
            &["-h"],
            &["--version"],
            &["help"],
            &["help", "run"],
            &["pss"],
            &["--bogus", "ps"],
            &["-H"],
            &["--", "ps"],
            &["ps", "--bogus"],
            &["-o", "yaml", "ps"],
            &["ps", "--version"],
            &["run"],
            &["run", "--memory", "lots", "busybox"],
            &["image"],
            &["image", "bogus"],
            &["image", "import", "--help"],
        ];
        for args in lines {
            same_as_whole_tree(args);
        }
        // Every subcommand's help and bare use.
        for sub in all_commands().get_subcommands() {
            same_as_whole_tree(&[sub.get_name()]);
            same_as_whole_tree(&[sub.get_name(), "--help"]);
            same_as_whole_tree(&["-H", "/x", sub.get_name(), "-h"]);
        }
    }

    #[test]
    fn the_subcommand_is_found_behind_root_options() {
        let root = with_selection(Selection::Root, <Cli as clap::CommandFactory>::command);
        let name = |args: &[&str]| {
            let args: Vec<OsString> = std::iter::once("berthctl")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect();
            subcommand_name(&root, &args)
        };
        assert_eq!(name(&["ps"]).as_deref(), Some("ps"));
        assert_eq!(name(&["-H", "ps", "run"]).as_deref(), Some("run"));
        assert_eq!(name(&["-Hps", "run"]).as_deref(), Some("run"));
        assert_eq!(name(&["--host=ps", "run"]).as_deref(), Some("run"));
        assert_eq!(name(&["--all", "ps"]).as_deref(), Some("ps"));
        assert_eq!(
            name(&["-o", "json", "--group", "g", "ps"]).as_deref(),
            Some("ps")
        );
        assert_eq!(name(&["--", "ps"]), None);
        assert_eq!(name(&["--bogus", "ps"]), None);
        assert_eq!(name(&["-H"]), None);
        assert_eq!(name(&[]), None);
    }

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags() {
        let cli = parse(&["-H", "http://h:1", "ps", "-o", "json"]);
        assert_eq!(cli.host.as_deref(), Some("http://h:1"));
        assert_eq!(cli.output, OutputFormat::Json);
        let cli = parse(&["--output", "table", "ps"]);
        assert_eq!(cli.output, OutputFormat::Table);
        assert!(fails(&["-o", "yaml", "ps"]));
    }

    #[test]
    fn run_command_with_and_without_dashes() {
        let Command::Run(r) =
            parse(&["run", "--rm", "-e", "A=1", "busybox", "sh", "-c", "echo hi"])
                .command
                .0
        else {
            panic!("not run")
        };
        assert!(r.rm && !r.detach);
        assert_eq!(r.spec.image(), "busybox");
        assert_eq!(r.spec.command(), ["sh", "-c", "echo hi"]);
        assert_eq!(r.spec.env, ["A=1"]);

        let Command::Run(r) = parse(&["run", "-d", "busybox", "--", "ls", "-l", "--rm"])
            .command
            .0
        else {
            panic!("not run")
        };
        assert!(r.detach && !r.rm);
        assert_eq!(r.spec.command(), ["ls", "-l", "--rm"]);

        // Flags after the image belong to the command, as with docker.
        let Command::Run(r) = parse(&["run", "busybox", "--name", "x"]).command.0 else {
            panic!("not run")
        };
        assert_eq!(r.spec.name, None);
        assert_eq!(r.spec.command(), ["--name", "x"]);
        assert!(fails(&["run"]));
        // A mistyped flag before the image is an error, not an image name.
        assert!(fails(&["run", "--nmae", "x", "busybox"]));
        let Command::Run(r) = parse(&["run", "--", "busybox", "ls"]).command.0 else {
            panic!("not run")
        };
        assert_eq!(
            (r.spec.image(), r.spec.command()),
            ("busybox", ["ls".to_string()].as_slice())
        );
    }

    #[test]
    fn run_resource_flags() {
        let Command::Run(r) = parse(&[
            "run",
            "--memory",
            "64m",
            "--memory-swap",
            "-1",
            "--cpus",
            "0.5",
            "--pids-limit",
            "-1",
            "--stop-signal",
            "term",
            "busybox",
        ])
        .command
        .0
        else {
            panic!("not run")
        };
        assert_eq!(r.spec.memory, Some(64 << 20));
        assert_eq!(r.spec.memory_swap, Some(-1));
        assert_eq!(r.spec.cpus, Some(500_000_000));
        assert_eq!(r.spec.pids_limit, Some(-1));
        assert_eq!(r.spec.stop_signal.as_deref(), Some("SIGTERM"));
        assert!(fails(&["run", "--memory", "lots", "busybox"]));
        assert!(fails(&["run", "--cpus", "x", "busybox"]));
        assert!(fails(&["run", "--stop-signal", "SIGNOPE", "busybox"]));
    }

    #[test]
    fn other_commands() {
        let Command::Stop(s) = parse(&["stop", "-t", "3", "a", "b"]).command.0 else {
            panic!()
        };
        assert_eq!(
            (s.time, s.ids.as_slice()),
            (Some(3), ["a".to_string(), "b".into()].as_slice())
        );
        let Command::Kill(k) = parse(&["kill", "a"]).command.0 else {
            panic!()
        };
        assert_eq!(k.signal, "SIGKILL");
        let Command::Kill(k) = parse(&["kill", "-s", "hup", "a"]).command.0 else {
            panic!()
        };
        assert_eq!(k.signal, "SIGHUP");
        assert!(fails(&["rm"]));
        assert!(fails(&["kill", "-s", "NOPE", "a"]));
        let Command::Logs(l) = parse(&["logs", "-f", "--tail", "5", "-t", "--since", "10m", "web"])
            .command
            .0
        else {
            panic!()
        };
        assert!(l.follow && l.timestamps);
        assert_eq!(
            (l.tail.as_deref(), l.since.as_deref(), l.id.as_str()),
            (Some("5"), Some("10m"), "web")
        );
        assert!(matches!(parse(&["images"]).command.0, Command::Images));
        assert!(matches!(
            parse(&["image", "ls"]).command.0,
            Command::Image(ImageCommand::Ls)
        ));
        let Command::Image(ImageCommand::Import(i)) =
            parse(&["image", "import", "-", "--reference", "x:y"])
                .command
                .0
        else {
            panic!()
        };
        assert_eq!(
            (i.file.as_str(), i.reference.as_deref()),
            ("-", Some("x:y"))
        );
    }
}
