#!/usr/bin/env bash
# Benchmarks berth against docker-compose and the engine's own floor on this
# machine: prints a table and writes bench-results.json (in this folder).
# Not part of the tests.
#
#   scripts/bench.sh [--quick] [--n N] [--runs R] [--rest S] [--edits E] [--json FILE]
#                    [--scale N,N] [--scale-runs R] [--scale-only]
#                    [--podman | --podman-only]
#
# --quick: 10 containers, 3 runs, 10 s at rest (a few minutes instead of ~15).
# --scale 200,500: converge, no-op and one change at those N too (3 runs
# each, or --scale-runs), the observe cost by N, berthd at rest at the
# largest; with compose, 500 takes 20+ minutes. --scale-only skips the rest.
# --podman: after the run on Docker, the same run against Podman's
# Docker-compatible service (scripts/podman-service.sh), written to
# bench-results-podman.json; --podman-only: only that one. Both engines in
# one session, so the figures side by side share the machine's state.
# The bench makes its image locally, uses its own instance, network,
# container names and compose project, and removes all of it at the end,
# also when it fails or is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-host.sh
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "bench: installing docker-compose"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi

cargo build --release --locked --bins
bin=$(cargo bench --locked --bench berth_bench --no-run --message-format=json-render-diagnostics |
  grep '"kind":\["bench"\].*"name":"berth_bench"' |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "bench: cannot find the bench binary" >&2; exit 1; }

engines=(docker)
args=()
for a in "$@"; do
  case $a in
    --podman) engines=(docker podman) ;;
    --podman-only) engines=(podman) ;;
    *) args+=("$a") ;;
  esac
done
podman_host=
if [[ " ${engines[*]} " == *" podman "* ]]; then
  podman_host=$(scripts/podman-service.sh)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
# The bench removes what it made itself (on error and on SIGINT/SIGTERM
# too); this only catches what a hard kill of it would leave.
clean_engine() {
  local ids
  ids=$( { docker ps -aq --filter label=org.berth.instance=bench
           docker ps -aq --filter label=com.docker.compose.project=berthbench
           docker ps -aq --filter 'name=^/?bench-c[0-9]+(_berth-new)?$'
           docker ps -aq --filter 'name=^/?benchfloor-'; } 2>/dev/null | sort -u)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  for net in berth-bench berthbench_default; do
    docker network inspect "$net" >/dev/null 2>&1 && docker network rm "$net" >/dev/null 2>&1 || true
  done
  docker image inspect berth-bench/busybox:1 >/dev/null 2>&1 && docker rmi berth-bench/busybox:1 >/dev/null 2>&1 || true
}
# On each engine the bench ran on; on Podman only the bench's own names
# (the tests share that service).
leftovers() {
  local e
  for e in "${engines[@]}"; do
    if [ "$e" = podman ]; then
      DOCKER_HOST=$podman_host clean_engine
    else
      (unset DOCKER_HOST; clean_engine)
    fi
  done
  rm -rf "$work"
}
trap leftovers EXIT

for e in "${engines[@]}"; do
  if [ "$e" = podman ]; then
    echo "bench: on Podman ($podman_host)"
    "$bin" --json "$PWD/bench-results-podman.json" --workdir "$work/podman" \
      --engine "$podman_host" ${args[@]+"${args[@]}"}
  else
    "$bin" --json "$PWD/bench-results.json" --workdir "$work/docker" ${args[@]+"${args[@]}"}
  fi
done
