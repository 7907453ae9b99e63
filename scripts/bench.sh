#!/usr/bin/env bash
# Benchmarks berth against docker-compose and the engine's floor on this
# machine; prints a table and writes bench-results.json. Not part of the tests.
#   scripts/bench.sh [--quick] [--n N] [--runs R]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
command -v docker-compose >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
cargo build --release --locked --quiet --bins
cargo bench --locked --bench berth_bench -- --json "$PWD/bench-results.json" "$@"
