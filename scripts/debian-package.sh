#!/usr/bin/env bash
# Downloads one package from a Debian suite (default: unstable) and unpacks it, leaving the
# machine's apt alone.
#
# Used for what the machine's Debian release is too old for or lacks: Prometheus 3
# (scripts/prometheus3.sh) and the current io.prometheus.client schema (scripts/metrics-proto.sh)
# from unstable, Valkey from the release's backports (scripts/valkey.sh). A temporary sources list
# and state directories are used; the mirror is the one the machine's own sources already use
# (override with DEBIAN_UNSTABLE_MIRROR). The package is checked against Debian's archive key.
#
# Usage: bash scripts/debian-package.sh PACKAGE DEST [SUITE]
#   unpacks PACKAGE's files under DEST/root (replacing DEST whole, atomically) and writes the
#   .deb's file name to DEST/package. Exits non-zero with a message on stderr on failure.
set -euo pipefail

package="${1:?usage: debian-package.sh PACKAGE DEST [SUITE]}"
dest="${2:?usage: debian-package.sh PACKAGE DEST [SUITE]}"
suite="${3:-unstable}"

fail() {
    echo "debian-package.sh: $*" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "no apt-get to fetch $package"
command -v dpkg >/dev/null 2>&1 || fail "no dpkg to unpack $package"

# The Debian mirror the machine's apt sources already use (only that host may be reachable).
mirror="${DEBIAN_UNSTABLE_MIRROR:-${PROMETHEUS3_MIRROR:-}}"
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
[ -n "$mirror" ] || fail "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list(.d); set DEBIAN_UNSTABLE_MIRROR"
mirror="${mirror%/}"

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || fail "no $keyring to check Debian's signature (package debian-archive-keyring)"

work="$(mktemp -d "${TMPDIR:-/tmp}/debian-package.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/cache"
echo "deb [signed-by=$keyring] $mirror $suite main" >"$work/sources.list"
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
    fail "apt-get update of $mirror $suite failed:
$(tail -n 5 "$work/apt.log")"
(cd "$work" && apt-get -qq "${apt_options[@]}" download "$package/$suite" >>"$work/apt.log" 2>&1) ||
    fail "apt-get download $package from $mirror $suite failed:
$(tail -n 5 "$work/apt.log")"
deb="$(ls "$work/${package}"_*.deb 2>/dev/null | head -n 1)"
[ -n "$deb" ] || fail "apt-get download left no ${package}_*.deb"

rm -rf "$dest.new"
mkdir -p "$dest.new"
dpkg -x "$deb" "$dest.new/root" || fail "dpkg -x $deb failed"
basename "$deb" >"$dest.new/package"
rm -rf "$dest"
mv "$dest.new" "$dest"
