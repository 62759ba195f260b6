#!/usr/bin/env bash
# Builds the project's fixture images from fixtures/rootfs into an output directory:
#   system.erofs  (erofs, as Android ships system partitions)
#   system.ext4   (ext4, 4 KiB blocks)
# Both hold the rootfs tree plus share/pattern.bin, 2 MiB made here so that reading a file back
# moves real data through the block file. The images are byte-reproducible.
# Usage: scripts/make-fixtures.sh [OUT_DIR]   (default fixtures/build)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/fixtures/build}"
mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -a "$root/fixtures/rootfs/." "$stage/"
mkdir -p "$stage/share"
python3 - "$stage/share/pattern.bin" <<'PY'
import hashlib, sys
# A counter hashed block by block: incompressible, and any misplaced block shows up.
with open(sys.argv[1], "wb") as f:
    for i in range(2 * 1024 * 1024 // 32):
        f.write(hashlib.sha256(i.to_bytes(8, "little")).digest())
PY
find "$stage" -exec touch -h -d @1700000000 {} +
mkfs.erofs --quiet --all-root -T 1700000000 -U 6b6a6c3e-0000-4000-8000-000000000001 "$out/system.erofs" "$stage"
rm -f "$out/system.ext4"
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 4096 -U 6b6a6c3e-0000-4000-8000-000000000002 \
  -E root_owner=0:0,hash_seed=6b6a6c3e-0000-4000-8000-000000000003 -d "$stage" "$out/system.ext4" 8M >/dev/null
echo "$out"
