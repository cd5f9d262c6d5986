"""BENCH_ONLY=cri: berth's Kubernetes CRI front end next to containerd's CRI
plugin, both started for the run, in one run with samples interleaved in
shuffled rounds.

    BENCH_ONLY=cri bench/run.sh            # as root; see bench/run.sh

Two daemons on private paths under the run's work directory:
- containerd (Debian's 1.6), its CRI plugin enabled for this run only: its
  own root, state, socket and opt directory, snapshotter overlayfs, runc
  (runtime v2 shim, cgroupfs), the CNI configuration directory an empty
  directory, AppArmor off, the streaming server on 127.0.0.1, and as its
  `sandbox_image` a pause stand-in built here from busybox-static whose
  entrypoint is `/bin/busybox sleep 2147483647` (imported with
  `ctr -n k8s.io images import`; nothing is pulled);
- berthd with `--cri-socket`, its own state directory and cgroup parent, and
  an empty `--cri-cni-conf-dir`. berth needs no pause image.
Both get the same busybox image (busybox-static, bench/mkimage.py's layout
plus `top`, critest's default command), under the same reference.

Every pod uses the host's network (namespace_options network NODE, PID per
container, IPC the pod's), so no CNI plugin runs on either side: with an
empty configuration directory containerd refuses pods with a network of
their own ("cni config not initialized"), and a loopback-only list does not
satisfy it either (it wants an address on eth0). Every container asks for
seccomp RuntimeDefault explicitly, so both runtimes install a filter
(containerd 1.6 runs a container without one when the field is absent,
berth applies its default profile either way).

Measures (crictl, /usr/local/bin/crictl, one process per call, timed around
the process, against each runtime's socket):
1. pod lifecycle: `crictl runp` -> `crictl stopp` -> `crictl rmp`;
2. container lifecycle in a running pod: `create` -> `start` -> `stop`
   (timeout 10 s) -> `rm`, of a `/bin/true` container (the stop once the
   runtime reports it exited, waited for untimed: see wait_exited) and of a
   `sleep` container (`sh -c "trap 'exit 0' TERM; sleep 1000000 & wait"`,
   which ends on the stop's SIGTERM, as a pod's process does);
3. the whole `crictl run --no-pull` path (RunPodSandbox, CreateContainer,
   StartContainer of a sleep container in a new pod; the pod is removed
   afterwards, untimed);
4. `crictl version`, the floor every crictl call pays (its start and the
   connection);
4b. streaming, through each runtime's streaming server over SPDY (crictl's
   default transport, as kubelet's is for kubectl): `crictl exec` of `true`
   in a running sleep container (Exec, the upgrade, the streams, the
   process, its status), and of `head -c 64M /dev/zero` with crictl's
   stdout on /dev/null (throughput; the MB/s are 64 MiB over the median);
5. memory per pod with 10 pods each running one sleep container: RSS, PSS and
   USS of containerd's shims and pause processes vs berth's monitors (a
   berth pod is pinned namespaces: no process), and of each daemon before and
   after;
6. critest's own benchmark suite (`critest -benchmark`, cri-tools v1.37.0),
   its pod and container lifecycle specs with its per-RPC timings, when a
   critest binary is at BENCH_CRITEST or can be built with the Go toolchain
   (module proxy): critest's pods have no namespace options (a shared PID
   namespace and a pod network), which berth does not serve yet (shared PID)
   and containerd cannot without CNI, so the build patches its pod configs to
   the same host-network options as above (`HostNetworkPod`, one function,
   nothing else). Its image specs are skipped (they pull from the internet),
   and so is its "start a container from scratch" spec (one sample per run;
   berth refuses its 73-character container name, see SKIP); its test image
   is the local busybox (`-test-images-file`), its containers run `top`
   without a seccomp field (containerd: no filter; berth: its default).
   BENCH_CRITEST=0 skips it.

Knobs: BENCH_SAMPLES, BENCH_WARMUP (as the other benches), BENCH_CRICTL,
BENCH_CRITEST (a critest binary; unset: build one into the work directory),
BENCH_CRITEST_ROUNDS (3: critest runs per runtime, alternating),
BENCH_BERTH_BIN (a directory with berthd and berthctl to measure instead of
target/x86_64-unknown-linux-gnu/release/), BENCH_CRI_JSON (a file for the
raw samples). Prints a table of medians, p90s and ratios; writes nothing
else. Cleans up always: pods and containers through each CRI, then the
daemons by pid, leftover shims, mounts under the work directory, the
cgroups the run created.
"""

import glob
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import tarfile
import tempfile
import time

import bench as b
import mkimage

CRICTL = os.environ.get("BENCH_CRICTL", "/usr/local/bin/crictl")
BERTH_BIN = os.environ.get("BENCH_BERTH_BIN", "")
BERTHD = os.path.join(BERTH_BIN, "berthd") if BERTH_BIN else b.BERTHD
BERTHCTL = os.path.join(BERTH_BIN, "berthctl") if BERTH_BIN else b.BERTHCTL
# bench.py's cleanup (stop_all) runs berthctl too.
b.BERTHD, b.BERTHCTL = BERTHD, BERTHCTL
BERTH_CRI_SOCK = os.path.join(b.W, "berthd-cri.sock")
# bench.py's path: its cleanup finds containerd's shims by this socket.
CTRD_SOCK = b.CTRD_SOCK
CTRD_DIR = os.path.dirname(CTRD_SOCK)
IMAGE = "localhost/berth-bench/busybox:cri"
PAUSE = "localhost/berth-bench/pause:cri"
CRITEST_VERSION = "v1.37.0"
CRITEST_ROUNDS = int(os.environ.get("BENCH_CRITEST_ROUNDS", "3"))
MEM_PODS = 10
# kubelet's namespace options for a hostNetwork pod (cri-api NamespaceMode:
# POD 0, CONTAINER 1, NODE 2).
HOST_NET = {"network": 2, "pid": 1, "ipc": 0}
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]
PAUSE_ARGS = ["/bin/busybox", "sleep", "2147483647"]

RUNTIMES = ("containerd", "berth")
# BENCH_CRI_DEBUG=1: containerd's debug log (its shims' output too), for
# when something fails.
DEBUG = os.environ.get("BENCH_CRI_DEBUG") == "1"


def log(*a):
    b.log("cri:", *a)


# ---------------------------------------------------------------- images

def write_image(layer, path, ref, config):
    """An OCI layout archive of one layer, named `ref` (as bench/mkimage.py's)."""
    sha = mkimage.sha
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   **config},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha(layer)}"]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "berth bench/cri.py"}],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{sha(cfg)}", "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{sha(layer)}", "size": len(layer)}],
    }).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": f"sha256:{sha(manifest)}", "size": len(manifest),
                       "annotations": {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": ref}}],
    }).encode()
    files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
             ("index.json", index),
             (f"blobs/sha256/{sha(cfg)}", cfg),
             (f"blobs/sha256/{sha(manifest)}", manifest),
             (f"blobs/sha256/{sha(layer)}", layer)]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mkimage.MTIME
            t.addfile(ti)
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, mkimage.MTIME
            t.addfile(ti, io.BytesIO(data))


def make_images(out):
    """The test image (busybox with `top`, critest's default command) and
    containerd's pause stand-in, both from busybox-static."""
    os.makedirs(out, exist_ok=True)
    es = mkimage.entries()
    es.append(("bin/top", "symlink", 0o777, "busybox"))
    layer = mkimage.layer_tar(es)
    write_image(layer, os.path.join(out, "busybox.tar"), IMAGE, {"Cmd": ["sh"]})
    write_image(layer, os.path.join(out, "pause.tar"), PAUSE, {"Entrypoint": PAUSE_ARGS})
    return out


# ---------------------------------------------------------------- daemons

# The top-level cgroups the run may make: berthd's parent, containerd's
# default (`/k8s.io/<id>`, the pods' cgroup_parent being empty) and critest's
# (`/test.slice`, its parent when the runtime has no RuntimeConfig, as
# containerd 1.6). Only these are removed at the end, and only if the run
# made them: other new cgroups (a test running beside) are not ours.
OUR_CGROUPS = {b.CG_PARENT, "k8s.io", "test.slice"}


class CriDaemons(b.Daemons):
    """bench.py's daemons, with the CRI served by both."""

    @staticmethod
    def _cgroup_dirs():
        return [d for d in b.Daemons._cgroup_dirs() if os.path.basename(d) in OUR_CGROUPS]

    def start_berthd(self):
        cni = os.path.join(b.W, "berth-cni")
        os.makedirs(cni, exist_ok=True)
        self._start("berthd", [BERTHD, "--socket", b.BERTH_SOCK,
                               "--state-dir", os.path.join(b.W, "berth"),
                               "--cgroup-parent", b.CG_PARENT, "--log", "warn",
                               "--auto-pull=false", "--default-network", "none",
                               "--cri-socket", BERTH_CRI_SOCK, "--cri-cni-conf-dir", cni],
                    "berthd.log")
        b.wait_for(lambda: crictl("berth", "version", check=False).returncode == 0,
                   "berthd's CRI socket")

    def start_containerd(self):
        os.makedirs(CTRD_DIR, exist_ok=True)
        cni = os.path.join(CTRD_DIR, "cni")
        os.makedirs(cni, exist_ok=True)
        cfg = os.path.join(CTRD_DIR, "config.toml")
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        with open(cfg, "w") as f:
            f.write(f"""version = 2
root = "{CTRD_DIR}/root"
state = "{CTRD_DIR}/state"
[grpc]
  address = "{CTRD_SOCK}"
[ttrpc]
  address = "{CTRD_SOCK}.ttrpc"
[debug]
  level = "{"debug" if DEBUG else "warn"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{CTRD_DIR}/opt"
[{cri}]
  sandbox_image = "{PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni}"
""")
        self._start("containerd", ["containerd", "--config", cfg], "containerd.log")
        b.wait_for(lambda: crictl("containerd", "version", check=False).returncode == 0,
                   "containerd's CRI")

    def stop_all(self):
        # Pods (and their containers) through each CRI first, while the
        # daemons are up: berth's own API refuses to remove pod containers.
        for rt in RUNTIMES:
            p = self.procs.get("berthd" if rt == "berth" else "containerd")
            if p is None or p.poll() is not None:
                continue
            r = crictl(rt, "pods", "-q", check=False)
            for pod in r.stdout.split():
                crictl(rt, "stopp", pod, check=False)
                crictl(rt, "rmp", "-f", pod, check=False)
            r = crictl(rt, "ps", "-a", "-q", check=False)
            for c in r.stdout.split():
                crictl(rt, "rm", "-f", c, check=False)
        p = self.procs.get("containerd")
        if p is not None and p.poll() is None:
            ctr = ["ctr", "-a", CTRD_SOCK, "-n", "k8s.io"]
            for t in b.sh(ctr + ["task", "ls", "-q"], check=False).stdout.split():
                b.sh(ctr + ["task", "kill", "-s", "SIGKILL", t], check=False)
                b.sh(ctr + ["task", "delete", "-f", t], check=False)
        super().stop_all()
        # A process of ours left in a cgroup the run made (a pause whose
        # shim was killed, a monitor of a berthd that died) would keep that
        # cgroup: kill it, then remove the cgroups. Ours: the pause
        # stand-in, the containers' commands, berth's monitors (their binary
        # is in the work directory).
        ours = [PAUSE_ARGS, SLEEP, ["sleep", "1000000"], ["top"], ["/bin/true"]]
        left = sorted(set(self._cgroup_dirs()) - self.cgroup_dirs_before)
        killed = set()
        if left:
            for d in left:
                for procs in glob.glob(os.path.join(d, "**", "cgroup.procs"), recursive=True):
                    try:
                        with open(procs) as f:
                            pids = [int(x) for x in f.read().split()]
                    except OSError:
                        continue
                    for pid in set(pids) - killed:
                        killed.add(pid)
                        a = argv(pid)
                        if a in ours or (a and a[0].startswith(b.W)):
                            log(f"killing pid {pid} {a} left in {os.path.dirname(procs)}")
                            try:
                                os.kill(pid, signal.SIGKILL)
                            except OSError:
                                pass
            time.sleep(0.5)
            for d in left:
                subprocess.run(["find", d, "-depth", "-type", "d", "-exec", "rmdir", "{}", "+"],
                               stderr=subprocess.DEVNULL)
            still = sorted(set(self._cgroup_dirs()) - self.cgroup_dirs_before)
            if still:
                log(f"cgroups still left behind: {still}")


def argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


# ---------------------------------------------------------------- crictl

def endpoint(rt):
    return "unix://" + (CTRD_SOCK if rt == "containerd" else BERTH_CRI_SOCK)


def crictl_args(rt, *args):
    ep = endpoint(rt)
    return [CRICTL, "--config", CRICTL_CONFIG, "--runtime-endpoint", ep,
            "--image-endpoint", ep, "--timeout", "60s", *args]


def crictl(rt, *args, check=True):
    return b.sh(crictl_args(rt, *args), check=check)


def timed_out(args):
    """(ms, stdout) of one process, which must succeed."""
    t0 = time.perf_counter_ns()
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    t1 = time.perf_counter_ns()
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {r.returncode}: {r.stderr[-800:]}")
    return (t1 - t0) / 1e6, r.stdout.strip()


class Configs:
    """Pod and container configs as JSON files, one name per sample."""

    def __init__(self, root):
        self.root = root
        self.n = 0
        os.makedirs(root, exist_ok=True)

    def _write(self, name, v):
        p = os.path.join(self.root, name)
        with open(p, "w") as f:
            json.dump(v, f)
        return p

    def pod(self, rt):
        self.n += 1
        name = f"{rt}-pod-{self.n}"
        logs = os.path.join(b.W, "cri-logs", name)
        os.makedirs(logs, exist_ok=True)
        return name, self._write(f"{name}.json", {
            "metadata": {"name": name, "namespace": "bench", "uid": f"uid-{name}",
                         "attempt": 0},
            "log_directory": logs,
            "linux": {"security_context": {"namespace_options": HOST_NET}},
        })

    def container(self, command):
        self.n += 1
        name = f"c{self.n}"
        return self._write(f"{name}.json", {
            "metadata": {"name": name, "attempt": 0},
            "image": {"image": IMAGE},
            "command": command,
            "log_path": f"{name}.log",
            "linux": {"security_context": {"namespace_options": HOST_NET,
                                           "seccomp": {"profile_type": 0}}},
        })


def pod_lifecycle(rt, cf):
    _, pod_json = cf.pod(rt)
    run, pod = timed_out(crictl_args(rt, "runp", pod_json))
    stop, _ = timed_out(crictl_args(rt, "stopp", pod))
    rm, _ = timed_out(crictl_args(rt, "rmp", pod))
    return {"runp": run, "stopp": stop, "rmp": rm, "total": run + stop + rm}


def wait_exited(rt, cid):
    """Polls until the runtime reports container `cid` exited."""
    end = time.time() + 30
    while not crictl(rt, "ps", "-a", "-q", "--state", "exited", "--id", cid).stdout.strip():
        if time.time() > end:
            raise RuntimeError(f"{rt}: container {cid} did not exit")
        time.sleep(0.005)


def container_lifecycle(rt, cf, pod, pod_json, command, exits=False):
    c_json = cf.container(command)
    create, cid = timed_out(crictl_args(rt, "create", "--no-pull", pod, c_json, pod_json))
    start, _ = timed_out(crictl_args(rt, "start", cid))
    if exits:
        # Untimed. containerd 1.6.20's StopContainer, sent while it handles
        # the container's exit, fails now and then with "ttrpc: closed" (its
        # exit handler deletes the task under it); kubelet stops a container
        # that has exited only after it saw the exit, too.
        wait_exited(rt, cid)
    stop, _ = timed_out(crictl_args(rt, "stop", "--timeout", "10", cid))
    rm, _ = timed_out(crictl_args(rt, "rm", cid))
    return {"create": create, "start": start, "stop": stop, "rm": rm,
            "total": create + start + stop + rm}


def crictl_run(rt, cf):
    name, pod_json = cf.pod(rt)
    c_json = cf.container(SLEEP)
    ms, _ = timed_out(crictl_args(rt, "run", "--no-pull", c_json, pod_json))
    for pod in crictl(rt, "pods", "-q", "--name", f"^{name}$").stdout.split():
        crictl(rt, "stopp", pod)
        crictl(rt, "rmp", pod)
    return {"total": ms}


def timed_quiet(args):
    """ms of one process whose stdout goes to /dev/null; it must succeed."""
    t0 = time.perf_counter_ns()
    r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    t1 = time.perf_counter_ns()
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {r.returncode}: {r.stderr[-800:]}")
    return (t1 - t0) / 1e6


BULK_BYTES = 64 << 20


def exec_true(rt, cid):
    return {"total": timed_quiet(crictl_args(rt, "exec", cid, "true"))}


def exec_bulk(rt, cid):
    return {"total": timed_quiet(crictl_args(rt, "exec", cid, "head", "-c", str(BULK_BYTES),
                                             "/dev/zero"))}


def crictl_floor(rt, _cf):
    ms, _ = timed_out(crictl_args(rt, "version"))
    return {"total": ms}


# ---------------------------------------------------------------- memory

def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def total(pids):
    """Summed (RSS, PSS, USS) KiB of `pids`."""
    s = [0, 0, 0]
    for p in pids:
        for i, v in enumerate(b.rss_kib(p)):
            s[i] += v
    return s


def measure_memory(d, cf):
    """10 pods each running one sleep container, one runtime after the other."""
    out = {}
    for rt in RUNTIMES:
        daemon = d.procs["containerd" if rt == "containerd" else "berthd"].pid
        time.sleep(b.IDLE_S)
        before = b.rss_kib(daemon)
        pods = []
        for _ in range(MEM_PODS):
            name, pod_json = cf.pod(rt)
            crictl(rt, "run", "--no-pull", cf.container(SLEEP), pod_json)
            pods += crictl(rt, "pods", "-q", "--name", f"^{name}$").stdout.split()
        time.sleep(b.IDLE_S)
        after = b.rss_kib(daemon)
        if rt == "containerd":
            shims = b.pids_matching(lambda a: bool(a) and "containerd-shim" in a[0]
                                    and CTRD_SOCK in a)
            pauses = [p for p in b.pids_matching(lambda a: a == PAUSE_ARGS) if ppid(p) in shims]
            per_pod = {"shims": len(shims), "pauses": len(pauses),
                       "shim": total(shims), "pause": total(pauses)}
            overhead = [x + y for x, y in zip(per_pod["shim"], per_pod["pause"])]
        else:
            mons = [p for p in b.pids_matching(lambda a: len(a) >= 2 and a[1] == "__monitor")
                    if b.cwd_of(p).startswith(b.W)]
            per_pod = {"monitors": len(mons), "monitor": total(mons)}
            overhead = per_pod["monitor"]
        out[rt] = {"daemon_before": before, "daemon_after": after, **per_pod,
                   "overhead_per_pod": [x / MEM_PODS for x in overhead]}
        for pod in pods:
            crictl(rt, "stopp", pod)
            crictl(rt, "rmp", pod)
    return out


# ---------------------------------------------------------------- critest

def build_critest(work):
    """cri-tools' critest (a Go test binary), its benchmark pods on the host's
    network with a PID namespace per container (module docstring)."""
    go = shutil.which("go")
    if not go:
        raise RuntimeError("no Go toolchain")
    mod = f"sigs.k8s.io/cri-tools@{CRITEST_VERSION}"
    r = b.sh([go, "mod", "download", "-json", mod], timeout=600, cwd=work)
    src = os.path.join(work, "cri-tools")
    shutil.copytree(json.loads(r.stdout)["Dir"], src)
    subprocess.run(["chmod", "-R", "u+w", src], check=True)
    n = 0
    for rel, call in (("pkg/benchmark/pod.go", "framework.HostNetworkPod()"),
                      ("pkg/benchmark/pod_container.go", "framework.HostNetworkPod()"),
                      ("pkg/framework/util.go", "HostNetworkPod()")):
        p = os.path.join(src, rel)
        with open(p) as f:
            s = f.read()
        s, k = re.subn(r"(CgroupParent: common\.GetCgroupParent\(ctx, \w+\),)",
                       r"\1 SecurityContext: " + call + ",", s)
        n += k
        with open(p, "w") as f:
            f.write(s)
    if n != 4:
        raise RuntimeError(f"critest {CRITEST_VERSION}: patched {n} pod configs, expected 4")
    with open(os.path.join(src, "pkg/framework/berth_hostnet.go"), "w") as f:
        f.write("""package framework

import runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

// HostNetworkPod: the host's network, a PID namespace per container, the
// pod's IPC namespace (berth's bench/cri.py: no CNI on either side).
func HostNetworkPod() *runtimeapi.LinuxSandboxSecurityContext {
\treturn &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
\t\tNetwork: runtimeapi.NamespaceMode_NODE,
\t\tPid:     runtimeapi.NamespaceMode_CONTAINER,
\t\tIpc:     runtimeapi.NamespaceMode_POD,
\t}}
}
""")
    out = os.path.join(work, "critest")
    b.sh([go, "test", "-c", "-o", out, "./cmd/critest"], cwd=src, timeout=1800)
    return out


# critest's image specs pull from the internet. Its "start a container from
# scratch" spec names its container "Pod-Container-for-creating-benchmark-"
# and a UUID, 73 characters, which berth refuses (a container name is at most
# 63, INVALID_ARGUMENT); `crictl run` above measures that path.
SKIP = r"\[k8s.io\] Image|from scratch"


def critest_once(critest, rt, n, work):
    out = tempfile.mkdtemp(prefix=f"critest-{rt}-", dir=work)
    params = os.path.join(out, "params.yaml")
    with open(params, "w") as f:
        # critest panics when one sample takes longer than this (default 60
        # s): a StopContainer whose SIGTERM came before `top` had installed
        # its handlers waits for its 60 s timeout (report()).
        f.write(f"containersNumber: {n}\ncontainersNumberParallel: 1\n"
                f"podsNumber: {n}\npodsNumberParallel: 1\n"
                f"containerBenchmarkTimeoutSeconds: 300\n")
    images = os.path.join(out, "images.yaml")
    with open(images, "w") as f:
        f.write(f"defaultTestContainerImage: {IMAGE}\nwebServerTestImage: {IMAGE}\n")
    r = b.sh([critest, "-benchmark", "-runtime-endpoint", endpoint(rt),
              "-image-endpoint", endpoint(rt), "-config", CRICTL_CONFIG,
              "-benchmarking-params-file", params, "-benchmarking-output-dir", out,
              "-test-images-file", images, "-ginkgo.skip", SKIP, "-ginkgo.no-color"],
             check=False, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"critest against {rt} exited {r.returncode}: "
                           f"{(r.stdout + r.stderr)[-3000:]}")
    res = {}
    for fname, key in (("pod_benchmark_data.json", "pod"),
                       ("container_benchmark_data.json", "container")):
        with open(os.path.join(out, fname)) as f:
            data = json.load(f)
        res[key] = {"ops": data["operationsNames"],
                    # The first sample of each critest run is its warm-up.
                    "samples": [[ns / 1e6 for ns in p["operationsDurationsNs"]]
                                for p in data["datapoints"] if p["sampleIndex"] > 0]}
    return res


def measure_critest(work):
    want = os.environ.get("BENCH_CRITEST", "")
    if want == "0":
        return None, "skipped (BENCH_CRITEST=0)"
    try:
        critest = want or build_critest(work)
    except Exception as e:  # noqa: BLE001 - reported, the crictl numbers stand
        return None, f"critest could not be built: {e}"
    per_run = max(2, -(-b.SAMPLES // CRITEST_ROUNDS)) + 1
    res = {rt: {"pod": [], "container": []} for rt in RUNTIMES}
    ops = {}
    try:
        for r in range(CRITEST_ROUNDS):
            order = list(RUNTIMES) if r % 2 == 0 else list(reversed(RUNTIMES))
            for rt in order:
                one = critest_once(critest, rt, per_run, work)
                for k in ("pod", "container"):
                    ops[k] = one[k]["ops"]
                    res[rt][k] += one[k]["samples"]
                log(f"critest round {r + 1}/{CRITEST_ROUNDS} {rt} done")
    except Exception as e:  # noqa: BLE001
        return None, str(e)
    return {"ops": ops, "runs": CRITEST_ROUNDS, "per_run": per_run - 1, **res}, None


# ---------------------------------------------------------------- report

def row(name, c, bth):
    mc, mb = statistics.median(c), statistics.median(bth)
    return (f"| {name} | {mc:.1f} | {b.q(c, .9):.1f} | {mb:.1f} | {b.q(bth, .9):.1f} | "
            f"{mb / mc:.2f} |")


def report(res):
    m = res["machine"]
    berth = f"berthd {BERTHD}" if BERTH_BIN else f"berth {m['berth_commit']}"
    lines = [f"Run {m['date']}, {berth}, {m['cpus']} CPUs "
             f"({m['cpu']}), {m['mem_gib']} GiB, Linux {m['kernel']}, {m['cgroups']}, state on "
             f"{m['state_fs']}; {m['versions']['containerd']}, {m['versions']['runc']}; "
             f"{res['crictl_version']}. Load average at the end: "
             f"{' '.join(m['loadavg_at_end'])}.", "",
             f"CRI, {b.SAMPLES} samples per runtime after {b.WARMUP} warm-up rounds, "
             f"measures and runtimes interleaved in shuffled rounds; ms. ratio = berth's "
             f"median / containerd's (below 1: berth faster).", "",
             "| crictl | containerd median | p90 | berth median | p90 | berth / containerd |",
             "|---|---:|---:|---:|---:|---:|"]
    lat = res["crictl"]
    labels = {"floor": "`crictl version` (the floor of every call)",
              "pod": "pod lifecycle: runp + stopp + rmp",
              "true": "`/bin/true` in a pod: create + start + stop + rm",
              "sleep": "`sleep` in a pod: create + start + stop + rm",
              "run": "`crictl run` (new pod + create + start, sleep)",
              "exec": "`crictl exec` of `true` (SPDY streaming)",
              "exec_bulk": "`crictl exec` of `head -c 64M /dev/zero` (SPDY streaming)"}
    steps = {"pod": ("runp", "stopp", "rmp"), "true": ("create", "start", "stop", "rm"),
             "sleep": ("create", "start", "stop", "rm")}
    for k, label in labels.items():
        c, bt = lat[k]["containerd"], lat[k]["berth"]
        lines.append(row(label, [s["total"] for s in c], [s["total"] for s in bt]))
        for st in steps.get(k, ()):
            lines.append(row(f"&nbsp;&nbsp;{k}: `{st}`", [s[st] for s in c],
                             [s[st] for s in bt]))
    bulk = {rt: statistics.median(s["total"] for s in lat["exec_bulk"][rt]) for rt in RUNTIMES}
    lines += ["", "Streaming throughput (64 MiB through `crictl exec` over SPDY, median): " +
              ", ".join(f"{rt} {BULK_BYTES / (1 << 20) / (bulk[rt] / 1000):.0f} MiB/s"
                        for rt in RUNTIMES) + "."]
    ct = res.get("critest")
    if ct:
        lines += ["", f"critest {CRITEST_VERSION} -benchmark (its own per-RPC timings, in "
                  f"process; {ct['runs']} runs per runtime, alternating, {ct['per_run']} samples "
                  f"each after its first), ms:", "",
                  "| critest | containerd median | p90 | berth median | p90 | berth / containerd |",
                  "|---|---:|---:|---:|---:|---:|"]
        stop = ct["ops"]["container"].index("StopContainer")
        lost = {rt: sum(1 for x in ct[rt]["container"] if x[stop] > 30e3) for rt in RUNTIMES}
        for k in ("pod", "container"):
            c, bt = ct["containerd"][k], ct["berth"][k]
            lines.append(row(f"{k} lifecycle, all RPCs", [sum(s) for s in c],
                             [sum(s) for s in bt]))
            for i, op in enumerate(ct["ops"][k]):
                lines.append(row(f"&nbsp;&nbsp;`{op}`", [s[i] for s in c], [s[i] for s in bt]))
        lines += ["", "StopContainer calls that waited for critest's 60 s timeout (the SIGTERM "
                  "reached `top`, PID 1 of its PID namespace, before it had installed its "
                  "handlers, and the kernel drops a signal without a handler sent to a "
                  "namespace's init): " + ", ".join(f"{rt} {lost[rt]} of {len(ct[rt]['container'])}"
                                                    for rt in RUNTIMES) + "."]
    elif res.get("critest_error"):
        lines += ["", f"critest: {res['critest_error']}"]
    mem = res["memory"]
    mib = lambda k: k / 1024  # noqa: E731
    cm, bm = mem["containerd"], mem["berth"]
    lines += ["", f"Memory with {MEM_PODS} pods, each running one sleep container (MiB; "
              "RSS / PSS / USS):", "",
              "| | containerd | berth |", "|---|---|---|"]
    fmt3 = lambda v: " / ".join(f"{mib(x):.2f}" for x in v)  # noqa: E731
    lines.append(f"| per pod: runtime processes | {fmt3(cm['overhead_per_pod'])} "
                 f"({cm['shims']} shims + {cm['pauses']} pause) | "
                 f"{fmt3(bm['overhead_per_pod'])} ({bm['monitors']} monitors, no pod process) |")
    lines.append(f"| daemon before | {fmt3(cm['daemon_before'])} | {fmt3(bm['daemon_before'])} |")
    lines.append(f"| daemon with {MEM_PODS} pods | {fmt3(cm['daemon_after'])} | "
                 f"{fmt3(bm['daemon_after'])} |")
    return "\n".join(lines) + "\n"


CRICTL_CONFIG = os.path.join(b.W, "crictl.yaml")


def main():
    os.makedirs(b.W, exist_ok=True)
    with open(CRICTL_CONFIG, "w") as f:
        f.write("pull-image-on-create: false\ndisable-pull-on-run: true\n")
    imgs = make_images(os.path.join(b.W, "cri-images"))
    cf = Configs(os.path.join(b.W, "cri-configs"))
    d = CriDaemons()
    res = {}
    try:
        d.start_containerd()
        for name in ("pause.tar", "busybox.tar"):
            b.sh(["ctr", "-a", CTRD_SOCK, "-n", "k8s.io", "images", "import",
                  os.path.join(imgs, name)])
        d.start_berthd()
        b.sh([BERTHCTL, "-H", b.BERTH_SOCK, "image", "import", os.path.join(imgs, "busybox.tar")])
        for rt in RUNTIMES:
            if IMAGE.split("/")[-1].split(":")[0] not in crictl(rt, "images").stdout:
                raise RuntimeError(f"{rt}: {IMAGE} not listed by crictl images")
        res["versions"] = {rt: crictl(rt, "version").stdout for rt in RUNTIMES}

        # One long-lived pod per runtime for the container lifecycles.
        home = {}
        for rt in RUNTIMES:
            _, pj = cf.pod(rt)
            home[rt] = (crictl(rt, "runp", pj).stdout.strip(), pj)
        # And a running sleep container in it, for the execs.
        shell = {}
        for rt in RUNTIMES:
            pod, pj = home[rt]
            cid = crictl(rt, "create", "--no-pull", pod, cf.container(SLEEP), pj).stdout.strip()
            crictl(rt, "start", cid)
            shell[rt] = cid
        measures = {
            "floor": crictl_floor,
            "pod": pod_lifecycle,
            "true": lambda rt, cf: container_lifecycle(rt, cf, *home[rt], ["/bin/true"],
                                                       exits=True),
            "sleep": lambda rt, cf: container_lifecycle(rt, cf, *home[rt], SLEEP),
            "run": crictl_run,
            "exec": lambda rt, cf: exec_true(rt, shell[rt]),
            "exec_bulk": lambda rt, cf: exec_bulk(rt, shell[rt]),
        }
        lat = {k: {rt: [] for rt in RUNTIMES} for k in measures}
        for r in range(b.WARMUP + b.SAMPLES):
            order = [(k, rt) for k in measures for rt in RUNTIMES]
            random.shuffle(order)
            for k, rt in order:
                s = measures[k](rt, cf)
                if r >= b.WARMUP:
                    lat[k][rt].append(s)
            if (r + 1) % 5 == 0:
                log(f"round {r + 1}/{b.WARMUP + b.SAMPLES}")
        res["crictl"] = lat
        for rt in RUNTIMES:
            crictl(rt, "stop", "--timeout", "10", shell[rt])
            crictl(rt, "rm", shell[rt])
            crictl(rt, "stopp", home[rt][0])
            crictl(rt, "rmp", home[rt][0])
        res["memory"] = measure_memory(d, cf)
        res["critest"], res["critest_error"] = measure_critest(b.W)
        res["crictl_version"] = b.sh([CRICTL, "--version"]).stdout.strip()
        res["machine"] = b.machine()
    finally:
        d.stop_all()
    if os.environ.get("BENCH_CRI_JSON"):
        with open(os.environ["BENCH_CRI_JSON"], "w") as f:
            json.dump(res, f, indent=1)
    print(report(res))


if __name__ == "__main__":
    main()
