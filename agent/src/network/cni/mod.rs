//! CNI networks: a user-defined network whose driver is `cni` runs a CNI
//! network configuration list (the standard `bridge`, `host-local`,
//! `portmap` plugins or an operator's own) instead of berth's bridge, as
//! nerdctl and Kubernetes runtimes do.
//!
//! The list is checked and stored with the network ([`conflist`]); each
//! start of a container on it runs ADD through the list ([`chain`],
//! [`invoke`]) in the container's fresh namespace and stores the result
//! ([`store`]); the container's exit, its removal, or berthd's next start
//! (for a container that no longer runs) runs DEL with that result. A
//! running container re-adopted after a restart gets a CHECK. What berthd
//! reads from a result is in [`result`].

pub mod chain;
pub mod conflist;
pub mod create;
pub mod invoke;
pub mod result;
pub mod store;

pub use conflist::{Conflist, RuntimeConfig};
pub use create::check_create;
pub use invoke::PluginDirs;
pub use store::{Attachment, Store};

/// Where plugin binaries are looked up unless berthd's `--cni-bin-dir`
/// (or `BERTHD_CNI_BIN_DIR`) says otherwise.
pub const DEFAULT_BIN_DIRS: &str = "/opt/cni/bin:/usr/lib/cni";
/// The container's interface on a CNI network.
pub const IFNAME: &str = "eth0";

/// What a CNI network operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The conflist (or a value derived from a request) is not valid.
    #[error("{0}")]
    Invalid(String),
    /// No binary of that plugin type in the plugin directories.
    #[error("CNI plugin {plugin:?} is not in berthd's plugin directories ({dirs})")]
    NoPlugin {
        /// The `type`.
        plugin: String,
        /// The directories searched.
        dirs: String,
    },
    /// A plugin reported an error.
    #[error("CNI plugin {plugin} {command} failed (code {code}): {msg}")]
    Plugin {
        /// The `type`.
        plugin: String,
        /// ADD, CHECK or DEL.
        command: &'static str,
        /// CNI's error code (0 if it gave none).
        code: u64,
        /// Its message, capped.
        msg: String,
    },
    /// A plugin ran too long and was killed.
    #[error("CNI plugin {plugin} {command} did not finish in {secs} s and was killed")]
    Timeout {
        /// The `type`.
        plugin: String,
        /// ADD, CHECK or DEL.
        command: &'static str,
        /// The limit.
        secs: u64,
    },
    /// A plugin could not be run.
    #[error("running CNI plugin {plugin}: {source}")]
    Exec {
        /// The `type`.
        plugin: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A plugin's result is not one berthd can read.
    #[error("CNI result: {0}")]
    BadResult(String),
    /// Reading or writing a stored attachment failed.
    #[error("{what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The plugin directories and the attachments' store of one berthd.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where plugins are looked up.
    pub dirs: PluginDirs,
    /// Durable attachments.
    pub store: Store,
}

impl Cni {
    /// Runs ADD for `container` (its namespace at path `netns`) on the
    /// network `network` with list `list`, and stores the result before
    /// returning it. Whatever fails, nothing is left attached: the list's
    /// DEL undoes a partial ADD, and a result that cannot be read or stored
    /// is DEL'd again.
    pub async fn attach(
        &self,
        network: &str,
        list: &Conflist,
        container: &str,
        netns: &str,
        runtime: RuntimeConfig,
    ) -> Result<(Attachment, result::Summary), CniError> {
        let target = invoke::Target {
            container_id: container.to_string(),
            netns: netns.to_string(),
            ifname: IFNAME.to_string(),
        };
        // A previous run's attachment not yet released (a crash between
        // its ADD and its DEL): released first, its address with it.
        if let Some(old) = self.store.load(container)? {
            self.detach(list, &old).await?;
        }
        let value = chain::add(&self.dirs, list, &target, &runtime).await?;
        let a = Attachment {
            container: container.to_string(),
            network: network.to_string(),
            ifname: IFNAME.to_string(),
            runtime,
            result: value,
        };
        let kept = result::summarize(&a.result).and_then(|s| self.store.save(&a).map(|()| s));
        match kept {
            Ok(summary) => Ok((a, summary)),
            Err(e) => {
                let _ = chain::del(&self.dirs, list, &target, Some(&a.result), &a.runtime).await;
                Err(e)
            }
        }
    }

    /// Runs DEL for attachment `a` (its namespace may be gone: the plugins
    /// release addresses and rules by container id) and forgets it.
    pub async fn detach(&self, list: &Conflist, a: &Attachment) -> Result<(), CniError> {
        let target = invoke::Target {
            container_id: a.container.clone(),
            netns: String::new(),
            ifname: a.ifname.clone(),
        };
        chain::del(&self.dirs, list, &target, Some(&a.result), &a.runtime).await?;
        self.store.remove(&a.container)
    }

    /// Runs CHECK for attachment `a` of a running container whose init is
    /// `pid`. The namespace is named by a path of this run of berthd
    /// (ADD named it by a descriptor of the start), so the result's
    /// `sandbox` is that path in the CHECK's `prevResult`: plugins compare
    /// the two.
    pub async fn check(&self, list: &Conflist, a: &Attachment, pid: i32) -> Result<(), CniError> {
        let target = invoke::Target {
            container_id: a.container.clone(),
            netns: format!("/proc/{pid}/ns/net"),
            ifname: a.ifname.clone(),
        };
        let result = result::with_sandbox(&a.result, &target.netns);
        chain::check(&self.dirs, list, &target, &result, &a.runtime).await
    }

    /// What berthd reads from container `container`'s stored result.
    pub fn summary(&self, container: &str) -> Option<result::Summary> {
        let a = self.store.load(container).ok()??;
        result::summarize(&a.result).ok()
    }
}

/// The DNS servers of a result, as strings (for /etc/resolv.conf).
pub fn nameservers(summary: &result::Summary) -> Vec<String> {
    summary.nameservers.iter().map(|n| n.to_string()).collect()
}
