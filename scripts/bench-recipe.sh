#!/usr/bin/env bash
# Recipe builds beside the engine's classic builder. One recipe of 10 small
# steps (`echo stepK > /srvK; ls / >/dev/null`) from berth-example/busybox:1,
# built by `berth image build NAME --wait` (no berthd: in the foreground),
# and the equivalent Dockerfile (FROM, the same 10 commands as RUN lines,
# CMD) built by `DOCKER_BUILDKIT=0 docker build -q`. Three cases each, wall
# time of the one command, N runs, who goes first alternating:
#
#   cold               no image of this recipe exists (all removed before,
#                      untimed); docker also gets --no-cache
#   no change          the same build again: all cache hits
#   last step changed  only the 10th command's text changed, to a value never
#                      built before (a real miss of that one step)
#
# Prints the medians (and ranges), berth/docker ratios, the machine (nproc,
# engine version). Not part of the tests; figures in docs/PERFORMANCE.md.
#
#   scripts/bench-recipe.sh [--n N]        (default N=5)
#
# Uses its own config, db, state, record name (berthbenchrecipe), tags
# (berth-benchrecipe/...) and temporary folder; removes every image, tag and
# container it made at the end, and nothing else. Needs docker and cargo;
# makes berth-example/busybox:1 with scripts/test-image.sh if it is missing
# (and then removes it at the end too).
set -euo pipefail
cd "$(dirname "$0")/.."

n=5
while [ $# -gt 0 ]; do
  case $1 in
    --n) n=${2:?--n needs a number}; shift 2 ;;
    --n=*) n=${1#--n=}; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--n N]" >&2; exit 2 ;;
  esac
done
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "bench-recipe: --n wants a positive number, not $n" >&2; exit 2; }

cargo build --release --locked --bins --quiet
berth=$PWD/target/release/berth

base=berth-example/busybox:1
record=berthbenchrecipe
berth_tag=berth-benchrecipe/recipe:1
docker_tag=berth-benchrecipe/dockerfile:1
steps=10
made_base=
docker_ids=()   # every image docker build printed: removed at the end

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-benchrecipe.XXXXXX")

# Removes the images of this recipe (by its label) and berth's tag; untagged
# step images can depend on each other, so a few passes.
berth_images_rm() {
  docker rmi "$berth_tag" >/dev/null 2>&1 || true
  for _ in 1 2 3 4 5; do
    ids=$(docker images -a -q --no-trunc --filter "label=org.berth.recipe=$record" | sort -u)
    [ -n "$ids" ] || return 0
    docker rmi $ids >/dev/null 2>&1 || true
  done
}
# Removes the images docker build made here (newest first: a child before
# its parent; each removal also prunes its untagged parents).
docker_images_rm() {
  docker rmi "$docker_tag" >/dev/null 2>&1 || true
  local i
  for _ in 1 2 3; do
    for ((i = ${#docker_ids[@]} - 1; i >= 0; i--)); do
      docker rmi "${docker_ids[i]}" >/dev/null 2>&1 || true
    done
  done
}
cleanup() {
  # The build's own containers, if a run was cut short (only if labelled ours).
  for c in "$record-building" "$record-failed" "$record-check"; do
    if [ "$(docker inspect -f '{{index .Config.Labels "org.berth.recipe"}}' "$c" 2>/dev/null)" = "$record" ]; then
      docker rm -f "$c" >/dev/null 2>&1 || true
    fi
  done
  berth_images_rm
  docker_images_rm
  [ -z "$made_base" ] || docker rmi "$base" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! docker image inspect "$base" >/dev/null 2>&1; then
  scripts/test-image.sh "$base" >/dev/null
  made_base=1
fi

mkdir -p "$work/db" "$work/state" "$work/recipe" "$work/dockerfile"
cat >"$work/berth.toml" <<TOML
db_dir = "$work/db"
state_dir = "$work/state"
api_socket = "$work/state/api.sock"
bridge_network = "berth-benchrecipe"
instance = "benchrecipe"
TOML
printf '%s=image|Source|recipe|Path|%s|Tag|%s\n' "$record" "$work/recipe" "$berth_tag" \
  >"$work/db/docker_images"

cmd_of() { echo "echo step$1 > /srv$1; ls / >/dev/null"; }
# Writes both recipes, the 10th command being $1.
write_recipes() {
  local last=$1 k c
  {
    echo "from = \"$base\""
    for k in $(seq 1 $steps); do
      c=$(cmd_of "$k"); [ "$k" -lt $steps ] || c=$last
      printf '[[steps]]\nrun = "%s"\n' "$c"
    done
    printf '[image]\ncmd = ["cat", "/srv%d"]\n' $steps
  } >"$work/recipe/recipe.toml"
  {
    echo "FROM $base"
    for k in $(seq 1 $steps); do
      c=$(cmd_of "$k"); [ "$k" -lt $steps ] || c=$last
      echo "RUN $c"
    done
    printf 'CMD ["cat", "/srv%d"]\n' $steps
  } >"$work/dockerfile/Dockerfile"
}

now() { date +%s%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }'; }

# berth_build CASE MISSES: one timed build; its wall time in ms appended to
# $work/berth-CASE; checks the log counted MISSES cache misses (steps and
# the final image) and says which image it made.
berth_build() {
  local t0 t1 log=$work/berth.log misses
  t0=$(now)
  if ! "$berth" --config "$work/berth.toml" image build "$record" --wait >"$log" 2>&1; then
    t1=$(now)
    echo "bench-recipe: berth build ($1) failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  t1=$(now)
  misses=$(grep -c 'cache miss' "$log" || true)
  if [ "$misses" != "$2" ]; then
    echo "bench-recipe: berth build ($1): $misses cache misses, expected $2:" >&2
    cat "$log" >&2
    exit 1
  fi
  ms "$t0" "$t1" >>"$work/berth-$1"
  last_berth=$(docker image inspect -f '{{.Id}}' "$berth_tag")
}
docker_build() { # CASE [--no-cache]
  local t0 t1 id c=$1
  shift
  t0=$(now)
  id=$(DOCKER_BUILDKIT=0 docker build -q "$@" -t "$docker_tag" "$work/dockerfile" 2>"$work/docker.err") || {
    echo "bench-recipe: docker build ($c) failed:" >&2
    cat "$work/docker.err" >&2
    exit 1
  }
  t1=$(now)
  docker_ids+=("$id")
  ms "$t0" "$t1" >>"$work/docker-$c"
  last_docker=$id
}

berth_round() { # I
  local cold
  write_recipes "$(cmd_of $steps)"
  berth_images_rm
  berth_build cold $((steps + 1))
  cold=$last_berth
  berth_build nochange 0
  [ "$last_berth" = "$cold" ] || { echo "bench-recipe: berth's no-change build made $last_berth, not $cold" >&2; exit 1; }
  write_recipes "echo changed-$1-$RANDOM > /srv$steps; ls / >/dev/null"
  berth_build changed 2
  [ "$last_berth" != "$cold" ] || { echo "bench-recipe: berth's changed build kept $cold" >&2; exit 1; }
}
docker_round() { # I
  local cold
  write_recipes "$(cmd_of $steps)"
  docker_images_rm
  docker_build cold --no-cache
  cold=$last_docker
  docker_build nochange
  [ "$last_docker" = "$cold" ] || { echo "bench-recipe: docker's no-change build made $last_docker, not $cold" >&2; exit 1; }
  write_recipes "echo changed-$1-$RANDOM > /srv$steps; ls / >/dev/null"
  docker_build changed
  [ "$last_docker" != "$cold" ] || { echo "bench-recipe: docker's changed build kept $cold" >&2; exit 1; }
}

echo "bench-recipe: $steps steps, N=$n, $(nproc) cores, engine $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}})'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$n"); do
  if [ $((i % 2)) -eq 1 ]; then berth_round "$i"; docker_round "$i"; else docker_round "$i"; berth_round "$i"; fi
  echo "  run $i/$n done" >&2
done

# A sanity look at what was built: both images print the last step's file.
out_b=$(docker run --rm "$berth_tag"); out_d=$(docker run --rm "$docker_tag")
[ "${out_b%%-*}" = changed ] && [ "${out_d%%-*}" = changed ] || {
  echo "bench-recipe: the images print '$out_b' and '$out_d', expected changed-…" >&2
  exit 1
}

# median (range) of a file of numbers, in ms or s.
fmt() { awk -v v="$1" 'BEGIN { v += 0; if (v >= 1000) printf "%.2f s", v / 1000; else printf "%.0f ms", v }'; }
median() { sort -n "$1" | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
cell() {
  local m lo hi
  m=$(median "$1"); lo=$(sort -n "$1" | head -1); hi=$(sort -n "$1" | tail -1)
  echo "$(fmt "$m") ($(fmt "$lo")–$(fmt "$hi"))"
}
# printf pads by bytes; these cells hold "–" and "×", so pad by characters.
pad() { printf '%s%*s' "$1" $(($2 - ${#1})) ''; }
row() { echo "| $(pad "$1" 17) | $(pad "$2" 26) | $(pad "$3" 26) | $(pad "$4" 12) |"; }
echo
row "$steps steps" "berth recipe" "docker build (classic)" "berth/docker"
echo "|-------------------|----------------------------|----------------------------|--------------|"
for c in cold nochange changed; do
  case $c in cold) label=cold ;; nochange) label="no change" ;; changed) label="last step changed" ;; esac
  ratio=$(awk -v a="$(median "$work/berth-$c")" -v b="$(median "$work/docker-$c")" 'BEGIN { printf "%.2f×", a / b }')
  row "$label" "$(cell "$work/berth-$c")" "$(cell "$work/docker-$c")" "$ratio"
done
echo
echo "medians of $n runs (min–max), wall time of the one command; $(nproc) cores, kernel $(uname -r), docker $(docker version -f '{{.Server.Version}}'); load average now $(cut -d' ' -f1-3 /proc/loadavg)"
