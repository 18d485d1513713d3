#!/usr/bin/env bash
# Prints the path of the current official metrics.proto (io.prometheus.client), fetching it.
#
# The protobuf tests decode pytheus's output with this schema. Debian stable's
# golang-github-prometheus-client-model-dev (0.3.0) predates the fields Prometheus 3 reads
# (native histogram exemplars, created timestamps), so Debian unstable's package is unpacked
# into .cache/client-model/ (git-ignored) by scripts/debian-package.sh.
#
# Usage: bash scripts/metrics-proto.sh     (stdout: the file's path; nothing else on success)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="$PWD/.cache/client-model"
PROTO="root/usr/share/gocode/src/github.com/prometheus/client_model/io/prometheus/client/metrics.proto"

if [ ! -f "$CACHE/$PROTO" ]; then
    bash scripts/debian-package.sh golang-github-prometheus-client-model-dev "$CACHE" >&2
    [ -f "$CACHE/$PROTO" ] || { echo "metrics-proto.sh: $(cat "$CACHE/package") has no $PROTO" >&2; exit 1; }
fi
echo "$CACHE/$PROTO"
