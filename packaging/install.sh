#!/usr/bin/env bash
# A source install (the packages are the usual way: scripts/package.sh):
# binaries, default config, systemd unit, the berth group. Run from the
# repository after `cargo build --release`. Config files that exist are
# left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
install -D -m 0755 target/release/berth /usr/bin/berth
install -D -m 0755 target/release/berthd /usr/sbin/berthd
[ -e /etc/berth/berth.toml ] || install -D -m 0644 conf/berth.toml /etc/berth/berth.toml
# The host policy: root's, writable by root only (berth refuses it otherwise).
[ -e /etc/berth/policy.toml ] || install -D -o root -g root -m 0644 conf/policy.toml /etc/berth/policy.toml
# Registry and git credentials: root's alone (berth refuses it otherwise).
[ -e /etc/berth/credentials.toml ] || install -D -o root -g root -m 0600 conf/credentials.toml /etc/berth/credentials.toml
install -D -m 0644 systemd/berthd.service /lib/systemd/system/berthd.service
# The group whose members may use the API socket.
install -D -m 0644 systemd/berth.sysusers /usr/lib/sysusers.d/berth.conf
if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers berth.conf
else
  getent group berth >/dev/null || groupadd -r berth
fi
install -D -m 0644 README.md /usr/share/doc/berth/README.md
install -d -m 0755 /etc/berth/templates /etc/berth/templates-custom /etc/berth/events
# The shipped templates (reverse proxy for nginx and Apache); local changes
# belong in /etc/berth/templates-custom, which is never overwritten.
cp -a templates/. /etc/berth/templates/
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "installed; start with: systemctl enable --now berthd"
else
  echo "installed (no systemd running here: start berthd by hand)"
fi
