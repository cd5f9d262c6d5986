//! berthd, the berth node agent, as a library.
//!
//! The runtime (containers, images, events, cgroups, the launch of
//! container monitors) knows nothing of the wire: a front end drives it
//! through [`container::Manager`], [`image::ImageStore`] and
//! [`events::EventBus`]. [`server`] is the gRPC front end (`berth.v1`), the
//! only module that speaks the API's types and status codes; the `berthd`
//! binary parses its flags and calls [`run`].
//!
//! Containers run under `berth-monitor` processes, which berthd carries and
//! installs (see [`monitor`]).

pub mod cgroup;
pub mod config;
pub mod container;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod image;
pub mod janitor;
pub mod monitor;
pub mod netns_pool;
pub mod server;
pub mod signal;
pub mod sys;

pub use config::Config;

/// Serves the agent as `cfg` says until SIGTERM or SIGINT. Needs a
/// multi-threaded tokio runtime (see [`server::BLOCKING_KEEP_ALIVE`] for
/// the keep-alive of its blocking threads).
pub async fn run(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    server::run(cfg).await
}
