#!/usr/bin/env bash
# The README's test command: installs and starts what the tests need, then
# runs every test (unit, CLI, real-engine integration, daemon processes,
# real nginx/Apache, real git and registry), and ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh

log=$(mktemp)
cleanup() {
  # The busybox images the tests made and cached for themselves.
  docker images --format '{{.Repository}}:{{.Tag}}' 'berth-test/busybox' 2>/dev/null \
    | xargs -r docker rmi >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT

status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
echo
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
