#!/bin/sh
# bench/podstart: API create -> Running of pods on one Ferry node beside `runc run -d`
# and `crun run -d` of the same image, in one run (root).
#   bench/podstart/run.sh BUILD_DIR [PODS]
#   (STREAM_PODS, default 5 x PODS, and STREAM_RATE, default 50 pods/s: the sustained phase)
# Builds the static-busybox OCI image (tests/images/make-busybox-oci), unpacks its one
# layer as the rootfs of PODS runc/crun bundles (`sleep 3600`, new pid/net/ipc/uts/mount
# namespaces, 64 MiB memory limit, cgroup /ferry-bench-podstart/c<i>), and runs
# podstart_bench, which times all three.
set -eu
BUILD=$(cd "${1:?build dir}" && pwd)
PODS=${2:-100}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/ferry-bench-podstart-XXXXXX)
trap 'rm -rf "$WORK"; for h in /sys/fs/cgroup/*/ferry-bench-podstart; do [ -d "$h" ] && { rmdir "$h"/* "$h" 2>/dev/null || true; }; done; true' EXIT
"$SRC/tests/images/make-busybox-oci" "$WORK/busybox.tar" >/dev/null
mkdir -p "$WORK/oci" "$WORK/rootfs" "$WORK/bundles"
tar -xf "$WORK/busybox.tar" -C "$WORK/oci"
python3 - "$WORK" "$PODS" <<'PY'
import json, os, subprocess, sys
work, pods = sys.argv[1], int(sys.argv[2])
oci = os.path.join(work, "oci")
blob = lambda d: os.path.join(oci, "blobs", "sha256", d.split(":", 1)[1])
index = json.load(open(os.path.join(oci, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
for layer in manifest["layers"]:
    subprocess.run(["tar", "-xzf", blob(layer["digest"]), "-C", os.path.join(work, "rootfs")], check=True)
subprocess.run(["runc", "spec"], cwd=work, check=True)
spec = json.load(open(os.path.join(work, "config.json")))
spec["root"] = {"path": os.path.join(work, "rootfs"), "readonly": True}
spec["process"]["args"] = ["/bin/sleep", "3600"]
spec["process"]["terminal"] = False
spec["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
for i in range(pods):
    d = os.path.join(work, "bundles", "c%d" % i)
    os.makedirs(d)
    # Absolute: a relative path would nest under the caller's own cgroups.
    spec["linux"]["cgroupsPath"] = "/ferry-bench-podstart/c%d" % i
    json.dump(spec, open(os.path.join(d, "config.json"), "w"), indent=1)
PY
cd "$SRC"
# The bench runs in the background so that a SIGTERM/SIGINT to this script (`timeout`,
# Ctrl-C) reaches it by PID: it then stops the cluster it started and deletes its
# runc/crun containers before the EXIT trap removes the work dir.
FERRY_BINARY="$BUILD/ferry" FERRY_SOURCE_DIR="$SRC" \
  "$BUILD/bench/podstart/podstart_bench" --image "$WORK/busybox.tar" --bundles "$WORK/bundles" --pods "$PODS" \
  --stream-pods "${STREAM_PODS:-$((PODS * 5))}" --stream-rate "${STREAM_RATE:-50}" &
BENCH=$!
trap 'kill -TERM "$BENCH" 2>/dev/null || true' INT TERM
rc=0
wait "$BENCH" || rc=$?
# wait returns early (>128) when a trapped signal arrives: wait for the bench's cleanup.
while kill -0 "$BENCH" 2>/dev/null; do wait "$BENCH" || rc=$?; done
exit "$rc"
