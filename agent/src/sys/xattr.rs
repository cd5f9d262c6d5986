//! Reading extended attributes through a file descriptor (never a path, so
//! no symlink is followed): the build's layer diff needs overlayfs's
//! whiteout and opaque markers and `security.capability`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// All extended attributes of an open file or directory, sorted by name;
/// lists and values longer than `max` bytes are cut there. std and nix have
/// no xattr API, hence libc.
pub fn read_all(fd: BorrowedFd, max: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let raw = fd.as_raw_fd();
    // SAFETY: a null buffer of length 0 only asks for the size needed.
    let len = unsafe { libc::flistxattr(raw, std::ptr::null_mut(), 0) };
    let mut list = match usize::try_from(len) {
        Ok(0) => return Ok(Vec::new()),
        Ok(n) => vec![0u8; n.min(max)],
        Err(_) => match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            e => return Err(e),
        },
    };
    // SAFETY: `list` is a live, writable buffer of `list.len()` bytes.
    let got = unsafe { libc::flistxattr(raw, list.as_mut_ptr().cast(), list.len()) };
    list.truncate(usize::try_from(got).map_err(|_| io::Error::last_os_error())?);
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: `cname` is NUL-terminated; a null buffer of length 0
        // only asks for the value's size.
        let len = unsafe { libc::fgetxattr(raw, cname.as_ptr(), std::ptr::null_mut(), 0) };
        let len = usize::try_from(len).map_err(|_| io::Error::last_os_error())?;
        let mut value = vec![0u8; len.min(max)];
        let buf = value.as_mut_ptr().cast();
        // SAFETY: `cname` is NUL-terminated; `buf` is `value`'s live,
        // writable storage of `value.len()` bytes.
        let n = unsafe { libc::fgetxattr(raw, cname.as_ptr(), buf, value.len()) };
        value.truncate(usize::try_from(n).map_err(|_| io::Error::last_os_error())?);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}
