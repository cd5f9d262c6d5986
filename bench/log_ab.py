#!/usr/bin/env python3
"""A/B of the log path of two builds of berthd, side by side in one run.

    bench/log_ab.py DIR_A DIR_B [ROUNDS [LINES]]    # as root; 6, 3000000

DIR_A and DIR_B each hold a `berthd` (its monitor is embedded, and always
built in release by agent/build.rs, so debug builds of berthd measure the
monitor's real code). Both run at once on state directories of their own
under /var/tmp, `--log-max-bytes` 1 GiB (no rotation), no network. Each
round, in alternating order, each runs a container writing LINES lines of
49 bytes to stdout, which its monitor writes to the container's log; timed
from `berthctl run -d` to the end of `berthctl wait`. The first round is
warm-up. Prints the median per build and B/A. berthctl is this tree's
debug one (or $BERTHCTL).
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CTL = os.environ.get("BERTHCTL", f"{REPO}/target/x86_64-unknown-linux-gnu/debug/berthctl")
builds = {"A": sys.argv[1], "B": sys.argv[2]}
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
lines = int(sys.argv[4]) if len(sys.argv) > 4 else 3_000_000
work = tempfile.mkdtemp(prefix="berth-logab.", dir="/var/tmp")
subprocess.run(["python3", f"{REPO}/bench/mkimage.py", f"{work}/image"], check=True, stdout=subprocess.DEVNULL)
procs = {}
try:
    for k, d in builds.items():
        sock = f"{work}/{k}.sock"
        procs[k] = (subprocess.Popen([f"{d}/berthd", "--socket", sock, "--state-dir", f"{work}/{k}-state",
            "--cgroup-parent", f"berth-logab-{k}-{os.getpid()}", "--log", "warn", "--auto-pull=false",
            "--default-network", "none", "--log-max-bytes", str(1 << 30)]), sock)
    for k, (p, sock) in procs.items():
        for _ in range(400):
            if os.path.exists(sock): break
            time.sleep(0.05)
        subprocess.run([CTL, "-H", sock, "image", "import", f"{work}/image/busybox.tar"], check=True, stdout=subprocess.DEVNULL)
    times = {"A": [], "B": []}
    for r in range(rounds):
        order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
        for k in order:
            sock = procs[k][1]
            name = f"c{r}"
            t0 = time.monotonic()
            subprocess.run([CTL, "-H", sock, "run", "-d", "--name", name, "busybox", "--", "sh", "-c",
                f"yes 0123456789012345678901234567890123456789abcdef | head -n {lines}"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run([CTL, "-H", sock, "wait", name], check=True, stdout=subprocess.DEVNULL)
            dt = time.monotonic() - t0
            subprocess.run([CTL, "-H", sock, "rm", "-f", name], check=True, stdout=subprocess.DEVNULL)
            if r > 0: times[k].append(dt)
    for k in "AB":
        t = times[k]
        print(f"{k}: median {statistics.median(t):.3f} s over {len(t)} runs ({lines} lines, {lines*49/1e6:.0f} MB + headers): {[round(x,3) for x in t]}")
    a, b = statistics.median(times["A"]), statistics.median(times["B"])
    print(f"B/A = {b/a:.3f}")
finally:
    for k, (p, sock) in procs.items():
        p.send_signal(signal.SIGTERM)
        try: p.wait(20)
        except Exception: p.kill()
    for k in builds:
        for base in ["/sys/fs/cgroup"] + [f"/sys/fs/cgroup/{c}" for c in os.listdir("/sys/fs/cgroup")]:
            d = f"{base}/berth-logab-{k}-{os.getpid()}"
            if os.path.isdir(d):
                subprocess.run(["find", d, "-depth", "-type", "d", "-exec", "rmdir", "{}", "+"], stderr=subprocess.DEVNULL)
    shutil.rmtree(work, ignore_errors=True)
