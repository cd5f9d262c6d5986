//! berth's public API, `berth.v1`, generated from `proto/berth/v1` with tonic
//! and prost, and the small client helpers every Rust caller needs.
//!
//! The `.proto` files are the contract; this crate is one generated binding
//! of it. Other languages generate theirs from the same files (see README).

#![allow(clippy::large_enum_variant)]

/// The `berth.v1` package: messages, `*_client` and `*_server` modules.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("berth.v1");
}

pub mod client;
pub mod json;

/// The encoded `FileDescriptorSet` of `berth.v1` (with the well-known types it
/// imports), served by the agent's gRPC reflection so that generic clients
/// (grpcurl, Postman) can discover it. [`json::descriptor_pool`] has it
/// decoded; the contract test (`tests/contract.rs`) checks it against the
/// committed snapshot.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("berth_descriptor");

/// The API version this crate implements.
pub const API_VERSION: &str = "v1";

/// The agent's default unix socket.
pub const DEFAULT_SOCKET: &str = "/run/berth/berthd.sock";
