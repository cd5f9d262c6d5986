//! `-v`, `--mount` and `--tmpfs` values, in Docker's syntax.

use berth::v1::{mount::Type, Mount};

/// One `-v` value: `DST` (an anonymous volume), `SRC:DST[:OPTS]`. A `SRC`
/// that is an absolute path is a bind mount, anything else a volume name.
/// `OPTS`, comma-separated: `ro`, `rw`, a bind propagation (`private`,
/// `rprivate`, `slave`, ...: the agent says which it supports), `nocopy`
/// (a volume: no copy of the image's content into it).
pub fn volume(s: &str) -> Result<Mount, String> {
    let bad = |why: &str| format!("invalid volume {s:?}: {why}");
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => return Err(bad("expected [SRC:]DST[:OPTIONS]")),
    };
    if target.is_empty() {
        return Err(bad("no destination"));
    }
    if parts.len() > 1 && source.is_empty() {
        return Err(bad("an empty source"));
    }
    let bind = source.starts_with('/');
    let mut m = Mount {
        r#type: if bind { Type::Bind } else { Type::Volume } as i32,
        source: source.into(),
        target: target.into(),
        ..Default::default()
    };
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" | "readonly" => m.read_only = true,
            "rw" => m.read_only = false,
            "nocopy" if !bind => m.no_copy = true,
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" if bind => {
                m.propagation = opt.into()
            }
            "z" | "Z" => return Err(bad("SELinux labels (z, Z) are not supported yet")),
            other => return Err(bad(&format!("unknown option {other:?}"))),
        }
    }
    Ok(m)
}

/// Whether a `--mount` flag value is true (`readonly`, `readonly=true`).
fn flag(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(format!("{key}={v:?}: true or false")),
    }
}

/// One `--mount` value: comma-separated `key=value` (Docker's keys):
/// `type=bind|volume|tmpfs` (volume when absent), `source`/`src`,
/// `target`/`destination`/`dst`, `readonly`/`ro`, `bind-propagation`,
/// `bind-recursive=enabled|disabled`, `volume-nocopy`, `tmpfs-size`,
/// `tmpfs-mode` (octal).
pub fn mount(s: &str) -> Result<Mount, String> {
    let bad = |why: &str| format!("invalid mount {s:?}: {why}");
    let mut m = Mount {
        r#type: Type::Volume as i32,
        ..Default::default()
    };
    for field in s.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let need = || value.ok_or_else(|| bad(&format!("{key} needs a value")));
        match key {
            "type" => {
                m.r#type = match need()? {
                    "bind" => Type::Bind,
                    "volume" => Type::Volume,
                    "tmpfs" => Type::Tmpfs,
                    other => {
                        return Err(bad(&format!("type {other:?} is not bind, volume or tmpfs")))
                    }
                } as i32
            }
            "source" | "src" => m.source = need()?.into(),
            "target" | "destination" | "dst" => m.target = need()?.into(),
            "readonly" | "ro" => m.read_only = flag(key, value).map_err(|e| bad(&e))?,
            "bind-propagation" => m.propagation = need()?.into(),
            "bind-recursive" => {
                m.recursive = Some(match need()? {
                    "enabled" => true,
                    "disabled" => false,
                    other => {
                        return Err(bad(&format!(
                        "bind-recursive={other:?}: enabled or disabled (others not supported yet)"
                    )))
                    }
                })
            }
            "volume-nocopy" => m.no_copy = flag(key, value).map_err(|e| bad(&e))?,
            "tmpfs-size" => m.tmpfs_size_bytes = size(need()?).map_err(|e| bad(&e))?,
            "tmpfs-mode" => m.tmpfs_mode = mode(need()?).map_err(|e| bad(&e))?,
            "" => {}
            other => return Err(bad(&format!("unknown key {other:?}"))),
        }
    }
    if m.target.is_empty() {
        return Err(bad("no target"));
    }
    Ok(m)
}

/// One `--tmpfs` value: `DST[:OPTS]`, `OPTS` comma-separated `size=64m`,
/// `mode=1777`, `ro`, `rw`.
pub fn tmpfs(s: &str) -> Result<Mount, String> {
    let bad = |why: &str| format!("invalid tmpfs {s:?}: {why}");
    let (target, opts) = s.split_once(':').unwrap_or((s, ""));
    if target.is_empty() {
        return Err(bad("no destination"));
    }
    let mut m = Mount {
        r#type: Type::Tmpfs as i32,
        target: target.into(),
        ..Default::default()
    };
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => m.tmpfs_size_bytes = size(v).map_err(|e| bad(&e))?,
            Some(("mode", v)) => m.tmpfs_mode = mode(v).map_err(|e| bad(&e))?,
            None if opt == "ro" => m.read_only = true,
            None if opt == "rw" => m.read_only = false,
            _ => return Err(bad(&format!("option {opt:?} is not supported yet"))),
        }
    }
    Ok(m)
}

fn size(v: &str) -> Result<u64, String> {
    let n = super::size(v)?;
    u64::try_from(n).map_err(|_| format!("size {v:?} is negative"))
}

fn mode(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("mode {v:?} is not an octal mode (at most 7777)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(m: &Mount) -> Type {
        Type::try_from(m.r#type).unwrap()
    }

    #[test]
    fn dash_v_binds_volumes_and_anonymous_volumes() {
        let m = volume("/srv/data:/data").unwrap();
        assert_eq!(kind(&m), Type::Bind);
        assert_eq!(
            (m.source.as_str(), m.target.as_str()),
            ("/srv/data", "/data")
        );
        assert!(!m.read_only);
        let m = volume("/srv:/s:ro,rslave").unwrap();
        assert!(m.read_only);
        assert_eq!(m.propagation, "rslave");
        let m = volume("db:/var/lib/db:rw,nocopy").unwrap();
        assert_eq!(kind(&m), Type::Volume);
        assert!(m.no_copy);
        assert_eq!(m.source, "db");
        let m = volume("/anon").unwrap();
        assert_eq!(kind(&m), Type::Volume);
        assert_eq!((m.source.as_str(), m.target.as_str()), ("", "/anon"));
        for bad in [
            "",
            "a:b:c:d",
            ":/x",
            "/x:",
            "/a:/b:bogus",
            "/a:/b:z",
            "db:/x:rslave",
        ] {
            assert!(volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dash_dash_mount_in_dockers_syntax() {
        let m =
            mount("type=bind,source=/srv,target=/s,readonly,bind-propagation=rprivate").unwrap();
        assert_eq!(kind(&m), Type::Bind);
        assert!(m.read_only);
        assert_eq!(m.propagation, "rprivate");
        let m = mount("type=bind,src=/srv,dst=/s,bind-recursive=disabled,ro=false").unwrap();
        assert_eq!(m.recursive, Some(false));
        assert!(!m.read_only);
        let m = mount("source=db,target=/db,volume-nocopy").unwrap();
        assert_eq!(kind(&m), Type::Volume);
        let m = mount("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=700").unwrap();
        assert_eq!(kind(&m), Type::Tmpfs);
        assert_eq!(m.tmpfs_size_bytes, 64 << 20);
        assert_eq!(m.tmpfs_mode, 0o700);
        for bad in [
            "type=nfs,target=/x",
            "source=/x",
            "type=bind,target=/x,bogus=1",
            "target=/x,readonly=maybe",
            "type=tmpfs,target=/t,tmpfs-mode=99999",
            "type=tmpfs,target=/t,tmpfs-size=-1",
            "target",
        ] {
            assert!(mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dash_dash_tmpfs() {
        let m = tmpfs("/run").unwrap();
        assert_eq!(kind(&m), Type::Tmpfs);
        assert_eq!(m.target, "/run");
        let m = tmpfs("/t:size=1m,mode=1770,ro").unwrap();
        assert_eq!(m.tmpfs_size_bytes, 1 << 20);
        assert_eq!(m.tmpfs_mode, 0o1770);
        assert!(m.read_only);
        for bad in ["", ":size=1m", "/t:noexec", "/t:size=x", "/t:mode=9"] {
            assert!(tmpfs(bad).is_err(), "{bad}");
        }
    }
}
