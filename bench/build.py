"""BENCH_ONLY=build: `berthctl build` next to `docker build` (the classic
builder and BuildKit, as Debian's docker.io has them), in one run.

A 10-instruction Dockerfile on the busybox image every tool has: two COPYs,
three RUNs, ENV, WORKDIR, CMD. Two measures per tool, interleaved in
shuffled rounds: a build from scratch (--no-cache) and the no-change rebuild
right after it (every step from the cache). RUN steps have no network in
every tool (berth's default; `--network none` for Docker). Prints a table of
medians and ratios to berth; writes nothing.
"""

import os
import random
import statistics

import bench as b

DOCKERFILE = """FROM busybox
ENV APP=/app
WORKDIR /app
COPY a.txt /app/a.txt
RUN echo one > /one
COPY dir/ /app/dir/
RUN cat /app/a.txt > /copy
ENV MODE=bench
RUN mkdir -p /data && echo two > /data/two
CMD ["cat", "/copy"]
"""


def context(root):
    os.makedirs(os.path.join(root, "dir", "sub"), exist_ok=True)
    with open(os.path.join(root, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    with open(os.path.join(root, "a.txt"), "w") as f:
        f.write("a\n" * 1000)
    for i in range(20):
        with open(os.path.join(root, "dir", "sub", f"f{i}"), "w") as f:
            f.write(f"{i}\n" * 100)
    return root


def main():
    os.makedirs(b.W, exist_ok=True)
    ctx = context(os.path.join(b.W, "build-context"))
    d = b.Daemons()
    berth = [b.BERTHCTL, "-H", b.BERTH_SOCK, "build", "-q", "-t", "bench-build"]
    tools = {
        "berthctl build": lambda cache: berth + ([] if cache else ["--no-cache"]) + [ctx],
    }
    try:
        d.start_berthd()
        b.sh([b.BERTHCTL, "-H", b.BERTH_SOCK, "image", "import",
              os.path.join(b.IMG, "busybox.tar")])
        if not b.SKIP_DOCKER:
            d.start_containerd()
            d.start_dockerd()
            docker = [b.DOCKER, "-H", f"unix://{b.DOCKER_SOCK}"]
            b.sh(docker + ["load", "-i", os.path.join(b.IMG, "busybox.tar")])
            build = docker + ["build", "-q", "--network", "none", "-t", "bench-build"]
            for name, kit in (("docker build (classic)", "0"), ("docker build (BuildKit)", "1")):
                os.environ["DOCKER_BUILDKIT"] = kit
                # BuildKit in docker.io 20.10 works without network only
                # if its Dockerfile frontend is built in: checked here once.
                if b.sh(build + [ctx], check=False).returncode == 0:
                    tools[name] = (lambda kit: lambda cache: (
                        ["env", f"DOCKER_BUILDKIT={kit}"] + build
                        + ([] if cache else ["--no-cache"]) + [ctx]))(kit)
                else:
                    b.log(f"{name} does not build here; left out")
            os.environ.pop("DOCKER_BUILDKIT", None)
        res = {name: {"cold": [], "rebuild": []} for name in tools}
        samples = max(5, b.SAMPLES // 4)
        for r in range(b.WARMUP // 2 + samples):
            order = list(tools.items())
            random.shuffle(order)
            for name, args in order:
                cold = b.timed(args(False))
                warm = b.timed(args(True))
                if r >= b.WARMUP // 2:
                    res[name]["cold"].append(cold)
                    res[name]["rebuild"].append(warm)
    finally:
        d.stop_all()
    base = res["berthctl build"]
    print(f"10-instruction build, {samples} samples each after {b.WARMUP // 2} warm-ups, ms "
          "(ratio: the tool's median / berth's)")
    for name, v in res.items():
        cold, warm = statistics.median(v["cold"]), statistics.median(v["rebuild"])
        print(f"{name:26} build {cold:8.1f} ({cold / statistics.median(base['cold']):5.2f}x)"
              f"   no-change rebuild {warm:8.1f} ({warm / statistics.median(base['rebuild']):5.2f}x)")
