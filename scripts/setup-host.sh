#!/usr/bin/env bash
# Installs and starts what berth and its tests need on a fresh Debian host:
# the Docker engine (Debian's docker.io) and busybox-static, from which
# images are made locally (nothing is ever pulled); Podman is installed,
# not started (the tests start their own service).
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] && busybox --list 2>/dev/null | grep -qx httpd || need+=(busybox-static)
command -v git >/dev/null 2>&1 || need+=(git)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Real reverse proxies for the template tests (not started as services).
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ] || need+=(apache2)
# A real registry for the push tests.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
# Podman, whose Docker-compatible API the engine tests run against too
# (scripts/podman-service.sh starts it; aardvark-dns resolves names on its
# networks).
command -v podman >/dev/null 2>&1 || need+=(podman)
dpkg -s aardvark-dns >/dev/null 2>&1 || need+=(aardvark-dns)
# The package tests: a Debian root with systemd and lintian for the .deb,
# rpm and rpmlint for the .rpm.
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v rpm >/dev/null 2>&1 || need+=(rpm)
command -v rpmlint >/dev/null 2>&1 || need+=(rpmlint)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd (log: /var/log/berth-dockerd.log)"
  nohup dockerd >/var/log/berth-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not come up; see /var/log/berth-dockerd.log" >&2; exit 1; }
fi
echo "setup: docker engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
