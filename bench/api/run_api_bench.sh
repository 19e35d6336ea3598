#!/usr/bin/env bash
# bench/api through the API server (HTTPS, admin client certificate): `ferry server
# --no-agent` on SQLite (data dir on disk, synchronous=FULL) and on etcd, then etcd's
# own numbers from the store-level bench in the same run (its JSON gateway, Ferry's client).
# Usage: bench/api/run_api_bench.sh [BUILD_DIR] [SECONDS] [WATCHERS]
# Starts its own etcd and servers on 127.0.0.1 (random ports, temp dirs) and kills them by PID.
set -euo pipefail
build=${1:-build}
seconds=${2:-5}
watchers=${3:-1000}
ferry="$build/ferry"
bench="$build/bench/api/ferry_api_bench"
store_bench="$build/bench/api/ferry_store_bench"
work=$(mktemp -d /var/tmp/ferry-api-bench-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() {  # NAME DATASTORE -> sets port
  local name=$1 datastore=$2
  port=$(free_port)
  "$ferry" server --no-agent --data-dir "$work/$name" --listen "127.0.0.1:$port" --advertise-address 127.0.0.1 \
    --datastore "$datastore" >"$work/$name.log" 2>&1 &
  pids+=($!)
  server_pid=$!
  for _ in $(seq 300); do
    [[ -f $work/$name/tls/admin.key ]] && curl -sf --cacert "$work/$name/tls/ca.crt" --cert "$work/$name/tls/admin.crt" \
      --key "$work/$name/tls/admin.key" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server $name did not start:"; cat "$work/$name.log"; exit 1
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo
start_server sqlite sqlite
"$bench" --server "https://127.0.0.1:$port" --cert-dir "$work/sqlite" --seconds "$seconds" --watchers "$watchers" \
  --label "ferry on sqlite" --server-pid "$server_pid"
echo "load average after sqlite: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

if [[ -x /usr/bin/etcd ]]; then
  client=$(free_port); peer=$(free_port)
  /usr/bin/etcd --name bench --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" --log-level warn >"$work/etcd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$client/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  start_server etcd "etcd://127.0.0.1:$client"
  "$bench" --server "https://127.0.0.1:$port" --cert-dir "$work/etcd" --seconds "$seconds" --watchers "$watchers" \
    --label "ferry on etcd" --server-pid "$server_pid"
  echo
  echo "etcd alone (store level, its JSON gateway):"
  "$store_bench" --datastore "etcd://127.0.0.1:$client" --seconds "$seconds" --watchers 0
else
  echo "etcd: /usr/bin/etcd missing, skipped"
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
