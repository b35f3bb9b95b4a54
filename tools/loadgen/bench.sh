#!/usr/bin/env bash
# The benchmark suite of docs/BENCHMARKS.md: every scenario once, each against a fresh
# confabd with a fresh data directory (and so a fresh accounts file), on 127.0.0.1:7420.
#
#   cargo build --release -p confab -p confab-loadgen
#   tools/loadgen/bench.sh [OUT_DIR]        # default: bench-out
#   SERVER_FLAGS="--sync none" tools/loadgen/bench.sh bench-none   # the same without fsync
#   ONLY="direct-r20k group-r400" tools/loadgen/bench.sh           # just these runs
#
# Writes NAME.json, NAME.svg, NAME.txt (the summary, plus the machine's total CPU use during
# the run: other jobs on a shared machine show up there) for every run. BIN overrides
# where the binaries are (default target/release).
#
# ADDRS runs the suite against a cluster the caller started (protocol.md "Cluster") instead:
# no confabd is started, the load generator gets --addr "$ADDRS" (and no --server-pid, so
# the server's CPU is not sampled), and the nodes' data outlives the runs.
#
#   ADDRS=127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 ONLY=direct-r5k tools/loadgen/bench.sh
set -euo pipefail

BIN=${BIN:-target/release}
OUT=${1:-bench-out}
mkdir -p "$OUT"
ulimit -n 20000

busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

run() {
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  local data pid=""
  local -a server
  data=$(mktemp -d)
  if [ -n "${ADDRS:-}" ]; then
    server=(--addr "$ADDRS")
  else
    # The runs register and log in thousands of accounts from a few loopback addresses,
    # hundreds at once: lift the per-address and overall registration limits and the
    # per-address cap on connections not yet logged in, which are meant for strangers.
    # shellcheck disable=SC2086 # SERVER_FLAGS is a list of flags
    "$BIN/confabd" --data-dir "$data" --hash-memory-kib 8 --hash-iterations 1 --log-level warn \
      --register-rate 1000000 --register-rate-total 1000000 --max-unauthenticated-per-ip 1000000 \
      ${SERVER_FLAGS:-} > "$OUT/$name.server.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/7420) 2>/dev/null && break; sleep 0.1; done
    server=(--server-pid "$pid")
  fi
  local b0 t0 b1 t1 status=0
  read -r b0 t0 < <(busy)
  "$BIN/confab-loadgen" --accounts-file "$data/accounts.json" "${server[@]}" \
    --json "$OUT/$name.json" --plot "$OUT/$name.svg" "$@" > "$OUT/$name.txt" || status=$?
  read -r b1 t1 < <(busy)
  echo "exit $status; machine busy during the run: $(( 200 * (b1 - b0) / (t1 - t0) ))% of 200%" \
    >> "$OUT/$name.txt"
  if [ -n "$pid" ]; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -rf "$data"
  cat "$OUT/$name.txt"
}

run direct-w1 direct --clients 1000 --window 1
run direct-w16 direct --clients 1000 --window 16
# The same users, each on two devices: every message goes to both of its recipient's
# devices and, as a sent copy, to its sender's other one (2,000 connections).
run direct-w16-d2 direct --clients 1000 --window 16 --devices 2
run direct-r20k direct --clients 1000 --rate 20000
# The latency anchor with two devices per user (the cost of a second device).
run direct-r20k-d2 direct --clients 1000 --rate 20000 --devices 2
run direct-r5k direct --clients 1000 --rate 5000
# Light load: the latency of one message with nothing queued (compare bench-cluster.sh).
run direct-r1k direct --clients 1000 --rate 1000
run direct-r5k-d2 direct --clients 1000 --rate 5000 --devices 2
run connections-10k connections --count 10000
run connections-19k connections --count 19000
run offline offline
# The same with a push device per recipient: every stored message also makes a note for
# the push queue (coalesced per recipient, kept in worker 0's commit log; no gateway).
run offline-push offline --push-devices
# Memory and disk under large messages: 1.9 GB of 32 KB messages stored, then drained
# (server RSS every second in offline-32k.json/.svg).
run offline-32k offline --users 20 --messages 3000 --size 32000 --senders 20 --timeout 120
run login login
# Fan-out, peers.md's shape: 100 groups (rooms) of 50 members, 5,000 clients; one send is
# 49 deliveries. 400 sends/s = 19,600 deliveries/s, the peers' fixed-rate point.
run group-w1 group --groups 100 --members 50 --window 1
run group-r400 group --groups 100 --members 50 --rate 400
run room-w1 room --rooms 100 --members 50 --window 1
run room-r400 room --rooms 100 --members 50 --rate 400
# Soak: 600 s (10 minutes) of direct and group traffic with clients dropping and coming
# back, plus setup and up to 30 s of drain; server RSS every second in soak.json/.svg.
# Not part of the regular suite (it takes ~11 minutes); uncomment to run it.
# run soak soak --duration 600
