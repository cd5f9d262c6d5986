//! Generates the berth.v1 API (messages, clients, servers) from `proto/`.
//!
//! The protobuf compiler is `protox`, written in Rust, so a fresh machine needs no
//! `protoc`. The encoded file descriptor set is also written to `OUT_DIR` so the
//! agent can serve gRPC reflection from exactly what it was built with, and
//! so that `berth::json` renders messages from the same descriptors.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/berth/v1/types.proto",
        "proto/berth/v1/containers.proto",
        "proto/berth/v1/images.proto",
        "proto/berth/v1/events.proto",
        "proto/berth/v1/agent.proto",
        "proto/berth/v1/stats.proto",
        "proto/berth/v1/networks.proto",
        "proto/berth/v1/volumes.proto",
        "proto/berth/v1/exec.proto",
        "proto/berth/v1/builds.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("berth_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // `prost::Name` on every message: `berth::json` finds a message's
    // descriptor by its full name.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        // Only snapshot events carry a Container (704 bytes inline): boxed, an
        // Event is a quarter of the size, and berthd keeps thousands of them
        // in memory (`events::RECENT`). The wire format does not change.
        .boxed(".berth.v1.Event.container")
        .build_server(true)
        .build_client(true)
        .compile_fds_with_config(fds, config)?;
    cri_client(&out)
}

/// A client of the CRI v1 API (the agent's copy of cri-api's file), for
/// the end-to-end tests that call the CRI directly (`tests/cri_*.rs`
/// include it from `OUT_DIR/cri`); no library code uses it.
fn cri_client(out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("agent/proto/cri");
    println!("cargo:rerun-if-changed={}", dir.display());
    let fds = protox::compile([dir.join("runtime/v1/api.proto")], [&dir])?;
    let out = out.join("cri");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .out_dir(&out)
        .compile_fds(fds)?;
    Ok(())
}
