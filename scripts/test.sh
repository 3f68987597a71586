#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: bootstrap (packages,
# npm ci, build), then tap. Tests start their own private redis-server,
# postgres and nginx. Ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --with-nginx || { echo "0 passed, 1 failed"; exit 1; }

out=$(mktemp)
npx tap "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
# tap's summary: "# { total: N, pass: N, fail: N, ... }" (fail absent when 0)
summary=$(grep -E '^# \{ total: ' "$out" | tail -n 1)
total=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$summary")
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
rm -f "$out"
total=${total:-0}
pass=${pass:-0}
failed=$((total - pass))
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$pass passed, $failed failed"
exit "$rc"
