//! Tests of `build::layer` on real trees (as root: overlay mounts, mknod,
//! trusted.* xattrs).

use super::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use nix::mount::{mount, umount, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat};

use crate::build::content::content_digest;
use crate::build::walk::open_checked;
use tar::Archive;

/// One entry read back from a layer.
#[derive(Debug)]
struct Got {
    path: String,
    ty: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
    dev: (u32, u32),
}

fn read_tar(blob: &LayerBlob) -> Vec<Got> {
    let bytes = fs::read(&blob.path).unwrap();
    assert_eq!(bytes.len() as u64, blob.size);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    assert_eq!(digest, blob.digest);
    let mut ar = Archive::new(bytes.as_slice());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                let key = ext.key().unwrap();
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let h = e.header().clone();
        let dev = match h.entry_type() {
            EntryType::Char | EntryType::Block => (
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            ),
            _ => (0, 0),
        };
        let path = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.to_vec()).unwrap());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        assert!(h.username_bytes().is_none_or(|u| u.is_empty()));
        assert!(h.groupname_bytes().is_none_or(|g| g.is_empty()));
        out.push(Got {
            path,
            ty: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
            xattrs,
            dev,
        });
    }
    assert_eq!(out.is_empty(), blob.empty);
    out
}

fn paths(got: &[Got]) -> Vec<&str> {
    got.iter().map(|g| g.path.as_str()).collect()
}

fn find<'a>(got: &'a [Got], path: &str) -> &'a Got {
    got.iter()
        .find(|g| g.path == path)
        .unwrap_or_else(|| panic!("no {path} in {:?}", paths(got)))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a live buffer of value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {name}: {}", io::Error::last_os_error());
}

fn no_lower(_: &str) -> bool {
    false
}

fn diff(upper: &Path, out: &Path) -> Result<LayerBlob> {
    diff_upper(upper, &[], &[], &no_lower, u64::MAX, &out.join("layer.tar"))
}

fn touch(path: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

#[test]
fn whiteouts_and_opaque_dirs_from_a_real_overlay() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged) = (
        t.path().join("l"),
        t.path().join("u"),
        t.path().join("w"),
        t.path().join("m"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    fs::write(lower.join("gone.txt"), "x").unwrap();
    fs::create_dir_all(lower.join("emptied")).unwrap();
    fs::write(lower.join("emptied/a"), "a").unwrap();
    fs::write(lower.join("emptied/b"), "b").unwrap();
    fs::create_dir_all(lower.join("opq")).unwrap();
    fs::write(lower.join("opq/old"), "old").unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .unwrap();
    let ops = || -> io::Result<()> {
        fs::remove_file(merged.join("gone.txt"))?;
        fs::remove_file(merged.join("emptied/a"))?;
        fs::remove_file(merged.join("emptied/b"))?;
        fs::remove_file(merged.join("opq/old"))?;
        fs::remove_dir(merged.join("opq"))?;
        fs::create_dir(merged.join("opq"))?;
        fs::write(merged.join("opq/new"), "new")?;
        fs::write(merged.join("new.txt"), "hello")
    };
    let res = ops();
    umount(&merged).unwrap();
    res.unwrap();

    let blob = diff(&upper, t.path()).unwrap();
    let got = read_tar(&blob);
    assert_eq!(
        paths(&got),
        [
            "emptied/",
            "emptied/.wh.a",
            "emptied/.wh.b",
            ".wh.gone.txt",
            "new.txt",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/new"
        ]
    );
    let wh = find(&got, ".wh.gone.txt");
    assert_eq!((wh.ty, wh.data.len()), (EntryType::Regular, 0));
    assert_eq!(find(&got, "new.txt").data, b"hello");
    assert_eq!(find(&got, "opq/.wh..wh..opq").ty, EntryType::Regular);
    // overlayfs's own xattrs never reach the layer.
    assert!(got.iter().all(|g| g.xattrs.is_empty()), "{got:?}");
}

#[test]
fn user_overlay_opaque_and_xattr_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    fs::create_dir_all(up.join("d")).unwrap();
    set_xattr(&up.join("d"), "user.overlay.opaque", b"y");
    fs::create_dir_all(up.join("x")).unwrap();
    set_xattr(&up.join("x"), "trusted.overlay.opaque", b"x");
    fs::write(up.join("x/gone"), "").unwrap();
    set_xattr(&up.join("x/gone"), "trusted.overlay.whiteout", b"");
    let got = read_tar(&diff(&up, t.path()).unwrap());
    assert_eq!(paths(&got), ["d/", "d/.wh..wh..opq", "x/", "x/.wh.gone"]);
}

#[test]
fn redirects_and_wh_names_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    fs::create_dir_all(up.join("moved")).unwrap();
    set_xattr(&up.join("moved"), "trusted.overlay.redirect", b"/old");
    let err = diff(&up, t.path()).unwrap_err();
    assert!(matches!(err.cause(), LayerCause::Unsupported(_)));
    assert!(err.to_string().contains("not supported yet"), "{err}");

    let up2 = t.path().join("u2");
    fs::create_dir_all(&up2).unwrap();
    fs::write(up2.join(".wh.sneaky"), "").unwrap();
    assert!(matches!(
        diff(&up2, t.path()).unwrap_err().cause(),
        LayerCause::Invalid(_)
    ));
}

#[test]
fn runtime_placeholders_are_left_out_unless_written() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    for d in ["proc", "sys", "dev", "etc"] {
        fs::create_dir_all(up.join(d)).unwrap();
    }
    fs::write(up.join("dev/made"), "x").unwrap();
    fs::write(up.join("etc/hosts"), "").unwrap();
    fs::write(up.join("etc/hostname"), "real").unwrap();
    fs::write(up.join("etc/resolv.conf"), "").unwrap();
    let skip = [
        "proc",
        "sys",
        "dev",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ];
    let lower = |p: &str| p == "sys" || p == "etc/resolv.conf";
    let blob = diff_upper(&up, &skip, &[], &lower, u64::MAX, &t.path().join("l.tar")).unwrap();
    let got = read_tar(&blob);
    assert_eq!(
        paths(&got),
        [
            "dev/",
            "dev/made",
            "etc/",
            "etc/hostname",
            "etc/resolv.conf",
            "sys/"
        ]
    );

    // Only placeholders (under a dir the image lacks): nothing at all.
    let up2 = t.path().join("u2");
    fs::create_dir_all(up2.join("proc")).unwrap();
    fs::create_dir_all(up2.join("etc")).unwrap();
    fs::write(up2.join("etc/hosts"), "").unwrap();
    let blob = diff_upper(
        &up2,
        &skip,
        &[],
        &no_lower,
        u64::MAX,
        &t.path().join("l2.tar"),
    )
    .unwrap();
    assert!(blob.empty);
    assert!(read_tar(&blob).is_empty());
    assert_eq!(blob.size, 1024);

    // A directory the image has, copied up only to hold a placeholder:
    // left out too, unless it is opaque (the RUN replaced it).
    let up3 = t.path().join("u3");
    fs::create_dir_all(up3.join("etc")).unwrap();
    fs::write(up3.join("etc/hosts"), "").unwrap();
    let etc = |p: &str| p == "etc";
    let out = t.path().join("l3.tar");
    assert!(diff_upper(&up3, &skip, &[], &etc, 9, &out).unwrap().empty);
    set_xattr(&up3.join("etc"), "trusted.overlay.opaque", b"y");
    let got = read_tar(&diff_upper(&up3, &skip, &[], &etc, 9, &out).unwrap());
    assert_eq!(paths(&got), ["etc/", "etc/.wh..wh..opq"]);
}

#[test]
fn modes_links_devices_and_xattrs() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    fs::create_dir_all(up.join("bin")).unwrap();
    let su = up.join("bin/su");
    fs::write(&su, "elf").unwrap();
    fs::set_permissions(&su, fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::chown(&su, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&su, fs::Permissions::from_mode(0o4755)).unwrap();
    // vfs_cap_data v2, effective, permitted CAP_NET_BIND_SERVICE.
    let cap = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    set_xattr(&su, "security.capability", &cap);
    set_xattr(&su, "trusted.secret", b"no");
    set_xattr(&su, "user.keep", b"yes");
    fs::hard_link(&su, up.join("bin/su2")).unwrap();
    symlink("/etc/passwd", up.join("pw")).unwrap();
    symlink("/etc", up.join("etc-link")).unwrap();
    mknod(
        &up.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    fs::set_permissions(up.join("null"), fs::Permissions::from_mode(0o666)).unwrap();
    nix::unistd::mkfifo(&up.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    fs::create_dir_all(up.join("sticky")).unwrap();
    fs::set_permissions(up.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    let long = "d".repeat(120) + "/" + &"f".repeat(150);
    fs::create_dir_all(up.join("d".repeat(120))).unwrap();
    fs::write(up.join(&long), "long").unwrap();
    fs::hard_link(up.join(&long), up.join("long-link")).unwrap();
    symlink(&long, up.join("long-sym")).unwrap();

    let got = read_tar(&diff(&up, t.path()).unwrap());
    let f = find(&got, "bin/su");
    assert_eq!(
        (f.ty, f.mode, f.uid, f.gid),
        (EntryType::Regular, 0o4755, 1234, 5678)
    );
    let names: Vec<&str> = f.xattrs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["security.capability", "user.keep"]);
    assert_eq!(f.xattrs[0].1, cap);
    let l = find(&got, "bin/su2");
    assert_eq!((l.ty, l.link.as_deref()), (EntryType::Link, Some("bin/su")));
    let s = find(&got, "pw");
    assert_eq!(
        (s.ty, s.link.as_deref(), s.data.len()),
        (EntryType::Symlink, Some("/etc/passwd"), 0)
    );
    assert_eq!(find(&got, "etc-link").ty, EntryType::Symlink);
    assert!(!got.iter().any(|g| g.path.starts_with("etc-link/")));
    let n = find(&got, "null");
    assert_eq!((n.ty, n.dev, n.mode), (EntryType::Char, (1, 3), 0o666));
    assert_eq!(find(&got, "fifo").ty, EntryType::Fifo);
    assert_eq!(find(&got, "sticky/").mode, 0o1777);
    assert_eq!(find(&got, &long).data, b"long");
    let hl = find(&got, "long-link");
    assert_eq!(
        (hl.ty, hl.link.as_deref()),
        (EntryType::Link, Some(long.as_str()))
    );
    assert_eq!(find(&got, "long-sym").link.as_deref(), Some(long.as_str()));
}

#[test]
fn layers_are_deterministic_and_mtimes_clamped() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    fs::create_dir_all(up.join("a/b")).unwrap();
    for (i, name) in ["z", "a/b/c", "a-b", "a0", "A"].iter().enumerate() {
        fs::write(up.join(name), format!("{i}")).unwrap();
    }
    touch(&up.join("a0"), 500);
    let run = |n: &str| diff_upper(&up, &[], &[], &no_lower, 1000, &t.path().join(n)).unwrap();
    let first = run("1.tar");
    let got = read_tar(&first);
    assert_eq!(paths(&got), ["A", "a/", "a/b/", "a/b/c", "a-b", "a0", "z"]);
    assert_eq!(find(&got, "a0").mtime, 500);
    assert_eq!(find(&got, "z").mtime, 1000);
    assert_eq!(run("2.tar").digest, first.digest);
    for name in ["z", "a/b/c", "a", "a/b"] {
        touch(&up.join(name), 2_000_000_000);
    }
    assert_eq!(run("3.tar").digest, first.digest);
    fs::write(up.join("z"), "changed").unwrap();
    assert_ne!(run("4.tar").digest, first.digest);
}

#[test]
fn copy_layer_owns_modes_and_parents() {
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path().join("ctx");
    fs::create_dir_all(ctx.join("src/sub")).unwrap();
    fs::write(ctx.join("src/f"), "f").unwrap();
    fs::write(ctx.join("src/sub/g"), "g").unwrap();
    symlink("../f", ctx.join("src/sub/up")).unwrap();
    symlink("/etc/passwd", ctx.join("src/pw")).unwrap();
    fs::write(ctx.join("one.txt"), "one").unwrap();
    let items = [
        CopyItem {
            src: ctx.join("src"),
            dest: "/app/src".into(),
            unpacked: false,
        },
        CopyItem {
            src: ctx.join("one.txt"),
            dest: "/app/one.txt".into(),
            unpacked: false,
        },
    ];
    let opts = CopyOpts {
        uid: 1000,
        gid: 1001,
        chmod: Some(0o640),
        chowned: true,
        clamp_secs: 7,
        parents: vec![("/app".into(), 0o755, 0, 0)],
    };
    let blob = copy_layer(&items, &opts, &t.path().join("c.tar")).unwrap();
    let got = read_tar(&blob);
    assert_eq!(
        paths(&got),
        [
            "app/",
            "app/one.txt",
            "app/src/",
            "app/src/f",
            "app/src/pw",
            "app/src/sub/",
            "app/src/sub/g",
            "app/src/sub/up"
        ]
    );
    let app = find(&got, "app/");
    assert_eq!((app.mode, app.uid, app.gid, app.mtime), (0o755, 0, 0, 7));
    for g in got.iter().skip(1) {
        assert_eq!((g.uid, g.gid, g.mtime), (1000, 1001, 7), "{}", g.path);
        if g.ty != EntryType::Symlink {
            assert_eq!(g.mode, 0o640, "{}", g.path);
        }
    }
    assert_eq!(
        find(&got, "app/src/pw").link.as_deref(),
        Some("/etc/passwd")
    );
    assert_eq!(find(&got, "app/one.txt").data, b"one");
    let again = copy_layer(&items, &opts, &t.path().join("c2.tar")).unwrap();
    assert_eq!(again.digest, blob.digest);

    // No clamp (no SOURCE_DATE_EPOCH): the directories the layer makes get
    // a real time, which every tar reader takes (not u64::MAX).
    let unclamped = CopyOpts {
        clamp_secs: u64::MAX,
        ..opts.clone()
    };
    let got = read_tar(&copy_layer(&items, &unclamped, &t.path().join("c3.tar")).unwrap());
    for g in &got {
        assert!(g.mtime < 1 << 33, "{} has mtime {}", g.path, g.mtime);
    }
    assert!(find(&got, "app/").mtime > 1_700_000_000);

    // A dir's contents to "/" and a bad destination.
    let root = [CopyItem {
        src: ctx.join("src/sub"),
        dest: "/".into(),
        unpacked: false,
    }];
    let got = read_tar(&copy_layer(&root, &CopyOpts::default(), &t.path().join("r.tar")).unwrap());
    assert_eq!(paths(&got), ["g", "up"]);
    let bad = [CopyItem {
        src: ctx.join("one.txt"),
        dest: "/a/../b".into(),
        unpacked: false,
    }];
    assert!(copy_layer(&bad, &CopyOpts::default(), &t.path().join("b.tar")).is_err());
}

#[test]
fn content_digest_follows_bytes_not_times() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("d");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("sub/file"), "abc").unwrap();
    fs::write(t.path().join("single"), "1").unwrap();
    let paths = [d.clone(), t.path().join("single")];
    let before = content_digest(&paths).unwrap();
    assert!(before.starts_with("sha256:") && before.len() == 71);
    touch(&d.join("sub/file"), 12345);
    touch(&d, 1);
    assert_eq!(content_digest(&paths).unwrap(), before);
    fs::write(d.join("sub/file"), "abd").unwrap();
    assert_ne!(content_digest(&paths).unwrap(), before);
    fs::write(d.join("sub/file"), "abc").unwrap();
    assert_eq!(content_digest(&paths).unwrap(), before);
    fs::set_permissions(d.join("sub/file"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(content_digest(&paths).unwrap(), before);
}

#[test]
fn errors_name_a_capped_path() {
    let t = tempfile::tempdir().unwrap();
    let long = "/".to_string() + &"x".repeat(300) + "/..";
    let err = copy_layer(
        &[CopyItem {
            src: t.path().into(),
            dest: long,
            unpacked: false,
        }],
        &CopyOpts::default(),
        &t.path().join("e.tar"),
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(shown.len() < 200 && shown.contains("normalised"), "{shown}");
    let missing = diff(&t.path().join("nope"), t.path()).unwrap_err();
    assert!(matches!(missing.cause(), LayerCause::Io(_)));
}

#[test]
fn paths_past_the_limit_fail() {
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("u");
    fs::create_dir_all(&up).unwrap();
    // Built relative to descriptors: the whole path is past PATH_MAX.
    let mut dir = open_dir_path(&up).unwrap();
    for _ in 0..17 {
        let name = "n".repeat(250);
        nix::sys::stat::mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        dir = openat(&dir, name.as_str(), OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    }
    let err = diff(&up, t.path()).unwrap_err();
    assert!(
        matches!(err.cause(), LayerCause::Limit("path length")),
        "{err}"
    );
    assert!(err.to_string().len() < 200);
}

#[test]
fn an_entry_swapped_during_the_walk_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a"), "a").unwrap();
    fs::write(t.path().join("b"), "b").unwrap();
    let dir = open_dir_path(t.path()).unwrap();
    let stat_b = fstatat(&dir, "b", AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
    let a = CString::new("a").unwrap();
    let err = open_checked(dir.as_fd(), &a, &stat_b, OFlag::empty(), b"a").unwrap_err();
    assert!(matches!(err.cause(), LayerCause::Changed), "{err}");
    // A symlink where a directory was stat'ed is refused, never followed.
    let stat_dir = fstat(&dir).unwrap();
    symlink(t.path(), t.path().join("l")).unwrap();
    let l = CString::new("l").unwrap();
    assert!(open_checked(dir.as_fd(), &l, &stat_dir, OFlag::O_DIRECTORY, b"l").is_err());
}

#[test]
fn copy_refuses_what_would_be_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    mknod(
        &ctx.join("wh"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    fs::write(ctx.join(".wh.x"), "").unwrap();
    let out = t.path().join("c.tar");
    let item = |name: &str, dest: &str| {
        [CopyItem {
            src: ctx.join(name),
            dest: dest.into(),
            unpacked: false,
        }]
    };
    let err = copy_layer(&item("wh", "/wh"), &CopyOpts::default(), &out).unwrap_err();
    assert!(matches!(err.cause(), LayerCause::Invalid(_)), "{err}");
    let err = copy_layer(&item(".wh.x", "/x/.wh.x"), &CopyOpts::default(), &out).unwrap_err();
    assert!(matches!(err.cause(), LayerCause::Invalid(_)), "{err}");
    // Owners do not change the cache key.
    let key = content_digest(&[ctx.join(".wh.x")]).unwrap();
    std::os::unix::fs::chown(ctx.join(".wh.x"), Some(7), Some(7)).unwrap();
    assert_eq!(content_digest(&[ctx.join(".wh.x")]).unwrap(), key);
}
