#!/usr/bin/python3
"""berth benchmarks side by side with crun, runc, containerd and Docker.

Run through bench/run.sh (which installs the tools, builds berth in release
mode, builds the image and enters a private mount namespace). This script
starts every daemon on temporary roots and sockets, measures, writes
bench/results/{results.json,results.md,latency.png}, and stops every daemon by
its pid, leaving nothing running or mounted.

Every lifecycle sample is one whole `/bin/true` container: create + start +
wait + remove. Tools are measured in interleaved rounds (each round runs every
tool once, in a shuffled order), so drift on a shared machine hits all of them
alike; the ratios are what count.
"""

import concurrent.futures
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# .cargo/config.toml names the target, so cargo builds into target/<triple>/.
REL = os.path.join(REPO, "target", "x86_64-unknown-linux-gnu", "release")
BERTHD = os.path.join(REL, "berthd")
BERTHCTL = os.path.join(REL, "berthctl")
CLIENT = os.path.join(REL, "berth-bench")
DOCKER = "/usr/bin/docker"  # Debian's docker.io client, not another one earlier in PATH
DOCKERD = "/usr/sbin/dockerd"
REF_CTR = "docker.io/library/busybox:latest"

W = os.environ["BENCH_WORK"]
IMG = os.environ["BENCH_IMAGE_DIR"]
OUT = os.environ.get("BENCH_OUT", os.path.join(REPO, "bench", "results"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "40"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "5"))
CONC_ROUNDS = int(os.environ.get("BENCH_CONC_ROUNDS", "5"))
SKIP_DOCKER = os.environ.get("BENCH_SKIP_DOCKER") == "1"
# BENCH_ONLY=concurrency: only berthctl, the API and crun at 10 in flight, for a
# quick A/B of one change (a printed table, nothing written to BENCH_OUT).
# BENCH_ONLY=build: `berthctl build` next to `docker build` (bench/build.py).
ONLY = os.environ.get("BENCH_ONLY", "")
CONC_TOTAL = int(os.environ.get("BENCH_CONC_TOTAL", "50"))
REPLAY_EVENTS = int(os.environ.get("BENCH_REPLAY_EVENTS", "50000"))

BERTH_SOCK = os.path.join(W, "berthd.sock")
CTRD_SOCK = os.path.join(W, "containerd", "containerd.sock")
DOCKER_SOCK = os.path.join(W, "docker", "docker.sock")
CG_PARENT = f"berth-bench-{os.getpid()}"
CTR_NS = "berthbench"


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def sh(args, check=True, **kw):
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def rss_kib(pid):
    """(RSS, PSS, USS) in KiB of one process. USS: its private pages only,
    what the process itself costs; RSS also counts every shared page it maps
    (a binary's pages, shared by all its processes), PSS a share of them."""
    rss = pss = uss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                    uss += int(line.split()[1])
    except OSError:
        pass
    return rss, pss, uss


def anon_kib(pid):
    """Anonymous memory (heap, stacks) of one process in KiB: what it holds
    beyond the pages of its binary."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cwd_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def pids_matching(pred):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if pred([a.decode(errors="replace") for a in argv if a]):
            out.append(int(d))
    return out


def wait_for(pred, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- daemons

class Daemons:
    def __init__(self):
        self.procs = {}  # name -> Popen
        self.cgroup_dirs_before = set(self._cgroup_dirs())
        # Paths the daemons create outside their roots; removed at the end
        # unless they were there before.
        self.outside = [p for p in ("/run/containerd", "/run/docker", "/etc/docker/key.json")
                        if not os.path.exists(p)]

    @staticmethod
    def _cgroup_dirs():
        base = "/sys/fs/cgroup"
        out = []
        for h in os.listdir(base):
            p = os.path.join(base, h)
            if os.path.isdir(p) and not os.path.islink(p) and h != "unified":
                try:
                    out += [os.path.join(p, d) for d in os.listdir(p)
                            if os.path.isdir(os.path.join(p, d))]
                except OSError:
                    pass
        return out

    def _start(self, name, args, logname):
        logf = open(os.path.join(W, logname), "w")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                             start_new_session=True)
        self.procs[name] = p
        log(f"started {name} pid {p.pid}")
        return p

    def start_berthd(self):
        self._start("berthd", [BERTHD, "--socket", BERTH_SOCK, "--state-dir",
                               os.path.join(W, "berth"), "--cgroup-parent", CG_PARENT,
                               "--log", "warn", "--auto-pull=false",
                               # crun, runc and ctr give a container only lo;
                               # so does berth here (bench/networks.sh times
                               # the bridge).
                               "--default-network", "none"], "berthd.log")
        wait_for(lambda: sh([BERTHCTL, "-H", BERTH_SOCK, "info"], check=False).returncode == 0,
                 "berthd")

    def start_containerd(self):
        d = os.path.join(W, "containerd")
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "config.toml")
        with open(cfg, "w") as f:
            f.write(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{CTRD_SOCK}"
[ttrpc]
  address = "{CTRD_SOCK}.ttrpc"
[debug]
  level = "warn"
""")
        self._start("containerd", ["containerd", "--config", cfg], "containerd.log")
        wait_for(lambda: sh(["ctr", "-a", CTRD_SOCK, "version"], check=False).returncode == 0,
                 "containerd")

    def start_dockerd(self):
        d = os.path.join(W, "docker")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "daemon.json"), "w") as f:
            f.write("{}\n")
        self._start("dockerd", [
            DOCKERD, "--config-file", os.path.join(d, "daemon.json"),
            "--data-root", os.path.join(d, "root"), "--exec-root", os.path.join(d, "exec"),
            "--pidfile", os.path.join(d, "docker.pid"), "-H", f"unix://{DOCKER_SOCK}",
            "--containerd", CTRD_SOCK, "--iptables=false", "--ip-masq=false",
            "--bridge=none", "--userland-proxy=false", "--storage-driver", "overlay2",
            "--log-level", "warn"], "dockerd.log")
        wait_for(lambda: sh([DOCKER, "-H", f"unix://{DOCKER_SOCK}", "version"],
                            check=False).returncode == 0, "dockerd", timeout=60)

    def stop_all(self):
        # Containers first, while the daemons that own them are up.
        if "berthd" in self.procs and self.procs["berthd"].poll() is None:
            r = sh([BERTHCTL, "-H", BERTH_SOCK, "ps", "-a", "-q"], check=False)
            for cid in r.stdout.split():
                sh([BERTHCTL, "-H", BERTH_SOCK, "rm", "-f", cid], check=False)
        if "dockerd" in self.procs and self.procs["dockerd"].poll() is None:
            r = sh([DOCKER, "-H", f"unix://{DOCKER_SOCK}", "ps", "-aq"], check=False)
            for cid in r.stdout.split():
                sh([DOCKER, "-H", f"unix://{DOCKER_SOCK}", "rm", "-f", cid], check=False)
        if "containerd" in self.procs and self.procs["containerd"].poll() is None:
            for ns in (CTR_NS, "moby"):
                r = sh(["ctr", "-a", CTRD_SOCK, "-n", ns, "task", "ls", "-q"], check=False)
                for t in r.stdout.split():
                    sh(["ctr", "-a", CTRD_SOCK, "-n", ns, "task", "kill", "-s", "SIGKILL", t],
                       check=False)
                    sh(["ctr", "-a", CTRD_SOCK, "-n", ns, "task", "delete", "-f", t],
                       check=False)
                r = sh(["ctr", "-a", CTRD_SOCK, "-n", ns, "container", "ls", "-q"], check=False)
                for c in r.stdout.split():
                    sh(["ctr", "-a", CTRD_SOCK, "-n", ns, "container", "rm", c], check=False)
        for name in ("dockerd", "berthd", "containerd"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            log(f"stopping {name} pid {p.pid}")
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"{name} pid {p.pid} ignored SIGTERM; SIGKILL")
                p.kill()
                p.wait()
        # Shims of containerd outlive it by design; ours have our socket in argv.
        for pid in pids_matching(lambda a: a and "containerd-shim" in a[0] and CTRD_SOCK in a):
            log(f"killing leftover shim pid {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        # Mounts under the work dir (overlay snapshots, berth rootfs), deepest first.
        with open("/proc/self/mountinfo") as f:
            mps = [line.split()[4] for line in f]
        for mp in sorted((m for m in mps if m.startswith(W)), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        # cgroups the run created (berth's parent, docker/, the ctr namespace).
        for _ in range(3):
            for d in sorted(set(self._cgroup_dirs()) - self.cgroup_dirs_before,
                            key=len, reverse=True):
                for root, dirs, _files in os.walk(d, topdown=False):
                    for x in dirs:
                        try:
                            os.rmdir(os.path.join(root, x))
                        except OSError:
                            pass
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        left = set(self._cgroup_dirs()) - self.cgroup_dirs_before
        if left:
            log(f"cgroups left behind: {sorted(left)}")
        for p in self.outside:
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.exists(p):
                os.remove(p)


# ---------------------------------------------------------------- samplers

class Counter:
    """Unique container names; the concurrency runs call it from many threads."""
    n = 0
    lock = threading.Lock()

    @classmethod
    def next(cls):
        with cls.lock:
            cls.n += 1
            return f"bench{os.getpid()}-{cls.n}"


def timed(args):
    t0 = time.perf_counter_ns()
    r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    t1 = time.perf_counter_ns()
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return (t1 - t0) / 1e6


class Resident:
    """A resident berth-bench lifecycle client: one sample per stdin line."""

    def __init__(self, memory=0):
        self.p = subprocess.Popen([CLIENT, "-H", BERTH_SOCK, "lifecycle", "--memory", str(memory)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  bufsize=1)
        assert json.loads(self.p.stdout.readline())["ready"]
        self.phases = []

    def sample(self):
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        r = json.loads(self.p.stdout.readline())
        if "error" in r:
            raise RuntimeError(f"berth-bench lifecycle: {r['error']}")
        self.phases.append(r)
        return r["total_ns"] / 1e6

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


def crun_args(bundle):
    return ["crun", "--root", os.path.join(W, "crun"), "run", "--bundle", bundle]


def runc_args(bundle):
    return ["runc", "--root", os.path.join(W, "runc"), "run", "--bundle", bundle]


def lifecycle_tools(api, api_mem):
    bundle = os.path.join(IMG, "bundle")
    bundle_mem = os.path.join(IMG, "bundle-mem")
    rootfs = os.path.join(IMG, "rootfs")
    t = {
        "berthctl run --rm": lambda: timed([BERTHCTL, "-H", BERTH_SOCK, "run", "--rm", "busybox",
                                            "/bin/true"]),
        "berth API (resident client)": api.sample,
        "berthctl run --rm --memory 64m": lambda: timed(
            [BERTHCTL, "-H", BERTH_SOCK, "run", "--rm", "--memory", "64m", "busybox", "/bin/true"]),
        "berth API --memory 64m": api_mem.sample,
        "crun run": lambda: timed(crun_args(bundle) + [Counter.next()]),
        "crun run (64m)": lambda: timed(crun_args(bundle_mem) + [Counter.next()]),
        "runc run": lambda: timed(runc_args(bundle) + [Counter.next()]),
        "runc run (64m)": lambda: timed(runc_args(bundle_mem) + [Counter.next()]),
        "ctr run --rm": lambda: timed(["ctr", "-a", CTRD_SOCK, "-n", CTR_NS, "run", "--rm",
                                       REF_CTR, Counter.next(), "/bin/true"]),
        "unshare floor": lambda: timed(["unshare", "--fork", "--pid", "--mount", "--uts",
                                        "--ipc", "--mount-proc", "chroot", rootfs, "/bin/true"]),
        "spawn /bin/true (driver overhead)": lambda: timed(["/bin/true"]),
    }
    if not SKIP_DOCKER:
        t["docker run --rm"] = lambda: timed([DOCKER, "-H", f"unix://{DOCKER_SOCK}", "run", "--rm",
                                              "--network", "none", "busybox:latest", "/bin/true"])
    return t


def measure_lifecycle(tools):
    samples = {k: [] for k in tools}
    rnd = random.Random(6)
    names = list(tools)
    for i in range(WARMUP + SAMPLES):
        rnd.shuffle(names)
        for n in names:
            v = tools[n]()
            if i >= WARMUP:
                samples[n].append(v)
        if i % 10 == 0:
            log(f"lifecycle round {i + 1}/{WARMUP + SAMPLES}")
    return samples


def conc_cli(make_args, total=CONC_TOTAL, inflight=10):
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(inflight) as ex:
        list(ex.map(lambda _: timed(make_args()), range(total)))
    return total / (time.perf_counter() - t0)


def conc_api(total=CONC_TOTAL, inflight=10):
    r = json.loads(sh([CLIENT, "-H", BERTH_SOCK, "concurrent", "--total", str(total),
                       "--inflight", str(inflight)]).stdout)
    if r["errors"]:
        raise RuntimeError(f"concurrent API run had {r['errors']} errors")
    return r["per_second"]


def measure_concurrency(only=None):
    bundle = os.path.join(IMG, "bundle")
    tools = {
        "berthctl run --rm": lambda: conc_cli(
            lambda: [BERTHCTL, "-H", BERTH_SOCK, "run", "--rm", "busybox", "/bin/true"]),
        "berth API (resident client)": conc_api,
        "crun run": lambda: conc_cli(lambda: crun_args(bundle) + [Counter.next()]),
        "runc run": lambda: conc_cli(lambda: runc_args(bundle) + [Counter.next()]),
        "ctr run --rm": lambda: conc_cli(lambda: ["ctr", "-a", CTRD_SOCK, "-n", CTR_NS, "run",
                                                  "--rm", REF_CTR, Counter.next(), "/bin/true"]),
    }
    if only is not None:
        tools = {k: v for k, v in tools.items() if k in only}
    out = {k: [] for k in tools}
    names = list(tools)
    rnd = random.Random(7)
    for i in range(CONC_ROUNDS + 1):  # the first round is warm-up
        rnd.shuffle(names)
        for n in names:
            v = tools[n]()
            if i > 0:
                out[n].append(v)
        log(f"concurrency round {i + 1}/{CONC_ROUNDS + 1}")
    return out


# berthd gives freed memory back to the kernel after 5 s without an event;
# "idle" numbers are read after that long without activity.
IDLE_S = 6


def measure_memory(d):
    mem = {}
    b = d.procs["berthd"].pid
    time.sleep(IDLE_S)
    mem["berthd_idle_after_load"] = rss_kib(b)
    mem["berthd_idle_after_load_anon"] = anon_kib(b)
    ctl = [BERTHCTL, "-H", BERTH_SOCK]
    n = 10
    ids = [sh(ctl + ["run", "-d", "busybox", "sleep", "1000"]).stdout.split()[0] for _ in range(n)]
    time.sleep(0.5)
    # A monitor serving a container has made the container's directory its
    # working directory; idle spare monitors (berthd's, not a container's)
    # have not.
    mons = [p for p in pids_matching(lambda a: len(a) >= 2 and a[1] == "__monitor")
            if cwd_of(p).startswith(W)]
    per = [rss_kib(p) for p in mons]
    mem["berth_monitors"] = len(mons)
    mem["berth_monitor_rss_kib"] = [x[0] for x in per]
    mem["berth_monitor_pss_kib"] = [x[1] for x in per]
    mem["berth_monitor_uss_kib"] = [x[2] for x in per]
    mem["berthd_with_10_running"] = rss_kib(b)
    for i in ids:
        sh(ctl + ["rm", "-f", i])
    # containerd: one shim per `ctr run -d` container.
    c = d.procs["containerd"].pid
    mem["containerd_idle"] = rss_kib(c)
    ctr = ["ctr", "-a", CTRD_SOCK, "-n", CTR_NS]
    cids = [Counter.next() for _ in range(n)]
    for cid in cids:
        sh(ctr + ["run", "-d", REF_CTR, cid, "sleep", "1000"])
    time.sleep(0.5)
    shims = pids_matching(lambda a: a and "containerd-shim" in a[0] and CTRD_SOCK in a)
    per = [rss_kib(p) for p in shims]
    mem["containerd_shims"] = len(shims)
    mem["containerd_shim_rss_kib"] = [x[0] for x in per]
    mem["containerd_shim_pss_kib"] = [x[1] for x in per]
    mem["containerd_shim_uss_kib"] = [x[2] for x in per]
    for cid in cids:
        sh(ctr + ["task", "kill", "-s", "SIGKILL", cid], check=False)
    for cid in cids:
        for _ in range(100):
            if sh(ctr + ["task", "delete", cid], check=False).returncode == 0:
                break
            time.sleep(0.05)
        sh(ctr + ["container", "rm", cid], check=False)
    if "dockerd" in d.procs:
        mem["dockerd_idle"] = rss_kib(d.procs["dockerd"].pid)
    return mem


def measure_stop():
    out = {}
    for t, n in ((1, 10), (2, 5)):
        r = json.loads(sh([CLIENT, "-H", BERTH_SOCK, "stop", "--timeout", str(t),
                           "--samples", str(n)]).stdout)
        out[f"berth_T{t}"] = [s["ns"] / 1e6 for s in r["samples"]]
    if not SKIP_DOCKER:
        dk = [DOCKER, "-H", f"unix://{DOCKER_SOCK}"]
        xs = []
        for _ in range(5):
            cid = sh(dk + ["run", "-d", "--network", "none", "busybox:latest", "sh", "-c",
                           "trap '' TERM; while :; do sleep 1; done"]).stdout.strip()
            time.sleep(0.3)
            xs.append(timed(dk + ["stop", "-t", "1", cid]))
            sh(dk + ["rm", "-f", cid], check=False)
        out["docker_T1"] = xs
    return out


def measure_events():
    r = sh([CLIENT, "-H", BERTH_SOCK, "events", "--events", "10000", "--subscribers",
            "1,10,100"], timeout=600)
    return json.loads(r.stdout)


def measure_replay():
    """A subscriber catching up: REPLAY_EVENTS stored events read back from the log."""
    r = sh([CLIENT, "-H", BERTH_SOCK, "replay", "--events", str(REPLAY_EVENTS), "--rounds", "5"],
           timeout=600)
    return json.loads(r.stdout)


# ---------------------------------------------------------------- report

def q(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round((len(s) - 1) * p)))]


def cgroup_migration_ms(samples=15):
    """Median time of moving a new process into a fresh cgroup (a write to
    cgroup.procs of the cpu hierarchy), the step every runtime pays once per
    container on cgroup v1. It is an RCU grace period (milliseconds) on most
    hosts, ~0.02 ms where favordynmods is on (mount option, or sticky for the
    boot once any hierarchy had it, Linux >= 6.x), so it is measured and
    reported with the results."""
    base = f"/sys/fs/cgroup/cpu/bench-migration-{os.getpid()}"
    if not os.path.isdir("/sys/fs/cgroup/cpu"):
        return None
    os.makedirs(base, exist_ok=True)
    xs = []
    try:
        for _ in range(samples):
            go_r, go_w = os.pipe()
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(ready_w, b"r")
                os.read(go_r, 1)
                os._exit(0)
            # Time only the write, of a child asleep in read(2): what a
            # runtime does for a freshly forked container process.
            os.read(ready_r, 1)
            time.sleep(0.005)
            fd = os.open(os.path.join(base, "cgroup.procs"), os.O_WRONLY)
            t0 = time.perf_counter()
            os.write(fd, str(pid).encode())
            xs.append((time.perf_counter() - t0) * 1000)
            os.close(fd)
            os.write(go_w, b"x")
            os.waitpid(pid, 0)
            for f in (go_r, go_w, ready_r, ready_w):
                os.close(f)
            time.sleep(0.05)
    finally:
        os.rmdir(base)
    return statistics.median(xs)


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    load = open("/proc/loadavg").read().split()[:3]
    vers = {}
    for k, args in {"crun": ["crun", "--version"], "runc": ["runc", "--version"],
                    "containerd": ["containerd", "--version"],
                    "docker": [DOCKERD, "--version"]}.items():
        r = sh(args, check=False)
        vers[k] = (r.stdout.splitlines() or [""])[0].strip()
    git = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    return {"kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(),
            "mem_gib": round(mem_kib / 2**20, 1), "loadavg_at_end": load, "versions": vers,
            "berth_commit": git, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "cgroups": "v1 (private mount namespace without /sys/fs/cgroup/unified)",
            "cgroup_migration_ms": cgroup_migration_ms(), "state_fs": state_fs()}


def state_fs():
    """The file system every tool keeps its state on (bench/run.sh)."""
    r = sh(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "--target", W], check=False)
    fstype, opts = (r.stdout.split(None, 1) + ["", ""])[:2]
    opts = opts.strip()
    journal = sh(["dumpe2fs", "-h", sh(["findmnt", "-n", "-o", "SOURCE", "--target", W],
                                        check=False).stdout.strip()], check=False)
    has_journal = "has_journal" in journal.stdout
    return f"{fstype}{' with a journal' if has_journal else ''} ({opts})"


def fmt(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def report(res):
    lc = res["lifecycle_ms"]
    med = {k: statistics.median(v) for k, v in lc.items()}
    bctl, bapi = med["berthctl run --rm"], med["berth API (resident client)"]
    bctl_m, bapi_m = med["berthctl run --rm --memory 64m"], med["berth API --memory 64m"]
    lines = []
    m = res["machine"]
    lines.append(f"Run {m['date']}, berth {m['berth_commit']}, {m['cpus']} CPUs ({m['cpu']}), "
                 f"{m['mem_gib']} GiB, Linux {m['kernel']}, {m['cgroups']}. "
                 f"{SAMPLES} samples per tool after {WARMUP} warm-up rounds, tools interleaved "
                 f"in shuffled rounds. Load average at the end: {' '.join(m['loadavg_at_end'])}."
                 f" Every tool's state on {m.get('state_fs', 'the root file system')}.")
    if m.get("cgroup_migration_ms") is not None:
        lines.append("")
        lines.append(f"Moving a process into a v1 cgroup took {m['cgroup_migration_ms']:.3f} ms "
                     "(median) on this host during the run; every tool pays it once per "
                     "container (see BENCHMARKS.md on favordynmods).")
    lines.append("")
    lines.append("### Lifecycle of a `/bin/true` container (create + start + wait + remove), ms")
    lines.append("")
    lines.append("| tool | median | p90 | min - max | berthctl / this | berth API / this |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    order = sorted(lc, key=lambda k: med[k])
    for k in order:
        v = lc[k]
        mem = "64m" in k
        a, b = (bctl_m, bapi_m) if mem else (bctl, bapi)
        lines.append(f"| {k} | {fmt(med[k])} | {fmt(q(v, .9))} | {fmt(min(v))} - {fmt(max(v))} "
                     f"| {a / med[k]:.2f} | {b / med[k]:.2f} |")
    lines.append("")
    lines.append("Rows with 64m compare against berth's 64 MiB rows, the others against "
                 "berth without a limit. A ratio below 1 means berth is faster. "
                 "CLI rows include the driver's own process spawn (the `spawn /bin/true` row).")
    ph = res.get("api_phases_ms", {})
    if ph:
        lines.append("")
        lines.append("berth API phases (median ms): " + ", ".join(
            f"{k} {fmt(v)}" for k, v in ph.items()))
    cc = res["concurrency_per_s"]
    lines.append("")
    lines.append("### 50 containers, 10 in flight (containers/s, higher is better)")
    lines.append("")
    lines.append("| tool | median | min - max | berthctl / this | berth API / this |")
    lines.append("|---|---:|---:|---:|---:|")
    cm = {k: statistics.median(v) for k, v in cc.items()}
    for k in sorted(cc, key=lambda k: -cm[k]):
        v = cc[k]
        lines.append(f"| {k} | {fmt(cm[k])} | {fmt(min(v))} - {fmt(max(v))} | "
                     f"{cm['berthctl run --rm'] / cm[k]:.2f} | "
                     f"{cm['berth API (resident client)'] / cm[k]:.2f} |")
    mem = res["memory_kib"]
    lines.append("")
    lines.append("### Memory (MiB)")
    lines.append("")
    lines.append("RSS counts every page a process maps, also the pages of its binary and "
                 "libraries that all its copies share; PSS splits shared pages among the "
                 "processes sharing them; USS is what the process alone holds (private "
                 "pages): what one more of it costs.")
    lines.append("")
    lines.append("| process | RSS | PSS | USS |")
    lines.append("|---|---:|---:|---:|")
    mib = lambda k: k / 1024  # noqa: E731
    for k in ("berthd_idle_fresh", "berthd_idle_after_load", "berthd_with_10_running",
              "containerd_idle", "dockerd_idle"):
        if k in mem:
            r, p, u = mem[k]
            lines.append(f"| {k.replace('_', ' ')} | {mib(r):.1f} | {mib(p):.1f} | {mib(u):.1f} |")
    for name, key in (("berth monitor, per running container", "berth_monitor"),
                      ("containerd-shim, per running container", "containerd_shim")):
        rs, ps, us = (mem[f"{key}_{m}_kib"] for m in ("rss", "pss", "uss"))
        if rs:
            lines.append(f"| {name} (median of {len(rs)}) | {mib(statistics.median(rs)):.2f} | "
                         f"{mib(statistics.median(ps)):.2f} | {mib(statistics.median(us)):.2f} |")
    if "berthd_idle_after_load_anon" in mem:
        lines.append("")
        lines.append(f"Of berthd's RSS, anonymous memory (heap, stacks; the rest is its code): "
                     f"{mib(mem.get('berthd_idle_fresh_anon', 0)):.1f} MiB fresh, "
                     f"{mib(mem['berthd_idle_after_load_anon']):.1f} MiB after the load.")
    st = res["stop_ms"]
    lines.append("")
    lines.append("### Stop of a TERM-ignoring container with timeout T (ms)")
    lines.append("")
    lines.append("| case | median | max | overshoot over T (median) |")
    lines.append("|---|---:|---:|---:|")
    for k, v in st.items():
        t = int(k.split("_T")[1]) * 1000
        lines.append(f"| {k.replace('_', ' ')} | {fmt(statistics.median(v))} | {fmt(max(v))} | "
                     f"{fmt(statistics.median(v) - t)} |")
    ev = res["events"]
    lines.append("")
    lines.append("### Events: 10,000 lifecycle events (Kill) to N subscribers")
    lines.append("")
    lines.append("| subscribers | events/s (per subscriber) | deliveries/s (total) | p50 latency ms "
                 "| p99 latency ms | max ms | complete | errors |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in ev.get("rounds", []):
        lines.append(f"| {r['subscribers']} | {r['events_per_second']:.0f} | "
                     f"{r['deliveries_per_second']:.0f} | {r['latency_p50_ns'] / 1e6:.2f} | "
                     f"{r['latency_p99_ns'] / 1e6:.2f} | {r['latency_max_ns'] / 1e6:.2f} | "
                     f"{r['complete_subscribers']}/{r['subscribers']} | "
                     f"{'; '.join(r['errors']) or '-'} |")
    if ev.get("error"):
        lines.append(f"\nEvents benchmark stopped early: {ev['error']}")
    rp = res.get("replay")
    if rp:
        secs = rp["replay_seconds"]
        lines.append("")
        lines.append(f"Replay: {rp['events']:,} stored events (Kill) published, then read back "
                     f"from the first of them by one subscriber filtering on the container and "
                     f"Killed, {len(secs)} rounds: median {statistics.median(secs) * 1e3:.1f} ms "
                     f"({rp['events'] / statistics.median(secs):,.0f} events/s; min - max "
                     f"{min(secs) * 1e3:.1f} - {max(secs) * 1e3:.1f} ms). The replay reads the "
                     f"event log on disk.")
    return "\n".join(lines) + "\n"


def chart(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lc = res["lifecycle_ms"]
    names = sorted(lc, key=lambda k: statistics.median(lc[k]))
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
    ax.boxplot([lc[n] for n in names], vert=False, labels=names, whis=(0, 100), widths=0.6)
    for i, n in enumerate(names, 1):
        ax.scatter(lc[n], [i + (random.random() - 0.5) * 0.3 for _ in lc[n]], s=6, alpha=0.4)
    ax.set_xscale("log")
    ax.set_xlabel("ms per container lifecycle (log scale; box = quartiles, whiskers = min/max)")
    ax.set_title(f"/bin/true container lifecycle, {SAMPLES} samples each, interleaved")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main_concurrency():
    """BENCH_ONLY=concurrency: berthctl, the API and crun at 10 in flight."""
    os.makedirs(W, exist_ok=True)
    d = Daemons()
    try:
        d.start_berthd()
        sh([BERTHCTL, "-H", BERTH_SOCK, "image", "import", os.path.join(IMG, "busybox.tar")])
        res = measure_concurrency(("berthctl run --rm", "berth API (resident client)", "crun run"))
    finally:
        d.stop_all()
    crun = statistics.median(res["crun run"])
    print(f"{CONC_TOTAL} containers per sample, 10 in flight, {CONC_ROUNDS} rounds")
    for k, v in res.items():
        print(f"{k:30} median {statistics.median(v):7.1f}/s  {statistics.median(v) / crun:.2f}x crun"
              f"  samples {' '.join(f'{x:.1f}' for x in v)}")


def main_userns():
    """BENCH_ONLY=userns: the lifecycle of `berthctl run --rm` with and without
    `--userns auto` (a user namespace and idmapped layers per container)
    beside crun, interleaved."""
    os.makedirs(W, exist_ok=True)
    d = Daemons()
    bundle = os.path.join(IMG, "bundle")
    run = [BERTHCTL, "-H", BERTH_SOCK, "run", "--rm"]
    try:
        d.start_berthd()
        sh([BERTHCTL, "-H", BERTH_SOCK, "image", "import", os.path.join(IMG, "busybox.tar")])
        res = measure_lifecycle({
            "berthctl run --rm": lambda: timed(run + ["busybox", "/bin/true"]),
            "berthctl run --rm --userns auto": lambda: timed(
                run + ["--userns", "auto", "busybox", "/bin/true"]),
            "crun run": lambda: timed(crun_args(bundle) + [Counter.next()]),
        })
    finally:
        d.stop_all()
    crun = statistics.median(res["crun run"])
    print(f"lifecycle of a /bin/true container, {SAMPLES} samples after {WARMUP} warm-ups, ms")
    for k, v in res.items():
        print(f"{k:34} median {statistics.median(v):7.2f}  p90 {q(v, 0.9):7.2f}"
              f"  {statistics.median(v) / crun:.2f}x crun")


def main():
    if ONLY == "concurrency":
        return main_concurrency()
    if ONLY == "userns":
        return main_userns()
    if ONLY == "build":
        import build
        return build.main()
    if ONLY == "exec":
        import exec as exec_bench
        return exec_bench.main()
    if ONLY:
        raise SystemExit(
            f"BENCH_ONLY={ONLY}: only 'concurrency', 'userns', 'build' and 'exec' are known")
    os.makedirs(W, exist_ok=True)
    os.makedirs(OUT, exist_ok=True)
    d = Daemons()
    res = {}
    try:
        d.start_berthd()
        time.sleep(IDLE_S)
        res_mem = {"berthd_idle_fresh": rss_kib(d.procs["berthd"].pid),
                   "berthd_idle_fresh_anon": anon_kib(d.procs["berthd"].pid)}
        sh([BERTHCTL, "-H", BERTH_SOCK, "image", "import", os.path.join(IMG, "busybox.tar")])
        d.start_containerd()
        sh(["ctr", "-a", CTRD_SOCK, "-n", CTR_NS, "image", "import",
            os.path.join(IMG, "busybox.tar")])
        if not SKIP_DOCKER:
            d.start_dockerd()
            sh([DOCKER, "-H", f"unix://{DOCKER_SOCK}", "load", "-i",
                os.path.join(IMG, "busybox.tar")])
        api, api_mem = Resident(), Resident(64 << 20)
        res["lifecycle_ms"] = measure_lifecycle(lifecycle_tools(api, api_mem))
        phases = api.phases[WARMUP:]
        res["api_phases_ms"] = {k[:-3]: statistics.median(p[k] for p in phases) / 1e6
                                for k in ("create_ns", "start_ns", "wait_ns", "remove_ns")}
        api.close()
        api_mem.close()
        res["concurrency_per_s"] = measure_concurrency()
        res["memory_kib"] = {**res_mem, **measure_memory(d)}
        res["stop_ms"] = measure_stop()
        res["events"] = measure_events()
        res["replay"] = measure_replay()
        res["machine"] = machine()
    finally:
        d.stop_all()
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = report(res)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md)
    chart(res, os.path.join(OUT, "latency.png"))
    print(md)


if __name__ == "__main__":
    main()
