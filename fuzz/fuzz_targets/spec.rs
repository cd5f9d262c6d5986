//! Container spec validation as Create runs it (bounds, limits, security
//! options, name) over a spec given as JSON (`SpecRecord`): never panics,
//! and an accepted spec stays within every documented bound, and its
//! normalised security options are a fixed point of the check.
#![no_main]

use berthd::container::bounds::*;
use berthd::container::record::SpecRecord;
use berthd::container::secopts::{self, MAX_CAPS, MAX_DEVICES};
use berthd::container::spec::{validate_limits, validate_name, MIN_MEMORY};
use libfuzzer_sys::fuzz_target;

fn validate(spec: &mut SpecRecord) -> bool {
    bounds_then_rest(spec).is_ok()
}

fn bounds_then_rest(spec: &mut SpecRecord) -> Result<(), berthd::container::error::ContainerError> {
    check_spec(spec)?;
    validate_limits(&spec.limits)?;
    secopts::check(spec)?;
    if !spec.name.is_empty() {
        validate_name(&spec.name)?;
    }
    Ok(())
}

fn no_nul(s: &str) -> bool {
    !s.as_bytes().contains(&0)
}

fn exec_list_ok(list: &[String], max: usize) -> bool {
    list.len() <= max && list.iter().all(|s| s.len() <= ARG_BYTES_MAX && no_nul(s))
}

fn clean_absolute(p: &str) -> bool {
    p.starts_with('/')
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut spec) = serde_json::from_slice::<SpecRecord>(data) else {
        return;
    };
    let given = spec.clone();
    if !validate(&mut spec) {
        return;
    }
    let s = &spec;
    assert!(s.image.len() <= IMAGE_MAX);
    assert!(s.name.len() <= NAME_MAX);
    assert!(exec_list_ok(&s.command, ARGS_MAX));
    assert!(exec_list_ok(
        s.entrypoint.as_deref().unwrap_or_default(),
        ARGS_MAX
    ));
    assert!(exec_list_ok(&s.env, ENV_MAX));
    let exec: usize = s
        .command
        .iter()
        .chain(s.entrypoint.iter().flatten())
        .chain(&s.env)
        .map(|a| a.len() + 1)
        .sum();
    assert!(exec <= EXEC_BYTES_MAX, "exec bytes {exec}");
    assert!(s.working_dir.len() <= WORKING_DIR_MAX && no_nul(&s.working_dir));
    assert!(s.user.len() <= USER_MAX && no_nul(&s.user));
    assert!(s.stop_signal.len() <= SIGNAL_MAX);
    assert!(s.labels.len() <= LABELS_MAX);
    let label_bytes: usize = s.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(label_bytes <= LABELS_BYTES_MAX);
    for (k, v) in &s.labels {
        assert!(!k.is_empty() && k.len() <= LABEL_KEY_MAX && v.len() <= LABEL_VALUE_MAX);
    }
    assert!(s.limits.cpuset_cpus.len() <= CPUSET_MAX && s.limits.cpuset_mems.len() <= CPUSET_MAX);
    let l = &s.limits;
    assert!(
        l.memory == 0 || l.memory >= MIN_MEMORY,
        "memory {}",
        l.memory
    );
    assert!(
        l.memory_swap == 0 || l.memory_swap == -1 || (l.memory > 0 && l.memory_swap >= l.memory),
        "swap {} memory {}",
        l.memory_swap,
        l.memory
    );
    assert!(l.nano_cpus >= 0 && (l.nano_cpus == 0 || l.nano_cpus >= 10_000_000));
    assert!(l.cpu_shares != 1 && l.cpu_shares <= 262_144);
    assert!(l.pids >= -1);
    assert!(s.cap_add.len() <= MAX_CAPS && s.cap_drop.len() <= MAX_CAPS);
    assert!(s.devices.len() <= MAX_DEVICES);
    for d in &s.devices {
        assert!(clean_absolute(&d.host_path), "host path {:?}", d.host_path);
        assert!(
            clean_absolute(&d.container_path) && d.container_path.starts_with("/dev/"),
            "container path {:?}",
            d.container_path
        );
        assert!(
            ["r", "w", "m", "rw", "rm", "wm", "rwm"].contains(&d.permissions.as_str()),
            "permissions {:?}",
            d.permissions
        );
    }
    if s.privileged {
        assert!(s.cap_add.is_empty() && s.cap_drop.is_empty());
    }
    if !s.name.is_empty() {
        assert!(s.name.len() <= 128);
    }
    // Only the device mappings are normalised; checking again changes nothing.
    let mut again = spec.clone();
    assert!(validate(&mut again), "a normalised spec is refused");
    assert_eq!(
        serde_json::to_string(&again).ok(),
        serde_json::to_string(&spec).ok()
    );
    assert_eq!(given.devices.len(), spec.devices.len());
});
