//! Lookup, removal, gc, concurrency and recovery of the store.

use std::collections::HashSet;
use std::fs;

use crate::image::{ImageError, ImageStore};

use super::builders::*;
use super::fixture::*;

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
    let mut want: HashSet<String> = [
        c_rec.id[7..].to_string(),
        c_rec.manifest_digest[7..].to_string(),
    ]
    .into();
    // The live image's layer blobs stay (for save and push); those of the
    // removed image went with it.
    let manifest = fs::read(
        f.root
            .join("blobs/sha256")
            .join(&c_rec.manifest_digest[7..]),
    )
    .unwrap();
    let c_layers = crate::image::store::manifest_layers(&manifest);
    assert!(!c_layers.is_empty());
    want.extend(c_layers.iter().map(|d| d.digest[7..].to_string()));
    assert_eq!(blobs, want);
    assert!(fs::read_dir(f.root.join("staging"))
        .unwrap()
        .next()
        .is_none());

    // Nothing in use: only c's layer remains; gc reports what it deleted
    // (hard links once, so at most the apparent size).
    let held = crate::fsutil::apparent_bytes(&f.layer(&a.diff_ids[1]));
    let freed = f.store.gc(&HashSet::new()).unwrap();
    assert!(freed > 0 && freed <= held, "freed {freed} of {held}");
    assert_eq!(
        f.store.gc(&HashSet::new()).unwrap(),
        0,
        "nothing left to free"
    );
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

/// Partial downloads of pulls nobody resumed for a day are collected at
/// start; recent ones stay for the pull to resume.
#[test]
fn open_collects_abandoned_partial_downloads() {
    let f = fixture();
    let downloads = f.root.join("downloads");
    let old = downloads.join(format!("{}.partial", "a".repeat(64)));
    let recent = downloads.join(format!("{}.partial", "b".repeat(64)));
    for p in [&old, &recent] {
        fs::write(p, b"some bytes").unwrap();
    }
    let day_and_more = std::time::Duration::from_secs(25 * 3600);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - day_and_more)
        .unwrap();
    drop(ImageStore::open(&f.root).unwrap());
    assert!(!old.exists(), "an abandoned partial download was kept");
    assert!(recent.exists(), "a recent partial download was removed");
}

/// A live image whose manifest cannot be parsed makes gc keep every blob:
/// it cannot tell which layer blobs the image needs, and they are its only
/// copy of the layers as it was imported.
#[test]
fn gc_keeps_all_blobs_when_a_live_manifest_is_unreadable() {
    let f = fixture();
    let a = build_oci(&Spec::new(vec![(base_layer(), true)]));
    let rec = f.import(&a.archive, Some("a:1")).unwrap();
    let blobs_dir = f.root.join("blobs/sha256");
    let before: HashSet<String> = fs::read_dir(&blobs_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(before.len() > 2, "layer blobs were kept: {before:?}");
    // A stray blob nobody lists would normally go too.
    fs::write(blobs_dir.join("f".repeat(64)), b"stray").unwrap();
    fs::write(blobs_dir.join(&rec[0].manifest_digest[7..]), b"not json").unwrap();
    f.store.gc(&HashSet::new()).unwrap();
    let after: HashSet<String> = fs::read_dir(&blobs_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        after.is_superset(&before),
        "gc deleted a live image's blobs"
    );
    assert!(after.contains(&"f".repeat(64)));
    for d in f.store.layer_dirs(&rec[0]) {
        assert!(d.exists());
    }
}
