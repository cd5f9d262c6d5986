//! What a spec adds to berth's defaults: sysctls (written once /proc is the
//! container's and before the masks; the host's never), masked and read-only
//! paths (added, never in place of berth's own).

use super::*;

fn with(sysctls: &[(&str, &str)], host_network: bool) -> LaunchSpec {
    let mut s = spec(None, 2);
    s.host_network = host_network;
    s.sysctls = sysctls
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

#[test]
fn sysctls_are_written_after_pivot_root_and_before_the_masks() {
    let steps = container_setup(&with(
        &[("net.ipv4.ip_forward", "1"), ("kernel/shmmax", "4096")],
        false,
    ))
    .unwrap();
    let at = |path: &str| {
        position(
            &steps,
            |s| matches!(s, Step::Sysctl { path: p, .. } if p == path),
        )
    };
    let forward = at("/proc/sys/net/ipv4/ip_forward");
    let shmmax = at("/proc/sys/kernel/shmmax");
    assert!(pivot(&steps) < forward && forward < shmmax);
    let first_mask = position(&steps, Step::is_mask);
    assert!(shmmax < first_mask, "{steps:#?}");
    assert_eq!(
        steps[forward],
        Step::Sysctl {
            path: "/proc/sys/net/ipv4/ip_forward".into(),
            value: "1".into()
        }
    );
}

#[test]
fn the_hosts_sysctls_have_no_plan() {
    for (sysctls, host_network) in [
        (&[("vm.swappiness", "1")][..], false),
        (&[("net.ipv4.ip_forward", "1")][..], true),
        (&[("net/../kernel/core_pattern", "x")][..], false),
    ] {
        let err = container_setup(&with(sysctls, host_network)).unwrap_err();
        assert!(matches!(err, PlanError::Sysctl(_)), "{sysctls:?}: {err:?}");
    }
    // IPC sysctls are the container's own, whatever its network.
    assert!(container_setup(&with(&[("kernel.msgmax", "1")], true)).is_ok());
}

#[test]
fn masked_and_read_only_paths_are_added_to_berths_own() {
    let mut s = spec(None, 2);
    s.masked_paths = vec!["/etc/secret".into()];
    s.readonly_paths = vec!["/tmp".into()];
    let steps = container_setup(&s).unwrap();
    let defaults = container_setup(&spec(None, 2)).unwrap();
    let masks = |steps: &[Step]| steps.iter().filter(|s| s.is_mask()).count();
    assert_eq!(
        masks(&steps),
        masks(&defaults) + 2,
        "never fewer than berth's"
    );
    assert!(steps.contains(&Step::MaskFile {
        path: "/etc/secret".into()
    }));
    assert!(steps.contains(&Step::ReadonlyPath {
        path: "/tmp".into()
    }));
    for bad in ["tmp", "/", "/a/../b", "/a//b", "/a/./b", "/a/"] {
        let mut s = spec(None, 2);
        s.readonly_paths = vec![bad.into()];
        assert_eq!(
            container_setup(&s),
            Err(PlanError::BadPath(bad.into())),
            "{bad}"
        );
    }
}

#[test]
fn the_hosts_ipc_namespace_is_kept_not_created() {
    let mut s = spec(None, 2);
    s.host_ipc = true;
    let steps = container_setup(&s).unwrap();
    let Some(Step::Unshare(created)) = steps.iter().find(|s| matches!(s, Step::Unshare(_))) else {
        panic!("no unshare: {steps:#?}");
    };
    assert!(!created.contains(&Namespace::Ipc), "{created:?}");
    assert!(created.contains(&Namespace::Mount));
    s.ipcns = Some("/pods/p/ns/ipc".into());
    assert_eq!(container_setup(&s), Err(PlanError::TwoIpc));
    // Its sysctls would be the host's.
    let mut s = spec(None, 2);
    s.host_ipc = true;
    s.sysctls = vec![("kernel.shmmax".into(), "1".into())];
    assert!(matches!(container_setup(&s), Err(PlanError::Sysctl(_))));
}
