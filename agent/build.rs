//! Builds `berth-monitor` (the `monitor/` package) for berthd to embed,
//! generates berthd's own server of `berth.v1.Events` (see
//! [`generate_events_server`]) and the CRI v1 servers (see [`generate_cri`]).
//!
//! berthd runs one monitor per container, so the monitor must start fast and
//! stay small: it is a static executable without std or libc. It must be
//! built with panic = "abort", which berthd and the tests must not get, so
//! it is a workspace of its own, and this script runs a second cargo on it,
//! with `--target` (keeping its link flags away from build scripts) and its
//! own target directory. berthd then carries the result (`include_bytes!`),
//! and `cargo run --bin berthd` or a copied `berthd` binary are complete.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

fn main() {
    if let Err(e) = generate_events_server() {
        eprintln!("generating the Events server: {e}");
        std::process::exit(1);
    }
    if let Err(e) = generate_cri() {
        eprintln!("generating the CRI v1 servers: {e}");
        std::process::exit(1);
    }
    if let Err(e) = build_monitor() {
        eprintln!("building berth-monitor: {e}");
        std::process::exit(1);
    }
}

/// Generates the server side of `berth.v1.Events` with one difference from
/// the `berth` crate's: the streamed `Event` is berthd's
/// `events::EncodedEvent`, an event kept encoded, so a subscriber is sent the
/// bytes stored at publication instead of a copy re-encoded per subscriber.
/// Every other message is the `berth` crate's. The wire format is the same.
fn generate_events_server() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto = manifest_dir
        .parent()
        .ok_or("the agent crate has no parent directory")?
        .join("proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let mut fds = protox::compile([proto.join("berth/v1/events.proto")], [&proto])?;
    // The imported files' services (Containers) are the berth crate's.
    for file in &mut fds.file {
        if file.name() != "berth/v1/events.proto" {
            file.service.clear();
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("events_server");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".berth.v1", "::berth::v1")
        .extern_path(".berth.v1.Event", "crate::events::EncodedEvent")
        .out_dir(&out)
        .compile_fds(fds)?;
    Ok(())
}

/// Generates the CRI v1 types and servers (`runtime.v1`) from
/// `agent/proto/cri/runtime/v1/api.proto`, cri-api's own file, unchanged
/// (see its README.md). Compiled by `protox` like berth's API, so building
/// berthd needs no `protoc`, and the API is the current cri-api's.
fn generate_cri() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let dir = manifest_dir.join("proto/cri");
    println!("cargo:rerun-if-changed={}", dir.display());
    let fds = protox::compile([dir.join("runtime/v1/api.proto")], [&dir])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("cri");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&out)
        .compile_fds(fds)?;
    Ok(())
}

fn build_monitor() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("the agent crate has no parent directory")?;
    for watched in [
        "runtime",
        "monitor/src",
        "monitor/Cargo.toml",
        "monitor/Cargo.lock",
        "monitor/build.rs",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let target = std::env::var("TARGET")?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let target_dir = shared_target_dir(&out_dir).join("berth-monitor");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let build = || {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace.join("monitor"))
            .args(["build", "--locked", "--quiet", "--release"])
            .args(["--target", &target])
            .arg("--target-dir")
            .arg(&target_dir)
            // Cargo hands build scripts the outer build's flags in this one.
            .env("CARGO_ENCODED_RUSTFLAGS", "")
            // The workspace's .cargo/config.toml (found from monitor/ too)
            // links its programs with crt-static; the monitor has no libc
            // and links itself (monitor/build.rs).
            .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "");
        // What the outer build was given is for the outer build.
        for var in [
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_PROFILE_RELEASE_DEBUG",
            // `cargo clippy` lints through this wrapper; lint the monitor
            // with `cargo clippy` in monitor/.
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        cmd
    };
    // The outer cargo holds the lock of its package cache while build
    // scripts run, so this build must not download into it: it would wait
    // for that lock forever. First offline: from the monitor's own package
    // cache when an earlier build made one, else from the outer one...
    let own_home = target_dir.join("cargo-home");
    let mut status = if own_home.is_dir() {
        build()
            .arg("--offline")
            .env("CARGO_HOME", &own_home)
            .status()?
    } else {
        build().arg("--offline").status()?
    };
    if !status.success() {
        // ...and when the monitor needs crates that cache lacks (a fresh
        // machine), fetched into a package cache of its own.
        println!("cargo:warning=fetching berth-monitor's dependencies into a separate CARGO_HOME");
        status = build().env("CARGO_HOME", &own_home).status()?;
    }
    if !status.success() {
        return Err(format!("cargo build of berth-monitor failed ({status})").into());
    }
    let bin = target_dir
        .join(&target)
        .join("release")
        .join("berth-monitor");
    if !bin.is_file() {
        return Err(format!("{} was not built", bin.display()).into());
    }
    let elf = std::fs::read(&bin)?;
    check_static(&elf).map_err(|e| format!("{}: {e}", bin.display()))?;
    println!("cargo:rustc-env=BERTH_MONITOR_BIN={}", bin.display());
    // berthd checks the installed copy against this digest instead of
    // comparing bytes, which would page in its embedded copy at every start.
    let digest = sha2::Sha256::digest(&elf);
    println!(
        "cargo:rustc-env=BERTH_MONITOR_SHA256={}",
        hex::encode(digest)
    );
    Ok(())
}

/// Refuses a monitor that would need a dynamic loader: a C library symbol
/// the monitor's runtime lacks would otherwise be taken from the shared
/// libc silently (`-lc` is on the link line for a dependency's sake).
fn check_static(elf: &[u8]) -> Result<(), String> {
    const ET_EXEC: u16 = 2;
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return Err("not a 64-bit ELF file".into());
    }
    if u16_at(16) != Some(ET_EXEC) {
        return Err("not a static, position-dependent executable".into());
    }
    let phoff = u64_at(32).ok_or("truncated")? as usize;
    let phentsize = u16_at(54).ok_or("truncated")? as usize;
    let phnum = u16_at(56).ok_or("truncated")? as usize;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize) == Some(PT_INTERP) {
            return Err("linked dynamically: a symbol is missing from src/rt.rs".into());
        }
    }
    Ok(())
}

/// The directory above `<profile>/build/<crate>-<hash>/out`: shared by debug
/// and release builds, so the monitor is compiled once for both.
fn shared_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.to_path_buf())
}
