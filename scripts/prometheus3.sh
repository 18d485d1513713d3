#!/usr/bin/env bash
# Prints the path of a Prometheus 3 binary, fetching one when none is at hand.
#
# Order: $PROMETHEUS3_BIN if it runs as 3.x; `prometheus` on the PATH if it is 3.x; the copy
# cached in .cache/prometheus3/ (git-ignored); else Debian unstable's `prometheus` package,
# downloaded with apt-get and unpacked there with `dpkg -x`. The machine's apt configuration is
# left alone: a temporary sources list and state directories are used, and the mirror is the
# one the machine's own sources already use (override with PROMETHEUS3_MIRROR).
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

command -v apt-get >/dev/null 2>&1 || fail "no Prometheus 3 on the PATH and no apt-get to fetch one"
command -v dpkg >/dev/null 2>&1 || fail "no Prometheus 3 on the PATH and no dpkg to unpack one"

# The Debian mirror the machine's apt sources already use (only that host may be reachable).
mirror="${PROMETHEUS3_MIRROR:-}"
if [ -z "$mirror" ]; then
    for sources in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$sources" ] || continue
        mirror="$(
            sed -n -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([a-z+]*:\/\/[^[:space:]]*\/debian\/\?\)[[:space:]].*/\2/p' \
                -e 's/^[[:space:]]*URIs:.*[[:space:]]\([a-z+]*:\/\/[^[:space:]]*\/debian\/\?\)\([[:space:]].*\)\?$/\1/p' \
                "$sources" | head -n 1
        )"
        [ -n "$mirror" ] && break
    done
fi
[ -n "$mirror" ] || fail "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list(.d); set PROMETHEUS3_MIRROR"
mirror="${mirror%/}"

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || fail "no $keyring to check Debian unstable's signature (package debian-archive-keyring)"

work="$(mktemp -d "${TMPDIR:-/tmp}/prometheus3.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/cache"
echo "deb [signed-by=$keyring] $mirror unstable main" >"$work/sources.list"
apt_options=(
    -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o "Dir::Cache::Archives=$work/archives"
    -o "Debug::NoLocking=true"
    -o "APT::Sandbox::User=$(id -un)"
)
apt-get -qq "${apt_options[@]}" --error-on=any update >"$work/apt.log" 2>&1 ||
    fail "apt-get update of $mirror unstable failed:
$(tail -n 5 "$work/apt.log")"
(cd "$work" && apt-get -qq "${apt_options[@]}" download prometheus/unstable >>"$work/apt.log" 2>&1) ||
    fail "apt-get download prometheus from $mirror unstable failed:
$(tail -n 5 "$work/apt.log")"
deb="$(ls "$work"/prometheus_*.deb 2>/dev/null | head -n 1)"
[ -n "$deb" ] || fail "apt-get download left no prometheus_*.deb"

rm -rf "$CACHE.new"
mkdir -p "$CACHE.new"
dpkg -x "$deb" "$CACHE.new/root" || fail "dpkg -x $deb failed"
basename "$deb" >"$CACHE.new/package"
is_3 "$CACHE.new/root/usr/bin/prometheus" ||
    fail "$(basename "$deb") does not hold a working Prometheus 3: $("$CACHE.new/root/usr/bin/prometheus" --version 2>&1 | head -n 1)"
rm -rf "$CACHE"
mv "$CACHE.new" "$CACHE"
echo "$CACHED"
