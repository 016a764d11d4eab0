#!/usr/bin/env bash
# The closing line of a test run, from its log (cargo test's output, stderr included):
#   tests: P passed, F failed, N not run
# A test that could not run here (no PostgreSQL server, not root, no flock(1)) prints one line
# starting with "NOT RUN:" (pidlock-test-support's skip!) and passes as far as cargo is
# concerned; it is counted here as not run, not as passed. With --require-all, any test not run
# fails the run (for .ci/run, which runs as root with everything installed).
set -euo pipefail
require_all=false
if [[ ${1:-} == --require-all ]]; then
    require_all=true
    shift
fi
log=${1:?usage: test-summary.sh [--require-all] LOG}

ran=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -E 'test result: ' "$log" | grep -Eo '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
# The line may follow "test NAME ... " on the same line (--test-threads=1), so count the marker
# wherever it is, once per line.
not_run=$(grep -c 'NOT RUN: ' "$log" || true)
passed=$((ran - not_run))
if ((not_run > 0)); then
    echo "not run here:"
    grep -o 'NOT RUN: .*' "$log" | sed 's/^NOT RUN: /  /'
fi
echo "tests: $passed passed, $failed failed, $not_run not run"
if ((failed > 0)); then
    exit 1
fi
if $require_all && ((not_run > 0)); then
    echo "every test must run here; see above for what each one needs" >&2
    exit 1
fi
