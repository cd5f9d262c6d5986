//! A built image (berthctl build) goes through the loopback registry: pushed
//! by its agent, pulled by another, the same image there.

use super::*;
use common::cli::ok;

#[tokio::test]
async fn a_built_image_is_pushed_to_a_registry_and_pulled_by_another_agent() {
    let reg = Registry::start();
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let dir = agent.dir.join("push");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nCOPY msg /msg\nRUN cat /msg > /copied\nCMD [\"cat\", \"/copied\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("msg"), "pushed and pulled\n").unwrap();
    let target = format!("{}/team/built:v1", reg.addr());
    let ctx = dir.to_string_lossy().to_string();
    ok(&agent, &["build", "-t", &target, &ctx]);
    ok(&agent, &["push", &target]);

    let other = Agent::start().await;
    ok(&other, &["pull", &target]);
    let mut spec = pb::ContainerSpec {
        image: target.clone(),
        ..Default::default()
    };
    spec.command.clear();
    let (exit, out, err) = other.run_to_exit(spec).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, "pushed and pulled\n");
    assert_eq!(
        common::build::image(&other, &target).await.id,
        common::build::image(&agent, &target).await.id,
        "the same image id on both agents"
    );
}
