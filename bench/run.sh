#!/usr/bin/env bash
# Side-by-side benchmarks: builds every peer and client, runs them, and writes
# results under bench/results/. All flags go to the harness (bench/cmd/run);
# see bench/README.md.  Examples:
#   bench/run.sh                 # 3 rounds, every server and workload (~15 min)
#   bench/run.sh -quick          # 1 short round (~3 min)
#   bench/run.sh -servers c-epoll,gnet -workloads echo-64B-d1 -rounds 5
set -euo pipefail
cd "$(dirname "$0")"
exec go run ./cmd/run "$@"
