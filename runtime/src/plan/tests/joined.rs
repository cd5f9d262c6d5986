//! Plans of a CRI pod's container: namespaces entered by path (network,
//! IPC, UTS) instead of created.

use super::*;

fn enter(kind: Namespace, path: &str) -> Step {
    Step::EnterNamespace {
        kind,
        path: path.into(),
    }
}

#[test]
fn a_pods_ipc_and_uts_namespaces_are_entered_not_created() {
    let steps = container_setup(&pod_spec(Some("/proc/1/fd/7"), 2)).unwrap();
    assert_eq!(
        steps[..4],
        [
            enter(Namespace::Net, "/proc/1/fd/7"),
            enter(Namespace::Ipc, &format!("{POD_NS}/ipc")),
            enter(Namespace::Uts, &format!("{POD_NS}/uts")),
            Step::Unshare(vec![Namespace::Mount]),
        ]
    );
    // Nothing enters a namespace once any is created.
    assert!(!steps[4..]
        .iter()
        .any(|s| matches!(s, Step::EnterNamespace { .. })));
    // The pod's UTS namespace keeps the hostname it has, shared by its
    // containers; the container's own files still name it.
    assert!(!steps.iter().any(|s| matches!(s, Step::SetHostname(_))));
    let etc = steps
        .iter()
        .find_map(|s| match s {
            Step::WriteFiles { files, .. } => Some(files),
            _ => None,
        })
        .expect("/etc files");
    assert!(etc.contains(&("hostname".into(), "box\n".into())));

    // Each on its own: the other is created as before.
    let mut ipc = spec(None, 2);
    ipc.ipcns = Some(format!("{POD_NS}/ipc"));
    let steps = container_setup(&ipc).unwrap();
    assert_eq!(
        steps[..2],
        [
            enter(Namespace::Ipc, &format!("{POD_NS}/ipc")),
            Step::Unshare(vec![Namespace::Mount, Namespace::Uts, Namespace::Net]),
        ]
    );
    assert!(steps.contains(&Step::SetHostname("box".into())));
    assert!(steps.contains(&Step::LoopbackUp));

    let mut uts = spec(None, 2);
    uts.utsns = Some(format!("{POD_NS}/uts"));
    let steps = container_setup(&uts).unwrap();
    assert_eq!(
        steps[..2],
        [
            enter(Namespace::Uts, &format!("{POD_NS}/uts")),
            Step::Unshare(vec![Namespace::Mount, Namespace::Ipc, Namespace::Net]),
        ]
    );
    assert!(!steps.iter().any(|s| matches!(s, Step::SetHostname(_))));
    assert_eq!(steps.last(), Some(&Step::LoopbackUp));
}

#[test]
fn without_namespaces_to_join_the_plan_enters_only_a_network() {
    for netns in [None, Some("/proc/1/fd/7")] {
        for version in [1, 2] {
            let steps = container_setup(&spec(netns, version)).unwrap();
            let entered: Vec<_> = steps
                .iter()
                .filter_map(|s| match s {
                    Step::EnterNamespace { kind, .. } => Some(*kind),
                    _ => None,
                })
                .collect();
            let expected: &[Namespace] = if netns.is_some() {
                &[Namespace::Net]
            } else {
                &[]
            };
            assert_eq!(entered, expected);
            let created = steps
                .iter()
                .find_map(|s| match s {
                    Step::Unshare(n) if n.contains(&Namespace::Mount) => Some(n),
                    _ => None,
                })
                .expect("new namespaces");
            assert!(created.contains(&Namespace::Ipc) && created.contains(&Namespace::Uts));
            assert_eq!(
                steps
                    .iter()
                    .filter(|s| **s == Step::SetHostname("box".into()))
                    .count(),
                1
            );
        }
    }
}

#[test]
fn launch_specs_without_namespaces_to_join_still_parse() {
    let mut json = serde_json::to_value(spec(None, 2)).unwrap();
    let fields = json.as_object_mut().unwrap();
    assert!(fields.remove("ipcns").is_some() && fields.remove("utsns").is_some());
    let back: LaunchSpec = serde_json::from_value(json).unwrap();
    assert_eq!((back.ipcns, back.utsns), (None, None));
}
