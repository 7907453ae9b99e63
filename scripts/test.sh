#!/usr/bin/env bash
# The README's test command: installs and starts what the tests need, then
# runs every test (unit, CLI, real-engine integration, daemon processes,
# real nginx/Apache, real git and registry), then a short run of every fuzz
# target (not when arguments pick tests), and ends with a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh

log=$(mktemp)
cleanup() {
  # The images the tests made and cached for themselves: busybox, and the
  # Debian root with systemd the package test boots.
  docker images --format '{{.Repository}}:{{.Tag}}' 'berth-test/busybox' 2>/dev/null \
    | xargs -r docker rmi >/dev/null 2>&1 || true
  docker images --format '{{.Repository}}:{{.Tag}}' 'berth-test/debian-systemd' 2>/dev/null \
    | xargs -r docker rmi >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT

status=0
# Lints first, on the whole tree (not when arguments pick tests): a warning
# or an unformatted file fails the run like a failing test.
lint_status=0
if [ $# -eq 0 ]; then
  if ! rustup component list --installed 2>/dev/null | grep -q '^clippy'; then
    rustup component add clippy rustfmt || true
  fi
  cargo fmt --check || lint_status=1
  cargo clippy --locked --all-targets -- -D warnings || lint_status=1
fi
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
# A short run of every fuzz target on its kept corpus: the corpus replays
# every input found so far, and the fuzz crate keeps compiling.
fuzz_status=0
if [ $# -eq 0 ]; then
  scripts/fuzz.sh 15 || fuzz_status=$?
fi
echo
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
if [ "$lint_status" -ne 0 ]; then
  echo "lints: failed (cargo fmt --check or cargo clippy -D warnings, see above)"
  status=1
elif [ $# -eq 0 ]; then
  echo "lints: clean (cargo fmt --check, cargo clippy --all-targets -D warnings)"
fi
if [ "$fuzz_status" -eq 3 ]; then
  echo "fuzz: not run: no nightly toolchain or cargo-fuzz on this machine (see above)"
elif [ "$fuzz_status" -ne 0 ]; then
  echo "fuzz: failed (see above)"
  status=1
fi
exit "$status"
