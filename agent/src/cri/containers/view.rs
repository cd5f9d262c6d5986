//! A berth container record as CRI shows it: `Container` (listings) and
//! `ContainerStatus`.

use std::collections::HashMap;

use crate::container::record::{PodJoin, Record};
use crate::container::state::State;
use crate::cri::api_file::v1 as cri;

/// CRI's state of a berth state: a paused or restarting container still
/// has its process (or will again), which CRI calls running.
pub fn state(s: State) -> cri::ContainerState {
    match s {
        State::Created => cri::ContainerState::ContainerCreated,
        State::Running | State::Paused => cri::ContainerState::ContainerRunning,
        State::Exited | State::Restarting => cri::ContainerState::ContainerExited,
    }
}

fn metadata(p: &PodJoin) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: p.container_name.clone(),
        attempt: p.attempt,
    }
}

fn labels(r: &Record) -> HashMap<String, String> {
    r.spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn annotations(p: &PodJoin) -> HashMap<String, String> {
    p.annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn image(r: &Record) -> cri::ImageSpec {
    cri::ImageSpec {
        image: r.spec.image.clone(),
        ..Default::default()
    }
}

/// The listing entry of a pod's container (`None`: not a pod's).
pub fn to_cri_container(r: &Record) -> Option<cri::Container> {
    let p = r.spec.pod.as_ref()?;
    Some(cri::Container {
        id: r.id.clone(),
        pod_sandbox_id: p.id.clone(),
        metadata: Some(metadata(p)),
        image: Some(image(r)),
        image_ref: r.image_id.clone(),
        state: state(r.state) as i32,
        created_at: r.created_at,
        labels: labels(r),
        annotations: annotations(p),
        image_id: r.image_id.clone(),
    })
}

/// Why a container ended, as kubelet shows it.
fn reason(r: &Record) -> &'static str {
    match (&r.exit, r.state) {
        (Some(e), State::Exited | State::Restarting) if e.oom_killed => "OOMKilled",
        (Some(e), State::Exited | State::Restarting) if e.exit_code == 0 && e.signal == 0 => {
            "Completed"
        }
        (Some(_), State::Exited | State::Restarting) => "Error",
        _ => "",
    }
}

/// The status of a pod's container (`None`: not a pod's).
pub fn to_cri_status(r: &Record) -> Option<cri::ContainerStatus> {
    let p = r.spec.pod.as_ref()?;
    let ended = matches!(r.state, State::Exited | State::Restarting);
    let exit = r.exit.as_ref().filter(|_| ended);
    Some(cri::ContainerStatus {
        id: r.id.clone(),
        metadata: Some(metadata(p)),
        state: state(r.state) as i32,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: exit.map_or(0, |e| e.finished_at_unix_nanos),
        exit_code: exit.map_or(0, |e| {
            if e.signal != 0 {
                128 + e.signal
            } else {
                e.exit_code
            }
        }),
        image: Some(image(r)),
        image_ref: r.image_id.clone(),
        reason: reason(r).to_string(),
        message: String::new(),
        labels: labels(r),
        annotations: annotations(p),
        mounts: r
            .spec
            .mounts
            .iter()
            // The pod's /dev/shm is berth's, not one kubelet asked for.
            .filter(|m| !m.pod_shm)
            .map(|m| cri::Mount {
                container_path: m.target.clone(),
                host_path: m.source.clone(),
                readonly: m.read_only,
                recursive_read_only: m.read_only && !m.read_only_top_only,
                propagation: match m.propagation.as_str() {
                    "rslave" => cri::MountPropagation::PropagationHostToContainer as i32,
                    "rshared" => cri::MountPropagation::PropagationBidirectional as i32,
                    _ => cri::MountPropagation::PropagationPrivate as i32,
                },
                ..Default::default()
            })
            .collect(),
        log_path: p.log_path.clone(),
        resources: None,
        image_id: r.image_id.clone(),
        user: r.started_ids.as_ref().map(|i| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(i.uid),
                gid: i64::from(i.gid),
                supplemental_groups: i.groups.iter().map(|&g| i64::from(g)).collect(),
            }),
        }),
        stop_signal: cri::Signal::from_str_name(&r.spec.stop_signal).map_or(0, |s| s as i32),
    })
}

/// Whether `r` passes ListContainers' filter.
pub fn matches(r: &Record, f: &cri::ContainerFilter) -> bool {
    let Some(p) = r.spec.pod.as_ref() else {
        return false;
    };
    (f.id.is_empty() || r.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || p.id.starts_with(&f.pod_sandbox_id))
        && f.state
            .as_ref()
            .is_none_or(|s| s.state == state(r.state) as i32)
        && f.label_selector
            .iter()
            .all(|(k, v)| r.spec.labels.get(k) == Some(v))
}
