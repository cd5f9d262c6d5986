//! Archive builders: layers, OCI layouts and `docker save` archives in memory.

use std::io::Write;

use serde_json::json;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::image::layout::host_arch;

/// One entry of a test layer.
pub(super) enum E<'a> {
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

pub(super) fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A GNU header with the name written raw, so tests can put `..` and
/// absolute paths in it (the tar crate's setters refuse those).
pub(super) fn raw_header(
    name: &str,
    kind: EntryType,
    size: u64,
    link: Option<&str>,
    mode: u32,
) -> Header {
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

pub(super) fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
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

pub(super) fn layer_tar(entries: &[E]) -> Vec<u8> {
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

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// An outer archive of regular files with safe names.
pub(super) fn outer_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
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
pub(super) enum Corrupt {
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
    /// The last layer's blob is left out of the archive.
    MissingLayer,
}

pub(super) struct Spec {
    /// (uncompressed tar, gzip it?)
    pub(super) layers: Vec<(Vec<u8>, bool)>,
    pub(super) os: &'static str,
    pub(super) arch: String,
    /// Annotations on the index.json entry.
    pub(super) annotations: Vec<(&'static str, String)>,
    /// Makes the config (and so the image id) unique.
    pub(super) label: String,
    pub(super) corrupt: Corrupt,
    /// Use the Docker schema 2 manifest media type.
    pub(super) docker_media: bool,
}

impl Spec {
    pub(super) fn new(layers: Vec<(Vec<u8>, bool)>) -> Self {
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

    pub(super) fn named(mut self, name: &str) -> Self {
        self.annotations
            .push(("io.containerd.image.name", name.to_string()));
        self
    }
}

pub(super) struct Built {
    pub(super) archive: Vec<u8>,
    pub(super) config_digest: String,
    pub(super) manifest_digest: String,
    pub(super) diff_ids: Vec<String>,
}

/// Layer blobs (digest, bytes, media type), config bytes and diff ids.
#[allow(clippy::type_complexity)]
pub(super) fn blobs_of(
    spec: &Spec,
) -> (Vec<(String, Vec<u8>, &'static str)>, Vec<u8>, Vec<String>) {
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

pub(super) fn build_oci(spec: &Spec) -> Built {
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
    let keep = if spec.corrupt == Corrupt::MissingLayer {
        layers.len().saturating_sub(1)
    } else {
        layers.len()
    };
    for (d, data, _) in layers.into_iter().take(keep) {
        files.push((blob_path(&d), data));
    }
    Built {
        archive: outer_tar(&files),
        config_digest,
        manifest_digest,
        diff_ids,
    }
}

pub(super) fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", &digest["sha256:".len()..])
}

/// A legacy `docker save` archive: `<id>/layer.tar` and `<hex>.json`.
pub(super) fn build_docker(spec: &Spec, repo_tags: &[&str]) -> Built {
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
