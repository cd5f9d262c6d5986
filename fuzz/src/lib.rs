//! What the fuzz targets share: a private scratch file system, and the
//! repairs that let mutated tar archives get past their checksums (and
//! past content addressing) into the code under test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Size of the private tmpfs the targets write to: bounds what a layer
/// that expands (sparse files, zero-filled holes) can write, as the import
/// bounds it by the free space of its file system.
const SCRATCH_SIZE: &str = "size=64m,mode=0700";

/// A directory of this process's own for the targets' files: as root, a
/// tmpfs mounted over /tmp in a mount namespace of the process's own (so
/// nothing reaches the host's disks, and the mount goes away with the
/// process); otherwise a directory in the temporary directory.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use nix::mount::{mount, MsFlags};
        let private = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_ok()
            && mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .is_ok()
            && mount(
                Some("tmpfs"),
                "/tmp",
                Some("tmpfs"),
                MsFlags::empty(),
                Some(SCRATCH_SIZE),
            )
            .is_ok();
        let dir = if private {
            PathBuf::from("/tmp/berth-fuzz")
        } else {
            eprintln!(
                "berth-fuzz: no private tmpfs (not root?): writing to the temporary directory"
            );
            std::env::temp_dir().join(format!("berth-fuzz-{}", std::process::id()))
        };
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the scratch directory");
        dir
    })
}

/// A fresh, empty directory `name` in [`scratch`].
pub fn fresh(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    if dir.symlink_metadata().is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir(&dir).expect("creating a scratch directory");
    dir
}

const BLOCK: usize = 512;

/// The size a tar header announces (octal or GNU base-256), if it can be read.
fn entry_size(header: &[u8]) -> Option<u64> {
    let h = tar::Header::from_byte_slice(header.get(..BLOCK)?);
    h.entry_size().ok()
}

/// Writes the checksum of a header block (its checksum field counted as spaces).
fn set_checksum(header: &mut [u8]) {
    header[148..156].fill(b' ');
    let sum: u32 = header[..BLOCK].iter().map(|b| u32::from(*b)).sum();
    let field = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(field.as_bytes());
}

/// One member of a tar as the fuzzer wrote it: its header block and data.
struct Member {
    header: Vec<u8>,
    data: Vec<u8>,
}

/// Splits `data` into header blocks and the data each announces, without
/// checking anything (a short last member keeps what there is).
fn members(data: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + BLOCK <= data.len() {
        let header = &data[pos..pos + BLOCK];
        pos += BLOCK;
        if header.iter().all(|b| *b == 0) {
            continue;
        }
        let size = entry_size(header)
            .unwrap_or(0)
            .min((data.len() - pos) as u64) as usize;
        out.push(Member {
            header: header.to_vec(),
            data: data[pos..pos + size].to_vec(),
        });
        pos += size.div_ceil(BLOCK) * BLOCK;
    }
    out
}

fn serialize(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        out.extend_from_slice(&m.header);
        out.extend_from_slice(&m.data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

/// `data` with the checksum of every header block it reaches recomputed
/// (everything else as the fuzzer wrote it).
pub fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut pos = 0;
    while pos + BLOCK <= out.len() {
        if out[pos..pos + BLOCK].iter().all(|b| *b == 0) {
            pos += BLOCK;
            continue;
        }
        let size = entry_size(&out[pos..pos + BLOCK]).unwrap_or(0);
        set_checksum(&mut out[pos..pos + BLOCK]);
        pos += BLOCK;
        let Some(next) = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_next_multiple_of(BLOCK))
            .and_then(|s| pos.checked_add(s))
        else {
            break;
        };
        pos = next;
    }
    out
}

/// Rebuilds the tar in `data` with content addressing done for the
/// fuzzer, which cannot compute digests: in a member's data, `@K` (K a
/// digit) becomes the sha256 hex of member K's data and `#K` its length,
/// for members after this one; `@@` in a member's name becomes the hex of
/// its own data. Sizes and checksums are then made right.
pub fn content_addressed(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut ms = members(data);
    let mut hexes: Vec<Option<String>> = vec![None; ms.len()];
    for i in (0..ms.len()).rev() {
        let old = std::mem::take(&mut ms[i].data);
        let mut new = Vec::with_capacity(old.len());
        let mut j = 0;
        while j < old.len() {
            let k = old
                .get(j + 1)
                .and_then(|d| d.is_ascii_digit().then(|| usize::from(d - b'0')));
            match (old[j], k) {
                (b'@', Some(k)) if k > i && k < ms.len() => {
                    new.extend_from_slice(hexes[k].as_deref().unwrap_or_default().as_bytes());
                    j += 2;
                }
                (b'#', Some(k)) if k > i && k < ms.len() => {
                    new.extend_from_slice(ms[k].data.len().to_string().as_bytes());
                    j += 2;
                }
                (b, _) => {
                    new.push(b);
                    j += 1;
                }
            }
        }
        let hex = hex::encode(sha2::Sha256::digest(&new));
        let m = &mut ms[i];
        m.data = new;
        let name_len = m.header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&m.header[..name_len]).into_owned();
        if name.contains("@@") {
            let renamed = name.replace("@@", &hex);
            if renamed.len() <= 100 {
                m.header[..100].fill(0);
                m.header[..renamed.len()].copy_from_slice(renamed.as_bytes());
            }
        }
        let size = format!("{:011o}\0", m.data.len());
        m.header[124..136].copy_from_slice(size.as_bytes());
        set_checksum(&mut m.header);
        hexes[i] = Some(hex);
    }
    serialize(&ms)
}
