#!/usr/bin/env bash
# Checks that the runtime crate builds, lint-clean, for the targets we support beyond Linux: the
# Unix ones, where the portable fallbacks (no inotify, no /proc/locks, no O_TMPFILE) are
# compiled, and Windows (MSVC on x86_64 and aarch64), where the LockFileEx backend is. `cargo
# clippy` stops before linking, so no Windows SDK or linker is needed. The `postgres` feature
# is left out here: its TLS crypto (ring) compiles C for the target, which needs that target's
# C toolchain; it is checked on Linux, and for Windows by scripts/test-windows.sh, which builds
# and tests the GNU Windows target under Wine with mingw-w64.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd
    x86_64-pc-windows-msvc aarch64-pc-windows-msvc)
rustup target add "${targets[@]}"
for target in "${targets[@]}"; do
    echo "== $target"
    cargo clippy -p pidlockfile --features macros --target "$target" -- -D warnings
done
echo "all targets check"
