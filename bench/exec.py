"""BENCH_ONLY=exec: issue 20's measures, each tool beside the others in one
run, samples interleaved in shuffled rounds.

1. exec latency: `/bin/true` exec'd into a running `sleep` container by
   `berthctl exec`, `crun exec`, `runc exec` and `docker exec` (crun only
   when installed);
2. TTY throughput: 100 MiB of zeros written by `head` through `run -t`
   (`berthctl run --rm -t`, `docker run --rm -t`), read by this script from
   the master of a pty it owns, so both clients see a real terminal;
3. stats cost: the daemon side's CPU time (berthd; dockerd, containerd and
   the shims, which read the cgroups for Docker) while one live `stats`
   client streams the usage of 10 running containers for 10 s (`berthctl
   stats`, `docker stats`), per container per second. The sleep between
   the CPU readings is the measuring window, not a wait for a condition.

Prints a table of medians and ratios to berth; writes nothing.
"""

import json
import os
import pty
import random
import shutil
import statistics
import subprocess
import time

import bench as b

TTY_BYTES = 100 << 20
STATS_CONTAINERS = 10
STATS_SECONDS = 10


def sleeping_bundle():
    """The bench's busybox bundle, running `sleep` instead of /bin/true."""
    src = os.path.join(b.IMG, "bundle")
    dst = os.path.join(b.W, "bundle-sleep")
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["/bin/sleep", "1000000"]
    root = cfg["root"]["path"]
    if not os.path.isabs(root):
        cfg["root"]["path"] = os.path.join(src, root)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f)
    return dst


def through_pty(args):
    """Runs `args` with a pty of ours as its terminal; returns (ms, bytes read)."""
    master, slave = pty.openpty()
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    n = 0
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        n += len(chunk)
    p.wait()
    t1 = time.perf_counter_ns()
    os.close(master)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}")
    return (t1 - t0) / 1e6, n


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def docker_side():
    """dockerd, containerd and the shims: Docker's stats go through all three."""
    return b.pids_matching(lambda argv: bool(argv) and os.path.basename(argv[0]) in (
        "dockerd", "containerd", "containerd-shim-runc-v2"))


def stats_cost(pids, client):
    """CPU ms of the daemon side (`pids()`) per container per second while
    `client` streams."""
    def used():
        total = 0.0
        for pid in pids():
            try:
                total += cpu_s(pid)
            except OSError:
                pass
        return total
    before = used()
    p = subprocess.Popen(client, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(STATS_SECONDS)
    p.kill()
    p.wait()
    return (used() - before) / (STATS_CONTAINERS * STATS_SECONDS) * 1e3


def main():
    os.makedirs(b.W, exist_ok=True)
    d = b.Daemons()
    ctl = [b.BERTHCTL, "-H", b.BERTH_SOCK]
    docker = [b.DOCKER, "-H", f"unix://{b.DOCKER_SOCK}"]
    runtimes = [r for r in ("crun", "runc") if shutil.which(r)]
    started = []  # (runtime, id) to delete at the end
    try:
        d.start_berthd()
        b.sh(ctl + ["image", "import", os.path.join(b.IMG, "busybox.tar")])
        b.sh(ctl + ["run", "-d", "--name", "xc", "busybox", "sleep", "1000000"])
        execs = {"berthctl exec": ctl + ["exec", "xc", "/bin/true"]}
        bundle = sleeping_bundle()
        for rt in runtimes:
            root = os.path.join(b.W, rt)
            # Detached: the container keeps whatever stdio it is given, so
            # /dev/null rather than pipes that would never reach EOF.
            subprocess.run([rt, "--root", root, "run", "-d", "--bundle", bundle, f"x-{rt}"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            started.append((rt, root, f"x-{rt}"))
            execs[f"{rt} exec"] = [rt, "--root", root, "exec", f"x-{rt}", "/bin/true"]
        if not b.SKIP_DOCKER:
            d.start_containerd()
            d.start_dockerd()
            b.sh(docker + ["load", "-i", os.path.join(b.IMG, "busybox.tar")])
            b.sh(docker + ["run", "-d", "--network", "none", "--name", "xc", "busybox",
                           "sleep", "1000000"])
            execs["docker exec"] = docker + ["exec", "xc", "/bin/true"]

        lat = {name: [] for name in execs}
        for r in range(b.WARMUP + b.SAMPLES):
            order = list(execs.items())
            random.shuffle(order)
            for name, args in order:
                ms = b.timed(args)
                if r >= b.WARMUP:
                    lat[name].append(ms)

        head = ["head", "-c", str(TTY_BYTES), "/dev/zero"]
        ttys = {"berthctl run -t": ctl + ["run", "--rm", "-t", "busybox"] + head}
        if not b.SKIP_DOCKER:
            ttys["docker run -t"] = docker + ["run", "--rm", "-t", "--network", "none",
                                              "busybox"] + head
        thr = {name: [] for name in ttys}
        for r in range(1 + max(3, b.SAMPLES // 8)):
            order = list(ttys.items())
            random.shuffle(order)
            for name, args in order:
                ms, n = through_pty(args)
                if n < TTY_BYTES:
                    raise RuntimeError(f"{name}: {n} of {TTY_BYTES} bytes came through")
                if r >= 1:
                    thr[name].append(TTY_BYTES / (1 << 20) / (ms / 1e3))

        # The exec containers are the first of each daemon's ten.
        for i in range(STATS_CONTAINERS - 1):
            b.sh(ctl + ["run", "-d", "busybox", "sleep", "1000000"])
            if not b.SKIP_DOCKER:
                b.sh(docker + ["run", "-d", "--network", "none", "busybox", "sleep", "1000000"])
        cost = {"berthctl stats": [], "docker stats": []} if not b.SKIP_DOCKER else {
            "berthctl stats": []}
        for _ in range(3):
            berthd = d.procs["berthd"].pid
            cost["berthctl stats"].append(stats_cost(lambda: [berthd], ctl + ["stats"]))
            if not b.SKIP_DOCKER:
                cost["docker stats"].append(stats_cost(docker_side, docker + ["stats"]))
    finally:
        for rt, root, cid in started:
            b.sh([rt, "--root", root, "kill", cid, "KILL"], check=False)
            for _ in range(50):
                if b.sh([rt, "--root", root, "delete", cid], check=False).returncode == 0:
                    break
                time.sleep(0.1)
        d.stop_all()

    base = statistics.median(lat["berthctl exec"])
    print(f"exec /bin/true into a running container, {b.SAMPLES} samples each after "
          f"{b.WARMUP} warm-ups, ms (ratio: the tool's median / berth's)")
    for name, v in lat.items():
        m = statistics.median(v)
        print(f"  {name:16} median {m:7.1f} p90 {b.q(v, 0.9):7.1f}  ({m / base:5.2f}x)")
    base = statistics.median(thr["berthctl run -t"])
    print(f"TTY throughput, {TTY_BYTES >> 20} MiB through run -t, MiB/s (ratio: berth's / the tool's)")
    for name, v in thr.items():
        m = statistics.median(v)
        print(f"  {name:16} median {m:7.1f}  ({base / m:5.2f}x)")
    base = statistics.median(cost["berthctl stats"])
    print(f"stats: the daemon's CPU per container per second of a live stats stream, "
          f"{STATS_CONTAINERS} containers, {STATS_SECONDS} s, ms (ratio: the tool's / berth's)")
    for name, v in cost.items():
        m = statistics.median(v)
        print(f"  {name:16} median {m:7.3f}  ({m / base:5.2f}x)")
