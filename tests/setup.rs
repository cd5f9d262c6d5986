//! End to end: the container's mounts and masks, as the container sees them
//! (the plan in `berth_runtime::plan`, carried out by the monitor's init).

mod common;

use common::{sh, Agent};

/// Mount options of each mount point, from the container's own mountinfo.
fn options(mountinfo: &str, point: &str) -> Vec<String> {
    let line = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(point))
        .unwrap_or_else(|| panic!("{point} is not mounted:\n{mountinfo}"));
    line.split(' ')
        .nth(5)
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn mounts_have_their_flags_and_kernel_interfaces_are_masked() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let (exit, out, err) = agent.run_to_exit(sh("cat /proc/self/mountinfo")).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    let has = |point: &str, flags: &[&str]| {
        let opts = options(&out, point);
        for f in flags {
            assert!(opts.iter().any(|o| o == f), "{point}: {opts:?} lacks {f}");
        }
    };
    has("/", &["nodev"]);
    has("/proc", &["nosuid", "nodev", "noexec"]);
    has("/dev", &["nosuid", "nodev"]);
    has("/dev/pts", &["nosuid", "noexec"]);
    has("/dev/shm", &["nosuid", "nodev", "noexec"]);
    has("/dev/mqueue", &["nosuid", "nodev", "noexec"]);
    has("/sys", &["ro", "nosuid", "nodev", "noexec"]);
    has("/sys/fs/cgroup", &["ro"]);
    // The masks of interfaces this kernel has (the container's /proc is the
    // same kernel's).
    let masked = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/acpi",
        "/sys/firmware",
        "/proc/bus",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ];
    for masked in masked
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
    {
        assert!(
            out.lines().any(|l| l.split(' ').nth(4) == Some(masked)),
            "{masked} is not masked:\n{out}"
        );
    }
    has("/proc/sys", &["ro"]);

    // What the masks mean: kcore reads as nothing, /proc/sys is read-only,
    // the standard devices work on the nodev /dev.
    let (exit, out, err) = agent
        .run_to_exit(sh(
            "{ [ -e /proc/kcore ] && wc -c < /proc/kcore || echo 0; }; \
             echo x 2>/dev/null > /proc/sys/kernel/domainname && echo writable || echo refused; \
             head -c 3 /dev/zero | wc -c; \
             [ -d /proc/acpi ] && ls /proc/acpi | wc -l || echo 0",
        ))
        .await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, "0\nrefused\n3\n0\n");
    agent.assert_clean().await;
}

/// A mount point the image makes a symlink (here /proc, to a host
/// directory) fails the start before anything is mounted through it.
#[tokio::test]
async fn a_symlinked_mount_point_fails_the_start() {
    use common::image::{busybox_with, Entry};
    let agent = Agent::start().await;
    let host = tempfile::tempdir().unwrap();
    agent
        .import(
            busybox_with(
                "docker.io/library/symlinked-proc:latest",
                vec![Entry::Symlink(
                    "proc".into(),
                    host.path().to_string_lossy().into_owned(),
                )],
            ),
            "",
        )
        .await
        .expect("importing the image");
    let mut spec = sh("true");
    spec.image = "symlinked-proc".into();
    let err = agent
        .containers()
        .run(berth::v1::RunContainerRequest { spec: Some(spec) })
        .await
        .expect_err("a start through a symlinked /proc");
    assert!(
        err.message().contains("mount point /proc: not a directory"),
        "{err:?}"
    );
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
    agent.assert_clean().await;
}
