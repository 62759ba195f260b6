#!/usr/bin/env bash
# Brings a fresh machine (Node, npm, python3, make, g++) to what vab's commands and tests need:
# the Debian tools that make and mount filesystems, and the npm packages from the lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, by the command each one provides.
declare -A wanted=(
  [mkfs.ext4]=e2fsprogs
  [mkfs.erofs]=erofs-utils
  [losetup]=mount
  [mount]=mount
  [bsdiff]=bsdiff
  [xz]=xz-utils
  [bzip2]=bzip2
  [zstd]=zstd
  [lz4]=lz4
  [openssl]=openssl
)
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run this script as root to install them" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# npm packages: reinstall only when the lock file changed since the last install.
stamp=node_modules/.vab-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi
