#!/usr/bin/python3
"""Summarises `strace -f -tt -T` output of berthd running container lifecycles.

Every process is given a role from what it executed or how it was made:
  berthd    the agent's threads
  monitor   `berth-monitor __monitor` (started by berthd)
  init      the container's init before it execs the command
  container the command itself (/bin/true)

Prints, per role, the syscalls ranked by total time spent in them (wall time,
includes blocking: fsync, rmdir of a cgroup, mount), and the timeline of the
last complete lifecycle (Create RPC to Remove reply), relative milliseconds.

Usage: strace_summary.py STRACE_FILE [N_SAMPLES]
"""

import collections
import re
import sys

LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):(\d+\.\d+) (.*)$")
CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\w+)(.*?)<(\d+\.\d+)>$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(-?\w+)(.*?)<(\d+\.\d+)>$")
UNFINISHED = re.compile(r"^(\w+)\((.*) <unfinished \.\.\.>$")


def main():
    path = sys.argv[1]
    n_samples = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    pending = {}
    events = []  # (t, pid, name, args, ret, dur)
    first_pid = None
    for raw in open(path, errors="replace"):
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid = int(m.group(1))
        t = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
        rest = m.group(5)
        if first_pid is None:
            first_pid = pid
        u = UNFINISHED.match(rest)
        if u:
            pending[pid] = (t, u.group(1), u.group(2))
            continue
        r = RESUMED.match(rest)
        if r:
            t0, name, args = pending.pop(pid, (t, r.group(1), ""))
            args += r.group(2)
            ret, dur = r.group(3), float(r.group(5))
            events.append((t0, pid, name, args, ret, dur))
            continue
        c = CALL.match(rest)
        if c:
            events.append((t, pid, c.group(1), c.group(2), c.group(3), float(c.group(5))))
    events.sort(key=lambda e: e[0])
    # Roles, as of each call: a clone's child inherits its parent's role; the
    # monitor's child becomes "init" at its first unshare of a mount
    # namespace and "container" once it has exec'd the command.
    role = {}
    ev_role = []
    for t, pid, name, args, ret, dur in events:
        role.setdefault(pid, "berthd")
        if name == "execve" and ret == "0":
            if "__monitor" in args:
                role[pid] = "monitor"
            elif role[pid] == "init":
                role[pid] = "container"
        if name == "unshare" and "CLONE_NEWNS" in args and role[pid] == "monitor":
            role[pid] = "init"
        ev_role.append(role[pid])
        if name in ("clone", "clone3", "fork", "vfork") and ret.isdigit():
            role[int(ret)] = role[pid]
    events = [e + (r,) for e, r in zip(events, ev_role)]

    totals = collections.defaultdict(lambda: [0.0, 0])
    for t, pid, name, args, ret, dur, r in events:
        if name in ("futex", "epoll_wait", "poll", "ppoll", "wait4", "read", "recvfrom", "recvmsg",
                    "rt_sigtimedwait", "restart_syscall", "clock_nanosleep", "nanosleep"):
            # Idle waits: counted separately, not as work.
            key = (r, name + " (waiting)")
        else:
            key = (r, name)
        totals[key][0] += dur
        totals[key][1] += 1
    print(f"syscall time per lifecycle (ms, averaged over {n_samples} samples), by role")
    by_role = collections.defaultdict(list)
    for (r, name), (s, n) in totals.items():
        by_role[r].append((s, n, name))
    for r in ("berthd", "monitor", "init", "container"):
        rows = sorted(by_role.get(r, []), reverse=True)
        work = sum(s for s, n, name in rows if "(waiting)" not in name)
        print(f"\n== {r}: {1000 * work / n_samples:.2f} ms in non-waiting syscalls per lifecycle")
        for s, n, name in rows[:14]:
            print(f"  {name:32s} {1000 * s / n_samples:8.3f} ms  {n / n_samples:6.1f} calls")

    # Timeline of the last lifecycle: from the last mkdir of a container dir.
    key_calls = ("mkdir", "fsync", "fdatasync", "rename", "mount", "umount2", "rmdir", "unshare",
                 "clone", "clone3", "fork", "vfork", "execve", "pivot_root", "exit_group",
                 "pidfd_open", "unlinkat", "openat", "write", "kill", "wait4", "setsid",
                 "sethostname")
    starts = [i for i, e in enumerate(events)
              if e[2] == "mkdir" and re.search(r'/containers/[0-9a-f]{64}"', e[3])]
    if not starts:
        return
    i0 = starts[-1]
    t0 = events[i0][0]
    print("\ntimeline of the last lifecycle (ms since the container dir was made; "
          "duration in brackets)")
    for t, pid, name, args, ret, dur, r in events[i0:]:
        if name not in key_calls:
            continue
        if name in ("openat", "write") and not any(
                s in args for s in ("cgroup", ".json", "exit", "launch", "memory.", "/proc/self")):
            continue
        a = args if len(args) < 110 else args[:107] + "..."
        print(f"  {1000 * (t - t0):8.3f} [{1000 * dur:7.3f}] {r:9s} "
              f"{name}({a}) = {ret}")
        if name == "unlinkat" and "rmdir" not in args and "AT_REMOVEDIR" in args \
                and r == "berthd" and re.search(r'[0-9a-f]{64}"', args):
            break


if __name__ == "__main__":
    main()
