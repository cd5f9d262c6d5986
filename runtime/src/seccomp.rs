//! The file of compiled seccomp programs berthd hands to a container's init.
//!
//! berthd compiles a container's seccomp profile into classic BPF and writes
//! it to a file ([`crate::launch::LaunchSpec::seccomp`]); the init reads it
//! before `pivot_root` (it is a host path) and installs every program, in
//! file order, just before exec. The format is a sequence of programs, each
//! a `u32` little-endian instruction count `N` followed by `N` instructions
//! as the kernel's `struct sock_filter` (`u16 code, u8 jt, u8 jf, u32 k`, in
//! native byte order, 8 bytes each).

use alloc::vec::Vec;
use core::fmt;

/// The largest file the init reads: a profile far larger than Docker's
/// default (a few hundred instructions) is a mistake, not a policy.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// The kernel's limit on one program (`BPF_MAXINSNS`).
pub const MAX_PROGRAM_INSNS: usize = 4096;

/// The kernel's limit on every filter of a process together
/// (`MAX_INSNS_PER_PATH`), each program counted with a penalty of 4
/// instructions (the kernel spares the last one its 4; this count does
/// not): more fails with `ENOMEM` at install, here with a clearer message.
pub const MAX_TOTAL_INSNS: usize = 32768;

/// One BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    /// Operation.
    pub code: u16,
    /// Jump offset when true.
    pub jt: u8,
    /// Jump offset when false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// Size of one [`SockFilter`] in the file.
const INSN_BYTES: usize = 8;

/// Why a file of programs was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompFileError {
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge(usize),
    /// No program at all: an empty file would leave the container
    /// unconfined without saying so.
    NoPrograms,
    /// The file ends inside the program at this index.
    Truncated {
        /// Index of the program, from 0.
        program: usize,
    },
    /// A program of no instruction, which the kernel refuses.
    EmptyProgram {
        /// Index of the program, from 0.
        program: usize,
    },
    /// A program longer than [`MAX_PROGRAM_INSNS`].
    ProgramTooLong {
        /// Index of the program, from 0.
        program: usize,
        /// Its instruction count.
        len: usize,
    },
    /// More than [`MAX_TOTAL_INSNS`] instructions in all.
    TooManyInstructions(usize),
}

impl fmt::Display for SeccompFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(n) => write!(
                f,
                "{n} bytes, more than the {} MiB allowed",
                MAX_FILE_BYTES >> 20
            ),
            Self::NoPrograms => f.write_str("no program in the file"),
            Self::Truncated { program } => write!(f, "program {program} is cut short"),
            Self::EmptyProgram { program } => write!(f, "program {program} has no instruction"),
            Self::ProgramTooLong { program, len } => write!(
                f,
                "program {program} has {len} instructions, more than the kernel's {MAX_PROGRAM_INSNS}"
            ),
            Self::TooManyInstructions(n) => write!(
                f,
                "{n} instructions in all, more than the kernel's {MAX_TOTAL_INSNS}"
            ),
        }
    }
}

/// Splits `bytes` off the front of `rest`, if it has that many.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// The programs of a file, in file order (the order to install them in).
pub fn parse(bytes: &[u8]) -> Result<Vec<Vec<SockFilter>>, SeccompFileError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(SeccompFileError::TooLarge(bytes.len()));
    }
    let mut rest = bytes;
    let mut programs = Vec::new();
    let mut total = 0;
    while !rest.is_empty() {
        let program = programs.len();
        let truncated = SeccompFileError::Truncated { program };
        let count = take(&mut rest, 4).ok_or(truncated.clone())?;
        let len = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
        if len == 0 {
            return Err(SeccompFileError::EmptyProgram { program });
        }
        if len > MAX_PROGRAM_INSNS {
            return Err(SeccompFileError::ProgramTooLong { program, len });
        }
        total += len + 4;
        if total > MAX_TOTAL_INSNS {
            return Err(SeccompFileError::TooManyInstructions(total));
        }
        let body = take(&mut rest, len * INSN_BYTES).ok_or(truncated)?;
        let insns = body
            .chunks_exact(INSN_BYTES)
            .map(|i| SockFilter {
                code: u16::from_ne_bytes([i[0], i[1]]),
                jt: i[2],
                jf: i[3],
                k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
            })
            .collect();
        programs.push(insns);
    }
    if programs.is_empty() {
        return Err(SeccompFileError::NoPrograms);
    }
    Ok(programs)
}

/// The file of `programs`, the inverse of [`parse`].
pub fn encode(programs: &[Vec<SockFilter>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in programs {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        for i in p {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// `BPF_RET | BPF_K` with `SECCOMP_RET_ALLOW`, and a load of the
    /// syscall number: two real instructions.
    const ALLOW: SockFilter = SockFilter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    };
    const LOAD_NR: SockFilter = SockFilter {
        code: 0x20,
        jt: 1,
        jf: 2,
        k: 0,
    };

    fn encode(programs: &[&[SockFilter]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in programs {
            out.extend((p.len() as u32).to_le_bytes());
            for i in *p {
                out.extend(i.code.to_ne_bytes());
                out.extend([i.jt, i.jf]);
                out.extend(i.k.to_ne_bytes());
            }
        }
        out
    }

    #[test]
    fn the_layout_is_the_kernels() {
        assert_eq!(core::mem::size_of::<SockFilter>(), INSN_BYTES);
    }

    #[test]
    fn programs_come_back_in_file_order() {
        let first: &[SockFilter] = &[LOAD_NR, ALLOW];
        let second: &[SockFilter] = &[ALLOW];
        let parsed = parse(&encode(&[first, second])).unwrap();
        assert_eq!(parsed, vec![first.to_vec(), second.to_vec()]);
    }

    #[test]
    fn the_count_is_little_endian_and_instructions_native() {
        let mut bytes = vec![1, 0, 0, 0];
        bytes.extend(0x0006u16.to_ne_bytes());
        bytes.extend([3, 4]);
        bytes.extend(0x7fff_0000u32.to_ne_bytes());
        let parsed = parse(&bytes).unwrap();
        assert_eq!(
            parsed,
            vec![vec![SockFilter {
                code: 6,
                jt: 3,
                jf: 4,
                k: 0x7fff_0000
            }]]
        );
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert_eq!(parse(&[]), Err(SeccompFileError::NoPrograms));
    }

    #[test]
    fn a_cut_file_is_refused() {
        let whole = encode(&[&[ALLOW], &[LOAD_NR, ALLOW]]);
        // Inside the second count, and inside its instructions.
        for cut in [14, whole.len() - 1] {
            assert_eq!(
                parse(&whole[..cut]),
                Err(SeccompFileError::Truncated { program: 1 }),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse(&whole[..3]),
            Err(SeccompFileError::Truncated { program: 0 })
        );
    }

    #[test]
    fn programs_the_kernel_would_refuse_are_refused() {
        assert_eq!(
            parse(&[0, 0, 0, 0]),
            Err(SeccompFileError::EmptyProgram { program: 0 })
        );
        let long = vec![ALLOW; MAX_PROGRAM_INSNS + 1];
        assert_eq!(
            parse(&encode(&[&[ALLOW], &long])),
            Err(SeccompFileError::ProgramTooLong {
                program: 1,
                len: MAX_PROGRAM_INSNS + 1
            })
        );
        // A count far past the end is cut short, not an allocation.
        assert_eq!(
            parse(&[0, 16, 0, 0]),
            Err(SeccompFileError::Truncated { program: 0 })
        );
    }

    #[test]
    fn too_many_instructions_in_all_are_refused() {
        let full = vec![ALLOW; MAX_PROGRAM_INSNS];
        let programs: Vec<&[SockFilter]> = vec![&full; 8];
        assert_eq!(
            parse(&encode(&programs)),
            Err(SeccompFileError::TooManyInstructions(
                8 * (MAX_PROGRAM_INSNS + 4)
            ))
        );
        let seven: Vec<&[SockFilter]> = vec![&full; 7];
        assert_eq!(parse(&encode(&seven)).map(|p| p.len()), Ok(7));
    }

    #[test]
    fn a_file_over_the_limit_is_refused() {
        let big = vec![0u8; MAX_FILE_BYTES + 1];
        assert_eq!(
            parse(&big),
            Err(SeccompFileError::TooLarge(MAX_FILE_BYTES + 1))
        );
    }
}
