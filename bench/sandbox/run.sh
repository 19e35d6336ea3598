#!/bin/sh
# bench/sandbox: Ferry sandbox create+delete vs `runc run` and `crun run` (root).
#   bench/sandbox/run.sh BUILD_DIR [COUNT]
# Builds an OCI bundle of static busybox (`busybox true`, 64 MiB memory limit, new
# pid/net/ipc/uts/mount namespaces, cgroup under /ferry-bench-runtime) and runs
# sandbox_bench, which times all three in one run.
set -eu
BUILD=${1:?build dir}
COUNT=${2:-200}
BUNDLE=$(mktemp -d /tmp/ferry-bench-bundle-XXXXXX)
trap 'rm -rf "$BUNDLE"; for h in /sys/fs/cgroup/*/ferry-bench-runtime; do [ -d "$h" ] && rmdir "$h" 2>/dev/null; done; true' EXIT
mkdir -p "$BUNDLE/rootfs/bin"
cp /bin/busybox "$BUNDLE/rootfs/bin/busybox"
(cd "$BUNDLE" && runc spec)
python3 - "$BUNDLE/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["args"] = ["/bin/busybox", "true"]
spec["process"]["terminal"] = False
spec["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
# Absolute: a relative path would nest under the caller's own cgroups.
spec["linux"]["cgroupsPath"] = "/ferry-bench-runtime/c"
json.dump(spec, open(path, "w"), indent=1)
PY
"$BUILD/bench/sandbox/sandbox_bench" --count "$COUNT" --bundle "$BUNDLE"
