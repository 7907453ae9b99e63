#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: runs every cargo-fuzz target of fuzz/ for
# SECONDS (default 20) each, on its corpus in fuzz/corpus/TARGET; fails if
# any target crashes, hangs (10 s on one input) or grows past 2 GiB.
# Needs the nightly toolchain (the machine's own; none can be fetched) and
# installs cargo-fuzz when missing. New inputs go to a temporary folder, so
# the kept corpus only changes on purpose; a crashing input is left in
# fuzz/artifacts/TARGET/.
#
# Built without a sanitizer (`-s none`): the code is safe Rust, and
# template_render gives the renderer the address-space limit berth's
# renderer child has, which AddressSanitizer's reservations would exceed.
#
# template_render runs in libFuzzer's fork mode with timeouts counted, not
# fatal: minijinja has loops its fuel does not see (`{{ 2 in [0] * 10**12
# }}` walks a lazy list), which berth bounds by killing its renderer child
# after 30 s (tests/templates_bounded.rs); no hook stops them in-process.
# Crashes and memory past the limit still fail it.
#
# The long runs (README, "Reliability"), one target at a time:
#   cd fuzz && cargo +nightly fuzz run --release -s none TARGET NEW_DIR corpus/TARGET -- \
#     -runs=10000000 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
# and for template_render, instead of -runs (which fork mode does not
# count across jobs): -fork=1 -ignore_timeouts=1 -ignore_ooms=0 -timeout=5
#     -max_total_time=SECONDS, reading the executions off its last `#N:` line.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac

# Exit 3: the tools cannot be had here (the test command says so and goes
# on); any other failure is the targets'.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 3
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  if ! cargo install cargo-fuzz --version 0.13.2 --locked; then
    echo "fuzz: cannot install cargo-fuzz" >&2
    exit 3
  fi
fi

cd fuzz
# One build for every target; a build failure fails the run.
cargo +nightly fuzz build --release -s none
targets=$(cargo +nightly fuzz list)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in $targets; do
  mkdir -p "$work/$target" "corpus/$target"
  log="$work/$target.log"
  mode=(-timeout=10)
  if [ "$target" = template_render ]; then
    mode=(-fork=1 -ignore_timeouts=1 -ignore_ooms=0 -timeout=5)
  fi
  if cargo +nightly fuzz run --release -s none "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 "${mode[@]}" -print_final_stats=1 \
      >"$log" 2>&1; then
    runs=$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log")
    rss=$(awk '/stat::peak_rss_mb:/ { print $2 }' "$log")
    forked=$({ grep -E '^#[0-9]+: ' "$log" || true; } | tail -n 1 |
      sed -E 's/^#([0-9]+):.*oom\/timeout\/crash: ([0-9/]+).*/\1 runs, oom\/timeout\/crash \2/')
    if [ -n "$forked" ]; then
      echo "fuzz: $target ok, $forked in ${seconds} s (fork mode)"
    else
      echo "fuzz: $target ok, ${runs:-?} runs in ${seconds} s, peak RSS ${rss:-?} MB"
    fi
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
