#!/usr/bin/env python3
"""An OCI archive (big-oci.tar, in the current directory) of one image
("big:v1") whose one uncompressed layer holds SIZE MiB of random bytes:
what bench/archive.sh saves and pushes. Usage: mkbig.py SIZE"""
import hashlib, io, json, os, tarfile, sys
size = int(sys.argv[1]) << 20
# layer tar: one file of random bytes, streamed
with open("layer.tar", "wb") as raw:
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        class R(io.RawIOBase):
            def __init__(s): s.left = size
            def readable(s): return True
            def readinto(s, b):
                n = min(len(b), s.left)
                if n == 0: return 0
                b[:n] = os.urandom(n); s.left -= n; return n
        ti = tarfile.TarInfo("big"); ti.size = size; ti.mode = 0o644
        t.addfile(ti, io.BufferedReader(R(), 1 << 20))
h = hashlib.sha256()
with open("layer.tar", "rb") as f:
    for c in iter(lambda: f.read(1 << 20), b""): h.update(c)
lh = h.hexdigest(); lsize = os.path.getsize("layer.tar")
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + lh]}}).encode()
ch = hashlib.sha256(cfg).hexdigest()
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + ch, "size": len(cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + lh, "size": lsize}]}).encode()
mh = hashlib.sha256(man).hexdigest()
idx = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": "sha256:" + mh, "size": len(man), "annotations": {"io.containerd.image.name": "docker.io/library/big:v1"}}]}).encode()
with tarfile.open("big-oci.tar", "w", format=tarfile.USTAR_FORMAT) as t:
    for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", idx),
                       ("blobs/sha256/" + ch, cfg), ("blobs/sha256/" + mh, man)]:
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
    t.add("layer.tar", arcname="blobs/sha256/" + lh)
os.remove("layer.tar")
print(lh)
