#!/usr/bin/env bash
# The README's test command: installs and starts what the tests need, then
# runs every test (unit, CLI, real-engine integration, daemon processes,
# real nginx/Apache, real git and registry), then the engine tests again on
# Podman, then a short run of every fuzz target (not when arguments pick
# tests), and ends with a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh

log=$(mktemp)
podman_log=$(mktemp)
podman_skips=$(mktemp)
podman_host=
cleanup() {
  # The images the tests made and cached for themselves: busybox, and the
  # Debian root with systemd the package test boots; on Podman, busybox
  # (which Podman names docker.io/berth-test/busybox).
  docker images --format '{{.Repository}}:{{.Tag}}' 'berth-test/busybox' 2>/dev/null \
    | xargs -r docker rmi >/dev/null 2>&1 || true
  docker images --format '{{.Repository}}:{{.Tag}}' 'berth-test/debian-systemd' 2>/dev/null \
    | xargs -r docker rmi >/dev/null 2>&1 || true
  if [ -n "$podman_host" ]; then
    DOCKER_HOST=$podman_host docker images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null \
      | grep -E '^(docker\.io/|localhost/)?berth-test/busybox:' \
      | DOCKER_HOST=$podman_host xargs -r docker rmi >/dev/null 2>&1 || true
  fi
  rm -f "$log" "$podman_log" "$podman_skips"
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
# The engine tests again, on Podman's Docker-compatible API (Debian's
# podman, rootful, on a socket of its own: scripts/podman-service.sh),
# with the docker CLI the tests use pointed at it too. Not when arguments
# pick tests, unless TEST_ON_PODMAN=1. One test at a time: Podman 4.3's
# image store fails a list, an inspect or a build's FROM lookup ("image not
# known") while another client removes an image, which the tests' parallel
# cleanups do; berth retries what it can, but not another client's build. (No BERTH_ names here: tests check
# what berth passes on of its own BERTH_ variables.)
podman_status=0
podman_version=
if [ $# -eq 0 ] || [ "${TEST_ON_PODMAN:-}" = 1 ]; then
  engine_tests=()
  for file in tests/*_docker.rs tests/daemon_process.rs tests/templates_proxy.rs; do
    engine_tests+=(--test "$(basename "$file" .rs)")
  done
  if podman_host=$(scripts/podman-service.sh); then
    podman_version=$(DOCKER_HOST=$podman_host docker version --format '{{.Server.Version}}' 2>/dev/null || true)
    echo
    echo "=== the engine tests again, on Podman $podman_version ($podman_host) ==="
    filter=()
    [ $# -eq 0 ] || filter=("$@")
    DOCKER_HOST=$podman_host TEST_SKIPS_FILE=$podman_skips \
      cargo test --locked --no-fail-fast "${engine_tests[@]}" "${filter[@]}" -- --test-threads=1 2>&1 | tee "$podman_log" || podman_status=$?
  else
    podman_host=
    echo "podman: the service did not start (see above)" | tee "$podman_log"
    podman_status=1
  fi
fi
# A short run of every fuzz target on its kept corpus: the corpus replays
# every input found so far, and the fuzz crate keeps compiling.
fuzz_status=0
if [ $# -eq 0 ]; then
  scripts/fuzz.sh 15 || fuzz_status=$?
fi
echo
count() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { printf "%d %d\n", p, f }' "$@"
}
read -r docker_passed docker_failed < <(count "$log")
docker_version=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)
echo "tests on Docker $docker_version: $docker_passed passed, $docker_failed failed (every test)"
if [ -s "$podman_log" ]; then
  read -r podman_passed podman_failed < <(count "$podman_log")
  # A test skipped on Podman returns early, so cargo counts it passed.
  skipped=$(sort -u "$podman_skips" | grep -c . || true)
  echo "tests on Podman $podman_version: $((podman_passed - skipped)) passed, $podman_failed failed, $skipped skipped (the engine tests again)"
  sort -u "$podman_skips" | sed 's/^/  skipped on Podman: /'
  if [ "$podman_status" -ne 0 ]; then
    status=1
  fi
fi
count "$log" "$podman_log" | { read -r p f; echo "tests: $p passed, $f failed"; }
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
