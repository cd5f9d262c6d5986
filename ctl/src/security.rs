//! `--security-opt`, as Docker spells it.

/// The largest seccomp profile the agent accepts (SeccompProfile.json).
const MAX_SECCOMP_PROFILE: u64 = 256 << 10;

/// `--security-opt` values, as Docker spells them (`seccomp=...` or
/// `seccomp:...`); `read` reads a profile file.
pub fn security_opts(
    opts: &[String],
    read: impl Fn(&std::path::Path) -> std::io::Result<Vec<u8>>,
) -> Result<Option<berth::v1::SecurityOptions>, String> {
    use berth::v1::seccomp_profile::Kind;
    use berth::v1::{SeccompProfile, SecurityOptions};
    let mut seccomp = None;
    for opt in opts {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("seccomp", Some(v)) => {
                let profile = match v {
                    "unconfined" => SeccompProfile {
                        kind: Kind::Unconfined as i32,
                        ..Default::default()
                    },
                    "default" | "builtin" => SeccompProfile {
                        kind: Kind::Default as i32,
                        ..Default::default()
                    },
                    "" => return Err("--security-opt seccomp= needs a value".into()),
                    path => {
                        let bytes = read(std::path::Path::new(path))
                            .map_err(|e| format!("reading the seccomp profile {path}: {e}"))?;
                        if bytes.len() as u64 > MAX_SECCOMP_PROFILE {
                            return Err(format!(
                                "the seccomp profile {path} has {} bytes; at most {MAX_SECCOMP_PROFILE} are accepted",
                                bytes.len()
                            ));
                        }
                        let json = String::from_utf8(bytes)
                            .map_err(|_| format!("the seccomp profile {path} is not UTF-8 text"))?;
                        SeccompProfile {
                            kind: Kind::Custom as i32,
                            json,
                            ..Default::default()
                        }
                    }
                };
                seccomp = Some(profile);
            }
            // Always set by berth's container init.
            ("no-new-privileges", None | Some("true")) => {}
            ("no-new-privileges", Some(_)) => {
                return Err(
                    "not supported yet: no-new-privileges=false (berth always sets no_new_privs)"
                        .into(),
                )
            }
            (other, _) => {
                let shown: String = other.chars().take(40).collect();
                return Err(format!("not supported yet: --security-opt {shown}"));
            }
        }
    }
    Ok(seccomp.map(|s| SecurityOptions {
        seccomp: Some(s),
        ..Default::default()
    }))
}

/// `--device HOST[:CONTAINER][:PERMS]`, as Docker reads it: with two parts
/// the second is the permissions if it looks like them (only r, w and m),
/// else the container path. The agent checks the rest.
pub fn device(s: &str) -> Result<berth::v1::DeviceMapping, String> {
    let perms = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, "", ""),
        [h, p] if perms(p) => (*h, "", *p),
        [h, c] => (*h, *c, ""),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(format!(
                "--device {:.80}: use HOST[:CONTAINER][:PERMISSIONS]",
                s
            ))
        }
    };
    if host.is_empty() {
        return Err("--device needs a host device path".into());
    }
    Ok(berth::v1::DeviceMapping {
        host_path: host.into(),
        container_path: container.into(),
        permissions: permissions.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::security_opts;
    use berth::v1::seccomp_profile::Kind;

    fn kind(opts: &[&str]) -> Result<Option<i32>, String> {
        let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        let read = |p: &std::path::Path| -> std::io::Result<Vec<u8>> {
            match p.to_str() {
                Some("p.json") => Ok(br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.to_vec()),
                Some("big.json") => Ok(vec![b' '; 300 << 10]),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        };
        security_opts(&opts, read).map(|s| s.and_then(|s| s.seccomp).map(|p| p.kind))
    }

    #[test]
    fn docker_spellings() {
        assert_eq!(kind(&[]), Ok(None));
        assert_eq!(
            kind(&["seccomp=unconfined"]),
            Ok(Some(Kind::Unconfined as i32))
        );
        assert_eq!(
            kind(&["seccomp:unconfined"]),
            Ok(Some(Kind::Unconfined as i32))
        );
        assert_eq!(kind(&["seccomp=default"]), Ok(Some(Kind::Default as i32)));
        assert_eq!(kind(&["seccomp=p.json"]), Ok(Some(Kind::Custom as i32)));
        assert_eq!(kind(&["no-new-privileges"]), Ok(None));
        assert_eq!(kind(&["no-new-privileges=true"]), Ok(None));
    }

    #[test]
    fn refusals_say_what() {
        assert!(kind(&["seccomp=missing.json"])
            .unwrap_err()
            .contains("missing.json"));
        assert!(kind(&["seccomp=big.json"]).unwrap_err().contains("at most"));
        assert!(kind(&["no-new-privileges=false"])
            .unwrap_err()
            .starts_with("not supported yet"));
        assert_eq!(
            kind(&["apparmor=docker-default"]).unwrap_err(),
            "not supported yet: --security-opt apparmor"
        );
    }
}

#[cfg(test)]
mod device_tests {
    use super::device;

    fn parts(s: &str) -> (String, String, String) {
        let d = device(s).unwrap();
        (d.host_path, d.container_path, d.permissions)
    }

    #[test]
    fn docker_device_spellings() {
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(parts("/dev/fuse"), t("/dev/fuse", "", ""));
        assert_eq!(parts("/dev/zero:r"), t("/dev/zero", "", "r"));
        assert_eq!(parts("/dev/zero:/dev/z"), t("/dev/zero", "/dev/z", ""));
        assert_eq!(parts("/dev/zero:/dev/z:rw"), t("/dev/zero", "/dev/z", "rw"));
        assert!(device("/a:/b:r:x").is_err());
        assert!(device(":r").is_err());
    }
}
