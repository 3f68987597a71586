#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: bootstrap (packages,
# npm ci, build), then tap. Tests start their own private redis-server,
# postgres and nginx, and a headless chromium. Ends with one line:
# "N passed, N failed, N skipped"; exits 0 only when tap exited 0, its
# summary was found and it counted no failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --test || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

out=$(mktemp)
npx tap "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
# tap's summary: "# { total: N, pass: N, fail: N, skip: N, todo: N }" (zero counts left out)
summary=$(grep -E '^# \{ total: ' "$out" | tail -n 1)
rm -f "$out"
count() { sed -nE "s/.*[{ ]$1: ([0-9]+).*/\\1/p" <<<"$summary"; }
pass=$(count pass)
failed=$(count fail)
skip=$(count skip)
todo=$(count todo)
pass=${pass:-0}
failed=${failed:-0}
skipped=$(( ${skip:-0} + ${todo:-0} ))
# A non-zero exit without counted failures (a file that crashed or timed out), or no summary at
# all (tap stopped before it), is a failure too.
if [ "$failed" -eq 0 ] && { [ "$rc" -ne 0 ] || [ -z "$summary" ]; }; then failed=1; fi
echo "$pass passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || exit 1
