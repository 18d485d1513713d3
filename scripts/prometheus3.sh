#!/usr/bin/env bash
# Prints the path of a Prometheus 3 binary, fetching one when none is at hand.
#
# Order: $PROMETHEUS3_BIN if it runs as 3.x; `prometheus` on the PATH if it is 3.x; the copy
# cached in .cache/prometheus3/ (git-ignored); else Debian unstable's `prometheus` package,
# fetched by scripts/debian-package.sh (the machine's apt configuration is left alone).
#
# Usage: bash scripts/prometheus3.sh     (stdout: the binary's path; nothing else on success)
# Exits non-zero with a message on stderr when Prometheus 3 cannot be found or fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="$PWD/.cache/prometheus3"
CACHED="$CACHE/root/usr/bin/prometheus"

fail() {
    echo "prometheus3.sh: $*" >&2
    exit 1
}

# The major version of the prometheus binary $1, or nothing if it does not run.
major() {
    "$1" --version 2>/dev/null | sed -n '1s/^prometheus, version \([0-9][0-9]*\)\..*/\1/p'
}

is_3() {
    [ -n "$1" ] && [ -x "$1" ] && [ "$(major "$1")" = 3 ]
}

if [ -n "${PROMETHEUS3_BIN:-}" ]; then
    is_3 "$PROMETHEUS3_BIN" || fail "PROMETHEUS3_BIN=$PROMETHEUS3_BIN is not a Prometheus 3 binary"
    echo "$PROMETHEUS3_BIN"
    exit 0
fi
on_path="$(command -v prometheus 2>/dev/null || true)"
if is_3 "$on_path"; then
    echo "$on_path"
    exit 0
fi
if is_3 "$CACHED"; then
    echo "$CACHED"
    exit 0
fi

bash scripts/debian-package.sh prometheus "$CACHE.new" ||
    fail "could not fetch Debian unstable's prometheus package"
is_3 "$CACHE.new/root/usr/bin/prometheus" ||
    fail "$(cat "$CACHE.new/package") does not hold a working Prometheus 3: $("$CACHE.new/root/usr/bin/prometheus" --version 2>&1 | head -n 1)"
rm -rf "$CACHE"
mv "$CACHE.new" "$CACHE"
echo "$CACHED"
