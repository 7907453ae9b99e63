#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: runs every cargo-fuzz target of fuzz/ for
# SECONDS (default 20) each, on its corpus in fuzz/corpus/TARGET; fails if
# any target crashes, hangs (10 s on one input) or grows past 2 GiB.
# Installs the nightly toolchain and cargo-fuzz when missing. New inputs
# go to a temporary folder, so the kept corpus only changes on purpose;
# a crashing input is left in fuzz/artifacts/TARGET/.
#
# The long runs (README, "Reliability"):
#   cd fuzz && cargo +nightly fuzz run TARGET -- -runs=10000000 -rss_limit_mb=2048 -timeout=10
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd fuzz
# One build for every target; a build failure fails the run.
cargo +nightly fuzz build --release
targets=$(cargo +nightly fuzz list)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in $targets; do
  mkdir -p "$work/$target" "corpus/$target"
  log="$work/$target.log"
  if cargo +nightly fuzz run --release "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      >"$log" 2>&1; then
    runs=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log")
    rss=$(awk '/stat::peak_rss_mb:/ { print $2 }' "$log")
    echo "fuzz: $target ok, ${runs:-?} runs in ${seconds} s, peak RSS ${rss:-?} MB"
  else
    echo "fuzz: $target FAILED; the end of its log:"
    tail -n 40 "$log" | sed 's/^/    /'
    failed+=("$target")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: every target ran ${seconds} s without a crash"
