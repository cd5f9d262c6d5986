use super::*;
use crate::launch::{CgroupPlacement, Rootfs};

mod extras;
mod joined;

const ROOT: &str = "/state/containers/c1/rootfs";

pub(super) fn spec(netns: Option<&str>, cgroup_version: u32) -> LaunchSpec {
    LaunchSpec {
        id: "c1".into(),
        dir: "/state/containers/c1".into(),
        rootfs: Rootfs {
            layers: vec!["/state/layers/base".into(), "/state/layers/a:b".into()],
            upper: "/state/containers/c1/upper".into(),
            work: "/state/containers/c1/work".into(),
            target: ROOT.into(),
        },
        args: vec!["sh".into()],
        env: vec![],
        cwd: String::new(),
        user: String::new(),
        hostname: "box".into(),
        netns: netns.map(Into::into),
        host_network: false,
        ipcns: None,
        utsns: None,
        resolv_conf: None,
        hosts_extra: vec![],
        seccomp: None,
        allow_privilege_escalation: false,
        strict_groups: false,
        capabilities: crate::caps::DEFAULT.0,
        read_only_rootfs: false,
        privileged: false,
        devices: vec![],
        cgroup: CgroupPlacement::Unified("/sys/fs/cgroup/berth/c1".into()),
        oom_events: None,
        cgroup_version,
        cgroup_v1_controllers: vec!["cpu".into(), "memory".into()],
        log_path: "/state/containers/c1/log".into(),
        log_max_bytes: 1 << 20,
        log_group_readable: false,
        exit_path: "/state/containers/c1/exit.json".into(),
        userns: None,
        mounts: Vec::new(),
        open_stdin: false,
        tty: false,
        terminal_size: (0, 0),
        await_attach: false,
        oom_score_adj: None,
        sysctls: Vec::new(),
        groups: Vec::new(),
        masked_paths: Vec::new(),
        readonly_paths: Vec::new(),
        host_ipc: false,
        host_pid: false,
        pidns: None,
    }
}

const POD_NS: &str = "/var/lib/berth/cri/pods/p1/ns";

/// A container of a pod: it joins the pod's IPC and UTS namespaces.
fn pod_spec(netns: Option<&str>, cgroup_version: u32) -> LaunchSpec {
    let mut s = spec(netns, cgroup_version);
    s.ipcns = Some(format!("{POD_NS}/ipc"));
    s.utsns = Some(format!("{POD_NS}/uts"));
    s
}

fn plans() -> Vec<Vec<Step>> {
    let mut all = Vec::new();
    for netns in [None, Some("/proc/1/fd/7")] {
        for version in [1, 2] {
            all.push(container_setup(&spec(netns, version)).unwrap());
            all.push(container_setup(&pod_spec(netns, version)).unwrap());
        }
    }
    all
}

fn position(steps: &[Step], what: impl Fn(&Step) -> bool) -> usize {
    steps.iter().position(what).expect("a step")
}

fn mount_at<'a>(steps: &'a [Step], rel: &str) -> &'a Mount {
    let target = format!("{ROOT}{rel}");
    steps
        .iter()
        .find_map(|s| match s {
            Step::Mount(m) if m.target == target => Some(m),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no mount at {rel}"))
}

fn pivot(steps: &[Step]) -> usize {
    position(steps, |s| matches!(s, Step::PivotRoot { .. }))
}

#[test]
fn steps_come_in_order() {
    for steps in plans() {
        let at = |rel: &str| position(&steps, |s| s.target() == Some(&format!("{ROOT}{rel}")));
        let unshare = position(
            &steps,
            |s| matches!(s, Step::Unshare(n) if n.contains(&Namespace::Mount)),
        );
        let private = position(&steps, |s| *s == Step::MakeMountsPrivate);
        let overlay = position(
            &steps,
            |s| matches!(s, Step::Mount(m) if m.fstype == "overlay"),
        );
        let first_mount = position(&steps, |s| matches!(s, Step::Mount(_)));
        // Nothing is mounted before the mount namespace is new and private.
        assert!(unshare < private && private < overlay && overlay == first_mount);
        // The root first, then what is on it.
        assert!(overlay < at("/etc"));
        assert!(overlay < at("/proc") && at("/proc") < at("/dev") && at("/dev") < at("/sys"));
        // The cgroup namespace only once the process is in its cgroup.
        let wait = position(&steps, |s| *s == Step::AwaitCgroup);
        let cgroupns = position(&steps, |s| *s == Step::Unshare(vec![Namespace::Cgroup]));
        let cgroupfs = at("/sys/fs/cgroup");
        assert!(at("/sys") < wait && wait < cgroupns && cgroupns < cgroupfs);
        // pivot_root after every mount in the root: after it, only the
        // masks, on the container's /proc and /sys.
        let pivot = pivot(&steps);
        assert!(cgroupfs < pivot);
        for (i, s) in steps.iter().enumerate() {
            assert_eq!(s.is_mask(), i > pivot && s.target().is_some(), "{s:?}");
        }
        assert!(steps[pivot + 1].is_mask());
    }
}

#[test]
fn every_path_before_pivot_root_is_inside_the_root() {
    for steps in plans() {
        let pivot = pivot(&steps);
        for s in &steps[..pivot] {
            let Some(t) = s.target() else { continue };
            assert!(
                t == ROOT || t.starts_with(&format!("{ROOT}/")),
                "{s:?} is outside the root"
            );
            assert!(!t.split('/').any(|c| c == ".." || c == "."), "{s:?}");
        }
        // No host path is read: not even the standard device nodes.
        assert!(
            !steps.iter().any(|s| matches!(s, Step::Bind { .. })),
            "{steps:?}"
        );
    }
}

#[test]
fn each_mount_has_the_flags_it_has_always_had() {
    use MountFlags as F;
    let nsn = F::NOSUID | F::NOEXEC | F::NODEV;
    for steps in plans() {
        let flags = |rel: &str| mount_at(&steps, rel).flags;
        assert_eq!(flags(""), F::NODEV, "the root allows setuid, never devices");
        assert_eq!(flags("/proc"), nsn);
        assert_eq!(flags("/dev"), F::NOSUID | F::NODEV | F::STRICTATIME);
        assert_eq!(flags("/dev/pts"), F::NOSUID | F::NOEXEC);
        assert_eq!(flags("/dev/shm"), nsn);
        assert_eq!(flags("/dev/mqueue"), nsn);
        assert_eq!(flags("/sys"), nsn | F::RDONLY);
        // Only devpts may hold device nodes (the ptys it makes itself).
        for s in &steps {
            if let Step::Mount(m) = s {
                assert!(m.flags.contains(F::NODEV) || m.fstype == "devpts", "{m:?}");
                assert!(
                    m.flags.contains(F::NOSUID) || m.fstype == "overlay",
                    "{m:?}"
                );
            }
        }
        assert_eq!(
            mount_at(&steps, "/dev").data.as_deref(),
            Some("mode=755,size=65536k")
        );
    }
}

#[test]
fn the_standard_devices_are_nodes_of_the_containers_own() {
    let steps = container_setup(&spec(None, 2)).unwrap();
    let dev = position(
        &steps,
        |s| matches!(s, Step::Mount(m) if m.target == format!("{ROOT}/dev")),
    );
    for (name, major, minor) in DEVICES {
        let path = format!("{ROOT}/dev/{name}");
        let made = position(&steps, |s| {
            matches!(s, Step::DeviceNode(n) if n.path == path
                && !n.block && (n.major, n.minor) == (major, minor)
                && n.mode == 0o666 && (n.uid, n.gid) == (0, 0))
        });
        assert!(dev < made, "{name}");
        // Never the host's node: its inode is the host's.
        assert!(!steps
            .iter()
            .any(|s| matches!(s, Step::Bind { target, .. } if *target == path)));
    }
}

#[test]
fn the_cgroup_filesystem_follows_the_version() {
    let v2 = container_setup(&spec(None, 2)).unwrap();
    let m = mount_at(&v2, "/sys/fs/cgroup");
    assert_eq!(m.fstype, "cgroup2");
    assert!(m.flags.contains(MountFlags::RDONLY));

    let v1 = container_setup(&spec(None, 1)).unwrap();
    assert_eq!(mount_at(&v1, "/sys/fs/cgroup").fstype, "tmpfs");
    for ctrl in ["cpu", "memory"] {
        let m = mount_at(&v1, &format!("/sys/fs/cgroup/{ctrl}"));
        assert_eq!(
            (m.fstype.as_str(), m.data.as_deref()),
            ("cgroup", Some(ctrl))
        );
        assert!(m.flags.contains(MountFlags::RDONLY | MountFlags::NODEV));
    }
    // The tmpfs holding them ends read-only, just before pivot_root.
    let pivot = pivot(&v1);
    assert_eq!(
        v1[pivot - 1],
        Step::Remount {
            target: format!("{ROOT}/sys/fs/cgroup"),
            flags: MountFlags::BIND
                | MountFlags::RDONLY
                | MountFlags::NOSUID
                | MountFlags::NOEXEC
                | MountFlags::NODEV,
        }
    );

    for bad in ["", "..", "a/b", "."] {
        let mut s = spec(None, 1);
        s.cgroup_v1_controllers.push(bad.into());
        assert_eq!(
            container_setup(&s),
            Err(PlanError::BadController(bad.into()))
        );
    }
}

#[test]
fn the_network_namespace_is_entered_first_or_created() {
    let own = container_setup(&spec(None, 2)).unwrap();
    assert_eq!(
        own[0],
        Step::Unshare(vec![
            Namespace::Mount,
            Namespace::Uts,
            Namespace::Ipc,
            Namespace::Net
        ])
    );
    assert_eq!(own.last(), Some(&Step::LoopbackUp));

    let spare = container_setup(&spec(Some("/proc/1/fd/7"), 2)).unwrap();
    assert_eq!(
        spare[..2],
        [
            Step::EnterNamespace {
                kind: Namespace::Net,
                path: "/proc/1/fd/7".into()
            },
            Step::Unshare(vec![Namespace::Mount, Namespace::Uts, Namespace::Ipc]),
        ]
    );
    assert!(!spare.contains(&Step::LoopbackUp));
    assert_eq!(spare.last(), Some(&Step::SetHostname("box".into())));
}

#[test]
fn the_host_network_is_neither_entered_nor_created() {
    let mut s = spec(None, 2);
    s.host_network = true;
    let host = container_setup(&s).unwrap();
    assert_eq!(
        host[0],
        Step::Unshare(vec![Namespace::Mount, Namespace::Uts, Namespace::Ipc])
    );
    assert!(!host
        .iter()
        .any(|s| matches!(s, Step::EnterNamespace { .. })));
    assert!(!host.contains(&Step::LoopbackUp));
    s.netns = Some("/proc/1/fd/7".into());
    assert_eq!(container_setup(&s), Err(PlanError::TwoNetworks));
}

#[test]
fn the_overlay_stacks_the_layers_top_first() {
    let steps = container_setup(&spec(None, 2)).unwrap();
    let m = mount_at(&steps, "");
    assert_eq!(
        m.data.as_deref(),
        Some(
            "lowerdir=/state/layers/a\\:b:/state/layers/base,\
             upperdir=/state/containers/c1/upper,workdir=/state/containers/c1/work"
        )
    );
    let mut s = spec(None, 2);
    s.rootfs.layers.clear();
    assert_eq!(container_setup(&s), Err(PlanError::NoLayers));
    s = spec(None, 2);
    s.rootfs.target = "rootfs".into();
    assert!(matches!(
        container_setup(&s),
        Err(PlanError::RelativeRoot(_))
    ));
}

#[test]
fn etc_gets_the_hostname() {
    let steps = container_setup(&spec(None, 2)).unwrap();
    let files = steps
        .iter()
        .find_map(|s| match s {
            Step::WriteFiles { dir, files } if *dir == format!("{ROOT}/etc") => Some(files),
            _ => None,
        })
        .expect("writes /etc");
    assert_eq!(files[0], ("hostname".into(), "box\n".into()));
    assert!(files[1].1.contains("127.0.1.1\tbox\n"));
    assert_eq!(files.len(), 2, "a resolv.conf nobody asked for");
    let mut s = spec(None, 2);
    s.resolv_conf = Some("nameserver 10.0.0.2\n".into());
    let steps = container_setup(&s).unwrap();
    let files = steps
        .iter()
        .find_map(|s| match s {
            Step::WriteFiles { files, .. } => Some(files),
            _ => None,
        })
        .expect("writes /etc");
    assert_eq!(
        files[2],
        ("resolv.conf".into(), "nameserver 10.0.0.2\n".into())
    );
}

#[test]
fn every_masked_path_is_masked_once() {
    let steps = container_setup(&spec(None, 1)).unwrap();
    let masked: Vec<&str> = steps
        .iter()
        .filter(|s| s.is_mask())
        .filter_map(Step::target)
        .collect();
    let mut expected: Vec<&str> = MASKED_FILES.to_vec();
    expected.extend(MASKED_DIRS);
    expected.extend(READONLY_PATHS);
    assert_eq!(masked, expected);
    assert!(masked.contains(&"/proc/sys"));
}

/// Docker's lists (moby's `oci/defaults.go`), written out here so a change
/// to the constants is a deliberate one.
#[test]
fn the_masks_are_dockers() {
    let docker_masked = [
        "/proc/asound",
        "/proc/acpi",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ];
    let docker_readonly = [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ];
    let steps = container_setup(&spec(None, 2)).unwrap();
    let mut masked: Vec<&str> = steps
        .iter()
        .filter_map(|s| match s {
            Step::MaskFile { path } | Step::MaskDir { path } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    let mut readonly: Vec<&str> = steps
        .iter()
        .filter_map(|s| match s {
            Step::ReadonlyPath { path } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    masked.sort_unstable();
    readonly.sort_unstable();
    let mut want_masked = docker_masked.to_vec();
    let mut want_readonly = docker_readonly.to_vec();
    want_masked.sort_unstable();
    want_readonly.sort_unstable();
    assert_eq!(masked, want_masked);
    assert_eq!(readonly, want_readonly);
    // Directories under a tmpfs, files under /dev/null: the usual kind of
    // each (the init covers whatever kind it finds).
    for dir in [
        "/proc/asound",
        "/sys/devices/virtual/powercap",
        "/proc/acpi",
    ] {
        assert!(steps.contains(&Step::MaskDir { path: dir.into() }), "{dir}");
    }
    for file in ["/proc/interrupts", "/proc/kcore", "/proc/keys"] {
        assert!(
            steps.contains(&Step::MaskFile { path: file.into() }),
            "{file}"
        );
    }
    // Masks come after pivot_root, and read-only paths after the masks.
    let pivot = pivot(&steps);
    let first_mask = position(&steps, Step::is_mask);
    assert!(pivot < first_mask);
}

#[test]
fn read_only_root_is_remounted_after_pivot_root_keeping_nodev() {
    let mut sp = spec(None, 2);
    sp.read_only_rootfs = true;
    let steps = container_setup(&sp).unwrap();
    let at = position(
        &steps,
        |s| matches!(s, Step::Remount { target, .. } if target == "/"),
    );
    assert!(at > pivot(&steps));
    let Step::Remount { flags, .. } = &steps[at] else {
        unreachable!()
    };
    assert!(flags.contains(MountFlags::RDONLY | MountFlags::NODEV | MountFlags::BIND));
    // Without it, no such step.
    let plain = container_setup(&spec(None, 2)).unwrap();
    assert!(!plain
        .iter()
        .any(|s| matches!(s, Step::Remount { target, .. } if target == "/")));
}

#[test]
fn devices_are_made_in_dev_before_pivot_root() {
    let mut sp = spec(None, 1);
    sp.devices = vec![DeviceNode {
        path: "/dev/myzero".into(),
        block: false,
        major: 1,
        minor: 5,
        mode: 0o666,
        uid: 0,
        gid: 0,
    }];
    let steps = container_setup(&sp).unwrap();
    let at = position(
        &steps,
        |s| matches!(s, Step::DeviceNode(n) if n.path.ends_with("/myzero")),
    );
    let Step::DeviceNode(node) = &steps[at] else {
        unreachable!()
    };
    assert_eq!(node.path, format!("{ROOT}/dev/myzero"));
    assert!(
        at > position(
            &steps,
            |s| matches!(s, Step::Mount(m) if m.target == format!("{ROOT}/dev"))
        )
    );
    assert!(at < pivot(&steps));
}

#[test]
fn privileged_is_unmasked_writable_and_without_nodev() {
    let mut sp = spec(None, 1);
    sp.privileged = true;
    let steps = container_setup(&sp).unwrap();
    assert!(!steps.iter().any(Step::is_mask));
    assert!(!mount_at(&steps, "").flags.contains(MountFlags::NODEV));
    assert!(!mount_at(&steps, "/dev").flags.contains(MountFlags::NODEV));
    assert!(!mount_at(&steps, "/sys").flags.contains(MountFlags::RDONLY));
    assert!(!mount_at(&steps, "/sys/fs/cgroup/memory")
        .flags
        .contains(MountFlags::RDONLY));
    // And the default container keeps all of them.
    let plain = container_setup(&spec(None, 1)).unwrap();
    assert!(plain.iter().any(Step::is_mask));
    assert!(mount_at(&plain, "/dev").flags.contains(MountFlags::NODEV));
    assert!(mount_at(&plain, "/sys").flags.contains(MountFlags::RDONLY));
}

pub(super) fn userns_spec() -> LaunchSpec {
    let mut s = spec(None, 2);
    s.userns = Some(crate::launch::IdMapping {
        uid: 100_000_000,
        gid: 100_000_000,
        size: 65536,
    });
    s
}

#[test]
fn userns_waits_for_the_monitor_then_attaches_the_root_and_drops_to_its_root() {
    let steps = container_setup(&userns_spec()).unwrap();
    assert_eq!(steps[0], Step::AwaitUserns);
    assert_eq!(
        steps[1],
        Step::Unshare(vec![
            Namespace::Mount,
            Namespace::Uts,
            Namespace::Ipc,
            Namespace::Net
        ])
    );
    assert_eq!(steps[2], Step::MakeMountsPrivate);
    assert_eq!(
        steps[3],
        Step::AttachRoot {
            target: ROOT.into()
        }
    );
    assert_eq!(steps[4], Step::BecomeRoot);
    // The monitor mounts the overlay; nothing else names the host's
    // state directory: the container's root could not pass through it.
    assert!(!steps
        .iter()
        .any(|s| matches!(s, Step::Mount(m) if m.fstype == "overlay")));
    let pivot = pivot(&steps);
    assert_eq!(steps[pivot], Step::PivotRoot { root: ".".into() });
    for step in &steps[5..pivot] {
        if let Some(t) = step.target() {
            assert!(t == "." || t.starts_with("./"), "{step:?}");
        }
    }
    assert!(steps.contains(&Step::LoopbackUp));
}

#[test]
fn userns_binds_the_hosts_standard_devices_instead_of_making_nodes() {
    let steps = container_setup(&userns_spec()).unwrap();
    assert!(!steps.iter().any(|s| matches!(s, Step::DeviceNode(_))));
    for (name, _, _) in DEVICES {
        let target = format!("./dev/{name}");
        let made = position(
            &steps,
            |s| matches!(s, Step::CreateFile { path, .. } if *path == target),
        );
        assert_eq!(
            steps[made + 1],
            Step::Bind {
                source: format!("/dev/{name}"),
                target
            }
        );
    }
}

#[test]
fn userns_refuses_what_its_root_cannot_own() {
    let mut s = userns_spec();
    s.netns = Some("/proc/1/fd/7".into());
    assert!(matches!(container_setup(&s), Err(PlanError::Userns(_))));
    // A pod's namespaces belong to the host's user namespace.
    let mut s = userns_spec();
    s.ipcns = Some(format!("{POD_NS}/ipc"));
    assert_eq!(
        container_setup(&s),
        Err(PlanError::Userns("an IPC namespace to join"))
    );
    let mut s = userns_spec();
    s.utsns = Some(format!("{POD_NS}/uts"));
    assert_eq!(
        container_setup(&s),
        Err(PlanError::Userns("a UTS namespace to join"))
    );
    let mut s = userns_spec();
    s.host_network = true;
    assert!(matches!(container_setup(&s), Err(PlanError::Userns(_))));
    let mut s = userns_spec();
    s.privileged = true;
    assert!(matches!(container_setup(&s), Err(PlanError::Userns(_))));
    let mut s = userns_spec();
    s.devices.push(DeviceNode {
        path: "/dev/fuse".into(),
        block: false,
        major: 10,
        minor: 229,
        mode: 0o666,
        uid: 0,
        gid: 0,
    });
    assert!(matches!(container_setup(&s), Err(PlanError::Userns(_))));
}

#[test]
fn id_mappings_overlap_only_when_their_ranges_meet() {
    let m = |uid, gid| crate::launch::IdMapping {
        uid,
        gid,
        size: 65536,
    };
    assert!(m(0, 0).uids_overlap(&m(65535, 0)));
    assert!(!m(0, 0).uids_overlap(&m(65536, 0)));
    assert!(!m(u32::MAX - 65535, 0).uids_overlap(&m(0, 0)));
    assert!(m(0, 10).gids_overlap(&m(0, 65545)));
    assert!(!m(0, 10).gids_overlap(&m(0, 65546)));
}
