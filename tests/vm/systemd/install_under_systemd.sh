#!/bin/sh
# Runs inside the systemd guest (tests/vm/run_in_vm.sh --systemd): `ferry install server`
# under a real systemd as PID 1 on a pure cgroup-v2 node, then
#   - the unit is active only once ready (Type=notify: `systemctl enable --now` returns then),
#   - a pod runs in the delegated cgroup (ferry-pods.scope, see cgroup/systemd_delegation.h)
#     with its cpu and memory limits,
#   - `systemctl restart ferry` keeps the pod's processes running and the pod Running,
#   - `ferry uninstall --purge` leaves no unit, data, cgroups, pins or processes behind.
#   install_under_systemd.sh FERRY_BINARY BUSYBOX_OCI_ARCHIVE [EXPECTED_MEMORY_MAX]
# EXPECTED_MEMORY_MAX (default 67108864, the pod's 64Mi) exists to show the test can fail.
set -u
FERRY=$1
IMAGE=$2
EXPECTED_MEMORY_MAX=${3:-67108864}
UNIT_CGROUP=/sys/fs/cgroup/system.slice/ferry.service
PODS_SCOPE=/sys/fs/cgroup/system.slice/ferry-pods.scope
export KUBECONFIG=/var/lib/ferry/server/kubeconfig

fail() {
  echo "FAIL: $*"
  echo "--- journal of ferry.service (tail)"
  journalctl -u ferry -u ferry-pods.scope --no-pager 2>/dev/null | tail -40
  exit 1
}
step() { echo "== $*"; }
# Polls a shell condition once a second, up to $1 seconds (TCG guests are slow).
wait_for() {
  limit=$1
  shift
  i=0
  while [ $i -lt "$limit" ]; do
    if sh -c "$*" >/dev/null 2>&1; then return 0; fi
    sleep 1
    i=$((i + 1))
  done
  return 1
}

step "node address on a dummy device (the guest has no network card)"
ip link add ferry-vm0 type dummy || fail "dummy link"
ip addr add 10.251.0.1/24 dev ferry-vm0 && ip link set ferry-vm0 up && ip link set lo up || fail "address"

# The guest's / is an overlay (over the host's 9p root); container rootfs overlays cannot
# stack their upper dirs on it, so Ferry's data lives on a tmpfs as on a real disk.
mkdir -p /var/lib/ferry && mount -t tmpfs tmpfs /var/lib/ferry || fail "tmpfs for /var/lib/ferry"

step "image into the agent's store"
"$FERRY" image import "$IMAGE" || fail "image import"

step "ferry install server"
# The unit is Type=notify with no start timeout: a node that never gets ready would
# block `systemctl enable --now` for ever, so the test bounds it.
timeout 300 "$FERRY" install server --node-ip 10.251.0.1 --dns-upstream 127.0.0.1:5353 ||
  fail "ferry install server (unit: $(systemctl is-active ferry))"
[ "$(systemctl is-active ferry)" = active ] || fail "ferry.service is $(systemctl is-active ferry) after install"
grep -q -- "--cgroup-root=delegated" /etc/systemd/system/ferry.service || fail "unit does not ask for the delegated cgroup"
wait_for 120 "kubectl get nodes --no-headers | grep -qw Ready" || fail "node never Ready: $(kubectl get nodes 2>&1)"

step "a pod with limits"
cat > /tmp/ferry-vm-pod.yaml <<'POD'
apiVersion: v1
kind: Pod
metadata:
  name: limited
spec:
  containers:
  - name: main
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 100000"]
    resources:
      limits: {cpu: 250m, memory: 64Mi}
POD
kubectl apply -f /tmp/ferry-vm-pod.yaml || fail "kubectl apply"
kubectl wait --for=condition=Ready pod/limited --timeout=240s || fail "pod not Ready: $(kubectl describe pod limited 2>&1 | tail -20)"
uid=$(kubectl get pod limited -o jsonpath='{.metadata.uid}')
pod_dir=$(find "$PODS_SCOPE/pods" -maxdepth 2 -type d -name "pod$uid" | head -1)
[ -n "$pod_dir" ] || fail "no cgroup pod$uid below $PODS_SCOPE/pods: $(find "$PODS_SCOPE" -maxdepth 3 -type d)"
[ "$(systemctl show -p Delegate --value ferry-pods.scope)" = yes ] || fail "ferry-pods.scope is not delegated"
memory_max=$(cat "$pod_dir/memory.max")
cpu_max=$(cat "$pod_dir/cpu.max")
echo "pod cgroup $pod_dir: memory.max=$memory_max cpu.max=$cpu_max"
[ "$memory_max" = "$EXPECTED_MEMORY_MAX" ] || fail "memory.max is $memory_max, expected $EXPECTED_MEMORY_MAX"
[ "$cpu_max" = "25000 100000" ] || fail "cpu.max is \"$cpu_max\", expected \"25000 100000\""
pod_pids=$(cat "$pod_dir"/*/cgroup.procs "$pod_dir/cgroup.procs" 2>/dev/null | sort -n | tr '\n' ' ')
[ -n "$pod_pids" ] || fail "no processes in the pod's cgroup"
main_pid=$(systemctl show -p MainPID --value ferry)
grep -q "^0::/system.slice/ferry.service$" "/proc/$main_pid/cgroup" ||
  fail "ferry's main process is in $(cat /proc/$main_pid/cgroup), not ferry.service"

step "systemctl restart ferry keeps the pod"
systemctl restart ferry || fail "systemctl restart ferry"
[ "$(systemctl is-active ferry)" = active ] || fail "ferry.service is $(systemctl is-active ferry) after restart"
new_main=$(systemctl show -p MainPID --value ferry)
[ "$new_main" != "$main_pid" ] || fail "restart did not replace the main process"
for pid in $pod_pids; do
  kill -0 "$pid" 2>/dev/null || fail "pod process $pid died in the restart"
done
wait_for 120 "kubectl get pod limited -o jsonpath='{.status.phase}' | grep -qx Running" || fail "pod not Running after restart"
restarts=$(kubectl get pod limited -o jsonpath='{.status.containerStatuses[0].restartCount}')
[ "$restarts" = 0 ] || fail "container restarted $restarts times across the agent restart"

step "ferry uninstall --purge leaves nothing"
"$FERRY" uninstall --purge || fail "ferry uninstall --purge"
[ ! -e /etc/systemd/system/ferry.service ] || fail "unit file left"
systemctl is-active ferry >/dev/null 2>&1 && fail "ferry.service still active"
# An emptied scope is ended (and its cgroup removed) by systemd, a moment later.
wait_for 30 "[ ! -e $PODS_SCOPE ]" || fail "$PODS_SCOPE left: $(systemctl status ferry-pods.scope 2>&1 | head -5)"
for path in /var/lib/ferry/server /var/lib/ferry/agent /run/ferry /sys/fs/bpf/ferry /etc/ferry; do
  [ ! -e "$path" ] || fail "$path left behind"
done
for pid in $pod_pids; do
  kill -0 "$pid" 2>/dev/null && fail "pod process $pid still running"
done
echo "PASS: install, delegated cgroup limits, restart keeps pods, purge"
