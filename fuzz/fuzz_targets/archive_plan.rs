//! Import planning over an uploaded archive (OCI image layout or `docker
//! save`, plain or gzip-compressed): never panics on hostile tars (paths,
//! links, sizes, JSON), and every planned image is consistent: manifest and
//! config are the bytes their digests name, the config is linux, and every
//! layer is a clean archive member that opens, with a sha256 diff id.
//!
//! Input: a mode byte, then a tar. Mode 0 takes the tar as it is; mode 1
//! repairs it first (checksums, and the content addressing the fuzzer
//! cannot compute: see `berth_fuzz::content_addressed`); mode 2 also
//! compresses it with gzip.
#![no_main]

use std::io::Write;

use berthd::fuzzing::image::{clean, plan, sha256};
use libfuzzer_sys::fuzz_target;

fn is_sha256(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, tar)) = data.split_first() else {
        return;
    };
    let bytes = match mode % 3 {
        0 => tar.to_vec(),
        1 => berth_fuzz::content_addressed(tar),
        _ => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = gz.write_all(&berth_fuzz::content_addressed(tar));
            gz.finish().unwrap_or_default()
        }
    };
    let dir = berth_fuzz::fresh("archive");
    let archive = dir.join("upload.tar");
    let scratch = dir.join("staging");
    std::fs::write(&archive, &bytes).expect("writing the archive");
    std::fs::create_dir(&scratch).expect("creating staging");
    let Ok(images) = plan(&archive, &scratch) else {
        return;
    };
    assert!(!images.is_empty(), "a plan without images");
    for img in &images {
        assert_eq!(
            img.manifest_digest,
            sha256(&img.manifest_bytes),
            "manifest digest"
        );
        assert_eq!(
            img.config_digest,
            sha256(&img.config_bytes),
            "config digest"
        );
        assert!(img.config_is_linux, "a non-linux config was planned");
        assert_eq!(
            img.diff_ids, img.config_diff_ids,
            "layers paired with diff ids"
        );
        for d in &img.diff_ids {
            assert!(is_sha256(d), "diff id {d:?}");
        }
        for (member, opens) in &img.layers {
            assert_eq!(
                clean(member).as_deref(),
                Ok(member.as_str()),
                "layer member {member:?}"
            );
            assert!(*opens, "planned layer {member:?} does not open");
        }
    }
});
