#!/usr/bin/env bash
# The README's main command: runs berth on the shipped example sandbox
# (examples/sandbox) against the local engine. The example's image is made
# here from the host's busybox; nothing is pulled from any registry.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
echo "demo: building berth"
cargo build --release --locked --quiet
image=berth-example/busybox:1
if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "demo: making $image from the host's busybox (rootfs + docker import)"
  scripts/test-image.sh "$image"
fi
berth=(target/release/berth --config examples/sandbox/berth.toml)
echo; echo "demo: \$ berth plan"; "${berth[@]}" plan
echo; echo "demo: \$ berth apply"; "${berth[@]}" apply
echo; echo "demo: \$ berth status"; "${berth[@]}" status
echo; echo "demo: \$ curl http://127.0.0.1:8080/   (example-web, published on 127.0.0.1 only)"
for _ in $(seq 1 20); do curl -fsS http://127.0.0.1:8080/ && break; sleep 0.25; done
echo
echo "demo: the containers keep running under the engine's restart policy."
echo "demo: edit examples/sandbox/db/docker_containers (or use"
echo "demo:   ${berth[*]} db docker_containers setprop example-web MaxMemory 128M)"
echo "demo: then run '${berth[*]} plan' to see what would change, and 'apply'."
echo "demo: to remove the example: docker rm -f example-web example-probe; docker network rm berth-example"
