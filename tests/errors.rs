//! End to end: every error has the right gRPC status and changes nothing.

mod common;

use berth::v1 as pb;
use common::{sh, Agent};
use tonic::Code;

#[tokio::test]
async fn status_codes() {
    let agent = Agent::start().await;
    agent.import_busybox().await;
    let mut c = agent.containers();

    let e = c
        .inspect(pb::InspectContainerRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("nope"));
    let e = c
        .run(pb::RunContainerRequest {
            spec: Some(pb::ContainerSpec {
                image: "nosuchimage".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("nosuchimage"), "{}", e.message());
    let e = c
        .run(pb::RunContainerRequest {
            spec: Some(pb::ContainerSpec {
                image: "Bad/Ref".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let mut spec = sh("trap 'exit 0' TERM; sleep 1000 & wait");
    spec.name = "dup".into();
    let running = c
        .run(pb::RunContainerRequest {
            spec: Some(spec.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    let e = c
        .create(pb::CreateContainerRequest { spec: Some(spec) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = c
        .start(pb::StartContainerRequest { id: "dup".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c
        .remove(pb::RemoveContainerRequest {
            id: "dup".into(),
            force: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("running"), "{}", e.message());
    let e = c
        .kill(pb::KillContainerRequest {
            id: "dup".into(),
            signal: "SIGNOPE".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = agent
        .images()
        .remove(pb::RemoveImageRequest {
            image: "busybox".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("dup"), "{}", e.message());

    for bad in [
        pb::ContainerSpec {
            image: "busybox".into(),
            name: "bad/name".into(),
            ..Default::default()
        },
        pb::ContainerSpec {
            image: "busybox".into(),
            working_dir: "relative".into(),
            ..Default::default()
        },
        pb::ContainerSpec {
            image: "busybox".into(),
            stop_signal: "SIGWHAT".into(),
            ..Default::default()
        },
        pb::ContainerSpec {
            image: "".into(),
            ..Default::default()
        },
    ] {
        let e = c
            .create(pb::CreateContainerRequest {
                spec: Some(bad.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}");
    }
    let e = c
        .create(pb::CreateContainerRequest { spec: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // An ambiguous prefix: "" matches nothing specific, a single hex digit
    // shared by two containers is ambiguous.
    let mut ids = vec![running.id.clone()];
    while ids.len() < 20 {
        let x = c
            .create(pb::CreateContainerRequest {
                spec: Some(sh("true")),
            })
            .await
            .unwrap()
            .into_inner()
            .container
            .unwrap();
        ids.push(x.id);
    }
    let shared = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() >= 2)
        .expect("20 random ids share a first digit");
    let e = c
        .inspect(pb::InspectContainerRequest { id: shared })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Nothing of the refused calls exists: 20 containers, one running.
    let list = c
        .list(pb::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.containers.len(), 20);
    c.remove(pb::RemoveContainerRequest {
        id: "dup".into(),
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    for id in &ids[1..] {
        c.remove(pb::RemoveContainerRequest {
            id: id.clone(),
            force: false,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    agent.assert_clean().await;
}

#[tokio::test]
async fn health_and_reflection_serve_generic_clients() {
    let agent = Agent::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(agent.channel.clone());
    for svc in [
        "berth.v1.Containers",
        "berth.v1.Images",
        "berth.v1.Events",
        "berth.v1.Agent",
    ] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: svc.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{svc}"
        );
    }
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut refl = ServerReflectionClient::new(agent.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for svc in [
        "berth.v1.Containers",
        "berth.v1.Images",
        "berth.v1.Events",
        "berth.v1.Agent",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == svc),
            "{svc} missing from {names:?}"
        );
    }
    let info = agent
        .agent()
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(info.cgroup_version, if v2 { 2 } else { 1 });
    assert!(info.cgroup_controllers.iter().any(|c| c == "memory"));
    assert!(info.memory_total_bytes > 0 && info.cpus > 0);
    assert_eq!(info.api_version, "v1");
}
