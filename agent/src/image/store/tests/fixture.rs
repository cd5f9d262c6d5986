//! A store in a temporary directory, and what tests check in it.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::image::{ImageError, ImageStore};

use super::builders::*;

pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) base: PathBuf,
    pub(super) root: PathBuf,
    pub(super) store: ImageStore,
}

pub(super) fn fixture() -> Fixture {
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
    pub(super) fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.base.join(name);
        fs::write(&p, data).unwrap();
        p
    }

    pub(super) fn import(
        &self,
        data: &[u8],
        reference: Option<&str>,
    ) -> Result<Vec<crate::image::ImageRecord>, ImageError> {
        let p = self.write("upload.tar", data);
        self.store.import(&p, reference)
    }

    pub(super) fn layer(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(&diff_id[7..])
    }

    pub(super) fn index_bytes(&self) -> Option<Vec<u8>> {
        fs::read(self.root.join("images.json")).ok()
    }

    /// Nothing in layers/, blobs/, staging/, and images.json as given.
    pub(super) fn assert_untouched(&self, index_before: &Option<Vec<u8>>) {
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

pub(super) fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
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

pub(super) fn supports_user_xattrs(dir: &Path) -> bool {
    let probe = dir.join("xattr-probe");
    fs::write(&probe, b"").unwrap();
    let p = CString::new(probe.as_os_str().as_bytes()).unwrap();
    let n = CString::new("user.probe").unwrap();
    // SAFETY: valid C strings and a live one-byte value.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    let _ = fs::remove_file(&probe);
    rc == 0
}

pub(super) fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
}

pub(super) fn base_layer() -> Vec<u8> {
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

pub(super) fn top_layer() -> Vec<u8> {
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
