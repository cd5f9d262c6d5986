//! The generated CRI v1 API (`runtime.v1`), and the guard on the file it is
//! generated from: cri-api's api.proto, unchanged (agent/proto/cri/README.md).

/// `runtime.v1`: messages and the RuntimeService and ImageService servers.
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/cri/runtime.v1.rs"));
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    /// The cri-api release the file is taken from.
    const CRI_API_VERSION: &str = "v0.37.2";

    /// SHA-256 of `pkg/apis/runtime/v1/api.proto` in k8s.io/cri-api v0.37.2.
    const API_PROTO_SHA256: &str =
        "381aab5cf67425b3c90ab016489de661ccb83ed9f21204066dc5df83b9b83360";

    #[test]
    fn the_api_file_is_cri_apis_own() {
        let file = include_bytes!("../../proto/cri/runtime/v1/api.proto");
        assert_eq!(
            hex::encode(sha2::Sha256::digest(file)),
            API_PROTO_SHA256,
            "agent/proto/cri/runtime/v1/api.proto is not cri-api {}'s: \
             see agent/proto/cri/README.md",
            CRI_API_VERSION
        );
    }
}
