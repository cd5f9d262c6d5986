#!/usr/bin/python3
"""Builds the one busybox image every tool of the benchmark runs.

From Debian's busybox-static (/bin/busybox), the same layout as berth's
tests (tests/common/image.rs):

  OUT/rootfs/            the root filesystem, for crun, runc and the unshare floor
  OUT/bundle/            an OCI bundle (config.json, root = OUT/rootfs) running /bin/true
  OUT/bundle-mem/        the same with a 64 MiB memory limit
  OUT/busybox.tar        one archive that is both an OCI image layout (index.json,
                         for `berthctl image import` and `ctr image import`) and a
                         `docker save` archive (manifest.json, for `docker load`);
                         the layer is an uncompressed tar.

Usage: mkimage.py OUT
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

APPLETS = [
    "sh", "echo", "cat", "ls", "hostname", "ps", "sleep", "true", "false", "id", "env", "pwd",
    "touch", "mkdir", "grep", "wc", "head", "dd", "yes", "kill", "seq", "cut", "stat", "readlink",
    "mount", "tail", "printf", "test", "rm", "awk", "tr",
]
MTIME = 1_700_000_000
REF = "docker.io/library/busybox:latest"


def entries():
    """(path, kind, mode, data-or-target) in tar order."""
    with open("/bin/busybox", "rb") as f:
        bb = f.read()
    es = [("bin", "dir", 0o755, None), ("bin/busybox", "file", 0o755, bb)]
    es += [(f"bin/{a}", "symlink", 0o777, "busybox") for a in APPLETS]
    es += [
        ("etc", "dir", 0o755, None),
        ("etc/passwd", "file", 0o644,
         b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        ("etc/group", "file", 0o644, b"root:x:0:\nnogroup:x:65534:\n"),
        ("tmp", "dir", 0o1777, None),
        ("root", "dir", 0o700, None),
        ("proc", "dir", 0o755, None),
        ("dev", "dir", 0o755, None),
        ("sys", "dir", 0o755, None),
    ]
    return es


def layer_tar(es):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for path, kind, mode, data in es:
            ti = tarfile.TarInfo(path)
            ti.mode, ti.mtime, ti.uid, ti.gid = mode, MTIME, 0, 0
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def write_rootfs(es, root):
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    for path, kind, mode, data in es:
        p = os.path.join(root, path)
        if kind == "dir":
            os.makedirs(p, exist_ok=True)
            os.chmod(p, mode)
        elif kind == "symlink":
            os.symlink(data, p)
        else:
            with open(p, "wb") as f:
                f.write(data)
            os.chmod(p, mode)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def write_archive(layer, path):
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(layer)}"]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "berth bench/mkimage.py"}],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{sha(config)}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{sha(layer)}", "size": len(layer)}],
    }).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{sha(manifest)}", "size": len(manifest),
            "annotations": {"io.containerd.image.name": REF,
                            "org.opencontainers.image.ref.name": "latest"},
        }],
    }).encode()
    docker_manifest = json.dumps([{
        "Config": f"blobs/sha256/{sha(config)}",
        "RepoTags": ["busybox:latest"],
        "Layers": [f"blobs/sha256/{sha(layer)}"],
    }]).encode()
    files = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", index),
        ("manifest.json", docker_manifest),
        (f"blobs/sha256/{sha(config)}", config),
        (f"blobs/sha256/{sha(manifest)}", manifest),
        (f"blobs/sha256/{sha(layer)}", layer),
    ]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for d in ["blobs", "blobs/sha256"]:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, MTIME
            t.addfile(ti)
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, MTIME
            t.addfile(ti, io.BytesIO(data))


def write_bundle(out, name, rootfs, memory=None):
    b = os.path.join(out, name)
    os.makedirs(b, exist_ok=True)
    cfg_path = os.path.join(b, "config.json")
    if os.path.exists(cfg_path):
        os.remove(cfg_path)
    # The runtime's own default spec: namespaces pid, net, ipc, uts, mount
    # (+ cgroup), default capabilities, masked paths, like berth's.
    subprocess.run(["runc", "spec", "--bundle", b], check=True)
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    cfg["root"] = {"path": rootfs, "readonly": False}
    cfg["hostname"] = "bench"
    if memory:
        cfg["linux"].setdefault("resources", {})["memory"] = {"limit": memory, "swap": memory}
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)


def main():
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    es = entries()
    rootfs = os.path.join(out, "rootfs")
    write_rootfs(es, rootfs)
    write_archive(layer_tar(es), os.path.join(out, "busybox.tar"))
    write_bundle(out, "bundle", rootfs)
    write_bundle(out, "bundle-mem", rootfs, 64 << 20)
    print(out)


if __name__ == "__main__":
    main()
