#!/usr/bin/env bash
# Builds stand-ins for the images that critest (cri-tools v1.37.0, the CRI
# validation suite) pulls, as OCI image layouts, with no registry and no
# network: the upstream images live on registry.k8s.io and gcr.io, which this
# machine cannot reach.
#
#   scripts/critest-images.sh OUT_DIR
#
# writes one OCI layout per image under OUT_DIR/layouts/<n>/ and a list,
# OUT_DIR/images.txt, of "<n> <repository path>:<tag>" lines. The repository
# path is the upstream reference without its registry host
# (registry.k8s.io/e2e-test-images/busybox:1.29-2 -> e2e-test-images/busybox:1.29-2),
# which is where both of scripts/critest.sh's ways of pointing critest at a
# local registry look: through /etc/hosts aliases of the upstream hosts, and
# through critest's --registry-prefix (which swaps the host, keeps the path).
#
# Everything is built from Debian's busybox-static (an official busybox
# image's layout: one /bin/busybox and its applets as hard links in /bin),
# plus, where a spec inspects more than "a shell that works", what that spec
# checks (pkg/validate of cri-tools v1.37.0; the image sources are in
# cri-tools' images/ directory). Layers are tar'd with fixed owners, order and
# times and gzip'd without a name or time, so every build gives the same
# digests: test-image-tags:1/2/3 must be one image (one id), while each of
# test-image-1/2/3 and test-image-tag:test/:all must be a distinct one.
#
# Not reproducible, so not built: test-image-digest pinned by its upstream
# digest (sha256:9700f9a2...); a manifest's digest is the hash of bytes that
# name upstream layer digests, so no local build can match it. critest.sh
# skips the one spec that pulls it.
set -euo pipefail

out=${1:?usage: critest-images.sh OUT_DIR}
busybox=${BUSYBOX:-/usr/bin/busybox}
[ -x "$busybox" ] || { echo "critest-images: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
# Only a static busybox runs in an image that has no libc.
if command -v readelf >/dev/null && LC_ALL=C readelf -l "$busybox" 2>/dev/null | grep -q INTERP; then
    echo "critest-images: $busybox is dynamically linked (busybox-static's is not)" >&2
    exit 1
fi

mkdir -p "$out/layouts"
work=$(mktemp -d "${TMPDIR:-/tmp}/critest-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
: >"$out/images.txt"

# --- layers -----------------------------------------------------------------

# Packs a directory into a reproducible gzip'd tar in $work/blobs, and sets
# LAYER (blob digest), DIFF (uncompressed digest), LSIZE (blob size).
pack_layer() {
    local dir=$1 tar="$work/layer.tar" top
    # No "./" entries: a bare list of the top-level names keeps paths
    # relative and without a leading "./", as docker build writes them.
    mapfile -t top < <(cd "$dir" && LC_ALL=C ls -A)
    (cd "$dir" && LC_ALL=C tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        --format=gnu -cf "$tar" -- "${top[@]}")
    DIFF=sha256:$(sha256sum <"$tar" | cut -d' ' -f1)
    gzip -n -9 -c "$tar" >"$work/layer.tgz"
    LAYER=sha256:$(sha256sum <"$work/layer.tgz" | cut -d' ' -f1)
    LSIZE=$(stat -c %s "$work/layer.tgz")
    mkdir -p "$work/blobs"
    mv "$work/layer.tgz" "$work/blobs/${LAYER#sha256:}"
    rm -f "$tar"
}

# The base: what the e2e busybox image has that the specs touch. Applets are
# hard links, not symlinks, as in the official image: MaskedPaths masks
# /bin/ls by mounting over it, which on a symlink would mask /bin/busybox
# (and with it /bin/sh) instead. One difference remains: Debian's
# busybox-static is built with FEATURE_SH_STANDALONE, so its sh runs applets
# in-process and `sh -c ls` never executes /bin/ls; the MaskedPaths spec
# (mask /bin/ls, expect `sh -c ls` to fail) cannot pass with this stand-in,
# whatever the runtime does.
base=$work/base
mkdir -p "$base"/{bin,etc,home,root,tmp,usr/bin,usr/sbin,usr/local/bin,var/run,var/www,dev,proc,sys}
chmod 1777 "$base/tmp"
chmod 700 "$base/root"
cp "$busybox" "$base/bin/busybox"
chmod 755 "$base/bin/busybox"
for applet in $("$base/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln "$base/bin/busybox" "$base/bin/$applet"
done
# Busybox's own defaults (what `FROM busybox` has): RunAsUserName's spec
# runs as "nobody", the image-user specs name www-data.
cat >"$base/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$base/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
EOF
chmod 644 "$base/etc/passwd" "$base/etc/group"
# Debian's busybox-static lacks two tools the upstream busybox image has and
# the specs run: pgrep (execSync with timeout: "pgrep sleep || true" must
# print nothing on stdout and stderr once the timed-out exec is gone) and
# ipcs (HostIpc: is the host's shared memory segment visible). These read
# the kernel's own tables, which is all those specs look at.
cat >"$base/bin/pgrep" <<'EOF'
#!/bin/sh
# pgrep stand-in (busybox-static has none): pids whose name contains $1.
st=1
for d in /proc/[0-9]*; do
    read -r name <"$d/comm" 2>/dev/null || continue
    case $name in *"$1"*) echo "${d#/proc/}"; st=0 ;; esac
done
exit $st
EOF
cat >"$base/bin/ipcs" <<'EOF'
#!/bin/sh
# ipcs stand-in (busybox-static has none): the kernel's System V IPC tables.
case ${1:-} in
    -m) cat /proc/sysvipc/shm ;;
    -q) cat /proc/sysvipc/msg ;;
    -s) cat /proc/sysvipc/sem ;;
    *) cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem ;;
esac
EOF
chmod 755 "$base/bin/pgrep" "$base/bin/ipcs"
pack_layer "$base"
BASE_LAYER=$LAYER BASE_DIFF=$DIFF BASE_SIZE=$LSIZE

# --- images -----------------------------------------------------------------

n=0
# image REF CONFIG_JSON [EXTRA_DIR]: writes an OCI layout of the base layer
# (plus EXTRA_DIR as a second layer) with CONFIG_JSON as the runtime config,
# and lists it for the push.
image() {
    local ref=$1 cfg=$2 extra=${3:-} layers diffs cfgfile cfgdig mfile mdig dir
    layers=$(jq -nc --arg d "$BASE_LAYER" --argjson s "$BASE_SIZE" \
        '[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip",digest:$d,size:$s}]')
    diffs=$(jq -nc --arg d "$BASE_DIFF" '[$d]')
    if [ -n "$extra" ]; then
        pack_layer "$extra"
        layers=$(jq -c --arg d "$LAYER" --argjson s "$LSIZE" \
            '. + [{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip",digest:$d,size:$s}]' <<<"$layers")
        diffs=$(jq -c --arg d "$DIFF" '. + [$d]' <<<"$diffs")
    fi
    cfgfile=$work/config.json
    # A fixed "created" keeps the config, and so the image id, reproducible;
    # a null in CONFIG_JSON removes a default (Cmd, for an Entrypoint).
    jq -cn --argjson c "$cfg" --argjson diffs "$diffs" \
        '{created:"2000-01-01T00:00:00Z",architecture:"amd64",os:"linux",
          config:(({Env:["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],Cmd:["sh"]} + $c)
                  | with_entries(select(.value != null))),
          rootfs:{type:"layers",diff_ids:$diffs}}' >"$cfgfile"
    cfgdig=sha256:$(sha256sum <"$cfgfile" | cut -d' ' -f1)
    cp "$cfgfile" "$work/blobs/${cfgdig#sha256:}"
    mfile=$work/manifest.json
    jq -cn --arg cd "$cfgdig" --argjson cs "$(stat -c %s "$cfgfile")" --argjson layers "$layers" \
        '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",
          config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$cd,size:$cs},
          layers:$layers}' >"$mfile"
    mdig=sha256:$(sha256sum <"$mfile" | cut -d' ' -f1)
    cp "$mfile" "$work/blobs/${mdig#sha256:}"
    n=$((n + 1))
    dir=$out/layouts/$n
    rm -rf "$dir"
    mkdir -p "$dir/blobs/sha256"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
    jq -cn --arg md "$mdig" --argjson ms "$(stat -c %s "$mfile")" \
        '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$md,size:$ms}]}' \
        >"$dir/index.json"
    local blob
    for blob in "$mdig" "$cfgdig" $(jq -r '.layers[].digest' "$mfile"); do
        # Hard links: the same base blob in every layout costs no space.
        ln -f "$work/blobs/${blob#sha256:}" "$dir/blobs/sha256/${blob#sha256:}" 2>/dev/null ||
            cp "$work/blobs/${blob#sha256:}" "$dir/blobs/sha256/${blob#sha256:}"
    done
    echo "$n $ref" >>"$out/images.txt"
}

# A fresh directory for an image's own layer.
extra_dir() {
    local d=$work/extra-$1
    rm -rf "$d"
    mkdir -p "$d"
    echo "$d"
}

# framework.DefaultLinuxContainerImage: nearly every spec's container.
image e2e-test-images/busybox:1.29-2 '{}'

# The web server stand-in for e2e-test-images/nginx (networking port
# mappings, the security context PID namespace specs) and cri-tools'
# hostnet-nginx (nginx on 12003, port-forward in the host network). What the
# specs look at: "/" answers 200; /var/run/nginx.pid holds the master's pid;
# a process named nginx (`pidof nginx`: the kernel names a script's process
# after the script's file); PID 1's command line contains "master process"
# (nginx retitles itself "nginx: master process ..."; here an argument).
nginx_dir() {
    local d port=$2
    d=$(extra_dir "$1")
    mkdir -p "$d/usr/sbin" "$d/usr/share/nginx/html" "$d/var/run" "$d/etc/nginx"
    echo '<html><body><h1>Welcome to nginx!</h1></body></html>' >"$d/usr/share/nginx/html/index.html"
    cat >"$d/usr/sbin/nginx" <<EOF
#!/bin/sh
# nginx stand-in: busybox httpd serving /usr/share/nginx/html on :$port.
echo \$\$ >/var/run/nginx.pid
httpd -f -p $port -h /usr/share/nginx/html &
child=\$!
# A shell as PID 1 of its namespace dies of no signal it has no trap for.
trap 'kill \$child 2>/dev/null; exit 0' TERM INT QUIT
wait \$child
EOF
    chmod 755 "$d/usr/sbin/nginx"
    echo "$d"
}
nginx_cfg='{"Cmd":["nginx","-g","daemon off;","master process"],"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT"}'
image e2e-test-images/nginx:1.14-2 "$nginx_cfg" "$(nginx_dir nginx 80)"
image k8s-staging-cri-tools/hostnet-nginx-amd64:latest \
    '{"Cmd":["nginx","-g","daemon off;","master process"],"ExposedPorts":{"12003/tcp":{}},"StopSignal":"SIGQUIT"}' \
    "$(nginx_dir hostnet-nginx 12003)"

# httpd (Multiple Containers): serves "/" on :80 and logs a line naming
# httpd (the spec waits for "httpd" in the container's log).
d=$(extra_dir httpd)
mkdir -p "$d/usr/local/apache2/bin" "$d/usr/local/apache2/htdocs"
echo '<html><body><h1>It works!</h1></body></html>' >"$d/usr/local/apache2/htdocs/index.html"
cat >"$d/usr/local/apache2/bin/httpd-foreground" <<'EOF'
#!/bin/sh
# httpd stand-in: busybox httpd serving /usr/local/apache2/htdocs on :80.
echo "httpd (stand-in: busybox httpd) listening on :80" >&2
httpd -f -v -p 80 -h /usr/local/apache2/htdocs &
child=$!
trap 'kill $child 2>/dev/null; exit 0' TERM INT QUIT WINCH
wait $child
EOF
chmod 755 "$d/usr/local/apache2/bin/httpd-foreground"
image e2e-test-images/httpd:2.4.39-4 \
    '{"Env":["PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["httpd-foreground"],"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGWINCH"}' \
    "$d"

# nonewprivs: a set-uid-root program printing its effective uid, run as uid
# 1000 (Kubernetes' test/images/nonewprivs, whose nnp.c this mirrors).
d=$(extra_dir nnp)
mkdir -p "$d/usr/local/bin"
cat >"$work/nnp.c" <<'EOF'
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\n", geteuid()); return 0; }
EOF
${CC:-cc} -static -Os -s -o "$d/usr/local/bin/nnp" "$work/nnp.c"
chmod 4755 "$d/usr/local/bin/nnp"
image e2e-test-images/nonewprivs:1.3 '{"Entrypoint":["/usr/local/bin/nnp"],"Cmd":null}' "$d"

# Image Manager's uid/username specs read ImageStatus's uid and username
# from the config's User (cri-tools' images/image-user).
image k8s-staging-cri-tools/test-image-user-uid:latest '{"User":"1002"}'
image k8s-staging-cri-tools/test-image-user-username:latest '{"User":"www-data"}'
image k8s-staging-cri-tools/test-image-user-uid-group:latest '{"User":"1003:1004"}'
image k8s-staging-cri-tools/test-image-user-username-group:latest '{"User":"www-data:1004"}'

# SupplementalGroupsPolicy: uid 1000 (default-user) is a member of
# group-defined-in-image (50000) in the image's /etc/group
# (images/image-predefined-group: adduser, addgroup, USER 1000).
d=$(extra_dir predefined-group)
mkdir -p "$d/etc" "$d/home/default-user"
cp "$base/etc/passwd" "$base/etc/group" "$d/etc/"
echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' >>"$d/etc/passwd"
printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >>"$d/etc/group"
image k8s-staging-cri-tools/test-image-predefined-group:latest '{"User":"1000"}' "$d"

# cri-tools' images/image-test: busybox plus one empty file named after the
# image (or the tag), so that each is a distinct image...
for name in test-image-1 test-image-2 test-image-3 test-image-latest test-image-digest; do
    d=$(extra_dir "$name")
    : >"$d/$name"
    image "k8s-staging-cri-tools/$name:latest" '{}' "$d"
done
for tag in test all; do
    d=$(extra_dir "tag-$tag")
    : >"$d/$tag"
    image "k8s-staging-cri-tools/test-image-tag:$tag" '{}' "$d"
done
# ...except test-image-tags, whose three tags are one image.
for tag in 1 2 3; do
    d=$(extra_dir same-image)
    : >"$d/same-image"
    image "k8s-staging-cri-tools/test-image-tags:$tag" '{}' "$d"
done

# registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 (one image from "two
# registries"; a container of it runs with the image's own entrypoint).
d=$(extra_dir pause)
cat >"$d/pause" <<'EOF'
#!/bin/sh
# pause stand-in: sleeps until told to stop.
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
EOF
chmod 755 "$d/pause"
image pause:3.9 '{"Entrypoint":["/pause"],"Cmd":null}' "$d"

echo "critest-images: $n images in $out/layouts (list: $out/images.txt)"
