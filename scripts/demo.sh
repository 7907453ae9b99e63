#!/usr/bin/env bash
# The README's main command: runs berthd in the foreground on the shipped
# example sandbox (examples/sandbox) against the local engine. The example's
# image is made here from the host's busybox; nothing is pulled.
# Ctrl-C stops berthd cleanly; the containers keep running.
# DEMO_SECONDS=N stops it by itself after N seconds (for unattended runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
echo "demo: building berth (release)"
cargo build --release --locked --quiet
image=berth-example/busybox:1
if ! docker image inspect "$image" >/dev/null 2>&1; then
  echo "demo: making $image from the host's busybox (rootfs + docker import)"
  scripts/test-image.sh "$image" >/dev/null
fi
config=examples/sandbox/berth.toml
berth=(target/release/berth --config "$config")

echo; echo "demo: \$ berth plan      (what berthd is about to do, and why)"
"${berth[@]}" plan

echo; echo "demo: starting berthd in the foreground (Ctrl-C stops it)"
target/release/berthd --config "$config" &
daemon=$!
stop() { kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon"; echo "demo: berthd stopped; the containers keep running"; exit 0; }
trap stop INT TERM

for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/ 2>/dev/null && break
  sleep 0.2
done
echo; echo "demo: \$ berth status"; "${berth[@]}" status
echo; echo "demo: \$ curl http://127.0.0.1:8080/    (example-web, published on 127.0.0.1 only)"
curl -fsS http://127.0.0.1:8080/ || echo "demo: example-web does not answer yet"
cat <<TXT

demo: berthd is running. In another terminal, try:
demo:   ${berth[*]} db docker_containers setprop example-web MaxMemory 128M
demo:   ${berth[*]} history example-web
demo:   docker rm -f example-probe          (berthd brings it back)
demo: Ctrl-C stops berthd. To remove the example afterwards:
demo:   docker rm -f example-web example-probe example-batch; docker network rm berth-example; docker volume rm example-web_www  (berth never deletes data itself)
TXT
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
  stop
fi
wait "$daemon"
