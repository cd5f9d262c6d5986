#!/usr/bin/env bash
# Runs the test binaries (built on this host) inside a throwaway QEMU VM whose
# only cgroup hierarchy is cgroup v2, using ../shared/tools/vm/run-in-vm.sh.
# The development and CI hosts run cgroup v1 (hybrid); this proves v2.
#
# Usage: scripts/test-cgroup-v2.sh [test-binary-name...]
#   e.g. scripts/test-cgroup-v2.sh limits lifecycle
# Without names it runs every test binary except those in SKIP_IN_VM, which
# run on the host only:
# - fleet and rollout (TLS agents in network namespaces), pull (a registry), clients
#   (Python, Node and Go), ctl, ctl_habits and ctl_format (berthctl's output),
#   images, save and prune,
#   logs, errors and contract exercise the API, the CLI and the image and log
#   stores, whose code is the same whatever the cgroup version; under
#   software emulation (10-20x slower) they would double the VM's time and CI
#   would pass 90 minutes;
# - log_failures needs ext4 under the state directory (the VM's /tmp is tmpfs).
# - cri, cri_pods, cri_network, cri_streaming and cri_security drive the CRI front end
#   with crictl: images, streaming, and pods
#   whose containers are ordinary berth containers (made, limited and
#   re-adopted by the same code the rest covers on cgroup v2); what is the
#   CRI's own (pinned namespaces, records, the mapping) has no cgroup in it.
# - network, networks, connect, connect_first, cni and ipv6 (network
#   namespaces, veths, nftables, CNI plugins: no cgroup in any of it; bridge
#   stays, so the guest's other kernel still runs the default network), cp
#   (files in and out of a container's root), build and build_cache (their
#   RUN containers are ordinary containers, which the rest covers): together
#   about 10 of the VM's minutes, which kept CI under its 90 on 2 cores.
# `SKIP_IN_VM= scripts/test-cgroup-v2.sh` runs them all (about 80 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
SKIP_IN_VM=${SKIP_IN_VM-fleet rollout pull clients ctl ctl_habits ctl_format images save prune logs errors contract log_failures cri cri_pods cri_network cri_streaming cri_security network networks connect connect_first cni ipv6 cp build build_cache}
vm=${BERTH_VM:-$root/../shared/tools/vm/run-in-vm.sh}
[ -x "$vm" ] || { echo "test-cgroup-v2: VM harness not found at $vm" >&2; exit 1; }

# The exact test executables cargo built (unit tests of berthd, all tests/*.rs).
mapfile -t bins < <(cargo test --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and m["target"]["name"] == "berthd" \
            and not m.get("profile", {}).get("test"):
        # Where the workspace binaries are (target/<triple>/debug).
        print("bindir " + exe.rsplit("/", 1)[0])
    elif m.get("reason") == "compiler-artifact" and exe and m.get("profile", {}).get("test"):
        name = m["target"]["name"]
        if m["target"]["kind"] == ["test"] or name == "berthd":
            print(name + " " + exe)
')
bindir=
for i in "${!bins[@]}"; do
    if [[ ${bins[$i]} == "bindir "* ]]; then bindir=${bins[$i]#bindir }; unset "bins[$i]"; fi
done
bins=("${bins[@]}")
[ -n "$bindir" ] || { echo "test-cgroup-v2: cargo reported no berthd binary" >&2; exit 1; }
[ "${#bins[@]}" -gt 0 ] || { echo "test-cgroup-v2: no test binaries built" >&2; exit 1; }

script="fail=0; ran=0"
for entry in "${bins[@]}"; do
    name=${entry%% *}; exe=${entry#* }
    if [ "$#" -gt 0 ]; then
        keep=0; for f in "$@"; do [ "$name" = "$f" ] && keep=1; done
        [ "$keep" = 1 ] || continue
    else
        case " $SKIP_IN_VM " in *" $name "*) continue ;; esac
    fi
    skip=
    if [ "$name" = berthd ]; then
        # The layer writer's xattr tests set user.* xattrs in /tmp, which
        # the guest's tmpfs (Linux 6.1) does not take (tmpfs has them from
        # 6.6). They run, and must pass, on the host; here they are
        # filtered out (libtest counts them as filtered, never as passed).
        skip="--skip build::layer::tests::modes_links_devices_and_xattrs --skip build::layer::tests::user_overlay_opaque_and_xattr_whiteouts"
    fi
    script+="; echo \"=== cgroup v2: $name\"; t0=\$(date +%s); ran=\$((ran+1)); $exe --test-threads 2 $skip || fail=1"
    script+="; echo \"=== cgroup v2: $name took \$((\$(date +%s) - t0)) s\""
done
script+='; echo "cgroup v2: $ran test binaries run"; exit $fail'

# The guest's environment is clean: its PATH is the system's. The client
# tests need the interpreter the host's python3 resolves to (pyenv's, where
# pip installed grpcio), so its directory goes first.
py_dir=$(python3 -c 'import os, sys; print(os.path.dirname(sys.executable))')
guest_path="$py_dir:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The guest CPU is emulated (10-20x slower): tests scale their waits.
# Its kernel (Debian's) has project quotas, which tests/storage_opt.rs then
# must use rather than skip (this host's kernel has no CONFIG_QFMT_V2).
# Its loop driver is a module: loaded before the tests mount images.
# --share: the checkout may live where the guest shows something else (its
# /tmp is a fresh tmpfs), so mount it at the same path.
exec "$vm" --mem 4G --cpus 2 --timeout 3000 --modprobe loop --env BERTH_TEST_SLOW=10 --env BERTH_TEST_REQUIRE_PRJQUOTA=1 --share "$root" \
    --env BERTH_BIN_DIR="$bindir" --env PATH="$guest_path" --cwd / -- sh -c "$script"
