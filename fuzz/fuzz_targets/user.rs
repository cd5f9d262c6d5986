//! User resolution against an image's /etc/passwd and /etc/group: never
//! panics, and an accepted user spec gives ids the kernel takes as ids
//! (at most `MAX_ID`: `u32::MAX` is "leave unchanged" to setuid(2), so a
//! user resolving to it would run as root), and a numeric user is that uid.
#![no_main]

use berth_runtime::user::{resolve, MAX_ID};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // spec \0 passwd \0 group
    let mut parts = text.splitn(3, '\0');
    let spec = parts.next().unwrap_or_default();
    let passwd = parts.next().unwrap_or_default();
    let group = parts.next().unwrap_or_default();
    let Ok(ids) = resolve(spec, passwd, group) else {
        return;
    };
    assert!(ids.uid <= MAX_ID, "{spec:?} resolved to uid {}", ids.uid);
    assert!(ids.gid <= MAX_ID, "{spec:?} resolved to gid {}", ids.gid);
    for g in &ids.groups {
        assert!(*g <= MAX_ID, "{spec:?} resolved to supplementary gid {g}");
    }
    assert_eq!(ids.groups.first(), Some(&ids.gid), "primary group first");
    let user = spec.split_once(':').map_or(spec, |(u, _)| u);
    if !user.is_empty() && user.bytes().all(|b| b.is_ascii_digit()) {
        assert_eq!(
            Some(ids.uid),
            user.parse().ok(),
            "numeric user {user:?} is not that uid"
        );
    }
    if user.is_empty() {
        assert_eq!(ids.uid, 0, "an empty user is root");
    }
    if let Some((_, g)) = spec.split_once(':') {
        if !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()) {
            assert_eq!(Some(ids.gid), g.parse().ok(), "numeric group {g:?}");
        }
    }
});
