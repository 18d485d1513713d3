#!/usr/bin/env bash
# Prints the path of a valkey-server binary, fetching one when none is at hand.
#
# Order: $VALKEY_SERVER_BIN if it runs as Valkey; `valkey-server` on the PATH (Debian's
# valkey-server package, where the machine's release has it: scripts/test.sh installs it); the
# copy cached in .cache/valkey/ (git-ignored); else the release's backports' valkey-tools package
# (the server binary; Debian's valkey-server package only links to it), fetched by
# scripts/debian-package.sh (the machine's apt configuration is left alone).
#
# Usage: bash scripts/valkey.sh     (stdout: the binary's path; nothing else on success)
# Exits non-zero with a message on stderr when Valkey cannot be found or fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="$PWD/.cache/valkey"
CACHED="$CACHE/root/usr/bin/valkey-server"

fail() {
    echo "valkey.sh: $*" >&2
    exit 1
}

is_valkey() {
    [ -n "$1" ] && [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q '^Valkey server'
}

if [ -n "${VALKEY_SERVER_BIN:-}" ]; then
    is_valkey "$VALKEY_SERVER_BIN" || fail "VALKEY_SERVER_BIN=$VALKEY_SERVER_BIN is not a valkey-server"
    echo "$VALKEY_SERVER_BIN"
    exit 0
fi
on_path="$(command -v valkey-server 2>/dev/null || true)"
if is_valkey "$on_path"; then
    echo "$on_path"
    exit 0
fi
if is_valkey "$CACHED"; then
    echo "$CACHED"
    exit 0
fi

codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
[ -n "$codename" ] || fail "no VERSION_CODENAME in /etc/os-release: which Debian release is this?"
bash scripts/debian-package.sh valkey-tools "$CACHE.new" "$codename-backports" ||
    fail "could not fetch valkey-tools from $codename-backports"
ln -sf valkey-check-rdb "$CACHE.new/root/usr/bin/valkey-server"  # as Debian's valkey-server does
is_valkey "$CACHE.new/root/usr/bin/valkey-server" ||
    fail "$(cat "$CACHE.new/package") does not hold a working valkey-server"
rm -rf "$CACHE"
mv "$CACHE.new" "$CACHE"
echo "$CACHED"
