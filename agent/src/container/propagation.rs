//! Bind propagation: which binds receive what the host mounts under their
//! source later (`slave`, `rslave`) or also give back what the container
//! mounts under them (`shared`, `rshared`), and the host-side checks that
//! make that possible.

use std::path::Path;

/// True for the propagation values that make a bind a slave of its source
/// (mounts made on the host under the source appear in the container;
/// nothing mounted in the container goes back).
pub fn is_slave(propagation: &str) -> bool {
    matches!(propagation, "slave" | "rslave")
}

/// True for the propagation values that make a bind a peer of its source
/// (mounts go both ways).
pub fn is_shared(propagation: &str) -> bool {
    matches!(propagation, "shared" | "rshared")
}

/// How the mount holding a bind source propagates on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePropagation {
    /// In a peer group (`shared:N`): a shared or slave bind can be made.
    Shared,
    /// Only a slave (`master:N`): a slave bind can be made, not a shared
    /// one (Docker refuses it too: nothing would reach the host).
    Slave,
    /// Private: neither.
    Private,
}

/// How the mount holding `path` (canonical) in `mountinfo` (the text of
/// `/proc/self/mountinfo`) propagates: only a shared or slave one lets
/// mounts made on the host reach a slave bind of it, only a shared one
/// lets a shared bind give mounts back (Docker checks the same). Returns
/// the mount point found and the answer.
pub fn source_propagation(mountinfo: &str, path: &Path) -> Option<(String, SourcePropagation)> {
    let mut best: Option<(String, SourcePropagation)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let point = unescape(point);
        if !path.starts_with(&point) {
            continue;
        }
        let optional = fields.get(6..sep).unwrap_or_default();
        let propagates = if optional.iter().any(|f| f.starts_with("shared:")) {
            SourcePropagation::Shared
        } else if optional.iter().any(|f| f.starts_with("master:")) {
            SourcePropagation::Slave
        } else {
            SourcePropagation::Private
        };
        // The longest mount point holding the path; of equal ones the last
        // (the one on top).
        if best.as_ref().is_none_or(|(b, _)| point.len() >= b.len()) {
            best = Some((point, propagates));
        }
    }
    best
}

/// Mount points in mountinfo escape space, tab, newline and backslash as
/// octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /tmp rw shared:5 - tmpfs tmpfs rw
31 30 0:26 / /tmp/priv rw - tmpfs tmpfs rw
32 30 0:27 / /tmp/slave\\040dir rw master:7 - tmpfs tmpfs rw
33 31 0:28 / /tmp/priv rw shared:9 - tmpfs tmpfs rw
";

    #[test]
    fn the_deepest_mount_on_top_decides() {
        use SourcePropagation::*;
        let got = |p: &str| source_propagation(INFO, Path::new(p));
        assert_eq!(got("/srv/x"), Some(("/".into(), Shared)));
        assert_eq!(got("/tmp/a"), Some(("/tmp".into(), Shared)));
        // Stacked: the later (upper) mount counts.
        assert_eq!(got("/tmp/priv/a"), Some(("/tmp/priv".into(), Shared)));
        assert_eq!(
            got("/tmp/slave dir/a"),
            Some(("/tmp/slave dir".into(), Slave))
        );
        let private = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        assert_eq!(
            source_propagation(private, Path::new("/x")),
            Some(("/".into(), Private))
        );
        // "/tmp/privx" is not under "/tmp/priv".
        assert_eq!(got("/tmp/privx"), Some(("/tmp".into(), Shared)));
        // Shared and a slave at once counts as shared.
        let both = "22 1 8:1 / / rw shared:3 master:1 - ext4 /dev/sda1 rw\n";
        assert_eq!(
            source_propagation(both, Path::new("/x")),
            Some(("/".into(), Shared))
        );
    }

    #[test]
    fn propagation_values() {
        assert!(is_slave("rslave") && is_slave("slave"));
        assert!(!is_slave("") && !is_slave("private") && !is_slave("rshared"));
        assert!(is_shared("rshared") && is_shared("shared"));
        assert!(!is_shared("") && !is_shared("rslave") && !is_shared("rprivate"));
    }
}
