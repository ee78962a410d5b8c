#!/bin/sh
# tools/deps.sh — installs the Debian packages Loom needs (as root), or prints the command.
#   tools/deps.sh          install what is missing
#   tools/deps.sh --check  exit 1 when something is missing, printing what
set -eu

PACKAGES="make gcc clang pkg-config libyaml-dev libcjson-dev libpng-dev libjpeg-dev libwebp-dev
libopenblas-dev libxxhash-dev liblua5.4-dev libcivetweb-dev libsqlite3-dev zlib1g-dev
libclang-rt-14-dev"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    [ "${1:-}" = "--check" ] || echo "deps: every package is installed"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "deps: missing:$missing"
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing:$missing" >&2
    echo "deps: run as root:  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
