#!/usr/bin/env bash
# Update-to-serving: a tag moves in a registry; how long until the container
# serves the new version. berth (berthd, the record `Update auto`, asked by
# `berth image check`: check, pull, recreate on probation) beside the
# engine's floor (`docker pull`, then stop, rm and run by hand), R runs
# each, who goes first alternating. Watchtower cannot be measured here (no
# image of it can be pulled), so the floor is the peer. Not part of the
# tests; figures in docs/PERFORMANCE.md.
#
#   scripts/bench-update.sh [RUNS]        (BENCH_LOG=FILE keeps berthd's log)
#
# Uses Debian's docker-registry on a free 127.0.0.1 port (plain http, which
# the engine allows for 127.0.0.0/8), images made from the host's busybox,
# its own sandbox, instance and names; removes all of it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}

scripts/setup-host.sh >/dev/null
cargo build --release --locked --bins --quiet
berth=$PWD/target/release/berth
berthd=$PWD/target/release/berthd

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-upd.XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
reg_port=$(free_port); berth_port=$(free_port); floor_port=$(free_port)
reg=127.0.0.1:$reg_port
# berth's and the floor's own repositories: a pull by one must not move
# the other's local tag (the floor's `docker pull` of berth's reference
# would start berth's recreate before berth was asked).
ref=$reg/berth-upd/web:1
floor_ref=$reg/berth-upd/floor:1
floor=berth-upd-floor
daemon=

cleanup() {
  [ -z "$daemon" ] || { kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; }
  [ -z "${registry:-}" ] || { kill "$registry" 2>/dev/null || true; wait "$registry" 2>/dev/null || true; }
  ids=$(docker ps -aq --filter label=org.berth.instance=bench-upd; docker ps -aq --filter "name=^/?$floor\$")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  docker network rm berth-upd >/dev/null 2>&1 || true
  for img in $(docker images --format '{{.Repository}}:{{.Tag}}' | grep -E "^(berth-upd/|$reg/|localhost:$reg_port/)" || true); do
    docker rmi -f "$img" >/dev/null 2>&1 || true
  done
  # BENCH_LOG=FILE keeps berthd's log (its timestamps show where the time goes).
  [ -z "${BENCH_LOG:-}" ] || cp "$work/berthd.log" "$BENCH_LOG" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat >"$work/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry=$!
for _ in $(seq 1 100); do curl -fs "http://$reg/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

# Version v<N>: /etc/berth-variant holds "v<N>", which httpd serves. It is
# pushed under the registry's other name (localhost:PORT), so this host's
# tag 127.0.0.1:PORT/… stays on the old image, as on a host that has only
# the old version: the registry's tag moved, the host's did not.
push() {
  scripts/test-image.sh "berth-upd/web:v$1" "v$1" >/dev/null
  for repo in web floor; do
    docker tag "berth-upd/web:v$1" "localhost:$reg_port/berth-upd/$repo:1"
    docker push "localhost:$reg_port/berth-upd/$repo:1" >/dev/null
    docker rmi "localhost:$reg_port/berth-upd/$repo:1" >/dev/null
  done
}
serves() { # PORT VERSION: wait until it answers VERSION; seconds since $t0
  for _ in $(seq 1 3000); do
    [ "$(curl -fs "http://127.0.0.1:$1/berth-variant" 2>/dev/null)" = "v$2" ] && return 0
    sleep 0.01
  done
  echo "bench-update: port $1 never served v$2 (it serves: $(curl -fs "http://127.0.0.1:$1/berth-variant" 2>&1))" >&2
  echo "--- berth image check web:" >&2; "$berth" --config "$work/berth.toml" image check web >&2 2>&1 || true
  echo "--- berth status:" >&2; "$berth" --config "$work/berth.toml" status >&2 2>&1 || true
  echo "--- berthd log (last 30 lines):" >&2; tail -30 "$work/berthd.log" >&2 || true
  exit 1
}
now() { date +%s.%N; }

mkdir -p "$work/db" "$work/state"
cat >"$work/berth.toml" <<TOML
db_dir = "db"
state_dir = "state"
api_socket = "state/api.sock"
templates_dir = "templates"
templates_custom_dir = "templates-custom"
output_root = "output"
events_dir = "events"
instance = "bench-upd"
bridge_network = "berth-upd"
stop_grace_seconds = 1
rollout_probation_seconds = 2
insecure_registries = ["$reg"]
TOML
printf 'web=service|Image|%s|Update|auto|Command|httpd -f -p 80 -h /etc|PortMapping|custom|PortMappingPorts|%s:80|TCPPort|80|access|private\n' \
  "$ref" "$berth_port" >"$work/db/docker_containers"

push 0
"$berthd" --config "$work/berth.toml" >"$work/berthd.log" 2>&1 &
daemon=$!
serves "$berth_port" 0
docker pull -q "$floor_ref" >/dev/null
docker run -d --name "$floor" -p "127.0.0.1:$floor_port:80" "$floor_ref" httpd -f -p 80 -h /etc >/dev/null
serves "$floor_port" 0

berth_round() {
  echo "berth round v$1 starts $(stamp)" >>"$work/berthd.log"
  t0=$(now)
  "$berth" --config "$work/berth.toml" image check web >>"$work/check.log" 2>&1 || true
  serves "$berth_port" "$1"
  echo "$(now) - $t0" | bc
}
floor_round() {
  t0=$(now)
  docker pull -q "$floor_ref" >/dev/null
  docker stop -t 1 "$floor" >/dev/null
  docker rm "$floor" >/dev/null
  docker run -d --name "$floor" -p "127.0.0.1:$floor_port:80" "$floor_ref" httpd -f -p 80 -h /etc >/dev/null
  serves "$floor_port" "$1"
  echo "$(now) - $t0" | bc
}

b=(); f=()
stamp() { date -u +%H:%M:%S.%N | cut -c1-12; }
for i in $(seq 1 "$runs"); do
  push "$i"
  # Let the previous rollout end, so each run starts from a proven container.
  sleep 3
  if [ $((i % 2)) -eq 1 ]; then
    b+=("$(berth_round "$i")"); f+=("$(floor_round "$i")")
  else
    f+=("$(floor_round "$i")"); b+=("$(berth_round "$i")")
  fi
  echo "run $i/$runs: berth ${b[-1]} s, floor ${f[-1]} s" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {print lo "–" hi}'; }
echo
echo "| update to serving, one container ($runs runs) | median s | range s |"
echo "|---|---|---|"
echo "| berth: \`berth image check\` → Update auto pull → recreate (berthd) | $(median "${b[@]}") | $(range "${b[@]}") |"
echo "| floor: docker pull, stop, rm, run | $(median "${f[@]}") | $(range "${f[@]}") |"
echo
echo "berthd journal for web:"
"$berth" --config "$work/berth.toml" history web 2>/dev/null | head -12 || true
