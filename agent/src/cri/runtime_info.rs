//! What the CRI RuntimeService answers about the runtime itself: Version,
//! Status (runtime and network conditions) and RuntimeConfig. Pure: the
//! service in `runtime.rs` only wraps these in responses.

use std::collections::HashMap;

use super::api_file::v1 as cri;

/// The runtime's name, as `crictl version` shows it.
pub const RUNTIME_NAME: &str = "berth";
/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The kubelet runtime API version (`VersionResponse.version`): CRI v1
/// runtimes all answer "0.1.0" (containerd, CRI-O).
pub const KUBELET_API_VERSION: &str = "0.1.0";

/// The reason of the NetworkReady condition without a CNI configuration
/// (containerd's).
pub const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotReady";

/// Version: berth's own version (the agent crate's, semver).
pub fn version() -> cri::VersionResponse {
    cri::VersionResponse {
        version: KUBELET_API_VERSION.into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: RUNTIME_API_VERSION.into(),
    }
}

/// Status: RuntimeReady (berthd is serving), and NetworkReady: true when
/// the CNI configuration directory has a usable pod network (`network` is
/// its name), else false with the reason. `verbose` adds `info["berth"]`,
/// a JSON object saying what this CRI server serves and where the image
/// store is.
pub fn status(
    verbose: bool,
    image_store: &str,
    network: Result<String, String>,
) -> cri::StatusResponse {
    let (ready, reason, message) = match &network {
        Ok(_) => (true, String::new(), String::new()),
        Err(why) => (
            false,
            NETWORK_NOT_READY_REASON.to_string(),
            format!("berth CRI: pods get loopback only: {why}"),
        ),
    };
    let conditions = vec![
        cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        cri::RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: ready,
            reason,
            message,
        },
    ];
    let mut info = HashMap::new();
    if verbose {
        info.insert(
            "berth".to_string(),
            serde_json::json!({
                "runtimeVersion": env!("CARGO_PKG_VERSION"),
                "imageStore": image_store,
                "podNetwork": network.as_ref().ok(),
                "imageService": "served",
                "runtimeService": "pods and containers; streaming (exec, attach, \
                                   port-forward) over SPDY/3.1 and WebSocket",
            })
            .to_string(),
        );
    }
    cri::StatusResponse {
        status: Some(cri::RuntimeStatus { conditions }),
        info,
        // The default handler only. Recursive read-only mounts: berth's
        // mounts are made with mount_setattr(2) (Linux 5.12), which berth
        // needs anyway. No user namespaces for pods yet.
        runtime_handlers: vec![cri::RuntimeHandler {
            name: String::new(),
            features: Some(cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: true,
                user_namespaces: false,
            }),
        }],
        features: Some(cri::RuntimeFeatures {
            supplemental_groups_policy: true,
            ..Default::default()
        }),
    }
}

/// RuntimeConfig: berth manages cgroups through the cgroup file system
/// itself (no systemd), so the driver kubelet must match is cgroupfs.
pub fn runtime_config() -> cri::RuntimeConfigResponse {
    cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_berth_and_cri_v1() {
        let v = version();
        assert_eq!(v.runtime_name, "berth");
        assert_eq!(v.runtime_api_version, "v1");
        assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn status_is_runtime_ready_and_honest_about_the_network() {
        let s = status(
            false,
            "/x",
            Err("no CNI configuration in /etc/cni/net.d".into()),
        );
        let c = s.status.unwrap().conditions;
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].r#type.as_str(), c[0].status), ("RuntimeReady", true));
        assert_eq!((c[1].r#type.as_str(), c[1].status), ("NetworkReady", false));
        assert_eq!(c[1].reason, NETWORK_NOT_READY_REASON);
        assert!(s.info.is_empty());
        let ready = status(false, "/x", Ok("podnet".into()));
        let c = ready.status.unwrap().conditions;
        assert_eq!((c[1].status, c[1].reason.as_str()), (true, ""));
        let info = status(true, "/var/lib/berth/images", Ok("podnet".into())).info;
        let v: serde_json::Value = serde_json::from_str(&info["berth"]).unwrap();
        assert_eq!(v["imageStore"], "/var/lib/berth/images");
    }

    #[test]
    fn cgroup_driver_is_cgroupfs() {
        assert_eq!(
            runtime_config().linux.unwrap().cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );
    }
}
