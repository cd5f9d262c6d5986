//! End-to-end tests of the image store with archives built in code.
//! They create device nodes, chown and set trusted xattrs: run as root.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::layout::host_arch;
use super::{ImageError, ImageStore};

// ---------------------------------------------------------------------------
// Archive builders
// ---------------------------------------------------------------------------

/// One entry of a test layer.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    /// A file with mode, uid and gid.
    FileMeta(&'a str, &'a [u8], u32, u64, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    /// A PAX xattr (`SCHILY.xattr.<name>`) on the following file.
    XattrFile(&'a str, &'a [u8], &'a str, &'a [u8]),
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A GNU header with the name written raw, so tests can put `..` and
/// absolute paths in it (the tar crate's setters refuse those).
fn raw_header(name: &str, kind: EntryType, size: u64, link: Option<&str>, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n", where len counts the whole record.
    let body_len = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len += 1;
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p) => b
                .append(
                    &raw_header(p, EntryType::Directory, 0, None, 0o755),
                    &[][..],
                )
                .unwrap(),
            E::File(p, data) => b
                .append(
                    &raw_header(p, EntryType::Regular, data.len() as u64, None, 0o644),
                    *data,
                )
                .unwrap(),
            E::FileMeta(p, data, mode, uid, gid) => {
                let mut h = raw_header(p, EntryType::Regular, data.len() as u64, None, *mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_cksum();
                b.append(&h, *data).unwrap()
            }
            E::Symlink(p, t) => b
                .append(
                    &raw_header(p, EntryType::Symlink, 0, Some(t), 0o777),
                    &[][..],
                )
                .unwrap(),
            E::Hardlink(p, t) => b
                .append(&raw_header(p, EntryType::Link, 0, Some(t), 0o644), &[][..])
                .unwrap(),
            E::Fifo(p) => b
                .append(&raw_header(p, EntryType::Fifo, 0, None, 0o600), &[][..])
                .unwrap(),
            E::XattrFile(p, data, name, value) => {
                let pax = pax_record(&format!("SCHILY.xattr.{name}"), value);
                b.append(
                    &raw_header(
                        "PaxHeader",
                        EntryType::XHeader,
                        pax.len() as u64,
                        None,
                        0o644,
                    ),
                    &pax[..],
                )
                .unwrap();
                b.append(
                    &raw_header(p, EntryType::Regular, data.len() as u64, None, 0o644),
                    *data,
                )
                .unwrap()
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// An outer archive of regular files with safe names.
fn outer_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        b.append(
            &raw_header(name, EntryType::Regular, data.len() as u64, None, 0o644),
            &data[..],
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, PartialEq, Default)]
enum Corrupt {
    #[default]
    Nothing,
    /// A gzip layer whose bytes differ from its digest (same content).
    BlobDigest,
    /// The config's diff_id does not match the layer.
    DiffId,
    /// The manifest blob differs from its digest.
    Manifest,
    /// The config blob differs from its digest.
    Config,
}

struct Spec {
    /// (uncompressed tar, gzip it?)
    layers: Vec<(Vec<u8>, bool)>,
    os: &'static str,
    arch: String,
    /// Annotations on the index.json entry.
    annotations: Vec<(&'static str, String)>,
    /// Makes the config (and so the image id) unique.
    label: String,
    corrupt: Corrupt,
    /// Use the Docker schema 2 manifest media type.
    docker_media: bool,
}

impl Spec {
    fn new(layers: Vec<(Vec<u8>, bool)>) -> Self {
        Spec {
            layers,
            os: "linux",
            arch: host_arch().to_string(),
            annotations: Vec::new(),
            label: "one".into(),
            corrupt: Corrupt::Nothing,
            docker_media: false,
        }
    }

    fn named(mut self, name: &str) -> Self {
        self.annotations
            .push(("io.containerd.image.name", name.to_string()));
        self
    }
}

struct Built {
    archive: Vec<u8>,
    config_digest: String,
    manifest_digest: String,
    diff_ids: Vec<String>,
}

/// Layer blobs (digest, bytes, media type), config bytes and diff ids.
#[allow(clippy::type_complexity)]
fn blobs_of(spec: &Spec) -> (Vec<(String, Vec<u8>, &'static str)>, Vec<u8>, Vec<String>) {
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, (tar, gz)) in spec.layers.iter().enumerate() {
        diff_ids.push(if spec.corrupt == Corrupt::DiffId && i == 0 {
            sha(b"not this layer")
        } else {
            sha(tar)
        });
        if *gz {
            let mut data = gzip(tar);
            let digest = sha(&data);
            if spec.corrupt == Corrupt::BlobDigest {
                // The gzip header mtime: content unchanged, digest wrong.
                data[4] ^= 0xff;
            }
            blobs.push((digest, data, "application/vnd.oci.image.layer.v1.tar+gzip"));
        } else {
            blobs.push((
                sha(tar),
                tar.clone(),
                "application/vnd.oci.image.layer.v1.tar",
            ));
        }
    }
    let config = json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": spec.arch,
        "os": spec.os,
        "config": {
            "Entrypoint": ["/bin/entry"],
            "Cmd": ["run", "now"],
            "Env": ["PATH=/usr/bin:/bin"],
            "WorkingDir": "/work",
            "User": "1000:1000",
            "StopSignal": "SIGINT",
            "Labels": {"test": spec.label},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    (blobs, serde_json::to_vec(&config).unwrap(), diff_ids)
}

fn build_oci(spec: &Spec) -> Built {
    let (layers, mut config, diff_ids) = blobs_of(spec);
    let config_digest = sha(&config);
    if spec.corrupt == Corrupt::Config {
        config.push(b' ');
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": if spec.docker_media {
            "application/vnd.docker.distribution.manifest.v2+json"
        } else {
            "application/vnd.oci.image.manifest.v1+json"
        },
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": layers.iter().map(|(d, data, media)| json!({
            "mediaType": media, "size": data.len(), "digest": d,
        })).collect::<Vec<_>>(),
    });
    let mut manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = sha(&manifest);
    if spec.corrupt == Corrupt::Manifest {
        manifest.push(b' ');
    }
    let annotations: serde_json::Map<String, serde_json::Value> = spec
        .annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut entry = json!({
        "mediaType": if spec.docker_media {
            "application/vnd.docker.distribution.manifest.v2+json"
        } else {
            "application/vnd.oci.image.manifest.v1+json"
        },
        "size": manifest.len(),
        "digest": manifest_digest,
    });
    if !annotations.is_empty() {
        entry["annotations"] = json!(annotations);
    }
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    let mut files = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            "index.json".to_string(),
            serde_json::to_vec(&index).unwrap(),
        ),
        (blob_path(&manifest_digest), manifest),
        (blob_path(&config_digest), config),
    ];
    for (d, data, _) in layers {
        files.push((blob_path(&d), data));
    }
    Built {
        archive: outer_tar(&files),
        config_digest,
        manifest_digest,
        diff_ids,
    }
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", &digest["sha256:".len()..])
}

/// A legacy `docker save` archive: `<id>/layer.tar` and `<hex>.json`.
fn build_docker(spec: &Spec, repo_tags: &[&str]) -> Built {
    let (layers, config, diff_ids) = blobs_of(spec);
    let config_digest = sha(&config);
    let mut files = vec![(format!("{}.json", &config_digest[7..]), config)];
    let mut layer_paths = Vec::new();
    for (i, (_, data, _)) in layers.into_iter().enumerate() {
        let path = format!("{:064x}/layer.tar", i + 1);
        files.push((format!("{:064x}/VERSION", i + 1), b"1.0".to_vec()));
        files.push((path.clone(), data));
        layer_paths.push(path);
    }
    let manifest = json!([{
        "Config": format!("{}.json", &config_digest[7..]),
        "RepoTags": repo_tags,
        "Layers": layer_paths,
    }]);
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    Built {
        archive: outer_tar(&files),
        config_digest,
        manifest_digest: String::new(),
        diff_ids,
    }
}

// ---------------------------------------------------------------------------
// Fixture helpers
// ---------------------------------------------------------------------------

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    store: ImageStore,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let root = base.join("store");
    let store = ImageStore::open(&root).unwrap();
    Fixture {
        _dir: dir,
        base,
        root,
        store,
    }
}

impl Fixture {
    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.base.join(name);
        fs::write(&p, data).unwrap();
        p
    }

    fn import(
        &self,
        data: &[u8],
        reference: Option<&str>,
    ) -> Result<Vec<super::ImageRecord>, ImageError> {
        let p = self.write("upload.tar", data);
        self.store.import(&p, reference)
    }

    fn layer(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(&diff_id[7..])
    }

    fn index_bytes(&self) -> Option<Vec<u8>> {
        fs::read(self.root.join("images.json")).ok()
    }

    /// Nothing in layers/, blobs/, staging/, and images.json as given.
    fn assert_untouched(&self, index_before: &Option<Vec<u8>>) {
        for sub in ["layers", "blobs/sha256", "staging"] {
            let left: Vec<_> = fs::read_dir(self.root.join(sub))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(left.is_empty(), "{sub} not empty: {left:?}");
        }
        assert_eq!(&self.index_bytes(), index_before, "images.json changed");
    }
}

fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a live buffer of the given length.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        None
    } else {
        buf.truncate(rc as usize);
        Some(buf)
    }
}

fn supports_user_xattrs(dir: &Path) -> bool {
    let probe = dir.join("xattr-probe");
    fs::write(&probe, b"").unwrap();
    let p = CString::new(probe.as_os_str().as_bytes()).unwrap();
    let n = CString::new("user.probe").unwrap();
    // SAFETY: valid C strings and a live one-byte value.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    let _ = fs::remove_file(&probe);
    rc == 0
}

fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
}

fn base_layer() -> Vec<u8> {
    layer_tar(&[
        E::Dir("./"),
        E::Dir("./etc/"),
        E::FileMeta("./etc/hello", b"hello\n", 0o640, 1000, 1001),
        E::File("etc/keep", b"keep\n"),
        E::Hardlink("etc/hl", "./etc/keep"),
        E::Symlink("bin", "/usr/bin"),
        E::Dir("var/"),
        E::File("var/old", b"old"),
        E::Fifo("run.fifo"),
        E::FileMeta("suid", b"x", 0o4755, 0, 0),
    ])
}

fn top_layer() -> Vec<u8> {
    layer_tar(&[
        E::File("etc/.wh.hello", b""),
        E::Dir("var/"),
        E::File("var/.wh..wh..opq", b""),
        E::File("var/new", b"new"),
        E::File(".wh..wh.plnk", b""),
        E::XattrFile("cap", b"c", "user.test", b"value"),
        E::XattrFile("forged", b"f", "trusted.overlay.opaque", b"y"),
    ])
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn oci_import_unpacks_layers_with_overlay_whiteouts() {
    let f = fixture();
    let spec =
        Spec::new(vec![(base_layer(), true), (top_layer(), false)]).named("example.com/app:1");
    let built = build_oci(&spec);
    let recs = f.import(&built.archive, None).unwrap();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.id, built.config_digest);
    assert_eq!(r.manifest_digest, built.manifest_digest);
    assert_eq!(r.references, vec!["example.com/app:1".to_string()]);
    assert_eq!(r.layers, built.diff_ids);
    assert_eq!(r.os, "linux");
    assert_eq!(r.architecture, host_arch());
    assert_eq!(r.created.as_deref(), Some("2024-01-02T03:04:05Z"));
    assert_eq!(r.config.entrypoint, vec!["/bin/entry"]);
    assert_eq!(r.config.cmd, vec!["run", "now"]);
    assert_eq!(r.config.working_dir, "/work");
    assert_eq!(r.config.user, "1000:1000");
    assert_eq!(r.config.stop_signal, "SIGINT");
    assert_eq!(r.config.labels.get("test").map(String::as_str), Some("one"));
    // hello + keep + old + suid, new + cap + forged
    assert_eq!(r.size_bytes, 6 + 5 + 3 + 1 + 3 + 1 + 1);

    let dirs = f.store.layer_dirs(r);
    assert_eq!(dirs, vec![f.layer(&r.layers[0]), f.layer(&r.layers[1])]);
    let (l1, l2) = (&dirs[0], &dirs[1]);

    // Base layer: contents and metadata.
    assert_eq!(fs::read(l1.join("etc/hello")).unwrap(), b"hello\n");
    let m = fs::symlink_metadata(l1.join("etc/hello")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mtime(), 1_700_000_000);
    assert_eq!(
        fs::symlink_metadata(l1.join("suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(l1.join("bin")).unwrap(),
        Path::new("/usr/bin")
    );
    assert_eq!(
        fs::metadata(l1.join("etc/hl")).unwrap().ino(),
        fs::metadata(l1.join("etc/keep")).unwrap().ino()
    );
    assert!(fs::symlink_metadata(l1.join("run.fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::symlink_metadata(l1.join("etc")).unwrap().mtime(),
        1_700_000_000
    );

    // Top layer: overlayfs whiteouts.
    assert!(is_whiteout(&l2.join("etc/hello")));
    assert!(!l2.join("etc/.wh.hello").exists());
    assert_eq!(
        lgetxattr(&l2.join("var"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!l2.join("var/.wh..wh..opq").exists());
    assert!(fs::symlink_metadata(l2.join(".wh..wh.plnk")).is_err());
    // user.* xattrs are kept where the filesystem stores them (tmpfs before
    // Linux 6.6 does not, and the kernel refuses them there).
    if supports_user_xattrs(&f.base) {
        assert_eq!(
            lgetxattr(&l2.join("cap"), "user.test").as_deref(),
            Some(&b"value"[..])
        );
    }
    // A layer must not forge overlay metadata.
    assert_eq!(
        lgetxattr(&l2.join("forged"), "trusted.overlay.opaque"),
        None
    );

    // Blobs kept: manifest and config only.
    let mut blobs: Vec<String> = fs::read_dir(f.root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let mut want = vec![
        built.config_digest[7..].to_string(),
        built.manifest_digest[7..].to_string(),
    ];
    want.sort();
    assert_eq!(blobs, want);
    assert!(fs::read_dir(f.root.join("staging"))
        .unwrap()
        .next()
        .is_none());

    // The real thing: an overlay mount hides what the top layer deleted.
    let mnt = f.base.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let opts = format!("lowerdir={}:{}", l2.display(), l1.display());
    match nix::mount::mount(
        Some("overlay"),
        &mnt,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    ) {
        Ok(()) => {
            let hello = mnt.join("etc/hello").exists();
            let keep = fs::read(mnt.join("etc/keep")).ok();
            let mut var: Vec<String> = fs::read_dir(mnt.join("var"))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            var.sort();
            nix::mount::umount(&mnt).unwrap();
            assert!(!hello, "whiteout did not hide etc/hello");
            assert_eq!(keep.as_deref(), Some(&b"keep\n"[..]));
            assert_eq!(
                var,
                vec!["new".to_string()],
                "opaque dir leaked lower entries"
            );
        }
        Err(e) => eprintln!("overlay mount not possible here ({e}); skipped the merged-view check"),
    }
}

#[test]
fn docker_save_import_and_reference_handling() {
    let f = fixture();
    let spec = Spec::new(vec![(base_layer(), false), (top_layer(), true)]);
    let built = build_docker(&spec, &["busybox:latest", "foo/bar:1"]);
    let recs = f.import(&built.archive, None).unwrap();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.id, built.config_digest);
    assert_eq!(
        r.references,
        vec![
            "docker.io/library/busybox:latest".to_string(),
            "docker.io/foo/bar:1".to_string()
        ]
    );
    assert!(r.manifest_digest.starts_with("sha256:"));
    let dirs = f.store.layer_dirs(r);
    assert_eq!(fs::read(dirs[0].join("etc/keep")).unwrap(), b"keep\n");
    assert!(is_whiteout(&dirs[1].join("etc/hello")));
    // The (synthesised) manifest is stored under its digest.
    assert!(f
        .root
        .join("blobs/sha256")
        .join(&r.manifest_digest[7..])
        .exists());

    // Re-import with an explicit reference only adds that reference.
    let again = f.import(&built.archive, Some("localhost:5000/x")).unwrap();
    assert_eq!(again[0].id, r.id);
    assert_eq!(again[0].references.len(), 3);
    assert_eq!(again[0].references[2], "localhost:5000/x:latest");
    assert_eq!(f.store.list().len(), 1);

    // A new image taking "busybox" moves the name (docker tag semantics).
    let mut other = Spec::new(vec![(base_layer(), false)]);
    other.label = "two".into();
    let other = build_oci(&other);
    let moved = f.import(&other.archive, Some("busybox")).unwrap();
    assert_eq!(
        moved[0].references,
        vec!["docker.io/library/busybox:latest"]
    );
    let old = f.store.resolve(&r.id).unwrap();
    assert_eq!(old.references.len(), 2);
    assert!(!old
        .references
        .contains(&"docker.io/library/busybox:latest".to_string()));
    assert_eq!(f.store.resolve("busybox").unwrap().id, other.config_digest);
    // Newest first.
    let ids: Vec<String> = f.store.list().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![other.config_digest.clone(), r.id.clone()]);
    // The shared base layer was unpacked once and is shared.
    assert_eq!(
        fs::read_dir(f.root.join("layers")).unwrap().count(),
        2,
        "layers are shared between images"
    );

    // The index survives a reopen.
    let reopened = ImageStore::open(&f.root).unwrap();
    assert_eq!(reopened.list().len(), 2);
    assert_eq!(reopened.resolve("foo/bar:1").unwrap().id, r.id);
}

#[test]
fn gzip_outer_archive_and_docker_media_type() {
    let f = fixture();
    let mut spec = Spec::new(vec![(base_layer(), true)]).named("docker.io/library/x:y");
    spec.docker_media = true;
    let built = build_oci(&spec);
    let recs = f.import(&gzip(&built.archive), None).unwrap();
    assert_eq!(recs[0].references, vec!["docker.io/library/x:y"]);
    assert!(fs::read_dir(f.root.join("staging"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn nested_index_selects_host_platform() {
    let f = fixture();
    // Image for the host, and a decoy for another architecture.
    let host = build_oci(&Spec::new(vec![(base_layer(), true)]));
    let mut decoy_spec = Spec::new(vec![(top_layer(), true)]);
    decoy_spec.arch = if host_arch() == "s390x" {
        "riscv64"
    } else {
        "s390x"
    }
    .into();
    let decoy = build_oci(&decoy_spec);
    // Merge the blobs of both, then replace index.json with a nested index.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for a in [&host.archive, &decoy.archive] {
        let mut ar = tar::Archive::new(&a[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name.starts_with("blobs/") {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                files.push((name, data));
            }
        }
    }
    let manifest_size = |d: &str| {
        files
            .iter()
            .find(|(n, _)| n == &blob_path(d))
            .map(|(_, b)| b.len())
            .unwrap()
    };
    let nested = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": decoy.manifest_digest, "size": manifest_size(&decoy.manifest_digest),
             "platform": {"os": "linux", "architecture": decoy_spec.arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": host.manifest_digest, "size": manifest_size(&host.manifest_digest),
             "platform": {"os": "linux", "architecture": host_arch()}},
        ],
    });
    let nested = serde_json::to_vec(&nested).unwrap();
    let nested_digest = sha(&nested);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": nested_digest, "size": nested.len(),
        "annotations": {"org.opencontainers.image.ref.name": "quay.io/multi/arch:2"},
    }]});
    files.push((blob_path(&nested_digest), nested));
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    let recs = f.import(&outer_tar(&files), None).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].id, host.config_digest);
    assert_eq!(recs[0].references, vec!["quay.io/multi/arch:2"]);
}

#[test]
fn names_are_required() {
    let f = fixture();
    let unnamed = build_oci(&Spec::new(vec![(base_layer(), false)]));
    match f.import(&unnamed.archive, None) {
        Err(ImageError::InvalidReference(msg)) => assert!(msg.contains("reference"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
    let mut tag_only = Spec::new(vec![(base_layer(), false)]);
    tag_only
        .annotations
        .push(("org.opencontainers.image.ref.name", "v1.2".into()));
    match f.import(&build_oci(&tag_only).archive, None) {
        Err(ImageError::InvalidReference(msg)) => assert!(msg.contains("v1.2"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
    match f.import(&unnamed.archive, Some("Bad/Name")) {
        Err(ImageError::InvalidReference(_)) => {}
        other => panic!("unexpected {other:?}"),
    }
    f.assert_untouched(&None);
    // A tag-only archive works with a reference.
    let recs = f
        .import(&build_oci(&tag_only).archive, Some("app:v1.2"))
        .unwrap();
    assert_eq!(recs[0].references, vec!["docker.io/library/app:v1.2"]);
}

/// Imports `archive`, expects InvalidArchive mentioning `needle`, and checks
/// that the store is exactly as before.
fn expect_refused(f: &Fixture, archive: &[u8], needle: &str) {
    let before = f.index_bytes();
    match f.import(archive, Some("victim:1")) {
        Err(ImageError::InvalidArchive(msg)) => {
            eprintln!("refused: {msg}");
            assert!(
                msg.contains(needle),
                "message {msg:?} should mention {needle:?}"
            )
        }
        other => panic!("expected InvalidArchive about {needle:?}, got {other:?}"),
    }
    f.assert_untouched(&before);
}

fn one_layer(entries: &[E]) -> Vec<u8> {
    build_oci(&Spec::new(vec![(layer_tar(entries), false)])).archive
}

#[test]
fn malicious_layers_are_refused_and_leave_nothing() {
    let f = fixture();
    let host = f.base.join("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("passwd"), b"root:x:0:0\n").unwrap();
    let host_s = host.display().to_string();

    expect_refused(&f, &one_layer(&[E::File("../escape", b"x")]), "../escape");
    expect_refused(&f, &one_layer(&[E::File("a/../../escape", b"x")]), "..");
    let abs = format!("{host_s}/abs");
    expect_refused(&f, &one_layer(&[E::File(&abs, b"x")]), "absolute");
    assert!(!host.join("abs").exists());

    // Symlink to the host, then a write through it.
    expect_refused(
        &f,
        &one_layer(&[E::Symlink("link", &host_s), E::File("link/evil", b"x")]),
        "link/evil",
    );
    assert!(!host.join("evil").exists());
    // Same through a deeper path and with a directory entry.
    expect_refused(
        &f,
        &one_layer(&[E::Dir("d/"), E::Symlink("d/l", &host_s), E::Dir("d/l/sub/")]),
        "symlink",
    );
    // A whiteout through a symlink would delete host files.
    expect_refused(
        &f,
        &one_layer(&[E::Symlink("l", &host_s), E::File("l/.wh.passwd", b"")]),
        "symlink",
    );
    assert_eq!(fs::read(host.join("passwd")).unwrap(), b"root:x:0:0\n");

    // Hard links out of the layer.
    expect_refused(
        &f,
        &one_layer(&[E::Hardlink("hl", "../../etc/passwd")]),
        "hl",
    );
    let host_passwd = format!("{host_s}/passwd");
    expect_refused(&f, &one_layer(&[E::Hardlink("hl", &host_passwd)]), "hl");
    expect_refused(&f, &one_layer(&[E::Hardlink("hl", "missing")]), "hl");
    // Through a symlink inside the layer.
    expect_refused(
        &f,
        &one_layer(&[E::Symlink("l", &host_s), E::Hardlink("hl", "l/passwd")]),
        "hl",
    );
    // To a symlink (which could point anywhere).
    expect_refused(
        &f,
        &one_layer(&[E::Symlink("s", &host_passwd), E::Hardlink("hl", "s")]),
        "hl",
    );
    assert_eq!(fs::metadata(host.join("passwd")).unwrap().nlink(), 1);
    assert_eq!(fs::read(host.join("passwd")).unwrap(), b"root:x:0:0\n");
}

/// Directory times are set last; by then a later entry may have replaced
/// the directory's parent by a symlink to the host, which setting the time
/// by path would follow.
#[test]
fn a_directory_replaced_by_a_symlink_later_leaves_the_host_alone() {
    let f = fixture();
    let host = f.base.join("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("passwd"), b"root:x:0:0\n").unwrap();
    let before = fs::metadata(host.join("passwd"))
        .unwrap()
        .modified()
        .unwrap();
    let host_s = host.display().to_string();
    let layer = one_layer(&[E::Dir("a/"), E::Dir("a/passwd/"), E::Symlink("a", &host_s)]);
    // Also when the target does not exist (no probing of host paths).
    let missing = format!("{host_s}/missing");
    let layer2 = one_layer(&[E::Dir("b/"), E::Dir("b/x/"), E::Symlink("b", &missing)]);
    for (archive, name) in [(layer, "replaced:1"), (layer2, "replaced:2")] {
        f.import(&archive, Some(name)).unwrap();
    }
    let after = fs::metadata(host.join("passwd"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        before, after,
        "the host file's time was set through the symlink"
    );
}

#[test]
fn bad_digests_and_formats_are_refused() {
    let f = fixture();
    let mut s = Spec::new(vec![(base_layer(), true)]);
    s.corrupt = Corrupt::BlobDigest;
    expect_refused(&f, &build_oci(&s).archive, "digest mismatch");
    s.corrupt = Corrupt::DiffId;
    expect_refused(&f, &build_oci(&s).archive, "diff_id");
    s.corrupt = Corrupt::Manifest;
    expect_refused(&f, &build_oci(&s).archive, "manifest");
    s.corrupt = Corrupt::Config;
    expect_refused(&f, &build_oci(&s).archive, "config");

    let mut windows = Spec::new(vec![(base_layer(), false)]);
    windows.os = "windows";
    expect_refused(&f, &build_oci(&windows).archive, "only linux");

    // zstd, by magic bytes: supported, so a broken zstd stream is refused
    // as such.
    let zstd = vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    let mut z = Spec::new(vec![(zstd, false)]);
    z.corrupt = Corrupt::Nothing;
    expect_refused(&f, &build_oci(&z).archive, "zstd");

    // Docker-save with a layer path escaping the archive.
    let manifest = json!([{"Config": "c.json", "RepoTags": ["a:b"], "Layers": ["../layer.tar"]}]);
    let (_, config, _) = blobs_of(&Spec::new(vec![(base_layer(), false)]));
    let archive = outer_tar(&[
        (
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
        ("c.json".into(), config),
    ]);
    expect_refused(&f, &archive, "../layer.tar");

    // Outer archive members with unsafe names.
    let mut b = tar::Builder::new(Vec::new());
    b.append(
        &raw_header("../index.json", EntryType::Regular, 2, None, 0o644),
        &b"{}"[..],
    )
    .unwrap();
    expect_refused(&f, &b.into_inner().unwrap(), "../index.json");

    expect_refused(&f, b"definitely not a tar archive", "");

    // Truncated layer (cut in the middle).
    let mut t = layer_tar(&[E::File("big", &[7u8; 5000])]);
    t.truncate(3000);
    expect_refused(
        &f,
        &build_oci(&Spec::new(vec![(t, false)])).archive,
        "layer",
    );
}

#[test]
fn resolve_by_prefix_and_ambiguity() {
    let f = fixture();
    let mut ids = Vec::new();
    // 17 distinct images: two ids must share their first hex digit.
    for i in 0..17 {
        let mut s = Spec::new(vec![(base_layer(), false)]);
        s.label = format!("img{i}");
        let b = build_oci(&s);
        f.import(&b.archive, Some(&format!("img:{i}"))).unwrap();
        ids.push(b.config_digest[7..].to_string());
    }
    let id = &ids[0];
    assert_eq!(
        f.store.resolve(&format!("sha256:{id}")).unwrap().id[7..],
        *id
    );
    assert_eq!(f.store.resolve(id).unwrap().id[7..], *id);
    // Shortest unique prefix of ids[0].
    let unique = (1..=64)
        .map(|n| &id[..n])
        .find(|p| ids.iter().filter(|i| i.starts_with(p)).count() == 1)
        .unwrap();
    assert_eq!(f.store.resolve(unique).unwrap().id[7..], *id);
    assert_eq!(
        f.store.resolve(&format!("sha256:{unique}")).unwrap().id[7..],
        *id
    );
    let shared = ids
        .iter()
        .map(|i| &i[..1])
        .find(|c| ids.iter().filter(|i| i.starts_with(c)).count() > 1)
        .unwrap();
    assert!(matches!(
        f.store.resolve(shared),
        Err(ImageError::Ambiguous(_))
    ));
    assert!(
        matches!(f.store.resolve("img:3"), Ok(r) if r.references == vec!["docker.io/library/img:3"])
    );
    assert!(matches!(
        f.store.resolve("img:99"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(f.store.resolve(""), Err(ImageError::NotFound(_))));
    assert!(matches!(
        f.store.resolve("Bad Name"),
        Err(ImageError::InvalidReference(_))
    ));
    // name@<manifest digest> finds the image by content.
    let r = f.store.resolve("img:5").unwrap();
    let by_digest = format!("img@{}", r.manifest_digest);
    assert_eq!(f.store.resolve(&by_digest).unwrap().id, r.id);
}

#[test]
fn remove_by_reference_and_by_id_then_gc() {
    let f = fixture();
    let a = build_oci(&Spec::new(vec![(base_layer(), true), (top_layer(), false)]));
    f.import(&a.archive, Some("a:1")).unwrap();
    f.import(&a.archive, Some("a:2")).unwrap();
    let mut bspec = Spec::new(vec![(base_layer(), true)]);
    bspec.label = "b".into();
    let b = build_oci(&bspec);
    f.import(&b.archive, Some("b:1")).unwrap();
    let mut cspec = Spec::new(vec![(layer_tar(&[E::File("only-c", b"c")]), false)]);
    cspec.label = "c".into();
    let c = build_oci(&cspec);
    f.import(&c.archive, Some("c:1")).unwrap();

    // Removing one of two references keeps the image.
    let (untagged, deleted) = f.store.remove("a:1").unwrap();
    assert_eq!(untagged, vec!["docker.io/library/a:1"]);
    assert_eq!(deleted, None);
    assert!(matches!(
        f.store.resolve("a:1"),
        Err(ImageError::NotFound(_))
    ));
    // Removing the last reference deletes the record.
    let (untagged, deleted) = f.store.remove("a:2").unwrap();
    assert_eq!(untagged, vec!["docker.io/library/a:2"]);
    assert_eq!(deleted.as_deref(), Some(a.config_digest.as_str()));
    assert!(matches!(
        f.store.resolve(&a.config_digest),
        Err(ImageError::NotFound(_))
    ));
    // Removing by id removes all references.
    f.import(&b.archive, Some("b:2")).unwrap();
    let (untagged, deleted) = f.store.remove(&b.config_digest[7..19]).unwrap();
    assert_eq!(
        untagged,
        vec!["docker.io/library/b:1", "docker.io/library/b:2"]
    );
    assert_eq!(deleted.as_deref(), Some(b.config_digest.as_str()));
    assert!(matches!(
        f.store.remove("b:1"),
        Err(ImageError::NotFound(_))
    ));
    assert!(fs::read(f.root.join("images.json"))
        .map(|d| !String::from_utf8_lossy(&d).contains(&b.config_digest))
        .unwrap());

    // remove does not touch layers; gc does, but keeps what is in use.
    for d in a.diff_ids.iter().chain(&c.diff_ids) {
        assert!(f.layer(d).exists());
    }
    let in_use: HashSet<String> = [a.diff_ids[1].clone()].into();
    f.store.gc(&in_use).unwrap();
    assert!(
        !f.layer(&a.diff_ids[0]).exists(),
        "unused base layer collected"
    );
    assert!(f.layer(&a.diff_ids[1]).exists(), "in-use layer kept");
    assert!(
        f.layer(&c.diff_ids[0]).exists(),
        "layer of a live image kept"
    );
    let blobs: HashSet<String> = fs::read_dir(f.root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let c_rec = f.store.resolve("c:1").unwrap();
    let want: HashSet<String> = [
        c_rec.id[7..].to_string(),
        c_rec.manifest_digest[7..].to_string(),
    ]
    .into();
    assert_eq!(blobs, want);
    assert!(fs::read_dir(f.root.join("staging"))
        .unwrap()
        .next()
        .is_none());

    // Nothing in use: only c's layer remains.
    f.store.gc(&HashSet::new()).unwrap();
    assert_eq!(fs::read_dir(f.root.join("layers")).unwrap().count(), 1);
    // A gc'ed layer comes back on re-import.
    let rec = f.import(&a.archive, Some("a:3")).unwrap();
    for d in f.store.layer_dirs(&rec[0]) {
        assert!(d.exists());
    }
}

#[test]
fn concurrent_imports_are_safe() {
    let f = fixture();
    let mut archives = Vec::new();
    for i in 0..4 {
        let mut s = Spec::new(vec![(base_layer(), true), (top_layer(), false)]);
        s.label = format!("c{i}");
        let b = build_oci(&s);
        let p = f.write(&format!("c{i}.tar"), &b.archive);
        archives.push(p);
    }
    std::thread::scope(|scope| {
        for (i, p) in archives.iter().enumerate() {
            let store = &f.store;
            scope.spawn(move || store.import(p, Some(&format!("conc:{i}"))).unwrap());
            // The same archive twice at once, too.
            scope.spawn(move || store.import(p, Some(&format!("dup:{i}"))).unwrap());
            scope.spawn(move || store.gc(&HashSet::new()).unwrap());
        }
    });
    assert_eq!(f.store.list().len(), 4);
    for r in f.store.list() {
        assert_eq!(r.references.len(), 2);
        for d in f.store.layer_dirs(&r) {
            assert!(d.exists());
        }
    }
    assert_eq!(fs::read_dir(f.root.join("layers")).unwrap().count(), 2);
    assert!(fs::read_dir(f.root.join("staging"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn open_sweeps_staging_leftovers() {
    let f = fixture();
    let junk = f.root.join("staging/import-deadbeef/layers/abc");
    fs::create_dir_all(&junk).unwrap();
    fs::write(junk.join("file"), b"x").unwrap();
    drop(ImageStore::open(&f.root).unwrap());
    assert!(fs::read_dir(f.root.join("staging"))
        .unwrap()
        .next()
        .is_none());
}
