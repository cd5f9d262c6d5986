//! Resolving a user spec against the container's own /etc/passwd and /etc/group.
//!
//! The semantics are runc's (`libcontainer/user`): a user or group given in
//! digits is an id, never a name. The image decides what its /etc/passwd
//! says, so looking digits up as a name would let an image with an entry
//! *named* `1000` and uid 0 turn `--user 1000` into root.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// PATH for containers whose image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The largest uid or gid a spec may name (runc's limit): `u32::MAX` is -1
/// to setuid(2), "leave unchanged".
pub const MAX_ID: u32 = i32::MAX as u32;

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

/// Why a user spec does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// A user name that /etc/passwd does not have.
    NoSuchUser(String),
    /// A group name that /etc/group does not have.
    NoSuchGroup(String),
    /// A numeric id above [`MAX_ID`].
    IdOutOfRange(String),
    /// The entry found in /etc/passwd or /etc/group has an id field that is
    /// not a number, or is above [`MAX_ID`].
    BadEntry {
        /// "/etc/passwd" or "/etc/group".
        file: &'static str,
        /// The entry's name.
        name: String,
    },
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::NoSuchUser(u) => write!(f, "no user named {u:?} in /etc/passwd"),
            UserError::NoSuchGroup(g) => write!(f, "no group named {g:?} in /etc/group"),
            UserError::IdOutOfRange(id) => write!(f, "id {id} is out of range (max {MAX_ID})"),
            UserError::BadEntry { file, name } => write!(f, "bad id in {file} for {name}"),
        }
    }
}

/// A user or group as the spec gives it.
#[derive(Clone, Copy)]
enum Named<'a> {
    Id(u32),
    Name(&'a str),
}

/// Digits are an id (runc's rule), anything else a name.
fn parse(s: &str) -> Result<Named<'_>, UserError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Named::Name(s));
    }
    match s.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(Named::Id(id)),
        _ => Err(UserError::IdOutOfRange(s.to_string())),
    }
}

/// One line of /etc/passwd or /etc/group, split on ':'; lines with fewer
/// than `min` fields are skipped.
fn records(text: &str, min: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min)
}

/// The id in field `at` of an entry. An id above [`MAX_ID`] is as bad as
/// one that is not a number: the image writes these files, and
/// `u32::MAX` is -1 to setuid(2) and setgid(2), "leave unchanged", so an
/// entry with that uid would run the container's process as root.
fn id_field(file: &'static str, fields: &[&str], at: usize) -> Result<u32, UserError> {
    match fields[at].parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(id),
        _ => Err(UserError::BadEntry {
            file,
            name: fields[0].to_string(),
        }),
    }
}

/// Resolves "", "name", "uid", "name:group", "uid:gid" (and mixes) against
/// the text of the image's /etc/passwd and /etc/group (empty when the image
/// has none). "" is uid 0. A numeric user is a uid: its primary group and
/// home come from the passwd entry with that uid if there is one, else
/// they are gid 0 and "/" (as with runc and Docker). A numeric group is a
/// gid. Names must exist.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Ids, UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() {
        Named::Id(0)
    } else {
        parse(user)?
    };
    let entry = match user {
        // First match wins; an entry whose uid is not a number cannot be
        // the one asked for.
        Named::Id(uid) => records(passwd, 7).find(|f| f[2].parse::<u32>().is_ok_and(|u| u == uid)),
        Named::Name(name) => records(passwd, 7).find(|f| f[0] == name),
    };
    let (uid, mut gid, name, home) = match (entry, user) {
        (Some(f), _) => (
            id_field("/etc/passwd", &f, 2)?,
            id_field("/etc/passwd", &f, 3)?,
            Some(f[0].to_string()),
            f[5].to_string(),
        ),
        (None, Named::Id(uid)) => (uid, 0, None, "/".to_string()),
        (None, Named::Name(name)) => return Err(UserError::NoSuchUser(name.to_string())),
    };
    if let Some(g) = grp {
        gid = match parse(g)? {
            Named::Id(n) => n,
            Named::Name(g) => {
                let f = records(group, 4)
                    .find(|f| f[0] == g)
                    .ok_or_else(|| UserError::NoSuchGroup(g.to_string()))?;
                id_field("/etc/group", &f, 2)?
            }
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = name {
        for f in records(group, 4) {
            // An empty member list names no one, not a user named "".
            if f[3].split(',').any(|m| !m.is_empty() && m == name) {
                // A group whose gid is not an id is not joined (as one
                // whose gid is not a number).
                if let Ok(g) = f[2].parse::<u32>() {
                    if g <= MAX_ID && !groups.contains(&g) {
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

/// Drops the groups /etc/group made `ids`'s user a member of, keeping its
/// primary group (the CRI's `supplemental_groups_policy: Strict`).
pub fn only_primary_group(ids: &mut Ids) {
    ids.groups = vec![ids.gid];
}

/// The most groups [`add_groups`] takes (`--group-add`, kubelet's
/// `supplemental_groups`).
pub const MAX_ADDED_GROUPS: usize = 32;

/// Adds `extra` (`docker run --group-add`: each a gid in digits, or a group
/// name of the container's /etc/group, given as `group`'s text) to the
/// supplementary groups of `ids`, after its own and without repeats.
pub fn add_groups(ids: &mut Ids, extra: &[String], group: &str) -> Result<(), UserError> {
    for g in extra {
        let gid = match parse(g)? {
            Named::Id(n) => n,
            Named::Name(name) => {
                let f = records(group, 4)
                    .find(|f| f[0] == name)
                    .ok_or_else(|| UserError::NoSuchGroup(name.to_string()))?;
                id_field("/etc/group", &f, 2)?
            }
        };
        if !ids.groups.contains(&gid) {
            ids.groups.push(gid);
        }
    }
    Ok(())
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
    fn added_groups_are_ids_or_names_of_the_containers_group_file() {
        let mut ids = resolve("www", PASSWD, GROUP).unwrap();
        assert_eq!(ids.groups, [33, 50]);
        let extra = ["1234", "staff", "root", "1234"].map(String::from);
        add_groups(&mut ids, &extra, GROUP).unwrap();
        assert_eq!(ids.groups, [33, 50, 1234, 0]);
        assert_eq!((ids.uid, ids.gid), (33, 33), "the primary ids stay");
        assert_eq!(
            add_groups(&mut ids, &["wheel".into()], GROUP),
            Err(UserError::NoSuchGroup("wheel".into()))
        );
        assert_eq!(
            add_groups(&mut ids, &["4294967295".into()], GROUP),
            Err(UserError::IdOutOfRange("4294967295".into()))
        );
        // A group entry whose gid is -1 to setgroups(2) is refused.
        let bad = "evil:x:4294967295:\n";
        assert!(matches!(
            add_groups(&mut ids, &["evil".into()], bad),
            Err(UserError::BadEntry { .. })
        ));
    }

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
    fn digits_are_a_uid_never_a_name() {
        // An image's entry *named* 1000 with uid 0 must not make
        // `--user 1000` root.
        let passwd = "1000:x:0:0::/:/bin/sh\nreal:x:1000:1001:r:/home/real:/bin/sh\n";
        let group = "g:x:1001:\nextra:x:1002:real,1000\n";
        let ids = resolve("1000", passwd, group).unwrap();
        assert_eq!(
            (ids.uid, ids.gid, ids.home.as_str()),
            (1000, 1001, "/home/real")
        );
        assert_eq!(ids.groups, vec![1001, 1002]);
        // Without an entry for the uid: gid 0, home "/", no memberships.
        let ids = resolve("1000", "1000:x:0:0::/root:/bin/sh\n", group).unwrap();
        assert_eq!((ids.uid, ids.gid, ids.home.as_str()), (1000, 0, "/"));
        assert_eq!(ids.groups, vec![0]);
        // A numeric group is a gid even when a group is named like it.
        let ids = resolve("1000:5", "", "5:x:0:\n").unwrap();
        assert_eq!((ids.uid, ids.gid), (1000, 5));
        // "" is uid 0, found by its uid whatever its name.
        let ids = resolve("", "admin:x:0:0::/adm:/bin/sh\n", "").unwrap();
        assert_eq!((ids.uid, ids.home.as_str()), (0, "/adm"));
        // A uid in the file with leading zeros still matches.
        let ids = resolve("7", "seven:x:007:8::/s:/bin/sh\n", "").unwrap();
        assert_eq!((ids.uid, ids.gid), (7, 8));
    }

    #[test]
    fn ids_out_of_range_fail() {
        assert_eq!(
            resolve("4294967295", PASSWD, GROUP),
            Err(UserError::IdOutOfRange("4294967295".into()))
        );
        assert!(resolve("0:99999999999", PASSWD, GROUP).is_err());
        assert!(resolve("2147483647", PASSWD, GROUP).is_ok());
    }

    #[test]
    fn bad_entries_fail_by_name() {
        assert_eq!(
            resolve("bad", "bad:x:zero:0::/:/bin/sh\n", ""),
            Err(UserError::BadEntry {
                file: "/etc/passwd",
                name: "bad".into()
            })
        );
    }

    /// Found by the fuzz target `user` (fuzz/): an image's /etc/passwd
    /// entry with uid or gid 4294967295 resolved to that id, which
    /// setuid(2)/setgid(2) take as -1, "leave unchanged": the container's
    /// process stayed root.
    #[test]
    fn ids_out_of_range_in_the_files_fail() {
        let bad = |name: &str, file: &'static str| -> Result<Ids, UserError> {
            Err(UserError::BadEntry {
                file,
                name: name.into(),
            })
        };
        let passwd = "evil:x:4294967295:0::/:/bin/sh\nevilg:x:1:4294967295::/:/bin/sh\n";
        assert_eq!(resolve("evil", passwd, ""), bad("evil", "/etc/passwd"));
        assert_eq!(resolve("evilg", passwd, ""), bad("evilg", "/etc/passwd"));
        // MAX_ID + 1 is out of range too; MAX_ID itself is fine.
        let ids = resolve("top", "top:x:2147483647:2147483647::/:/bin/sh\n", "").unwrap();
        assert_eq!((ids.uid, ids.gid), (MAX_ID, MAX_ID));
        let passwd = "over:x:2147483648:0::/:/bin/sh\n";
        assert_eq!(resolve("over", passwd, ""), bad("over", "/etc/passwd"));
        // A group named by the spec, and the groups a user is a member of.
        let group = "g:x:4294967295:www\nok:x:7:www\n";
        assert_eq!(resolve("www:g", PASSWD, group), bad("g", "/etc/group"));
        assert_eq!(resolve("www", PASSWD, group).unwrap().groups, vec![33, 7]);
        // The fuzzer's input: uid 0's entry has an empty name, which an
        // empty member list of a group with gid 3999999846 matched.
        let ids = resolve("0", ":0orx:0:0::/:/sh\n", ":x:3999999846:\n").unwrap();
        assert_eq!((ids.uid, ids.gid, ids.groups), (0, 0, vec![0]));
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
