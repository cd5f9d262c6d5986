//! The arguments of each command.
//!
//! The structs say what they are in plain comments, not doc comments: as
//! the subcommands' arguments are built late (`defer`), clap would show a
//! struct's doc comment as the command's description, over the variant's.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::parse;

// What a container runs and with which limits; shared by `run` and `create`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Name of the container (generated when not given).
    #[arg(long)]
    pub name: Option<String>,
    /// Keep the container's stdin open; an attached `run` streams this
    /// stdin to it (end of file closes it).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal; an attached `run` puts the local one
    /// in raw mode and its size follows the window.
    #[arg(short = 't', long)]
    pub tty: bool,
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
    /// Network: bridge (berth's bridge, with an address of its own; the
    /// agent's default unless berthd runs with --default-network none),
    /// none (only lo), host (the host's network),
    /// container:NAME|ID (another running container's network), or the
    /// name of a user-defined network (`network create`).
    #[arg(long, alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,
    /// A name other containers on its user-defined network know it by
    /// (repeatable).
    #[arg(long = "network-alias", alias = "net-alias", value_name = "ALIAS")]
    pub network_aliases: Vec<String>,
    /// Publish a container port on the host (on the bridge or a network):
    /// [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]; no host port (or
    /// IP::PORT) takes a free one; ranges as 8000-8009:80-89 (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOST:]PORT[/PROTO]")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on a free host port (`port`
    /// shows which).
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// DNS server for the container's resolv.conf (repeatable).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// Extra /etc/hosts entry NAME:IP (repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
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
    /// Security option, as Docker's: seccomp=unconfined (no filter),
    /// seccomp=default, seccomp=PROFILE.json (a profile in Docker's format,
    /// read here), no-new-privileges (always on).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Add a capability to Docker's default set (SYS_TIME or CAP_SYS_TIME;
    /// ALL for every one). Repeatable.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Remove a capability from the default set (ALL for every one).
    /// Repeatable.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Bind mount or volume: SRC:DST[:ro|rw] (SRC an absolute host path:
    /// a bind; else a volume name, created on first use), or DST alone (an
    /// anonymous volume). Repeatable.
    #[arg(short = 'v', long = "volume", value_name = "[SRC:]DST[:OPTS]", value_parser = parse::mounts::volume)]
    pub volumes: Vec<berth::v1::Mount>,
    /// A mount in Docker's syntax: type=bind|volume|tmpfs,source=..,
    /// target=..[,readonly][,tmpfs-size=..][,tmpfs-mode=..]. Repeatable.
    #[arg(long = "mount", value_name = "SPEC", value_parser = parse::mounts::mount)]
    pub mounts: Vec<berth::v1::Mount>,
    /// A tmpfs mount: DST[:size=64m,mode=1777,ro]. Repeatable.
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]", value_parser = parse::mounts::tmpfs)]
    pub tmpfs: Vec<berth::v1::Mount>,
    /// Storage option: size=SIZE bounds the container's writable layer
    /// (e.g. size=1g; needs project quotas on the agent's state file system).
    #[arg(long = "storage-opt", value_name = "OPT")]
    pub storage_opt: Vec<String>,
    /// The container's OOM score adjustment, -1000 (never killed first) to
    /// 1000 (killed first); 0 by default.
    #[arg(
        long = "oom-score-adj",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub oom_score_adj: Option<i32>,
    /// A kernel parameter of the container's own namespaces: net.*,
    /// kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* or
    /// kernel.domainname (e.g. net.ipv4.ip_unprivileged_port_start=0).
    /// Repeatable.
    #[arg(long = "sysctl", value_name = "KEY=VALUE", value_parser = parse::sysctl)]
    pub sysctls: Vec<(String, String)>,
    /// A supplementary group for the container's process (and its execs):
    /// a gid, or a group name of the image's /etc/group. Repeatable.
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Every capability, no seccomp, every host device, nothing masked:
    /// root on the host. The agent must run with --allow-privileged.
    #[arg(long)]
    pub privileged: bool,
    /// User namespace: host (the default: container root is host root) or
    /// auto (a range of 65536 host ids of the container's own, so its root
    /// is no one on the host). `--userns=auto` works too.
    #[arg(long, value_name = "MODE", value_parser = ["host", "auto"])]
    pub userns: Option<String>,
    /// Pass a host device through: HOST[:CONTAINER][:PERMISSIONS], e.g.
    /// /dev/fuse or /dev/zero:/dev/myzero:r (permissions r, w, m; rwm when
    /// not given). Repeatable.
    #[arg(long = "device", value_name = "DEVICE", value_parser = crate::security::device)]
    pub devices: Vec<berth::v1::DeviceMapping>,
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

/// A stream of a container, for `run -a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamName {
    /// Its stdin (with -i).
    Stdin,
    /// Its stdout.
    Stdout,
    /// Its stderr.
    Stderr,
}

// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Start in the background and print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// With -i and -t: keys that detach from the container, leaving it
    /// running ("ctrl-p,ctrl-q": letters and ctrl-<a-z@[\]^_>).
    #[arg(long, default_value = crate::detach_keys::DEFAULT, value_parser = crate::detach_keys::arg, value_name = "KEYS")]
    pub detach_keys: crate::detach_keys::DetachKeys,
    /// Attached: show only these streams (stdin, stdout, stderr;
    /// repeatable; stdin needs -i). Without it: stdout and stderr, and stdin
    /// with -i.
    #[arg(
        short = 'a',
        long = "attach",
        value_enum,
        ignore_case = true,
        value_name = "STREAM",
        conflicts_with = "detach"
    )]
    pub attach: Vec<StreamName>,
    /// Without a terminal: send Ctrl-C and SIGTERM on to the container (a
    /// second Ctrl-C stops it, a third kills it); false: they end berthctl
    /// only, the container runs on.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub sig_proxy: bool,
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

// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// What to run.
    #[command(flatten)]
    pub spec: SpecArgs,
}

// `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the container's output and exit with its exit code (one
    /// container).
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach, and stream this stdin to the container (if it was created
    /// with -i).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// With a terminal: keys that detach, leaving the container running.
    #[arg(long, default_value = crate::detach_keys::DEFAULT, value_parser = crate::detach_keys::arg, value_name = "KEYS")]
    pub detach_keys: crate::detach_keys::DetachKeys,
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

// `attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not stream this stdin to the container (output only).
    #[arg(long)]
    pub no_stdin: bool,
    /// Without a terminal: send Ctrl-C and SIGTERM on to the container.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub sig_proxy: bool,
    /// With a terminal: keys that detach, leaving the container running.
    #[arg(long, default_value = crate::detach_keys::DEFAULT, value_parser = crate::detach_keys::arg, value_name = "KEYS")]
    pub detach_keys: crate::detach_keys::DetachKeys,
    /// Container id, id prefix or name.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
}

// Commands that take one or more containers.
#[derive(Debug, Args)]
pub struct IdsArgs {
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

// `update`: only the given limits change.
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

// `stop`.
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

// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send, by name or number.
    #[arg(short = 's', long, default_value = "SIGKILL", value_parser = parse::signal)]
    pub signal: String,
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

// `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Also remove the containers' anonymous volumes.
    #[arg(short = 'v', long = "volumes")]
    pub volumes: bool,
    /// Container ids, id prefixes or names.
    #[arg(required = true, value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

// `ps`.
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
    /// Format the output: `table`, `table TEMPLATE`, `json` or a Go
    /// TEMPLATE over each container ({{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.Status}} {{.State}} {{.RunningFor}} {{.CreatedAt}} {{.Ports}} {{.Networks}} {{.Labels}}, and every field of `-o json` in PascalCase: {{.Spec.Memory}}).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

// `logs`.
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

// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Filter: type=container|image|volume, event=ACTION, container=ID|NAME, label=KEY[=VALUE].
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Replay stored events from this sequence number first.
    #[arg(long, value_name = "N")]
    pub since_seq: Option<u64>,
    /// Show events from this time on, replaying those the agent retains:
    /// a duration back from now (10m, 1h30m), an RFC 3339 time or Unix
    /// seconds.
    #[arg(long, value_name = "TIME", conflicts_with = "since_seq")]
    pub since: Option<String>,
    /// Show events up to this time (same forms as --since), then exit;
    /// without --since, from the oldest retained event.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

// `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers, not only running ones (stopped ones show
    /// zeros). (`--all` alone targets all hosts.)
    #[arg(short = 'a', long = "all-containers")]
    pub all_containers: bool,
    /// Print one sample and exit, instead of refreshing every second.
    #[arg(long)]
    pub no_stream: bool,
    /// Container ids, id prefixes or names (none: every running container).
    #[arg(value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

// `cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode: copy the owners (uid and gid) of the source too.
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Follow a symlink given as SRC (copy what it points to).
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// CONTAINER:PATH, a local path, or - (a tar archive on stdin).
    #[arg(value_name = "SRC")]
    pub src: String,
    /// CONTAINER:PATH, a local path, or - (a tar archive to stdout).
    #[arg(value_name = "DST")]
    pub dst: String,
}

// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open and stream it to the process (end of file closes
    /// the process's stdin).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the process a terminal (the local one goes into raw mode and
    /// its size follows the window).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Environment variable KEY=value over the container's; a bare KEY
    /// takes its value from here.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// User: name, uid, name:group or uid:gid (the container's if unset).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container (the container's if unset).
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Every capability the agent has (refused unless berthd runs with
    /// --allow-privileged).
    #[arg(long)]
    pub privileged: bool,
    /// Container id, id prefix or name.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
    /// The command and its arguments (flags after the command belong to
    /// it, as with `docker exec`).
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

// `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Container id, id prefix or name.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
}

// `port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// Container id, id prefix or name.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
    /// Only this port of the container: PORT[/tcp|udp] (tcp by default).
    #[arg(value_name = "PRIVATE_PORT")]
    pub port: Option<String>,
}

// `completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete berthctl in.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Shells `completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// bash (bash-completion).
    Bash,
    /// zsh (compsys).
    Zsh,
    /// fish.
    Fish,
}

// `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages to (made if missing), e.g.
    /// /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}
