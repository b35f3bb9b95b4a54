#!/usr/bin/env bash
# The cluster benchmark of docs/BENCHMARKS.md ("Cluster"): a nats-server and three confabd
# nodes on this machine (127.0.0.1:7421-7423, the bus on 127.0.0.1:4322 with monitoring on
# 8322), fresh data directories, then bench.sh's direct runs against all three addresses
# (clients spread over the nodes, each following its Redirect home). Around each run it
# reads nats-server's counters (/varz), so the bus traffic per message is measured, not
# guessed.
#
#   cargo build --release -p confab -p confab-loadgen
#   tools/loadgen/bench-cluster.sh [OUT_DIR]               # default: bench-cluster-out
#   ONLY="direct-r5k" tools/loadgen/bench-cluster.sh        # just these runs
#
# On one machine this measures what a hop between nodes costs (latency, CPU, bus bytes),
# not how a cluster scales: the three nodes and the bus share the same cores.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-target/release}
OUT=${1:-bench-cluster-out}
mkdir -p "$OUT"
ulimit -n 20000
export PATH="$PATH:/usr/local/sbin:/usr/sbin"
command -v nats-server >/dev/null || { echo "nats-server is not installed (scripts/test installs it)" >&2; exit 1; }

NATS_PORT=4322
MONITOR=8322
NODES="1=127.0.0.1:7421,2=127.0.0.1:7422,3=127.0.0.1:7423"
ADDRS=127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
pids=()
work=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# One counter of nats-server's /varz (messages and bytes in and out, over all clients).
varz() { curl -s "http://127.0.0.1:$MONITOR/varz" | sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p"; }

start_cluster() {
  nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$MONITOR" > "$OUT/nats.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$MONITOR/varz" > /dev/null && break; sleep 0.1; done
  for id in 1 2 3; do
    mkdir -p "$work/node-$id"
    # The same lifted registration limits as bench.sh: thousands of accounts come from
    # one loopback address at once.
    "$BIN/confabd" --listen "127.0.0.1:742$id" --data-dir "$work/node-$id" \
      --hash-memory-kib 8 --hash-iterations 1 --log-level warn \
      --register-rate 1000000 --register-rate-total 1000000 --max-unauthenticated-per-ip 1000000 \
      --cluster "nats://127.0.0.1:$NATS_PORT" --node-id "$id" --nodes "$NODES" \
      > "$OUT/node-$id.log" 2>&1 &
    pids+=($!)
  done
  for id in 1 2 3; do
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/742$id") 2>/dev/null && break; sleep 0.1; done
  done
  # Every node hears the others' heartbeats (one a second) before the first run.
  sleep 3
}

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

run() {
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  local b0 t0 b1 t1 status=0 in0 inb0 out0 outb0
  in0=$(varz in_msgs); inb0=$(varz in_bytes); out0=$(varz out_msgs); outb0=$(varz out_bytes)
  read -r b0 t0 < <(busy)
  "$BIN/confab-loadgen" --accounts-file "$work/accounts-$name.json" --addr "$ADDRS" \
    --json "$OUT/$name.json" --plot "$OUT/$name.svg" "$@" > "$OUT/$name.txt" || status=$?
  read -r b1 t1 < <(busy)
  {
    echo "exit $status; machine busy during the run: $(( 200 * (b1 - b0) / (t1 - t0) ))% of 200%"
    echo "bus: $(( $(varz in_msgs) - in0 )) messages in ($(( $(varz in_bytes) - inb0 )) bytes)," \
      "$(( $(varz out_msgs) - out0 )) out ($(( $(varz out_bytes) - outb0 )) bytes)"
  } >> "$OUT/$name.txt"
  cat "$OUT/$name.txt"
}

start_cluster
run direct-w16 direct --clients 1000 --window 16
run direct-r5k direct --clients 1000 --rate 5000
run direct-r1k direct --clients 1000 --rate 1000
