#!/usr/bin/python3
"""Timeline of the last container lifecycle in `perf trace -T` output.

`perf trace` (kernel tracepoints, far less overhead than strace) is run with
only the syscalls that mark the steps of a start (and `write`, which the
resident client uses to print each lifecycle's result); this prints them for
the last lifecycle, relative to the end of the one before, with the role of
each process:
  berthd     the agent's threads (tokio-rt-worker, netns-pool)
  monitor    berth-monitor before it forks the init
  init       the container's init (berth-monitor's child) until it execs
  container  the command itself
  client     the resident API client (berth-bench)

Usage: trace_timeline.py PERF_TRACE_FILE
"""

import re
import sys

CALL = re.compile(r"^\s*([\d.]+) \(\s*([\d.]*) ?ms\): (\S+?)/(\d+) (\w+)\((.*)$")
SCHED = re.compile(r"^\s*([\d.]+) \(\s*\): (\S+?)/(\d+) sched:(\w+)\((.*)\)$")


def main():
    events = []
    for line in open(sys.argv[1], errors="replace"):
        m = CALL.match(line)
        if m:
            t, d, comm, pid, name, rest = m.groups()
            events.append((float(t), float(d or 0), comm, int(pid), name, rest))
            continue
        m = SCHED.match(line)
        if m:
            t, comm, pid, name, rest = m.groups()
            events.append((float(t), 0.0, comm, int(pid), name, rest))
    events.sort()
    # The resident client prints one line per lifecycle on its stdout: two
    # such writes frame the last lifecycle.
    marks = [e[0] for e in events
             if e[2].startswith("berth-bench") and e[4] == "write" and e[5].startswith("fd: 1,")]
    if len(marks) < 2:
        sys.exit("trace_timeline: fewer than two lifecycles in the trace")
    t0, t1 = marks[-2], marks[-1]
    role = {}
    for t, d, comm, pid, name, rest in events:
        if comm.startswith("berth-bench"):
            role[pid] = "client"
        elif comm.startswith(("tokio", "netns-pool", "berthd")):
            role.setdefault(pid, "berthd")
        if comm == "berth-monitor" and role.get(pid, "berthd") == "berthd":
            role[pid] = "monitor"
        if name == "clone" and role.get(pid) == "monitor":
            child = re.search(r"= (\d+)", rest)
            if child:
                role[int(child.group(1))] = "init"
        if comm == "true":
            role[pid] = "container"
        if t < t0 or t > t1:
            continue
        r = role.get(pid, comm)
        print(f"{t - t0:8.3f} ms  [{d:6.3f}] {r:9s} {name}({rest[:90]}")


if __name__ == "__main__":
    main()
