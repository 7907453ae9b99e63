#!/usr/bin/env bash
# Builds the packages from this tree:
#   target/package/berth_<version>-1_<arch>.deb   (cargo-deb)
#   target/package/berth-<version>-1.<arch>.rpm   (cargo-generate-rpm)
# with the man pages and completions generated from the CLI definitions
# (`berth generate-docs`, hidden). Reproducible: the same tree gives the same
# files, byte for byte (timestamps are the last commit's, build paths are
# remapped, man pages gzipped without names or times).
#
# scripts/package.sh [--version V] [--out DIR]
#   --version V  package version V instead of Cargo.toml's (e.g. a test's
#                "upgrade": the same build under a newer version)
set -euo pipefail
cd "$(dirname "$0")/.."

version=""
out=target/package
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--version V] [--out DIR]" >&2; exit 2 ;;
  esac
done

# The crates-based tools, at the versions this was made with.
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --version 3.8.0 --locked
command -v cargo-generate-rpm >/dev/null 2>&1 || cargo install cargo-generate-rpm --version 0.21.1 --locked

# Timestamps: the last commit's (the same tree gives the same archive).
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)
fi
export SOURCE_DATE_EPOCH
# No build path in the binaries: a clone elsewhere builds the same bytes.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export RUSTFLAGS="--remap-path-prefix=$PWD=/usr/src/berth --remap-path-prefix=$cargo_home=/cargo"

cargo build --locked --profile dist --bins

# What the packages take from the tree, staged with the commit's time (the
# packers keep a file's own time when it is older, so a checkout's age
# would show), and the docs generated beside it.
stage=target/dist-stage
rm -rf "$stage"
mkdir -p "$stage"
cp -a --parents conf templates systemd packaging README.md CHANGELOG.md "$stage"/
target/dist/berth generate-docs "$stage/docs"
gzip -9n "$stage"/docs/man/*
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb_args=()
rpm_args=()
if [ -n "$version" ]; then
  deb_args+=(--deb-version "$version-1")
  rpm_args+=(--set-metadata "version = \"$version\"")
fi
cargo deb --locked --no-build --profile dist --output "$out" "${deb_args[@]}"
# gzip, not zstd: EL7's rpm (SME Server 10) reads no zstd payload.
cargo generate-rpm --profile dist --payload-compress gzip --output "$out" "${rpm_args[@]}"
ls -1 "$out"
