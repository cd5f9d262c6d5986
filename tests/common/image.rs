//! Builds real OCI image archives for the tests from Debian's busybox-static.

use sha2::{Digest, Sha256};

/// One entry of a layer.
#[derive(Clone)]
pub enum Entry {
    /// A directory.
    Dir(&'static str, u32),
    /// A regular file.
    File(String, Vec<u8>, u32),
    /// A symlink: path, target.
    Symlink(String, String),
    /// A hard link: path, target.
    Hardlink(String, String),
}

/// A gzip or plain tar layer.
pub struct Layer {
    /// Entries in order.
    pub entries: Vec<Entry>,
    /// Compress with gzip.
    pub gzip: bool,
}

/// Image config fields.
#[derive(Default)]
pub struct Config {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: String,
    /// The config's "history" entries, as (created_by, empty_layer); none
    /// writes no "history" at all.
    pub history: Vec<(String, bool)>,
    /// "ExposedPorts" keys ("80/tcp"); none writes no "ExposedPorts".
    pub exposed_ports: Vec<String>,
    /// "Volumes" keys (paths); none writes no "Volumes".
    pub volumes: Vec<String>,
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    // set_path refuses ".." and absolute paths; malicious tests need them,
    // so write the name bytes directly.
    let name = path.as_bytes();
    let gnu = h.as_gnu_mut().expect("gnu header");
    gnu.name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

/// Raw tar bytes of `entries`.
pub fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::Dir(p, mode) => {
                let h = header(p, tar::EntryType::Directory, 0, *mode);
                b.append(&h, std::io::empty()).unwrap();
            }
            Entry::File(p, data, mode) => {
                let h = header(p, tar::EntryType::Regular, data.len() as u64, *mode);
                b.append(&h, data.as_slice()).unwrap();
            }
            Entry::Symlink(p, target) | Entry::Hardlink(p, target) => {
                let kind = if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(p, kind, 0, 0o777);
                let t = target.as_bytes();
                h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The applets the tests use, as symlinks to busybox.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "hostname", "ps", "sleep", "true", "false", "id", "env", "pwd",
    "touch", "mkdir", "grep", "wc", "head", "dd", "yes", "kill", "seq", "cut", "stat", "readlink",
    "mount", "tail", "printf", "test", "rm", "awk", "tr", "ip", "httpd", "wget",
];

/// A busybox root filesystem layer.
pub fn busybox_layer() -> Vec<Entry> {
    let bb = std::fs::read("/bin/busybox")
        .expect("/bin/busybox missing: install Debian's busybox-static (.ci/run does)");
    let mut es = vec![
        Entry::Dir("bin", 0o755),
        Entry::File("bin/busybox".into(), bb, 0o755),
    ];
    for a in APPLETS {
        es.push(Entry::Symlink(format!("bin/{a}"), "busybox".into()));
    }
    es.extend([
        Entry::Dir("etc", 0o755),
        Entry::File(
            "etc/passwd".into(),
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .to_vec(),
            0o644,
        ),
        Entry::File(
            "etc/group".into(),
            b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
            0o644,
        ),
        Entry::Dir("tmp", 0o1777),
        Entry::Dir("root", 0o700),
        Entry::File("etc/image-file".into(), b"from the image\n".to_vec(), 0o644),
    ]);
    es
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn config_json(cfg: &Config, diff_ids: &[String]) -> Vec<u8> {
    let mut v = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "Entrypoint": cfg.entrypoint,
            "Cmd": cfg.cmd,
            "Env": cfg.env,
            "WorkingDir": cfg.working_dir,
            "User": cfg.user,
            "StopSignal": if cfg.stop_signal.is_empty() { serde_json::Value::Null } else { cfg.stop_signal.clone().into() },
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let as_set = |keys: &[String]| {
        serde_json::Value::Object(
            keys.iter()
                .map(|k| (k.clone(), serde_json::json!({})))
                .collect(),
        )
    };
    if !cfg.exposed_ports.is_empty() {
        v["config"]["ExposedPorts"] = as_set(&cfg.exposed_ports);
    }
    if !cfg.volumes.is_empty() {
        v["config"]["Volumes"] = as_set(&cfg.volumes);
    }
    if !cfg.history.is_empty() {
        v["history"] = cfg
            .history
            .iter()
            .map(|(by, empty)| {
                let mut h = serde_json::json!({
                    "created": "2026-01-01T00:00:00Z",
                    "created_by": by,
                    "comment": format!("made by {by}"),
                });
                if *empty {
                    h["empty_layer"] = true.into();
                }
                h
            })
            .collect();
    }
    serde_json::to_vec(&v).unwrap()
}

/// Knobs for building broken archives.
#[derive(Default)]
pub struct Tamper {
    /// Store a different layer blob than the manifest's digest says.
    pub corrupt_layer_blob: bool,
}

/// An OCI image layout tar named `name` (a full reference, or None).
pub fn oci_archive(name: Option<&str>, cfg: &Config, layers: &[Layer], tamper: &Tamper) -> Vec<u8> {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for l in layers {
        let raw = tar_bytes(&l.entries);
        diff_ids.push(format!("sha256:{}", sha256_hex(&raw)));
        let (blob, mt) = if l.gzip {
            (gzip(&raw), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (raw, "application/vnd.oci.image.layer.v1.tar")
        };
        let digest = sha256_hex(&blob);
        descs.push(serde_json::json!({"mediaType": mt, "digest": format!("sha256:{digest}"), "size": blob.len()}));
        let mut stored = blob;
        if tamper.corrupt_layer_blob {
            let n = stored.len();
            stored[n / 2] ^= 0xff;
        }
        blobs.push((digest, stored));
    }
    let config = config_json(cfg, &diff_ids);
    let ch = sha256_hex(&config);
    blobs.push((ch.clone(), config.clone()));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{ch}"), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let mh = sha256_hex(&manifest);
    blobs.push((mh.clone(), manifest.clone()));
    let mut desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{mh}"),
        "size": manifest.len(),
    });
    if let Some(n) = name {
        desc["annotations"] = serde_json::json!({"io.containerd.image.name": n});
    }
    let index =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [desc]})).unwrap();
    let mut entries = vec![
        Entry::File(
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            0o644,
        ),
        Entry::File("index.json".into(), index, 0o644),
        Entry::Dir("blobs", 0o755),
        Entry::Dir("blobs/sha256", 0o755),
    ];
    for (h, d) in blobs {
        entries.push(Entry::File(format!("blobs/sha256/{h}"), d, 0o644));
    }
    tar_bytes(&entries)
}

/// A `docker save` archive of one image.
pub fn docker_archive(tag: &str, cfg: &Config, layers: &[Layer]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut diff_ids = Vec::new();
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let raw = tar_bytes(&l.entries);
        diff_ids.push(format!("sha256:{}", sha256_hex(&raw)));
        let p = format!("layer{i}/layer.tar");
        entries.push(Entry::File(
            p.clone(),
            if l.gzip { gzip(&raw) } else { raw },
            0o644,
        ));
        paths.push(p);
    }
    let config = config_json(cfg, &diff_ids);
    let cname = format!("{}.json", sha256_hex(&config));
    entries.push(Entry::File(cname.clone(), config, 0o644));
    let manifest = serde_json::to_vec(
        &serde_json::json!([{"Config": cname, "RepoTags": [tag], "Layers": paths}]),
    )
    .unwrap();
    entries.push(Entry::File("manifest.json".into(), manifest, 0o644));
    tar_bytes(&entries)
}

/// The standard test image: busybox with `sh` as Cmd.
pub fn busybox(name: &str) -> Vec<u8> {
    busybox_with(name, Vec::new())
}

/// The standard test image with `extra` entries added to (or replacing
/// some of) its one layer.
pub fn busybox_with(name: &str, extra: Vec<Entry>) -> Vec<u8> {
    busybox_config(name, extra, Config::default())
}

/// The standard test image with `extra` entries and `cfg`'s exposed ports
/// and volumes.
pub fn busybox_config(name: &str, extra: Vec<Entry>, cfg: Config) -> Vec<u8> {
    let mut entries = busybox_layer();
    entries.extend(extra);
    oci_archive(
        Some(name),
        &Config {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into(), "IMAGE_VAR=from-image".into()],
            ..cfg
        },
        &[Layer {
            entries,
            gzip: true,
        }],
        &Tamper::default(),
    )
}

/// A two-layer busybox image whose config records a history of four steps,
/// two of them empty; returns the OCI archive.
pub fn two_layer(name: &str) -> Vec<u8> {
    oci_archive(
        Some(name),
        &Config {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            history: vec![
                ("ADD rootfs.tar /".into(), false),
                ("ENV PATH=/bin".into(), true),
                ("RUN echo layered > /etc/layered".into(), false),
                ("CMD [\"sh\"]".into(), true),
            ],
            ..Default::default()
        },
        &[
            Layer {
                entries: busybox_layer(),
                gzip: true,
            },
            Layer {
                entries: vec![
                    Entry::Dir("etc", 0o755),
                    Entry::File("etc/layered".into(), b"layered\n".to_vec(), 0o644),
                ],
                gzip: false,
            },
        ],
        &Tamper::default(),
    )
}
