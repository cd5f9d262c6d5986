//! Unpacking a layer tar: never panics, and never creates, changes or
//! links anything outside the destination directory, whatever the entries
//! (absolute and `..` paths, symlinks then paths through them, hard links
//! to outside or through symlinks, whiteouts, devices, PAX headers).
//!
//! The destination `case/dest` has a sibling `case/outside` holding a file
//! and a directory that layers can name (`../outside/victim`, or through
//! symlinks to it, absolute or relative): after the unpack, `case` must
//! hold the same two entries, `outside` the same, unchanged, with the file
//! linked nowhere else.
//!
//! Input: a tar, whose header checksums are repaired first (the fuzzer
//! cannot keep them right).
#![no_main]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// What must not change of a file or directory.
fn state(p: &Path) -> (u32, u32, u32, u64, i64, u64, Vec<u8>) {
    let m = std::fs::symlink_metadata(p).expect("stat");
    let content = if m.is_file() {
        std::fs::read(p).expect("read")
    } else {
        Vec::new()
    };
    (
        m.mode(),
        m.uid(),
        m.gid(),
        m.nlink(),
        m.mtime(),
        m.ino(),
        content,
    )
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let tar = berth_fuzz::fix_checksums(data);
    let case = berth_fuzz::fresh("extract");
    let dest = case.join("dest");
    let outside = case.join("outside");
    std::fs::create_dir(&dest).expect("dest");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("victim"), b"host file\n").expect("victim");
    std::fs::create_dir(outside.join("d")).expect("d");
    let before = (
        state(&case),
        state(&outside),
        state(&outside.join("victim")),
        state(&outside.join("d")),
    );

    let _ = berthd::fuzzing::image::unpack(&mut tar.as_slice(), &dest);

    assert_eq!(
        names(&case),
        ["dest", "outside"],
        "entries beside the destination"
    );
    assert_eq!(names(&outside), ["d", "victim"], "entries in outside/");
    assert!(
        names(&outside.join("d")).is_empty(),
        "outside/d was written to"
    );
    let after = (
        state(&case),
        state(&outside),
        state(&outside.join("victim")),
        state(&outside.join("d")),
    );
    assert_eq!(before, after, "something outside the destination changed");
    let m = std::fs::symlink_metadata(&dest).expect("stat dest");
    assert!(m.is_dir(), "the destination is no longer a directory");
});
