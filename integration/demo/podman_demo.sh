#!/usr/bin/env bash
# podman_demo.sh CRYO: Podman runs a busybox container that counts, with cryo as its
# OCI runtime; `podman container checkpoint` stops it into an image and `podman
# container restore` brings it back: the count goes on in `podman logs`. No criu
# binary is needed anywhere: Podman asks `criu` (found in PATH) for its version, and
# cryo answers as CRIU.
#
#   make demo        (or: integration/demo/podman_demo.sh build/runtime/cryo)
#
# Podman's store, cryo's state and the image live in a temp dir (DEMO_TMP, default
# /tmp): the host's own containers are left alone. Exits non-zero if the counter did
# not come back as it should.
set -euo pipefail

CRYO=${1:?usage: podman_demo.sh path/to/cryo}
CRYO=$(readlink -f "$CRYO")

[ -x "$CRYO" ] || { echo "podman_demo: $CRYO is not built" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "podman_demo: run as root" >&2; exit 1; }
command -v podman >/dev/null || { echo "podman_demo: podman is not installed (make deps)" >&2; exit 1; }
BUSYBOX=$(command -v busybox || echo /bin/busybox)
[ -x "$BUSYBOX" ] || { echo "podman_demo: busybox-static is not installed (make deps)" >&2; exit 1; }

work=$(mktemp -d "${DEMO_TMP:-/tmp}/cryo-podman-demo.XXXXXX")
cgroup_parent=/cryo-demo-podman
made_var_lib=
[ -e /var/lib/containers ] || made_var_lib=1

bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }

# cryo is the runtime (its state under $work) and, by the name criu in PATH, the CRIU.
mkdir -p "$work/bin"
printf '#!/bin/sh\nexec %s --root %s "$@"\n' "$CRYO" "$work/cryo-state" > "$work/bin/cryo-runtime"
chmod 755 "$work/bin/cryo-runtime"
ln -s "$CRYO" "$work/bin/criu"
export PATH="$work/bin:$PATH"
# This host's root lacks CAP_SYS_RESOURCE: Podman's default nofile/nproc limits cannot be set.
cat > "$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$work/containers.conf"
podman=(podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/ptmp" --storage-driver vfs
        --runtime "$work/bin/cryo-runtime" --cgroup-manager cgroupfs)
pm() { printf '%s$ podman %s%s\n' "$bold" "$*" "$plain"; "${podman[@]}" "$@"; }  # shown, short

cleanup() {
  "${podman[@]}" rm --all --force >/dev/null 2>&1 || true
  # Mounts podman left under the work dir, innermost first.
  awk -v w="$work" '$2 ~ "^" w { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
  # conmon's cgroup empties a moment after the container's.
  local deadline=$((SECONDS + 10)) base dir
  for base in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    dir="$base${cgroup_parent#/}"
    while [ -d "$dir" ]; do
      find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      { [ -d "$dir" ] && [ "$SECONDS" -lt "$deadline" ]; } || break
      sleep 0.2
    done
  done
  [ -z "$made_var_lib" ] || rm -rf /var/lib/containers
  rm -rf "$work"
}
trap cleanup EXIT

last_count() { "${podman[@]}" logs counter 2>/dev/null | sed -n 's/^Count: //p' | tail -n 1; }
wait_count() {  # until the log's last count is at least $1
  local deadline=$((SECONDS + 30))
  until [ "$(last_count)" -ge "$1" ] 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the count stayed at $(last_count), want $1"
    sleep 0.2
  done
}

say "A busybox image in Podman's store (a rootfs of busybox-static and its applets)"
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp "$BUSYBOX" "$work/rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
done
echo "root:x:0:0:root:/:/bin/sh" > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
pm import -q "$work/rootfs.tar" localhost/cryo-demo-busybox >/dev/null

say "Run a counter in it, cryo as the runtime"
pm run -d --name counter --network none --cgroup-parent "$cgroup_parent" localhost/cryo-demo-busybox \
  sh -c 'i=0; while :; do i=$((i+1)); echo "Count: $i"; sleep 1; done'
wait_count 3
"${podman[@]}" logs counter | sed 's/^/    /'

say "Checkpoint it: the container stops, its state goes into an image"
pm container checkpoint counter
stopped_at=$(last_count)
echo "    $("${podman[@]}" ps -a --format '{{.Names}} {{.Status}}')"
echo "    the log stopped at Count: $stopped_at"
sleep 2.5
[ "$(last_count)" = "$stopped_at" ] || fail "the count moved while the container was checkpointed"
echo "    2.5 s later: still Count: $stopped_at"

say "Restore it"
pm container restore counter
wait_count $((stopped_at + 2))
"${podman[@]}" logs counter | tail -n 4 | sed 's/^/    /'
# One log, before and after: 1, 2, 3... without a gap or a new start.
counts=$("${podman[@]}" logs counter | sed -n 's/^Count: //p' | tr '\n' ' ')
echo "$counts" | awk '{ for (i = 1; i <= NF; i++) if ($i != i) exit 1 }' ||
  fail "the counts are not 1, 2, 3... across the restore: $counts"
after=$((stopped_at + 1))
echo "    $("${podman[@]}" ps --format '{{.Names}} {{.Status}}')"

say "Demo OK: Podman checkpointed the container at Count: $stopped_at and restored it; it went on with $after"
