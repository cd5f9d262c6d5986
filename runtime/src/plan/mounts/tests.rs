use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::super::tests::{spec, userns_spec};
use super::*;
use crate::launch::{UserMount, UserMountKind};
use crate::plan::{container_setup, PlanError};

fn bind(target: &str) -> UserMount {
    UserMount {
        target: target.into(),
        kind: UserMountKind::Bind {
            source: "/srv/x".into(),
            recursive: true,
            copy_up: false,
            slave: false,
            shared: false,
        },
        read_only: false,
        read_only_top_only: false,
    }
}

#[test]
fn targets_are_checked() {
    assert_eq!(check_target("/data"), Ok(()));
    assert_eq!(check_target("/data/"), Ok(()));
    assert_eq!(check_target("/dev/shm"), Ok(()));
    assert_eq!(check_target("/procx"), Ok(()));
    assert_eq!(check_target("data"), Err(TargetError::Relative));
    assert_eq!(check_target(""), Err(TargetError::Relative));
    assert_eq!(check_target("/"), Err(TargetError::Root));
    assert_eq!(check_target("//"), Err(TargetError::Root));
    assert_eq!(check_target("/a/../b"), Err(TargetError::BadComponent));
    assert_eq!(check_target("/a/./b"), Err(TargetError::BadComponent));
    assert_eq!(check_target("/a//b"), Err(TargetError::BadComponent));
    assert_eq!(check_target("/a\0b"), Err(TargetError::BadComponent));
    assert_eq!(check_target("/proc"), Err(TargetError::KernelInterface));
    assert_eq!(
        check_target("/sys/kernel"),
        Err(TargetError::KernelInterface)
    );
    let long = "/".to_string() + &"a".repeat(MAX_TARGET);
    assert_eq!(check_target(&long), Err(TargetError::TooLong));
}

#[test]
fn mounts_come_after_the_kernel_filesystems_shallowest_first_before_pivot_root() {
    let mut s = spec(None, 2);
    s.mounts = vec![bind("/a/b/c"), bind("/a"), bind("/z/y")];
    let steps = container_setup(&s).unwrap();
    let at = |pred: &dyn Fn(&Step) -> bool| steps.iter().position(pred).unwrap();
    let targets: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::UserMount { root, mount } => {
                assert_eq!(root, "/state/containers/c1/rootfs");
                Some(mount.target.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(targets, ["/a", "/z/y", "/a/b/c"]);
    let first = at(&|s| matches!(s, Step::UserMount { .. }));
    let sys = at(&|s| matches!(s, Step::Mount(m) if m.fstype == "sysfs"));
    let cgroup = at(&|s| matches!(s, Step::Mount(m) if m.fstype == "cgroup2"));
    let pivot = at(&|s| matches!(s, Step::PivotRoot { .. }));
    assert!(sys < first && cgroup < first && first < pivot);
}

#[test]
fn read_only_root_is_remounted_after_the_mounts() {
    let mut s = spec(None, 2);
    s.read_only_rootfs = true;
    s.mounts = vec![bind("/data")];
    let steps = container_setup(&s).unwrap();
    let mount = steps
        .iter()
        .position(|s| matches!(s, Step::UserMount { .. }))
        .unwrap();
    let ro = steps
        .iter()
        .position(|s| matches!(s, Step::Remount { target, .. } if target == "/"))
        .unwrap();
    assert!(mount < ro);
}

#[test]
fn mounts_with_a_user_namespace_are_refused_not_made_wrong() {
    let mut s = userns_spec();
    s.mounts = vec![bind("/data")];
    assert!(matches!(container_setup(&s), Err(PlanError::Userns(_))));
}

fn with_propagation(target: &str, slave: bool, shared: bool) -> UserMount {
    let mut m = bind(target);
    if let UserMountKind::Bind {
        slave: s,
        shared: h,
        ..
    } = &mut m.kind
    {
        (*s, *h) = (slave, shared);
    }
    m
}

#[test]
fn the_namespace_is_private_unless_a_bind_receives_and_shared_sources_open_first() {
    let propagation = |mounts: Vec<UserMount>| -> Vec<Step> {
        let mut s = spec(None, 2);
        s.mounts = mounts;
        let steps = container_setup(&s).unwrap();
        let unshare = steps
            .iter()
            .position(
                |s| matches!(s, Step::Unshare(ns) if ns.contains(&crate::plan::Namespace::Mount)),
            )
            .unwrap();
        // What follows the unshare, up to the first mount.
        steps[unshare + 1..]
            .iter()
            .take_while(|s| !matches!(s, Step::Mount(_)))
            .cloned()
            .collect()
    };
    assert_eq!(propagation(vec![bind("/a")]), [Step::MakeMountsPrivate]);
    assert_eq!(
        propagation(vec![bind("/a"), with_propagation("/b", true, false)]),
        [Step::MakeMountsSlave]
    );
    let shared = with_propagation("/c", false, true);
    assert_eq!(
        propagation(vec![bind("/a"), shared.clone()]),
        [
            Step::OpenSharedBind {
                mount: shared.clone()
            },
            Step::MakeMountsSlave
        ]
    );
    // Its UserMount step still comes, in target order.
    let mut s = spec(None, 2);
    s.mounts = vec![shared.clone()];
    let steps = container_setup(&s).unwrap();
    assert!(steps.contains(&Step::UserMount {
        root: "/state/containers/c1/rootfs".into(),
        mount: shared
    }));
}
