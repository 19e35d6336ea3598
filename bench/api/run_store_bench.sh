#!/usr/bin/env bash
# bench/api (store level): SQLite and etcd side by side, same load generator.
# Usage: bench/api/run_store_bench.sh [BUILD_DIR] [SECONDS]
# Starts its own etcd on 127.0.0.1 (random ports, temp data dir) and kills it by PID.
set -euo pipefail
build=${1:-build}
seconds=${2:-5}
bench="$build/bench/api/ferry_store_bench"
work=$(mktemp -d /tmp/ferry-store-bench-XXXXXX)
etcd_pid=
cleanup() {
  if [[ -n $etcd_pid ]]; then kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo
mkdir -p "$work/sqlite-full" "$work/sqlite-normal"
"$bench" --datastore sqlite --data-dir "$work/sqlite-full" --seconds "$seconds"
echo
"$bench" --datastore sqlite --sqlite-sync normal --data-dir "$work/sqlite-normal" --seconds "$seconds" --watchers 0
echo

if [[ -x /usr/bin/etcd ]]; then
  client=$(free_port); peer=$(free_port)
  /usr/bin/etcd --name bench --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" --log-level warn >"$work/etcd.log" 2>&1 &
  etcd_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$client/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$bench" --datastore "etcd://127.0.0.1:$client" --seconds "$seconds"
else
  echo "etcd: /usr/bin/etcd missing, skipped"
fi
