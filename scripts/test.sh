#!/usr/bin/env bash
# The README's test command: installs and starts what the tests need, then
# runs every test (unit, CLI, real-engine integration).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
cargo test --locked "$@"
