#!/usr/bin/env bash
# Installs everything the tests need, then runs lint, types and every test.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# System programs the tests talk to, from Debian's packages.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
# Valkey, where the release has it (trixie and later); else scripts/valkey.sh fetches it below
if ! command -v valkey-server >/dev/null 2>&1 && apt-cache show valkey-server >/dev/null 2>&1; then
    missing+=(valkey-server)
fi
# the official io.prometheus.client schema, the oracle the protobuf tests decode with
[ -f /usr/share/gocode/src/github.com/prometheus/client_model/io/prometheus/client/metrics.proto ] ||
    missing+=(golang-github-prometheus-client-model-dev)
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo -n)
    if command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]} with apt-get"
        "${sudo_cmd[@]}" apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null || echo "could not install ${missing[*]}: the tests that need them will say so"
    else
        echo "no apt-get: install ${missing[*]} yourself; the tests that need them will say so"
    fi
fi

# Prometheus 3 (protobuf scrapes, native histograms) for tests/e2e/test_prometheus3.py and the
# Prometheus 3 half of tests/e2e/test_prometheus_scrape.py: a 3.x on
# the PATH, else Debian unstable's package unpacked into .cache/prometheus3/ (no apt config changed).
if PROMETHEUS3_BIN="$(bash scripts/prometheus3.sh)"; then
    export PROMETHEUS3_BIN
else
    echo "could not fetch Prometheus 3: its tests in tests/e2e/ will say so"
fi

# The current official protobuf schema (Debian unstable's client_model) for the protobuf tests;
# without it they use Debian stable's older copy (installed above), which lacks newer fields.
if PYTHEUS_METRICS_PROTO="$(bash scripts/metrics-proto.sh)"; then
    export PYTHEUS_METRICS_PROTO
else
    echo "could not fetch the current metrics.proto: the protobuf tests use Debian stable's (those needing newer fields fail under CI=true)"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,redis]'

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy --strict"
.venv/bin/mypy --strict
python_version() { "$1" -c 'import platform; print(platform.python_version())'; }
# Every test two at a time, but those of tests/e2e (a real Prometheus scraping real servers,
# timed against its scrape schedule), which run one at a time after them.
echo "== pytest (Python $(python_version .venv/bin/python), all but tests/e2e)"
.venv/bin/python -m pytest -n 2 --ignore=tests/e2e "$@"
# The behavioural suite again on the backends of pytheus-backend-rs 0.0.9, written for pytheus
# 0.6 (tests/backends_under_test.py; its RedisBackend has its own test in tests/test_backend_rs.py).
echo "== pytest (Python $(python_version .venv/bin/python), pytheus-backend-rs's backends)"
PYTHEUS_TEST_BACKENDS=rs_single,rs_atomic .venv/bin/python -m pytest -q -p no:cacheprovider \
    -n 2 -m "not e2e" -k "rs_single or rs_atomic" "$@"
echo "== pytest (Python $(python_version .venv/bin/python), tests/e2e)"
.venv/bin/python -m pytest tests/e2e "$@"

# The Redis backend's tests again on Valkey (tests/redis_server.py), the soak's Redis scenarios
# included: Debian's valkey-server, else the release's backports' package unpacked into
# .cache/valkey/ by scripts/valkey.sh (no apt configuration changed).
if VALKEY_SERVER="$(bash scripts/valkey.sh)"; then
    echo "== pytest (Python $(python_version .venv/bin/python), the Redis tests on $("$VALKEY_SERVER" --version | cut -d ' ' -f 1-3))"
    # the modules that drive the server: the Redis backend's own (Sentinel included), the
    # behavioural suite and the multi-process ones, on the Redis backend (the formats, the
    # middleware and the serving tests read the same stores: they ran on Redis above)
    PYTHEUS_TEST_REDIS_SERVER="$VALKEY_SERVER" .venv/bin/python -m pytest -q -p no:cacheprovider \
        -n 2 tests/test_redis_*.py tests/test_metrics.py tests/test_labels.py \
        tests/test_registry.py tests/test_summary_multiprocess.py tests/test_native_multiprocess.py \
        tests/test_remove_multiprocess.py tests/test_multiprocessing_patterns.py \
        tests/test_concurrency.py tests/test_threads.py tests/test_cli.py tests/test_process_end.py \
        -k "redis or Redis" "$@"
    PYTHEUS_TEST_REDIS_SERVER="$VALKEY_SERVER" .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/e2e/test_soak.py -k redis "$@"
elif [ "${CI:-}" = true ]; then
    echo "could not fetch Valkey: under CI=true its tests may not be skipped"
    exit 1
else
    echo "could not fetch Valkey: the Redis tests did not run on it"
fi

# The oldest supported Python and the newest other one this machine may have (python3.X on the
# PATH, or under pyenv), two at a time, without the end-to-end and system tests (real programs
# and servers, which ran above). Set PYTHEUS_OTHER_PYTHONS (e.g. "3.10 3.12 3.13") to choose.
# On those, the modules whose behaviour depends on the interpreter: every module imported (syntax
# and typing of the oldest), the metric API, exposition, signals and fork hooks, threads,
# asyncio middleware, quantiles. The whole suite runs on the main Python above; set
# PYTHEUS_OTHER_PYTHON_TESTS=tests to run all of it on the others too.
OTHER_PYTHON_TESTS="${PYTHEUS_OTHER_PYTHON_TESTS:-tests/test_import_no_io.py tests/test_metrics.py
    tests/test_labels.py tests/test_registry.py tests/test_exposition.py tests/test_openmetrics.py
    tests/test_quantiles.py tests/test_process_end.py tests/test_threads.py
    tests/test_middleware_asgi.py tests/test_store_contract.py tests/test_habits.py}"
for version in ${PYTHEUS_OTHER_PYTHONS-3.10 3.13}; do
    interpreter=""
    for candidate in "$(command -v "python$version" || true)" \
        "$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/"python$version" 2>/dev/null | tail -n 1)"; do
        if [ -n "$candidate" ] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
            interpreter="$candidate"
            break
        fi
    done
    if [ -z "$interpreter" ]; then
        echo "== Python $version: not on this machine, not tested"
        continue
    fi
    # kept between runs (and clones) in the user's cache: made here whenever it is missing
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/pytheus/venv-$version"
    if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$venv"
        "$interpreter" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,redis]'
    echo "== pytest (Python $(python_version "$venv/bin/python"), the interpreter-sensitive modules)"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 -m "not e2e and not system" \
        $OTHER_PYTHON_TESTS
done
