#!/usr/bin/env bash
# What a new user gets from the registry, checked before publishing: a scratch project outside
# the workspace that depends on the packaged sources (unpacked under target/package/ by
# `cargo publish --workspace --dry-run`, or by `cargo package -p NAME` with its verification),
# by path, under a renamed dependency (`lock`), builds the README's quick start, runs it, and
# sees a second instance refused.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runtime=pidlockfile
macros=pidlockfile-macros
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
# The unpacked sources (directories; `--no-verify` leaves only the .crate files).
unpacked() {
    find "$target/package" -maxdepth 1 -type d -name "$1-[0-9]*" 2>/dev/null | sort | tail -1
}
runtime_dir=$(unpacked "$runtime")
macros_dir=$(unpacked "$macros")
if [[ -z $runtime_dir || -z $macros_dir ]]; then
    echo "no unpacked $runtime and $macros under $target/package: run \`cargo publish --workspace --dry-run\` first" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'kill "${first_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/src"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "myapp"
version = "0.1.0"
edition = "2024"

[dependencies]
lock = { package = "$runtime", path = "$runtime_dir" }

# The packaged runtime depends on the macro crate by version, as on the registry.
[patch.crates-io]
$macros = { path = "$macros_dir" }

[workspace]
TOML

# The README's quick start, under the renamed dependency, holding on until its stdin closes.
quick_start=$(awk '/^## Quick start/ {on = 1} on && /^```rust/ {code = 1; next} code && /^```/ {exit} code {print}' README.md)
grep -q "#\[$runtime::single_instance" <<<"$quick_start"
sed -e "s/#\[$runtime::single_instance/#[lock::single_instance/" \
    -e 's|// runs only while this process holds the lock|println!("running"); let _ = std::io::stdin().read_line(\&mut String::new());|' \
    <<<"$quick_start" > "$work/src/main.rs"
grep -q 'println!("running")' "$work/src/main.rs"

echo "-- building the quick start against $runtime_dir, as \`lock\`"
CARGO_TARGET_DIR="$target/packaged-check" cargo build --quiet --manifest-path "$work/Cargo.toml"
app="$target/packaged-check/debug/myapp"
# The lock's default place, in the scratch directory rather than this user's real one.
export TMPDIR=$work
unset XDG_RUNTIME_DIR

mkfifo "$work/in" "$work/out"
"$app" < "$work/in" > "$work/out" &
first_pid=$!
exec 3> "$work/in" 4< "$work/out"
read -r -t 60 line <&4
[[ $line == running ]] || { echo "the first instance said: $line" >&2; exit 1; }

set +e
second=$("$app" < /dev/null 2>&1)
status=$?
set -e
exec 3>&-
wait "$first_pid"
first_pid=
# The quick start waits up to its timeout (5 s), then refuses.
if [[ $status -ne 1 || ($second != *"is already running"* && $second != *"is still running after waiting"*) ]]; then
    echo "the second instance was not refused (status $status): $second" >&2
    exit 1
fi
echo "-- the second instance was refused: $second"
