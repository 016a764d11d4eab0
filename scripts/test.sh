#!/usr/bin/env bash
# The whole test suite, with a closing line that counts what did not run:
#   scripts/test.sh [cargo test arguments...]
# Without root, PostgreSQL's server or flock(1), the tests that need them each say so in one
# "NOT RUN:" line and are counted as not run (see the README's "Testing"); the others run.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
bash scripts/test-summary.sh "$log" || status=$?
exit "$status"
