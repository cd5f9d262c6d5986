//! Create: a container record, directory and log, in state Created.

use std::sync::Arc;

use super::entry::{Detail, Entry, Life};
use super::error::{ContainerError, Result};
use super::record::{Record, SpecRecord};
use super::rootfs::Rootfs;
use super::state::State;
use super::{bounds, now_nanos, restart, secopts, spec, Manager, LOG_FILE};
use crate::cgroup::{CgroupError, Limits};
use crate::error::capped;
use crate::events::domain::Action;
use crate::network::Mode;

/// The length of a short id, as `berthctl ps` shows it.
const SHORT_ID: usize = 12;

/// Whether `name` may be given to a container (`own`, when it already has
/// an id): no other container has it, and it hides no other container's id.
/// Called under the table's lock, so checking and claiming are one step and
/// two creates or renames cannot both get a name.
pub(super) fn name_free(table: &super::Table, name: &str, own: Option<&str>) -> Result<()> {
    let others = || {
        table
            .by_id
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != own)
    };
    if others().any(|(_, e)| e.lock_record().name == name) {
        return Err(ContainerError::NameInUse {
            name: name.to_string(),
        });
    }
    // Lookups try the full id, then names, then id prefixes (as Docker's):
    // a name that is another container's short id (12 hex digits, as `ps`
    // shows it) or a longer prefix of its id would hide that container from
    // it. Shorter names win over id prefixes, as in Docker.
    if let Some((other, _)) =
        others().find(|(id, _)| name.len() >= SHORT_ID && id.starts_with(name))
    {
        return Err(ContainerError::invalid(
            "name",
            format!(
                "the name {:?} is a prefix of the id of container {}, which it would hide",
                capped(name),
                other.get(..SHORT_ID).unwrap_or(other)
            ),
        ));
    }
    Ok(())
}

impl Manager {
    /// Creates a container (state Created). Nothing is left behind on error.
    pub fn create(&self, spec: SpecRecord) -> Result<Record> {
        bounds::check_spec(&spec)?;
        let mut spec = spec;
        spec::validate_limits(&spec.limits)?;
        secopts::check(&mut spec)?;
        super::mounts::check(&mut spec, &self.state_dir())?;
        if spec.privileged && !self.allow_privileged {
            return Err(ContainerError::PrivilegedNotAllowed);
        }
        if spec
            .oom_score_adj
            .is_some_and(|a| !(-1000..=1000).contains(&a))
        {
            return Err(ContainerError::invalid(
                "oom_score_adj",
                "oom_score_adj must be between -1000 and 1000",
            ));
        }
        if !spec.name.is_empty() {
            spec::validate_name(&spec.name)?;
        }
        if spec.hostname.len() > 64
            || !spec
                .hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(ContainerError::invalid(
                "hostname",
                format!("invalid hostname {:?}", capped(&spec.hostname)),
            ));
        }
        self.cgroups
            .check(&Limits::from(&spec.limits))
            .map_err(ContainerError::LimitUnsupported)?;
        if spec.storage_size_bytes == 0 {
            // berthd's --default-storage-size (checked at its start); kept
            // in the record, so the limit is cleared at Remove like any.
            spec.storage_size_bytes = self.default_storage_size;
        }
        if spec.storage_size_bytes > 0 {
            super::layer_quota::check(&self.dir, spec.storage_size_bytes, "--storage-opt size")?;
        }
        if spec.image.is_empty() {
            return Err(ContainerError::invalid("image", "no image given"));
        }
        if spec.auto_remove && spec.restart_policy != restart::Policy::No {
            return Err(ContainerError::invalid(
                "restart_policy",
                "auto-remove and a restart policy exclude each other",
            ));
        }
        let image = self.images.resolve(&spec.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(_) => ContainerError::ImageNotFound {
                image: spec.image.clone(),
            },
            other => ContainerError::Image(other),
        })?;
        let eff = spec::merge(&spec, &image.config)?;
        let mounts = super::mounts::with_image_volumes(&spec, &image.config.volumes)?;
        // Compiled now, so a bad profile fails Create, not every Start.
        if spec.privileged {
            spec.seccomp = crate::seccomp::Choice::Unconfined;
        }
        spec.seccomp = self
            .seccomp
            .prepare(
                std::mem::take(&mut spec.seccomp),
                &secopts::capability_names(&spec),
            )
            .map_err(seccomp_error)?;
        self.check_unconfined(&spec)?;
        let (network, network_hostname) = self.resolve_network(&spec)?;
        check_sysctls(&spec, &network)?;
        check_group_add(&spec.group_add)?;
        self.check_cni_create(&network, &spec)?;
        if spec.publish_all && matches!(network, Mode::Bridge | Mode::Network(_)) {
            // Kept in `ports` from now on: later starts, inspect and a
            // restarted berthd see one list. Elsewhere there is nothing to
            // publish on, and Docker ignores -P there too.
            let more = crate::network::ports::publish_all(&spec.ports, &image.config.exposed_ports);
            spec.ports.extend(more);
            crate::network::ports::check_requests(&spec.ports).map_err(ContainerError::from)?;
        }
        if !spec.userns.is_empty() {
            self.userns_support
                .clone()
                .map_err(ContainerError::UsernsKernel)?;
        }
        if !spec.userns.is_empty() && network != crate::network::Mode::None {
            // Its namespaces must be owned by its user namespace: the
            // host's network, or another container's, is not.
            return Err(ContainerError::UsernsUnsupported(format!(
                "with network {network}"
            )));
        }
        // Taken now and kept in the record until Remove; freed again on
        // every way out of this function that does not store the record.
        let net = match &network {
            crate::network::Mode::Bridge => Some(self.networks.default_bridge().allocate()?),
            crate::network::Mode::Network(id) => self.networks.allocate(id)?.1,
            _ => None,
        };
        let on_bridge = self.bridge_of(&network);
        let unclaim = |_: &Manager| {
            if let (Some(n), Some(b)) = (&net, &on_bridge) {
                b.unclaim(n);
            }
        };
        let id = spec::new_id();
        let name = if spec.name.is_empty() {
            spec::generate_name()
        } else {
            spec.name.clone()
        };
        let mut rec = Record {
            id: id.clone(),
            name: name.clone(),
            hostname: if !spec.hostname.is_empty() {
                spec.hostname.clone()
            } else {
                network_hostname.unwrap_or_else(|| id[..12].to_string())
            },
            network,
            net: net.clone(),
            connected: Vec::new(),
            image_id: image.id.clone(),
            layers: image.layers.clone(),
            layer_dirs: self.images.layer_dirs(&image),
            state: State::Created,
            pid: 0,
            monitor_pid: 0,
            created_at: now_nanos(),
            started_at: 0,
            started_ids: None,
            exit: None,
            args: eff.args,
            env: eff.env,
            cwd: eff.cwd,
            user: eff.user,
            stop_signal: eff.stop_signal,
            stop_timeout: eff.stop_timeout,
            start_count: 0,
            restart_count: 0,
            backoff: 0,
            stopped_by_user: false,
            stop_deadline: 0,
            userns: None,
            mounts: Vec::new(),
            spec,
        };
        let dir = self.dir.join(&id);
        let new_volumes: Vec<String>;
        let entry = {
            // Check and claim the name in one step, so two creates cannot
            // both get it.
            let mut table = self.table();
            if let Err(e) = name_free(&table, &name, None) {
                drop(table);
                unclaim(self);
                return Err(e);
            }
            if !rec.spec.userns.is_empty() {
                // Under the table's lock: the ranges in use are the
                // records', and no other Create can take this one meanwhile.
                let records: Vec<_> = table
                    .by_id
                    .values()
                    .filter_map(|e| e.lock_record().userns)
                    .collect();
                rec.userns = Some(self.id_ranges.allocate(records.iter()).ok_or(
                    ContainerError::UsernsExhausted {
                        slots: self.id_ranges.slots(),
                        origin: self.id_ranges.source,
                    },
                )?);
            }
            // Under the table's lock: a volume removal checks its users
            // under it too, so it cannot take a volume this Create mounts.
            let (mounts, created) = match self.resolve_mounts(&mounts) {
                Ok(m) => m,
                Err(e) => {
                    drop(table);
                    unclaim(self);
                    return Err(e);
                }
            };
            rec.mounts = mounts;
            new_volumes = created;
            let entry = Arc::new(Entry::new(
                id.clone(),
                dir.clone(),
                rec.clone(),
                Life::Pending,
                self.flusher.clone(),
            ));
            table.by_id.insert(id.clone(), entry.clone());
            entry
        };
        let made = (|| -> std::io::Result<()> {
            crate::state_dir::create_private_dir(&dir)?;
            let rootfs = Rootfs::under(&dir);
            rootfs.create_dirs()?;
            if rec.spec.storage_size_bytes > 0 {
                super::layer_quota::apply(&self.dir, &rootfs, rec.spec.storage_size_bytes)?;
            }
            crate::fsutil::create_private_file(&dir.join(LOG_FILE))?;
            Ok(())
        })()
        .map_err(|e| ContainerError::io(format_args!("creating {}", dir.display()), e))
        .and_then(|()| entry.persist(&rec));
        if let Err(e) = made {
            self.table().by_id.remove(&id);
            let _ = std::fs::remove_dir_all(&dir);
            unclaim(self);
            self.drop_volumes(&new_volumes);
            return Err(e);
        }
        if !rec.spec.auto_remove {
            self.flusher.queue(&self.dir);
        }
        crate::crash::point(|| "create:saved".into());
        if rec.spec.privileged {
            tracing::warn!(id = %id, name = %name, "privileged container created");
        }
        for name in &new_volumes {
            if let Ok(vol) = self.volumes.get(name) {
                self.announce_volume(&vol, Action::Created);
            }
        }
        self.announce(&rec, Action::Created, Detail::default());
        // Running containers on its network learn its name.
        self.refresh_hosts(&rec.network);
        Ok(rec)
    }
}

/// A profile that cannot be used is the client's to fix; one that cannot
/// be stored is the agent's problem.
impl Manager {
    /// A container without berth's default seccomp profile may be able to
    /// mount cgroupfs from a nested user namespace and write its own
    /// limits, unless cgroup v2's `nsdelegate` stops it. On a v2 host
    /// mounted without it, such a container is refused (remounting fixes
    /// the host); on v1, where nothing can stop it (as with Docker), it is
    /// allowed, and logged.
    ///
    /// CAP_SYS_ADMIN (added, or privileged) counts as no filter: it lets
    /// the default profile allow mount and namespaces, as Docker's does.
    fn check_unconfined(&self, spec: &SpecRecord) -> Result<()> {
        use crate::seccomp::Choice;
        let sys_admin = berth_runtime::caps::CapSet(secopts::capabilities(spec))
            .has(berth_runtime::caps::number("SYS_ADMIN").unwrap_or(21));
        if (matches!(spec.seccomp, Choice::Unset | Choice::Default) && !sys_admin)
            || self.cgroups.limits_hold_unconfined()
        {
            return Ok(());
        }
        if self.cgroups.version() == 2 {
            return Err(ContainerError::LimitUnsupported(CgroupError::Unsupported(
                "this host mounts cgroup2 without nsdelegate, so a container without the \
                 default seccomp profile (or with CAP_SYS_ADMIN) could change its own limits; \
                 remount it (mount -o remount,nsdelegate /sys/fs/cgroup) or keep the default \
                 profile and capabilities"
                    .into(),
            )));
        }
        tracing::warn!(
            "a container without the default seccomp profile (or with CAP_SYS_ADMIN) is being \
             created on a cgroup v1 host: its root can lift its own limits"
        );
        Ok(())
    }
}

fn seccomp_error(e: crate::seccomp::SeccompError) -> ContainerError {
    match e {
        crate::seccomp::SeccompError::Io { path, source } => ContainerError::Io {
            context: format!("storing the compiled seccomp profile in {}", path.display()),
            source,
        },
        other => ContainerError::invalid("security.seccomp", other.to_string()),
    }
}

/// `--sysctl`: each of a namespace of the container's own (see
/// `berth_runtime::sysctl`); no `net.*` with the host's network.
fn check_sysctls(spec: &SpecRecord, network: &Mode) -> Result<()> {
    use berth_runtime::sysctl;
    let on_host = sysctl::HostNamespaces {
        network: *network == Mode::Host,
        ipc: false,
    };
    sysctl::check_all(
        spec.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        on_host,
    )
    .map_err(|e| ContainerError::invalid("sysctls", e.to_string()))
}

/// At each start: `net.*` sysctls never in the host's network namespace,
/// which `--network container:x` reaches when x is on the host's network
/// (at Create x may not even be running).
pub(super) fn check_net_sysctls_off_host(
    spec: &SpecRecord,
    netns: &crate::network::namespace::Netns,
) -> Result<()> {
    use berth_runtime::sysctl;
    let has_net = spec
        .sysctls
        .iter()
        .any(|(k, v)| sysctl::check(k, v) == Ok(sysctl::Owner::Net));
    if !has_net || !netns.is_the_hosts() {
        return Ok(());
    }
    let on_host = sysctl::HostNamespaces {
        network: true,
        ipc: false,
    };
    sysctl::check_all(
        spec.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        on_host,
    )
    .map_err(|e| {
        ContainerError::invalid(
            "sysctls",
            format!("the network namespace the container joins is the host's: {e}"),
        )
    })
}

/// `--group-add`: gids in digits (at most `MAX_ID`) or group names, which
/// the image's /etc/group must have at each start.
fn check_group_add(groups: &[String]) -> Result<()> {
    use berth_runtime::user::{MAX_ADDED_GROUPS, MAX_ID};
    if groups.len() > MAX_ADDED_GROUPS {
        return Err(ContainerError::invalid(
            "group_add",
            format!("{} groups: at most {MAX_ADDED_GROUPS}", groups.len()),
        ));
    }
    for g in groups {
        let name_ok = !g.is_empty()
            && g.len() <= 64
            && g.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        let id_ok =
            !g.bytes().all(|b| b.is_ascii_digit()) || g.parse::<u32>().is_ok_and(|n| n <= MAX_ID);
        if !name_ok || !id_ok {
            return Err(ContainerError::invalid(
                "group_add",
                format!(
                    "group {:?}: a gid from 0 to {MAX_ID}, or a group name of at most 64 letters, digits, '_', '-' and '.'",
                    capped(g)
                ),
            ));
        }
    }
    Ok(())
}
