//! Arguments of `rollout`.

use std::time::Duration;

use clap::Args;

use super::SpecArgs;
use crate::parse;

/// Most replicas of a service `rollout` replaces on one host.
pub const MAX_REPLICAS_PER_HOST: u32 = 64;

// `rollout`: the run options of the new containers, then how to replace
// the old ones.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Containers of the service on each host (named NAME for one, NAME-1,
    /// NAME-2, ... for more; at most 64).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas_per_host: u32,
    /// How long each new container must keep running (not exit, not
    /// restart) before the old ones are removed; 0s for no wait.
    #[arg(long, default_value = "10s", value_parser = parse::duration, value_name = "DURATION")]
    pub settle: Duration,
    /// A shell command (run with `sh -c` inside each new container, as an
    /// exec) that must exit 0 before the old ones are removed; tried every
    /// --health-interval until --health-timeout.
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// How long a new container has to pass --health-cmd.
    #[arg(long, default_value = "60s", value_parser = parse::duration, value_name = "DURATION", requires = "health_cmd")]
    pub health_timeout: Duration,
    /// Pause between two tries of --health-cmd.
    #[arg(long, default_value = "1s", value_parser = parse::duration, value_name = "DURATION", requires = "health_cmd")]
    pub health_interval: Duration,
    /// Replace the containers even on hosts that already run this revision.
    #[arg(long)]
    pub force: bool,
    /// What the new containers run: the options of `run` (--name NAME, the
    /// service, is required), the image and its command.
    #[command(flatten)]
    pub spec: SpecArgs,
}
