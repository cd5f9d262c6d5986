//! Resolving a user spec against the container's own /etc/passwd and /etc/group.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// PATH for containers whose image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The identity the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from /etc/group membership).
    pub groups: Vec<u32>,
    /// Home directory, "/" when unknown.
    pub home: String,
}

/// Resolves "", "name", "uid", "name:group", "uid:gid" (and mixes) against
/// the text of the image's /etc/passwd and /etc/group (empty when the image
/// has none). Numeric ids need no entry in the files; names must exist.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Ids, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let entry = entries
        .iter()
        .find(|f| f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user));
    let (uid, mut gid, name, home) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("bad uid in /etc/passwd for {}", f[0]))?,
            f[3].parse::<u32>()
                .map_err(|_| format!("bad gid in /etc/passwd for {}", f[0]))?,
            Some(f[0]),
            f[5].to_string(),
        ),
        (None, Ok(uid)) => (uid, 0, None, "/".to_string()),
        (None, Err(_)) => return Err(format!("no user named {user:?} in /etc/passwd")),
    };
    let groups_tbl: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups_tbl
                .iter()
                .find(|f| f[0] == g)
                .ok_or_else(|| format!("no group named {g:?} in /etc/group"))?[2]
                .parse()
                .map_err(|_| format!("bad gid in /etc/group for {g}"))?,
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = name {
        for f in &groups_tbl {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

/// Adds PATH and HOME when the environment lacks them, as Docker does.
pub fn complete_env(env: &[String], ids: &Ids) -> Vec<String> {
    let mut out = env.to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        out.push(format!("HOME={}", ids.home));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\n";

    #[test]
    fn resolves_names_and_numbers() {
        let r = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let w = resolve("www", PASSWD, GROUP).unwrap();
        assert_eq!((w.uid, w.gid), (33, 33));
        assert_eq!(w.groups, vec![33, 50]);
        let n = resolve("1000:1000", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (1000, 1000, "/"));
        let g = resolve("www:staff", PASSWD, GROUP).unwrap();
        assert_eq!(g.gid, 50);
        let by_uid = resolve("33", PASSWD, GROUP).unwrap();
        assert_eq!(by_uid.home, "/var/www");
    }

    #[test]
    fn unknown_names_fail() {
        assert!(resolve("nobody", PASSWD, GROUP).is_err());
        assert!(resolve("www:nogroup", PASSWD, GROUP).is_err());
    }

    #[test]
    fn env_gets_defaults() {
        let ids = resolve("www", PASSWD, GROUP).unwrap();
        let env = complete_env(&["A=1".into()], &ids);
        assert!(env.contains(&"HOME=/var/www".to_string()));
        assert!(env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin")));
        let env = complete_env(&["PATH=/x".into()], &ids);
        assert!(env.contains(&"PATH=/x".to_string()));
    }
}
