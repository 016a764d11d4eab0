#!/usr/bin/env bash
# Checks that the runtime crate builds, lint-clean, for the Unix targets we support beyond Linux:
# the portable fallbacks (no inotify, no /proc/locks, no O_TMPFILE) are compiled there.
# Windows is out of scope: building for it stops at a compile_error! that says so.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)
rustup target add "${targets[@]}"
for target in "${targets[@]}"; do
    echo "== $target"
    cargo clippy -p pidlock --all-features --target "$target" -- -D warnings
done
echo "all targets check"
