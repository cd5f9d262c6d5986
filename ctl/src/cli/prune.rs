//! Arguments of `rename` and of the prune commands (`container prune`,
//! `image prune`, `system prune`).

use clap::{Args, Subcommand};

// `rename` and `container rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The container: id, id prefix or name.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Its new name: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters.
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

/// `container ...`: the container verbs Docker also has under `container`
/// that berthctl has only there.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ContainerCommand {
    /// Remove every stopped container (created or exited).
    Prune(ContainerPruneArgs),
    /// Give a container a new name.
    Rename(RenameArgs),
}

// `container prune`.
#[derive(Debug, Args)]
pub struct ContainerPruneArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Filter: label=KEY[=VALUE] (repeatable, all must match), or
    /// until=DURATION|TIME (only containers created before: 24h, an RFC
    /// 3339 time, or Unix seconds).
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

// `image prune`.
#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    /// (`--all` alone targets all hosts.)
    #[arg(short = 'a', long = "all-images")]
    pub all_images: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Filter: label=KEY[=VALUE] (image config labels; repeatable).
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

/// `system ...`.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum SystemCommand {
    /// Remove stopped containers, unused user-defined networks and
    /// dangling images (with -a, every unused image; with --volumes,
    /// unused volumes too).
    Prune(SystemPruneArgs),
}

// `system prune`.
#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    /// (`--all` alone targets all hosts.)
    #[arg(short = 'a', long = "all-images")]
    pub all_images: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Also remove the volumes no container uses.
    #[arg(long)]
    pub volumes: bool,
}
