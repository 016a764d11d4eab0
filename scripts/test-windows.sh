#!/usr/bin/env bash
# Cross-compiles the Windows build (x86_64-pc-windows-gnu) and runs its multi-process tests and
# the #[single_instance] fixture binaries under Wine, in a fresh Wine prefix that is removed
# afterwards. Installs what it needs (Debian's wine, mingw-w64, the rustup target) if missing.
# Any failure, missing tool or test that did not run fails the script: nothing is skipped.
#
# What Wine proves and does not prove is in the README ("Platforms").
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target=x86_64-pc-windows-gnu
started=$(date +%s)

need_packages=()
command -v wine >/dev/null || need_packages+=(wine wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null || need_packages+=(gcc-mingw-w64-x86-64)
if ((${#need_packages[@]})); then
    echo "== apt-get install ${need_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need_packages[@]}"
fi
rustup target add "$target"

work=$(mktemp -d "${TMPDIR:-/tmp}/pidlock-wine.XXXXXX")
export WINEPREFIX="$work/prefix"
# Quiet Wine's own diagnostics, and skip the Mono and Gecko installers a new prefix offers.
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
cleanup() {
    # Stop this prefix's wineserver (and with it any process left in the prefix), then remove it.
    WINEPREFIX="$WINEPREFIX" timeout 30 wineserver -k 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== wineboot --init (fresh prefix in $WINEPREFIX)"
timeout 300 wine wineboot --init
timeout 120 wineserver -w

# Wine 8 has no ProcessPrng in bcryptprimitives.dll, which Rust's std imports: every std binary
# fails to start with c0000135 without this stub, which asks RtlGenRandom instead.
echo "== bcryptprimitives.dll with ProcessPrng"
cat >"$work/prng.c" <<'EOF'
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
EOF
printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\nProcessPrng\n' >"$work/prng.def"
x86_64-w64-mingw32-gcc -shared -O2 -o "$work/bcryptprimitives.dll" "$work/prng.c" "$work/prng.def" -ladvapi32
cp "$work/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"

echo "== cargo clippy --target $target"
cargo clippy --workspace --all-targets --target "$target" -- -D warnings

# Tests run under `wine`; every wait in them is bounded, and this bounds the whole run too.
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
tests=(--test seed_contract --test windows --test contention --test single_instance
    --test single_instance_scopes --test forward)

echo "== cargo build (tests and fixture binaries for $target)"
cargo test --target "$target" -p pidlock-tests "${tests[@]}" --no-run
cargo test --target "$target" -p pidlockfile --lib --no-run

log="$work/test.log"
echo "== cargo test under Wine"
timeout 900 cargo test --target "$target" -p pidlockfile --lib 2>&1 | tee "$log"
timeout 900 cargo test --target "$target" -p pidlock-tests "${tests[@]}" 2>&1 | tee -a "$log"

# Each test binary must have run and passed: a binary that ran no tests, or failed to start
# under Wine, counts as a failure.
binaries=$(grep -c '^test result: ok\. ' "$log" || true)
expected=$((${#tests[@]} / 2 + 1))
if grep -q '^test result: FAILED' "$log" || [ "$binaries" -ne "$expected" ]; then
    echo "windows tests: $binaries of $expected test binaries passed" >&2
    exit 1
fi
if grep -Eq '^test result: ok\. 0 passed' "$log"; then
    echo "windows tests: a test binary ran no tests" >&2
    exit 1
fi
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
echo "windows tests under Wine: $passed passed, 0 failed, in $(($(date +%s) - started)) s"
