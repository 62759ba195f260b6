#!/usr/bin/env bash
# Builds a small two-version device for the lifecycle demo, the crash tests and the apply/boot tests:
#   OUT/old/system.img  erofs: bin/hello, bin/postinst, etc/release "1.0", share/ data files
#   OUT/old/vendor.img  ext4, 8 MiB
#   OUT/new/system.img  erofs: release "2.0", some data files changed, some added, one removed
#   OUT/new/vendor.img  ext4, 12 MiB (the partition grows), a few files changed
#   OUT/keys/ota.pem, OUT/keys/ota.pub   a fresh 2048-bit RSA key pair for signing the payload
# bin/postinst is the post-install program: it reads every file of its partition, reports
# `global_progress` lines on fd 3 as Android's update_engine expects, and fails when a read fails.
# Usage: scripts/make-device.sh OUT [DATA_FILES]   (default 48 data files of 64 KiB each)
set -euo pipefail
out="${1:?usage: make-device.sh OUT [DATA_FILES]}"
files="${2:-48}"
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out/old" "$out/new" "$out/keys"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

make_tree() { # version dir
  local version="$1" dir="$2"
  mkdir -p "$dir/system/bin" "$dir/system/etc" "$dir/system/share" "$dir/vendor/etc" "$dir/vendor/lib"
  cp "$root/fixtures/rootfs/bin/hello" "$dir/system/bin/hello"
  echo "vab demo $version" > "$dir/system/etc/release"
  cat > "$dir/system/bin/postinst" <<'SH'
#!/bin/sh
# Post-install: read every file of this partition, report progress on fd 3 (update_engine's protocol).
root=$(cd "$(dirname "$0")/.." && pwd)
total=$(find "$root" -type f | wc -l)
n=0
for f in $(find "$root" -type f | sort); do
  cat "$f" > /dev/null || { echo "postinst: cannot read $f" >&2; exit 1; }
  n=$((n + 1))
  echo "global_progress $(awk "BEGIN { printf \"%.3f\", $n / $total }")" >&3
done
echo "postinst: read $n files for slot $1"
SH
  chmod 0755 "$dir/system/bin/hello" "$dir/system/bin/postinst"
  python3 - "$dir" "$version" "$files" <<'PY'
import hashlib, os, sys
d, version, files = sys.argv[1], sys.argv[2], int(sys.argv[3])
def blob(name, size):
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}:{i}".encode()).digest()
        i += 1
    return bytes(out[:size])
for i in range(files):
    # In 2.0 every fourth file changes, the last is removed, and two are added.
    if version == "2.0" and i == files - 1:
        continue
    tag = version if (version == "2.0" and i % 4 == 0) else "1.0"
    with open(os.path.join(d, "system/share", f"data{i:03}.bin"), "wb") as f:
        f.write(blob(f"data{i}:{tag}", 64 * 1024))
if version == "2.0":
    for i in range(2):
        with open(os.path.join(d, "system/share", f"added{i}.bin"), "wb") as f:
            f.write(blob(f"added{i}", 48 * 1024))
for i in range(8):
    tag = version if i < 2 else "1.0"
    with open(os.path.join(d, "vendor/lib", f"lib{i}.so"), "wb") as f:
        f.write(blob(f"lib{i}:{tag}", 96 * 1024))
with open(os.path.join(d, "vendor/etc/vendor.prop"), "w") as f:
    f.write(f"ro.vendor.build.version={version}\n")
PY
  find "$dir" -exec touch -h -d @1700000000 {} +
}

build() { # version outdir vendor_size
  local version="$1" target="$2" vendor_size="$3"
  make_tree "$version" "$stage/$version"
  rm -f "$target/system.img" "$target/vendor.img"
  mkfs.erofs --quiet --all-root -T 1700000000 -U 6b6a6c3e-0000-4000-8000-000000000011 "$target/system.img" "$stage/$version/system"
  # erofs images end wherever their data does; partitions are whole 4 KiB blocks.
  truncate -s %4096 "$target/system.img"
  E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 4096 -U 6b6a6c3e-0000-4000-8000-000000000012 \
    -E root_owner=0:0,hash_seed=6b6a6c3e-0000-4000-8000-000000000013 -d "$stage/$version/vendor" "$target/vendor.img" "$vendor_size" >/dev/null
}

build 1.0 "$out/old" 8M
build 2.0 "$out/new" 12M
if [ ! -f "$out/keys/ota.pem" ]; then
  openssl genrsa -out "$out/keys/ota.pem" 2048 2>/dev/null
  openssl rsa -in "$out/keys/ota.pem" -pubout -out "$out/keys/ota.pub" 2>/dev/null
fi
echo "$out"
