#!/bin/sh
# Makes a tiny busybox image without any registry: a rootfs holding the
# static busybox and a link per applet, imported with `docker import`.
#
#   scripts/test-image.sh NAME:TAG [VARIANT]
#
# VARIANT, if given, is written to /etc/berth-variant in the image, so two
# builds can be told apart by their content too (every import gets a new
# image ID anyway). Prints the new image ID on stdout.
# Needs: docker, tar, and busybox-static (apt-get install -y busybox-static).
set -eu

usage() { echo "usage: $0 NAME:TAG [VARIANT]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
ref=$1
variant=${2-}

busybox=${BUSYBOX:-}
if [ -z "$busybox" ]; then
    for candidate in /bin/busybox /usr/bin/busybox; do
        [ -x "$candidate" ] && busybox=$candidate && break
    done
fi
[ -n "$busybox" ] || { echo "$0: busybox not found (apt-get install -y busybox-static)" >&2; exit 1; }
# A dynamically linked busybox would not run in an image without libc.
if command -v file >/dev/null 2>&1 && file -L "$busybox" | grep -q 'dynamically linked'; then
    echo "$0: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/berth-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT INT TERM

mkdir -p "$rootfs/bin" "$rootfs/sbin" "$rootfs/usr/bin" "$rootfs/usr/sbin" \
    "$rootfs/etc" "$rootfs/root" "$rootfs/tmp" "$rootfs/var/www" \
    "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$rootfs/bin/$applet"
done
# Scripts in images often start with #!/usr/bin/env.
ln -sf ../../bin/busybox "$rootfs/usr/bin/env"

cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
if [ -n "$variant" ]; then
    printf '%s\n' "$variant" >"$rootfs/etc/berth-variant"
fi

# Owned by root whoever runs this, so the image does not depend on the builder.
tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -c . | docker import - "$ref"
