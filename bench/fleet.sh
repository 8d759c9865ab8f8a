#!/usr/bin/env bash
# Fleet benchmark (issue #5): 2,000 noop tasks through 4 `freezer-worker run` processes on
# loopback, against the RabbitMQ and Redis of this machine; prints tasks/s and the
# publish-to-start latency p50/p99 (targets: >= 500 tasks/s, p99 <= 50 ms).
#
#   bench/fleet.sh                 # BENCH_TASKS=2000 BENCH_WORKERS=4 BENCH_CONCURRENCY=32
#   BENCH_PACED_RATE=400 bench/fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p freezer-worker --bin freezer-worker
cargo build --release -p freezer-e2e --example fleet_bench
FREEZER_WORKER_BIN="$CARGO_TARGET_DIR/release/freezer-worker" \
  "$CARGO_TARGET_DIR/release/examples/fleet_bench"
