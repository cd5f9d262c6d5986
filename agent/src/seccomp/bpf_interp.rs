//! A classic BPF interpreter for seccomp programs, as the kernel runs them
//! (net/core/filter.c, kernel/seccomp.c), for the tests: it checks what the
//! kernel's verifier checks on the way (forward jumps inside the program,
//! aligned loads inside `seccomp_data`, a return at the end of every path)
//! and knows the instructions berth's emitter and seccompiler use.

use berth_runtime::seccomp::SockFilter;

use super::compile::{
    severity, ALU_AND_K, JMP_JA, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, LD_W_ABS, RET_ALLOW, RET_K,
};

/// `struct seccomp_data` of one call.
#[derive(Debug, Clone, Copy)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Data {
    fn word(&self, off: u32) -> u32 {
        assert!(off.is_multiple_of(4) && off < 64, "load at {off}");
        match off {
            0 => self.nr,
            4 => self.arch,
            // The instruction pointer: nothing berth looks at.
            8 | 12 => 0,
            _ => {
                let a = self.args[(off as usize - 16) / 8];
                if off.is_multiple_of(8) {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
        }
    }
}

/// What `program` returns for `data`.
pub fn run(program: &[SockFilter], data: &Data) -> u32 {
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = program
            .get(pc)
            .unwrap_or_else(|| panic!("ran off the end at {pc}"));
        let jump = |cond: bool| pc + 1 + usize::from(if cond { i.jt } else { i.jf });
        pc = match i.code {
            LD_W_ABS => {
                a = data.word(i.k);
                pc + 1
            }
            ALU_AND_K => {
                a &= i.k;
                pc + 1
            }
            JMP_JA => pc + 1 + i.k as usize,
            JMP_JEQ_K => jump(a == i.k),
            JMP_JGT_K => jump(a > i.k),
            JMP_JGE_K => jump(a >= i.k),
            RET_K => return i.k,
            other => panic!("instruction {other:#x} at {pc}"),
        };
    }
}

/// What a stack of programs (installed in this order) gives: the kernel
/// runs the newest first and keeps the most severe result, the newer one
/// for equal severity.
pub fn run_all(programs: &[Vec<SockFilter>], data: &Data) -> u32 {
    let mut ret = RET_ALLOW;
    for p in programs.iter().rev() {
        let r = run(p, data);
        if severity(r) < severity(ret) {
            ret = r;
        }
    }
    ret
}
