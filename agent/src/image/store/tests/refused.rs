//! Archives that must be refused, leaving the store as it was.

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::json;
use tar::EntryType;

use crate::image::ImageError;

use super::builders::*;
use super::fixture::*;

#[test]
pub(super) fn names_are_required() {
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
pub(super) fn expect_refused(f: &Fixture, archive: &[u8], needle: &str) {
    let before = f.index_bytes();
    match f.import(archive, Some("victim:1")) {
        Err(ImageError::InvalidArchive(msg)) => {
            let msg = msg.to_string();
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

pub(super) fn one_layer(entries: &[E]) -> Vec<u8> {
    build_oci(&Spec::new(vec![(layer_tar(entries), false)])).archive
}

#[test]
pub(super) fn malicious_layers_are_refused_and_leave_nothing() {
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
pub(super) fn a_directory_replaced_by_a_symlink_later_leaves_the_host_alone() {
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
pub(super) fn bad_digests_and_formats_are_refused() {
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
    // Found by fuzz target archive_plan: a layer whose blob is missing was
    // planned, and the import failed only on reaching it, after unpacking
    // the layers before it.
    let mut missing = Spec::new(vec![
        (base_layer(), false),
        (layer_tar(&[E::File("b", b"b")]), true),
    ]);
    missing.corrupt = Corrupt::MissingLayer;
    expect_refused(&f, &build_oci(&missing).archive, "layer 2 of 2 (sha256:");
    expect_refused(&f, &build_oci(&missing).archive, "is not in the archive");

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

/// A layer with one regular file whose path comes from a PAX record, so it
/// can be longer than a tar header's 100 bytes.
fn layer_with_long_path(path: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let pax = pax_record("path", path.as_bytes());
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
        &raw_header("short", EntryType::Regular, 2, None, 0o644),
        &b"hi"[..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

/// Names the kernel refuses as too long are the archive's fault, not the
/// agent's: refused as a bad archive, leaving nothing.
#[test]
fn overlong_names_are_refused_as_bad_archives() {
    let f = fixture();
    let long_name = "n".repeat(300);
    let archive = build_oci(&Spec::new(vec![(layer_with_long_path(&long_name), false)])).archive;
    expect_refused(&f, &archive, "longer than 255 bytes");
    // Every component fits, the whole path does not (PATH_MAX is 4096).
    let deep = vec!["d".repeat(250); 20].join("/") + "/file";
    let archive = build_oci(&Spec::new(vec![(layer_with_long_path(&deep), false)])).archive;
    expect_refused(&f, &archive, "too long");
}
