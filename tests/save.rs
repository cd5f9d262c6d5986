//! End to end: `image save` in both formats, read back by skopeo and by a
//! fresh agent (same image id and layers), and refused without writing.

mod common;

use std::path::Path;
use std::process::Command;

use berth::v1 as pb;
use common::cli::{expect_failure, ok};
use common::{image, Agent};
use serde_json::Value;
use tokio_stream::StreamExt;

const NAME: &str = "docker.io/library/layered:v1";

/// `skopeo inspect TRANSPORT:FILE`, parsed; panics with skopeo's words.
fn skopeo_inspect(transport: &str, file: &Path) -> Value {
    let o = Command::new("skopeo")
        .args(["inspect", &format!("{transport}:{}", file.display())])
        .output()
        .expect("running skopeo");
    assert!(
        o.status.success(),
        "skopeo inspect {transport}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("skopeo's JSON")
}

/// Saves through the API, collecting the chunks.
async fn save_api(
    agent: &Agent,
    images: &[&str],
    format: pb::SaveFormat,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = agent
        .images()
        .save(pb::SaveImagesRequest {
            images: images.iter().map(|s| s.to_string()).collect(),
            format: format as i32,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        let chunk = msg?.chunk;
        assert!(chunk.len() <= 1 << 20, "a chunk of {} bytes", chunk.len());
        out.extend(chunk);
    }
    Ok(out)
}

#[tokio::test]
async fn saved_archives_load_back_with_the_same_ids_and_run() {
    let agent = Agent::start().await;
    let original = agent
        .import(image::two_layer(NAME), "")
        .await
        .expect("import")
        .images
        .remove(0);
    let dir = tempfile::tempdir().expect("temp dir");
    for (format, transport) in [("docker", "docker-archive"), ("oci", "oci-archive")] {
        let file = dir.path().join(format!("layered-{format}.tar"));
        let f = file.to_string_lossy().to_string();
        let args = ["image", "save", "-o", &f, "--format", format, "layered:v1"];
        assert_eq!(ok(&agent, &args), "", "{format}");
        // skopeo reads it, and sees both layers.
        let seen = skopeo_inspect(transport, &file);
        assert_eq!(seen["Layers"].as_array().map(Vec::len), Some(2), "{seen}");
        // The same images make the same bytes: to stdout too.
        let args = ["save", "--format", format, "layered:v1"];
        let o = agent.ctl(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let bytes = std::fs::read(&file).expect("reading the archive");
        assert!(o.stdout == bytes, "{format}: stdout differs from -o FILE");

        // A fresh agent imports it: same id, layers and (OCI) manifest.
        let fresh = Agent::start().await;
        let back = fresh
            .import(bytes, "")
            .await
            .expect("import")
            .images
            .remove(0);
        assert_eq!(back.id, original.id, "{format}");
        assert_eq!(back.layers, original.layers, "{format}");
        assert_eq!(back.references, [NAME.to_string()], "{format}");
        if format == "oci" {
            assert_eq!(back.manifest_digest, original.manifest_digest);
        }
        let out = ok(
            &fresh,
            &["run", "--rm", "layered:v1", "cat", "/etc/layered"],
        );
        assert_eq!(out, "layered\n", "{format}");
    }
}

#[tokio::test]
async fn saving_what_cannot_be_saved_writes_nothing() {
    let agent = Agent::start().await;
    let original = agent
        .import(image::two_layer(NAME), "")
        .await
        .expect("import")
        .images
        .remove(0);
    let dir = tempfile::tempdir().expect("temp dir");

    // Unknown image: NOT_FOUND before any chunk; berthctl leaves no file.
    let err = save_api(&agent, &["nosuch:v1"], pb::SaveFormat::OciArchive)
        .await
        .expect_err("saving an unknown image");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let file = dir.path().join("out.tar");
    let f = file.to_string_lossy().to_string();
    let args = ["save", "-o", &f, "layered:v1", "nosuch:v1"];
    expect_failure(&agent.ctl(&args), &args, 1, &["nosuch"]);
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    let o = agent.ctl(&["save", "nosuch:v1"]);
    assert_eq!(o.stdout, b"", "bytes on stdout for a failed save");

    // Limits are checked.
    let err = save_api(&agent, &[], pb::SaveFormat::DockerArchive)
        .await
        .expect_err("saving nothing");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let many: Vec<&str> = std::iter::repeat_n("layered:v1", 65).collect();
    let err = save_api(&agent, &many, pb::SaveFormat::DockerArchive)
        .await
        .expect_err("saving 65 names");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // An image whose layer blob is gone (as for one stored before berth
    // kept them): FAILED_PRECONDITION, saying what to do.
    let manifest = std::fs::read(
        agent
            .state_dir
            .join("images/blobs/sha256")
            .join(&original.manifest_digest["sha256:".len()..]),
    )
    .expect("stored manifest");
    let manifest: Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .expect("layer digest");
    std::fs::remove_file(
        agent
            .state_dir
            .join("images/blobs/sha256")
            .join(&layer["sha256:".len()..]),
    )
    .expect("removing the blob");
    let err = save_api(&agent, &["layered:v1"], pb::SaveFormat::DockerArchive)
        .await
        .expect_err("saving without blobs");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("remove the image, then pull or import it again"),
        "{err:?}"
    );

    // To a terminal: refused, as `docker save` refuses (script(1) gives
    // berthctl a pseudo-terminal).
    let line = format!(
        "{} --host {} save layered:v1",
        common::bin("berthctl").display(),
        agent.socket.display()
    );
    let o = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running script");
    let shown = String::from_utf8_lossy(&o.stdout);
    assert_ne!(o.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("refusing to write an archive to a terminal"),
        "{shown}"
    );
}

/// An image with a 48 MiB layer: more than berthd queues ahead of a client
/// (4 chunks) plus what HTTP/2 windows and socket buffers hold.
async fn big_image(agent: &Agent) {
    // Bytes that do not compress (berthd stores layers compressed).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..(48 << 20) / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let extra = vec![image::Entry::File("big".into(), noise, 0o644)];
    agent
        .import(image::busybox_with("big:v1", extra), "")
        .await
        .expect("import");
}

/// An Images client on a connection of its own: HTTP/2 flow control is per
/// connection too, so saves whose client does not read would stop every
/// other call on a shared one.
async fn own_connection(
    agent: &Agent,
) -> pb::images_client::ImagesClient<tonic::transport::Channel> {
    let addr = berth::client::Address::Unix(agent.socket.clone());
    let ch = berth::client::connect(&addr).await.expect("connect");
    pb::images_client::ImagesClient::new(ch)
}

#[tokio::test]
async fn at_most_sixteen_saves_stream_at_once() {
    let agent = Agent::start().await;
    big_image(&agent).await;
    let mut open = Vec::new();
    for _ in 0..16 {
        let mut s = own_connection(&agent)
            .await
            .save(pb::SaveImagesRequest {
                images: vec!["big:v1".into()],
                format: pb::SaveFormat::OciArchive as i32,
            })
            .await
            .expect("save")
            .into_inner();
        s.next().await.expect("a first chunk").expect("chunk");
        open.push(s);
    }
    let Err(err) = save_api(&agent, &["big:v1"], pb::SaveFormat::OciArchive).await else {
        panic!("a 17th save streamed");
    };
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("16 image saves"), "{err:?}");
    // One client goes: its place frees up once berthd sees it gone.
    open.pop();
    let freed = common::eventually(30, async || {
        save_api(&agent, &["big:v1"], pb::SaveFormat::OciArchive)
            .await
            .is_ok()
    })
    .await;
    assert!(freed, "no save was let in after one client left");
}

#[tokio::test]
async fn a_save_whose_client_stops_reading_ends_in_an_error_not_a_short_archive() {
    let agent = Agent::start().await;
    big_image(&agent).await;
    let mut s = own_connection(&agent)
        .await
        .save(pb::SaveImagesRequest {
            images: vec!["big:v1".into()],
            format: pb::SaveFormat::OciArchive as i32,
        })
        .await
        .expect("save")
        .into_inner();
    let mut got = s
        .next()
        .await
        .expect("a first chunk")
        .expect("chunk")
        .chunk
        .len();
    // Longer than berthd waits for a chunk to be taken (60 s): the writer
    // gives up. The wait is the condition under test, not a guess.
    tokio::time::sleep(std::time::Duration::from_secs(65)).await;
    let end = loop {
        match s.next().await {
            Some(Ok(m)) => got += m.chunk.len(),
            Some(Err(e)) => break Some(e),
            None => break None,
        }
    };
    let err = end.expect("the stream ended OK on a cut archive");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(got < 48 << 20, "{got} bytes: the whole archive came");
    // berthd serves the next save whole.
    let whole = save_api(&agent, &["big:v1"], pb::SaveFormat::OciArchive)
        .await
        .expect("a later save");
    assert!(whole.len() > 48 << 20);
}
