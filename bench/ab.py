#!/usr/bin/env python3
"""A/B of two builds of berth, side by side in one run.

    bench/ab.py DIR_A DIR_B [ROUNDS]     # as root

DIR_A and DIR_B each hold a release `berthd`, `berthctl` and `berth-bench`
(copy them out of target/x86_64-unknown-linux-gnu/release/ after each build).
Both berthd run at once, their state on one journaled ext4 made for the run
(a loop image, unmounted at the end), each under a cgroup parent of its own.
Each round, in alternating order: 100 API containers at 10 in flight
(`berth-bench concurrent`), then 20 API lifecycles (`berth-bench lifecycle`)
interleaved with 20 `berthctl run --rm`. The first round is warm-up. Prints
medians per build and each berthd's RSS 7 s after the last round.

A single change is smaller than the host's drift over minutes: only the
interleaving makes two builds comparable, so compare within one run.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, **kw):
    return subprocess.run(args, check=True, **kw)


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    dirs = {"A": os.path.abspath(sys.argv[1]), "B": os.path.abspath(sys.argv[2])}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    work = tempfile.mkdtemp(prefix="berth-ab.", dir="/var/tmp")
    img, fs = os.path.join(work, "fs.img"), os.path.join(work, "fs")
    os.makedirs(fs)
    run(["/usr/bin/python3", os.path.join(REPO, "bench/mkimage.py"), os.path.join(work, "image")],
        stdout=subprocess.DEVNULL)
    run(["truncate", "-s", "4G", img])
    run(["mkfs.ext4", "-q", "-F", img])
    run(["mount", "-o", "loop", img, fs])
    procs = {}
    try:
        for n, d in dirs.items():
            sock = os.path.join(fs, f"{n}.sock")
            procs[n] = subprocess.Popen([f"{d}/berthd", "--socket", sock,
                                         "--state-dir", os.path.join(fs, n),
                                         "--cgroup-parent", f"berth-ab-{n}-{os.getpid()}",
                                         "--log", "warn", "--auto-pull=false"],
                                        # Only lo, as before the bridge was
                                        # the default; by the environment,
                                        # which older builds ignore.
                                        env={**os.environ, "BERTHD_DEFAULT_NETWORK": "none"})
        for n, d in dirs.items():
            sock = os.path.join(fs, f"{n}.sock")
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            run([f"{d}/berthctl", "-H", sock, "image", "import",
                 os.path.join(work, "image", "busybox.tar")], stdout=subprocess.DEVNULL)
        res = {n: {"conc": [], "api": [], "ctl": []} for n in dirs}
        for r in range(rounds + 1):
            for n in (["A", "B"] if r % 2 == 0 else ["B", "A"]):
                d, sock = dirs[n], os.path.join(fs, f"{n}.sock")
                conc = json.loads(run([f"{d}/berth-bench", "-H", sock, "concurrent", "--total",
                                       "100", "--inflight", "10"],
                                      capture_output=True, text=True).stdout)
                lc = subprocess.Popen([f"{d}/berth-bench", "-H", sock, "lifecycle"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      bufsize=1)
                lc.stdout.readline()
                api, ctl = [], []
                for _ in range(20):
                    lc.stdin.write("go\n")
                    lc.stdin.flush()
                    api.append(json.loads(lc.stdout.readline())["total_ns"] / 1e6)
                    t = time.perf_counter()
                    run([f"{d}/berthctl", "-H", sock, "run", "--rm", "busybox", "/bin/true"])
                    ctl.append((time.perf_counter() - t) * 1e3)
                lc.stdin.close()
                lc.wait()
                if r > 0:
                    res[n]["conc"].append(conc["per_second"])
                    res[n]["api"] += api
                    res[n]["ctl"] += ctl
            print(f"round {r + 1}/{rounds + 1}", file=sys.stderr)
        time.sleep(7)
        for n, d in dirs.items():
            with open(f"/proc/{procs[n].pid}/smaps_rollup") as f:
                mem = {l.split(":")[0]: int(l.split()[1]) for l in f if l[0].isupper()}
            v = res[n]
            print(f"{n} {d}: {statistics.median(v['conc']):.1f} containers/s "
                  f"({' '.join(f'{x:.0f}' for x in v['conc'])}), "
                  f"API lifecycle {statistics.median(v['api']):.2f} ms, "
                  f"berthctl run --rm {statistics.median(v['ctl']):.2f} ms, "
                  f"RSS {mem['Rss'] / 1024:.1f} MiB ({mem['Anonymous'] / 1024:.1f} anonymous)")
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()
        # berthd keeps its cgroup parent when it stops (as dockerd does).
        for n in dirs:
            cg = f"berth-ab-{n}-{os.getpid()}"
            for top in ["/sys/fs/cgroup"] + [os.path.join("/sys/fs/cgroup", h)
                                             for h in os.listdir("/sys/fs/cgroup")]:
                d = os.path.join(top, cg)
                if os.path.isdir(d):
                    subprocess.run(["find", d, "-depth", "-type", "d", "-exec", "rmdir", "{}", "+"],
                                   stderr=subprocess.DEVNULL)
        subprocess.run(["umount", fs])
        subprocess.run(["rm", "-rf", "--one-file-system", work])


if __name__ == "__main__":
    main()
