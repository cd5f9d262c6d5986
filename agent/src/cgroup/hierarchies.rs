//! Every cgroup hierarchy the host mounts, read from /proc/self/mountinfo.
//!
//! cgroups-rs handles the controllers berth sets limits with. On a v1 (or
//! hybrid) host the other hierarchies matter too: a container left in
//! berthd's cgroup of `blkio`, `devices`, `name=systemd` or the hybrid
//! `unified` tree can, from a nested namespace, create cgroups and change
//! settings there, outside anything berth removes. So the container gets a
//! cgroup of its own in every hierarchy, and [`Mount::nsdelegate`] says
//! whether a v2 tree treats cgroup namespaces as delegation boundaries.

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub path: String,
    /// v1: the controllers and `name=` of the hierarchy; empty for cgroup2.
    pub options: Vec<String>,
    /// cgroup2 mounted with `nsdelegate`: a process in a cgroup namespace
    /// cannot write the interface files of its namespace's root.
    pub nsdelegate: bool,
    /// True for cgroup2.
    pub v2: bool,
}

impl Mount {
    /// True when the hierarchy carries the controller (or `name=`) `what`.
    pub fn has(&self, what: &str) -> bool {
        self.options.iter().any(|o| o == what)
    }
}

/// The cgroup hierarchies in `mountinfo` (the text of /proc/self/mountinfo),
/// each once (a hierarchy mounted twice is one), skipping bind mounts of a
/// subtree, which are not where berth makes cgroups.
pub fn parse(mountinfo: &str) -> Vec<Mount> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(dev), Some(root), Some(path), Some(fstype), Some(opts)) = (
            pre.get(2),
            pre.get(3),
            pre.get(4),
            post.first(),
            post.get(2),
        ) else {
            continue;
        };
        let v2 = match *fstype {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        if *root != "/" || !seen.insert(dev.to_string()) {
            continue;
        }
        let opts: Vec<&str> = opts.split(',').collect();
        let options = if v2 {
            Vec::new()
        } else {
            opts.iter()
                .filter(|o| !matches!(**o, "rw" | "ro") && !o.starts_with("release_agent="))
                .filter(|o| !matches!(**o, "noprefix" | "clone_children" | "xattr"))
                .map(|o| o.to_string())
                .collect()
        };
        out.push(Mount {
            path: unescape(path),
            options,
            nsdelegate: v2 && opts.contains(&"nsdelegate"),
            v2,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hierarchies mounted here now.
pub fn mounted() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| parse(&s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 80 0:32 /berth /mnt/bound rw - cgroup cgroup rw,memory
91 80 0:35 / /mnt/again rw - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_hosts_list_every_hierarchy_once() {
        let m = parse(HYBRID);
        let paths: Vec<&str> = m.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/net_cls,net_prio",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified",
                "/mnt/again",
            ]
        );
        assert_eq!(m[0].options, ["cpu", "cpuacct"]);
        assert!(m[3].has("name=systemd"));
        assert_eq!(m[3].options, ["name=systemd"]);
        assert!(m[4].v2 && !m[4].nsdelegate);
    }

    #[test]
    fn nsdelegate_and_escapes() {
        let m = parse(
            "1 0 0:9 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n\
             2 0 0:10 / /a\\040b rw - cgroup cgroup rw,pids\n",
        );
        assert!(m[0].v2 && m[0].nsdelegate);
        assert_eq!(m[1].path, "/a b");
        assert!(parse("garbage\n\n1 2 3\n").is_empty());
    }
}
