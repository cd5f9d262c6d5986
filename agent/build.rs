//! Builds `berth-monitor` (the `berth-runtime` crate's binary) for berthd to
//! embed: statically linked and size-optimised (profile `monitor`).
//!
//! berthd runs one monitor per container, so the monitor must start fast and
//! stay small: a static binary needs no dynamic loader and maps no shared
//! libraries. Static linking is a target feature (`crt-static`) that cargo
//! cannot set for one binary of a workspace, so this script runs a second
//! cargo on the same workspace and lockfile, with `--target` (which keeps
//! the flag away from build scripts and proc macros) and its own target
//! directory. berthd then carries the result (`include_bytes!`), and
//! `cargo run --bin berthd` or a copied `berthd` binary are complete.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

fn main() {
    pack_relative_relocations();
    if let Err(e) = build_monitor() {
        eprintln!("building berth-monitor: {e}");
        std::process::exit(1);
    }
}

fn build_monitor() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("the agent crate has no parent directory")?;
    for watched in ["runtime", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let target = std::env::var("TARGET")?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let target_dir = shared_target_dir(&out_dir).join("berth-monitor");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--offline", "--locked", "--quiet"])
        .args(["-p", "berth-runtime", "--bin", "berth-monitor"])
        .args(["--profile", "monitor", "--target", &target])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    // What the outer build was given is for the outer build.
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
        // `cargo clippy` lints through this wrapper; the monitor's own
        // lints run when clippy checks the runtime crate itself.
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("cargo build of berth-monitor failed ({status})").into());
    }
    let bin = target_dir
        .join(&target)
        .join("monitor")
        .join("berth-monitor");
    if !bin.is_file() {
        return Err(format!("{} was not built", bin.display()).into());
    }
    println!("cargo:rustc-env=BERTH_MONITOR_BIN={}", bin.display());
    // berthd checks the installed copy against this digest instead of
    // comparing bytes, which would page in its embedded copy at every start.
    let digest = sha2::Sha256::digest(std::fs::read(&bin)?);
    println!(
        "cargo:rustc-env=BERTH_MONITOR_SHA256={}",
        hex::encode(digest)
    );
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

/// Links berthd with packed relative relocations (DT_RELR, glibc >= 2.36):
/// its 19,000 relocations take 450 KB as plain RELA entries, which the
/// dynamic loader reads (and keeps resident) at every start, and a few KB
/// as RELR. An older glibc refuses the binary at start with a clear
/// "GLIBC_ABI_DT_RELR not found" rather than misbehaving.
fn pack_relative_relocations() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
