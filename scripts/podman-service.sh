#!/usr/bin/env bash
# Starts Podman's Docker-compatible API for the tests' Podman group (rootful,
# Debian's podman), on its own socket so it never stands in for Docker's:
#
#   scripts/podman-service.sh        prints the DOCKER_HOST to use
#
# Its containers.conf sets what rootful Podman needs on a host like this
# one, where the default rlimits are refused by runc ("error setting
# rlimits"), and the pids limit Docker has (none), so a container berth
# leaves unlimited is unlimited on both engines.
set -euo pipefail

dir=/run/berth-test-podman
socket=$dir/podman.sock
command -v podman >/dev/null 2>&1 || {
  echo "podman-service: podman is not installed (apt-get install -y podman)" >&2
  exit 1
}
mkdir -p "$dir"
cat >"$dir/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
pids_limit = 0
CONF
# Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP, or a
# certificate it does not check); Podman only those registries.conf names.
# The tests' registries listen on 127.0.0.1 (any port).
cat >"$dir/registries.conf" <<'CONF'
[[registry]]
location = "127.0.0.1"
insecure = true
CONF
if ! curl -sf --max-time 2 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; then
  rm -f "$socket"
  # From /: the service outlives this run, and conmon fails every create
  # ("Failed to get working directory") once the folder it started in
  # (a CI clone) is removed.
  cd /
  CONTAINERS_CONF=$dir/containers.conf CONTAINERS_REGISTRIES_CONF=$dir/registries.conf nohup podman system service --time=0 \
    "unix://$socket" >/var/log/berth-test-podman.log 2>&1 &
  for _ in $(seq 1 60); do
    curl -sf --max-time 2 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -sf --max-time 2 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1 || {
    echo "podman-service: the service did not come up; see /var/log/berth-test-podman.log" >&2
    exit 1
  }
fi
echo "unix://$socket"
