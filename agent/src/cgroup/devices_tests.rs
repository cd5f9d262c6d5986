use super::*;

/// Runs `prog` over a device context the way the kernel would, for the
/// instructions [`program`] emits; anything else fails the test.
fn run(prog: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
    let ctx = [((access << 16) | kind) as u32, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        pc += 1;
        match i.code {
            LDX_MEM_W => {
                assert_eq!(src, 1, "loads only from the context");
                r[dst] = u64::from(ctx[i.off as usize / 4]);
            }
            ALU64_AND_K => r[dst] &= i.imm as i64 as u64,
            ALU64_RSH_K => r[dst] >>= i.imm,
            ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
            ALU64_MOV_X => r[dst] = r[src],
            JMP_JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
            JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
            JMP_JNE_K | JMP_JNE_X => {}
            JMP_EXIT => return r[0],
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

/// What the rules say, computed directly: the reference the program must match.
fn allowed(rules: &[DeviceRule], kind: i32, access: i32, major: u32, minor: u32) -> bool {
    rules.iter().any(|r| {
        let k = match r.kind {
            DeviceKind::Char => kind == DEV_CHAR,
            DeviceKind::Block => kind == DEV_BLOCK,
            DeviceKind::All => true,
        };
        k && access & !r.access_bits() == 0
            && r.major.is_none_or(|m| m == major)
            && r.minor.is_none_or(|m| m == minor)
    })
}

#[test]
fn the_program_agrees_with_the_rules_everywhere() {
    let mut rules = default_rules();
    rules.push(DeviceRule {
        kind: DeviceKind::Block,
        major: Some(8),
        minor: Some(0),
        read: true,
        write: false,
        mknod: false,
    });
    rules.push(DeviceRule {
        kind: DeviceKind::All,
        major: Some(10),
        minor: None,
        read: false,
        write: true,
        mknod: false,
    });
    let prog = program(&rules);
    for kind in [DEV_BLOCK, DEV_CHAR] {
        for access in 1..8 {
            for major in [0, 1, 5, 8, 10, 136, 189, 4095] {
                for minor in [0, 1, 2, 3, 5, 7, 8, 9, 11, 200, 1 << 19] {
                    let want = allowed(&rules, kind, access, major, minor);
                    let got = run(&prog, kind, access, major, minor);
                    assert_eq!(
                        got,
                        u64::from(want),
                        "kind {kind} access {access} {major}:{minor}"
                    );
                }
            }
        }
    }
}

#[test]
fn defaults_allow_the_usual_nodes_and_nothing_else() {
    let prog = program(&default_rules());
    let rw = ACC_READ | ACC_WRITE;
    // /dev/null, /dev/urandom, a pty: yes.
    assert_eq!(run(&prog, DEV_CHAR, rw, 1, 3), 1);
    assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 9), 1);
    assert_eq!(run(&prog, DEV_CHAR, rw, 136, 4), 1);
    // /dev/kmsg, /dev/mem, a disk: no; but making a node is allowed.
    assert_eq!(run(&prog, DEV_CHAR, ACC_WRITE, 1, 11), 0);
    assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 1), 0);
    assert_eq!(run(&prog, DEV_BLOCK, ACC_READ, 8, 0), 0);
    assert_eq!(run(&prog, DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
    assert_eq!(run(&prog, DEV_BLOCK, ACC_MKNOD | ACC_READ, 8, 0), 0);
}

#[test]
fn no_rules_deny_everything_and_all_installs_nothing() {
    let prog = program(&[]);
    assert_eq!(run(&prog, DEV_CHAR, ACC_READ, 1, 3), 0);
    assert_eq!(DeviceAccess::All.rules(), None);
    assert_eq!(
        DeviceAccess::default().rules().map(|r| r.len()),
        Some(default_rules().len())
    );
}

#[test]
fn v1_syntax() {
    let lines: Vec<String> = default_rules().iter().map(|r| r.to_string()).collect();
    assert_eq!(lines[0], "c *:* m");
    assert_eq!(lines[1], "b *:* m");
    assert_eq!(lines[2], "c 1:3 rwm");
    assert_eq!(lines.last().map(String::as_str), Some("c 136:* rwm"));
}
