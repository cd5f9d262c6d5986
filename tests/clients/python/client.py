"""A Python client of berthd, as a user would write it (run by tests/clients.rs).

Usage: client.py SOCKET PROTO_DIR ARCHIVE REFERENCE

Generates the stubs from PROTO_DIR with grpcio-tools into a temporary
directory, then, on a plain `grpc.insecure_channel("unix://...")` with no
options: discovers the API through reflection v1alpha and calls Agent.Info
without generated code, imports the image ARCHIVE as REFERENCE, creates,
starts and waits for a container, reads its logs, replays its events with
resume, and reads the details of an error. Exits non-zero on any mismatch.
"""

import atexit
import os
import shutil
import sys
import tempfile

import grpc
from grpc_tools import protoc


def generate_stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="berth-py-stubs-")
    # Removed however the client ends (sys.exit on a mismatch included).
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    files = sorted(
        os.path.join(proto_dir, "berth", "v1", f)
        for f in os.listdir(os.path.join(proto_dir, "berth", "v1"))
        if f.endswith(".proto")
    )
    # grpc_tools ships the well-known types (google/protobuf/*.proto).
    wkt = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        ["protoc", "-I", proto_dir, "-I", wkt, "--python_out", out, "--grpc_python_out", out]
        + files
    )
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out)


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def reflection_without_stubs(channel):
    """Discovers the API by reflection v1alpha and calls Info dynamically."""
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    check({"berth.v1.Containers", "berth.v1.Images", "berth.v1.Events", "berth.v1.Agent"} <= services,
          f"reflection v1alpha lists the berth services ({sorted(services)})")
    pool = descriptor_pool.DescriptorPool(db)
    method = pool.FindServiceByName("berth.v1.Agent").FindMethodByName("Info")
    req_cls = message_factory.GetMessageClass(method.input_type)
    resp_cls = message_factory.GetMessageClass(method.output_type)
    info = channel.unary_unary(
        "/berth.v1.Agent/Info",
        request_serializer=req_cls.SerializeToString,
        response_deserializer=resp_cls.FromString,
    )(req_cls())
    check(info.version != "", f"Info without generated code: version {info.version}")


def main():
    socket, proto_dir, archive, reference = sys.argv[1:5]
    generate_stubs(proto_dir)
    from berth.v1 import (
        agent_pb2,
        agent_pb2_grpc,
        containers_pb2,
        containers_pb2_grpc,
        events_pb2,
        events_pb2_grpc,
        images_pb2,
        images_pb2_grpc,
    )

    # No options: grpcio sends the percent-encoded socket path as :authority.
    channel = grpc.insecure_channel(f"unix://{socket}")
    reflection_without_stubs(channel)

    info = agent_pb2_grpc.AgentStub(channel).Info(agent_pb2.InfoRequest())
    check(info.version != "", f"Info: version {info.version}")

    def chunks():
        yield images_pb2.ImportImageRequest(options=images_pb2.ImportOptions(reference=reference))
        with open(archive, "rb") as f:
            while data := f.read(256 * 1024):
                yield images_pb2.ImportImageRequest(chunk=data)

    images = images_pb2_grpc.ImagesStub(channel)
    imported = images.Import(chunks()).images
    check(len(imported) == 1 and imported[0].id.startswith("sha256:"), "Import")
    listed = images.List(images_pb2.ListImagesRequest()).images
    check(any(imported[0].id == i.id for i in listed), "images List shows it")

    containers = containers_pb2_grpc.ContainersStub(channel)
    spec = containers_pb2.ContainerSpec(image=reference, command=["sh", "-c", "echo hi from python; exit 3"])
    c = containers.Create(containers_pb2.CreateContainerRequest(spec=spec)).container
    containers.Start(containers_pb2.StartContainerRequest(id=c.id))
    exit_code = containers.Wait(containers_pb2.WaitContainerRequest(id=c.id)).exit.exit_code
    check(exit_code == 3, f"Create, Start, Wait: exit code {exit_code}")

    out = b"".join(e.data for e in containers.Logs(containers_pb2.LogsRequest(id=c.id, follow=True)))
    check(out == b"hi from python\n", f"Logs: {out!r}")

    events = events_pb2_grpc.EventsStub(channel)
    seen = []
    for e in events.Subscribe(events_pb2.SubscribeRequest(containers=[c.id], from_seq=1)):
        seen.append(e)
        if e.action == events_pb2.EVENT_ACTION_EXITED:
            break
    actions = [events_pb2.EventAction.Name(e.action) for e in seen]
    check(actions == ["EVENT_ACTION_CREATED", "EVENT_ACTION_STARTED", "EVENT_ACTION_EXITED"]
          and seen[-1].exit.exit_code == 3, f"Subscribe from_seq=1: {actions}")
    # Resume after the first event, as a reconnecting subscriber does.
    stream = events.Subscribe(events_pb2.SubscribeRequest(containers=[c.id], from_seq=seen[0].seq + 1))
    first = next(stream)
    stream.cancel()
    check(first.seq == seen[1].seq and first.action == events_pb2.EVENT_ACTION_STARTED,
          f"Subscribe resumes at seq {first.seq}")

    containers.Remove(containers_pb2.RemoveContainerRequest(id=c.id))
    try:
        containers.Inspect(containers_pb2.InspectContainerRequest(id=c.id))
        sys.exit("FAILED: Inspect of a removed container succeeded")
    except grpc.RpcError as err:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(err)
        reasons = []
        for d in status.details:
            if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                d.Unpack(info)
                reasons.append((info.domain, info.reason))
        check(err.code() == grpc.StatusCode.NOT_FOUND and ("berth.dev", "CONTAINER_NOT_FOUND") in reasons,
              f"error details: {err.code()} {reasons}")
    channel.close()
    print("python client: all passed")


if __name__ == "__main__":
    main()
