#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

Deterministic: running it again gives the same files. Each seed is a valid
(or deliberately hostile) input in the target's own input format, which
the target's doc comment describes.
"""
import gzip
import hashlib
import io
import json
import os
import struct
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
D = "sha256:" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar_of(entries, fmt=tarfile.GNU_FORMAT):
    """entries: (name, kind, data_or_target, extra dict)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, payload, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = extra.get("mode", 0o644)
            ti.uid = extra.get("uid", 0)
            ti.gid = extra.get("gid", 0)
            if "pax" in extra:
                ti.pax_headers = extra["pax"]
            if kind == "file":
                ti.size = len(payload)
                t.addfile(ti, io.BytesIO(payload))
                continue
            ti.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "blk": tarfile.BLKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind in ("sym", "hard"):
                ti.linkname = payload
            if kind in ("chr", "blk"):
                ti.devmajor, ti.devminor = extra.get("dev", (1, 3))
            t.addfile(ti)
    return buf.getvalue()


def sha(b):
    return hashlib.sha256(b).hexdigest()


# --- reference ---------------------------------------------------------
for i, r in enumerate([
    "busybox",
    "busybox:1.36",
    "registry:5000/a/b:tag@" + D,
    "localhost:5000/x",
    "[::1]:5000/x:v1",
    "quay.io/a/b@" + D,
    "index.docker.io/foo/bar",
    "Registry/x",
    "a.b-c_d__e---f/g:Tag_1.0-rc",
    "test.com:5000",
]):
    put("reference", f"seed-{i}", r)

# --- user --------------------------------------------------------------
PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n1000:x:0:0::/:/bin/sh\n"
GROUP = "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\n"
for i, spec in enumerate(["", "www", "www:staff", "1000", "1000:50", "0:0", "nobody"]):
    put("user", f"seed-{i}", f"{spec}\0{PASSWD}\0{GROUP}")

# --- spec --------------------------------------------------------------
def spec(**over):
    s = {
        "image": "busybox", "name": "", "command": [], "env": [], "working_dir": "",
        "user": "", "hostname": "", "labels": {},
        "limits": {"memory": 0, "memory_swap": 0, "nano_cpus": 0, "cpu_shares": 0,
                   "pids": 0, "cpuset_cpus": "", "cpuset_mems": ""},
        "auto_remove": False, "stop_signal": "", "stop_timeout_seconds": None,
    }
    s.update(over)
    return json.dumps(s, sort_keys=True)


put("spec", "minimal", spec())
put("spec", "full", spec(
    name="web-1", command=["sh", "-c", "echo hi"], entrypoint=["/bin/env"],
    env=["A=1", "PATH=/bin"], working_dir="/srv", user="www:staff", hostname="web",
    labels={"app": "web", "tier": "front"},
    limits={"memory": 67108864, "memory_swap": 134217728, "nano_cpus": 500000000,
            "cpu_shares": 512, "pids": 32, "cpuset_cpus": "0", "cpuset_mems": "0"},
    stop_signal="SIGTERM", stop_timeout_seconds=5,
    restart_policy={"mode": "on_failure", "max_retries": 3},
    seccomp="unconfined", cap_add=["NET_ADMIN", "CAP_SYS_PTRACE"], cap_drop=["MKNOD"],
    read_only_rootfs=True,
    devices=[{"host_path": "/dev/null", "container_path": "/dev/mynull", "permissions": "rw"},
             {"host_path": "/dev/zero", "container_path": "", "permissions": ""}],
    network="none"))
put("spec", "privileged", spec(privileged=True, seccomp={"custom": {"json": "{}", "digest": ""}}))

# --- seccomp_profile -----------------------------------------------------
profiles = {
    "allow-list": {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "syscalls": [
            {"names": ["read", "write", "exit_group", "openat", "close", "mmap", "brk"],
             "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
             "includes": {"minKernel": "4.8"}},
            {"names": ["bpf", "perf_event_open"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["amd64", "x32"]}},
        ],
    },
    "deny-list": {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mount", "umount2", "unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"name": "keyctl", "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 1, "op": "SCMP_CMP_LE"}]},
            {"names": ["socket"], "action": "SCMP_ACT_TRAP",
             "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_NE"}]},
            {"names": ["setuid"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 0, "value": 4294967296, "op": "SCMP_CMP_GT"}]},
            {"names": ["setgid"], "action": "SCMP_ACT_TRACE",
             "args": [{"index": 0, "value": 100, "op": "SCMP_CMP_GE"}]},
            {"names": ["nice"], "action": "SCMP_ACT_KILL",
             "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_LT"}]},
        ],
    },
}
for name, p in profiles.items():
    put("seccomp_profile", name, json.dumps(p))

# --- event_log -----------------------------------------------------------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def event(seq, name):
    # Event: seq = 1, type = 3, action = 4, id = 5, name = 6.
    idb = ("%064x" % seq).encode()
    return (b"\x08" + varint(seq) + b"\x18\x01" + b"\x20\x02"
            + b"\x2a" + varint(len(idb)) + idb + b"\x32" + varint(len(name)) + name.encode())


def record(body, crc=None):
    c = zlib.crc32(body) if crc is None else crc
    return struct.pack("<II", len(body), c) + body


def segment(first, n, torn=False):
    data = b"".join(record(event(s, f"c{s}")) for s in range(first, first + n))
    if torn:
        data += record(event(first + n, "torn"))[:-3]
    return struct.pack("<Q", first) + data


head = lambda frm, mx, flags: struct.pack("<QHB", frm, mx, flags)
put("event_log", "one-segment", head(1, 100, 0) + segment(1, 5))
put("event_log", "torn-tail", head(3, 2, 0) + segment(1, 4, torn=True))
put("event_log", "two-segments", head(5, 50, 1) + segment(1, 4) + b"\xffSEG" + segment(5, 4))
bad = struct.pack("<Q", 1) + record(event(1, "a")) + record(event(2, "b"), crc=7) + record(event(3, "c"))
put("event_log", "bad-crc", head(0, 10, 0) + bad)

# --- archive_plan (mode byte, then a tar) ---------------------------------
layer = tar_of([("etc/", "dir", None, {"mode": 0o755}),
                ("etc/hostname", "file", b"berth\n", {})])
diff = sha(layer)
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "config": {"Cmd": ["sh"]},
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}).encode()
manifest = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + sha(config), "size": len(config)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": "sha256:" + diff, "size": len(layer)}]}).encode()
index = json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json",
     "digest": "sha256:" + sha(manifest), "size": len(manifest),
     "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}).encode()
oci = tar_of([("oci-layout", "file", b'{"imageLayoutVersion":"1.0.0"}', {}),
              ("index.json", "file", index, {}),
              ("blobs/sha256/" + sha(manifest), "file", manifest, {}),
              ("blobs/sha256/" + sha(config), "file", config, {}),
              ("blobs/sha256/" + diff, "file", layer, {})])
put("archive_plan", "oci-layout", b"\x00" + oci)
put("archive_plan", "oci-layout-gzip", b"\x00" + gzip.compress(oci, mtime=0))

# The same with placeholders (mode 1): member 0 index, 1 manifest, 2 config, 3 layer.
p_config = json.dumps({"architecture": "amd64", "os": "linux",
                       "rootfs": {"type": "layers", "diff_ids": ["sha256:@3"]}}).encode()
p_manifest = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
              b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:@2","size":#2},'
              b'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:@3","size":#3}]}')
p_index = (b'{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
           b'"digest":"sha256:@1","size":#1,"platform":{"os":"linux","architecture":"amd64"},'
           b'"annotations":{"io.containerd.image.name":"docker.io/library/x:1"}}]}')
p_oci = tar_of([("index.json", "file", p_index, {}),
                ("blobs/sha256/@@", "file", p_manifest, {}),
                ("blobs/sha256/@@", "file", p_config, {}),
                ("blobs/sha256/@@", "file", layer, {}),
                ("oci-layout", "file", b'{"imageLayoutVersion":"1.0.0"}', {})])
put("archive_plan", "oci-layout-placeholders", b"\x01" + p_oci)
put("archive_plan", "oci-layout-placeholders-gzip", b"\x02" + p_oci)
# A nested index, a symlinked blob directory.
p_nested = tar_of([("index.json", "file",
                    b'{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json",'
                    b'"digest":"sha256:@1","size":#1}]}', {}),
                   ("blobs/sha256/@@", "file",
                    b'{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
                    b'"digest":"sha256:@2","size":#2,"platform":{"os":"linux","architecture":"arm64"}},'
                    b'{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
                    b'"digest":"sha256:@2","size":#2,"platform":{"os":"linux","architecture":"amd64"}}]}', {}),
                   ("real/@@", "file", p_manifest, {}),
                   ("blobs/sha256/@@", "file", p_config, {}),
                   ("blobs/sha256/@@", "file", layer, {}),
                   ("blobs/sha256/link", "sym", "../../real/x", {})])
put("archive_plan", "oci-nested-index", b"\x01" + p_nested)

# docker save: member 0 manifest.json, 1 config (<hex>.json), 2 layer.
d_manifest = b'[{"Config":"@1.json","RepoTags":["busybox:latest","b:1"],"Layers":["abc/layer.tar"]}]'
d_config = json.dumps({"architecture": "amd64", "os": "linux",
                       "rootfs": {"type": "layers", "diff_ids": ["sha256:@2"]}}).encode()
docker = tar_of([("manifest.json", "file", d_manifest, {}),
                 ("@@.json", "file", d_config, {}),
                 ("abc/layer.tar", "file", layer, {}),
                 ("abc/VERSION", "file", b"1.0", {}),
                 ("def/layer.tar", "hard", "abc/layer.tar", {})])
put("archive_plan", "docker-save-placeholders", b"\x01" + docker)
real_config = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}).encode()
docker_real = tar_of([("manifest.json", "file", json.dumps(
    [{"Config": sha(real_config) + ".json", "RepoTags": ["busybox:latest"],
      "Layers": ["abc/layer.tar"]}]).encode(), {}),
    (sha(real_config) + ".json", "file", real_config, {}),
    ("abc/layer.tar", "sym", "../blobs/l", {}),
    ("blobs/l", "file", gzip.compress(layer, mtime=0), {})])
put("archive_plan", "docker-save", b"\x00" + docker_real)
put("archive_plan", "hostile-paths", b"\x01" + tar_of([
    ("manifest.json", "file", b'[{"Config":"../x.json","Layers":["/etc/passwd"]}]', {}),
    ("../x.json", "file", b"{}", {}),
    ("a/b", "sym", "../../../etc", {}),
    ("loop1", "sym", "loop2", {}),
    ("loop2", "sym", "loop1", {})]))

# --- layer_extract (a tar; the target repairs checksums) -------------------
base = [("./", "dir", None, {"mode": 0o755}),
        ("bin/", "dir", None, {"mode": 0o755}),
        ("bin/sh", "file", b"#!\n", {"mode": 0o4755, "uid": 1000, "gid": 1000}),
        ("bin/ash", "hard", "bin/sh", {}),
        ("bin/busybox", "sym", "sh", {}),
        ("etc/", "dir", None, {"mode": 0o755}),
        ("etc/.wh.old", "file", b"", {}),
        ("etc/.wh..wh..opq", "file", b"", {}),
        ("dev/", "dir", None, {}),
        ("dev/null", "chr", None, {"dev": (1, 3)}),
        ("dev/fifo", "fifo", None, {})]
put("layer_extract", "layer", tar_of(base))
put("layer_extract", "layer-pax", tar_of(base[:3] + [
    ("data", "file", b"x" * 10, {"pax": {"SCHILY.xattr.user.k": "v", "uid": "70000",
                                          "mtime": "1700000000.5",
                                          "SCHILY.xattr.trusted.overlay.opaque": "y"}})],
    fmt=tarfile.PAX_FORMAT))
put("layer_extract", "escape-dotdot", tar_of([("../outside/victim", "file", b"pwned", {})]))
put("layer_extract", "escape-symlink", tar_of([
    ("l", "sym", "../outside", {}), ("l/victim", "file", b"pwned", {})]))
put("layer_extract", "escape-absolute-symlink", tar_of([
    ("l", "sym", "/tmp/berth-fuzz/extract/outside", {}),
    ("l/victim", "file", b"pwned", {}), ("l/d/", "dir", None, {})]))
put("layer_extract", "escape-hardlink", tar_of([
    ("h", "hard", "../outside/victim", {}), ("l", "sym", "../outside/victim", {}),
    ("h2", "hard", "l", {}), ("l", "file", b"pwned", {})]))
put("layer_extract", "escape-replace", tar_of([
    ("d/", "dir", None, {}), ("d", "sym", "../outside/d", {}),
    ("d/x", "file", b"pwned", {}), (".wh.d", "file", b"", {}), ("d/", "dir", None, {"mode": 0o777})]))
