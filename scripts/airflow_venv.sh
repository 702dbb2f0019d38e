#!/usr/bin/env bash
# Create (once per machine) and print the path of a virtualenv with a real Apache Airflow, for the
# end-to-end test (tests/airflow). The venv lives in the machine-wide cache of scripts/pg.py
# (beside the PostgreSQL binaries and the Patroni venv: /var/cache/dataplane-postgresql as root,
# ~/.cache/dataplane-postgresql otherwise, or $DATAPLANE_PG_CACHE), one per set of pinned
# packages, shared by every checkout and reused afterwards; a machine without it builds it from
# PyPI (about 75 s, 300 MB).
#
#   bash scripts/airflow_venv.sh        # prints the venv's directory on the last line
set -euo pipefail
cd "$(dirname "$0")/.."
AIRFLOW_VERSION=${AIRFLOW_VERSION:-3.3.2}
PACKAGES=("apache-airflow-core==$AIRFLOW_VERSION" psycopg2-binary asyncpg)
WANT=$(printf '%s\n' "${PACKAGES[@]}" | sha256sum | cut -d' ' -f1)
# scripts/pg.py's cache folder (its cache_root(); the standard library is enough to ask it)
CACHE=$(python3 -c 'import runpy, sys; print(runpy.run_path(sys.argv[1])["cache_root"]())' scripts/pg.py)
VENV="$CACHE/airflow-$AIRFLOW_VERSION-${WANT:0:12}"
STAMP="$VENV/.dataplane-stamp"

# Airflow 3.3 supports CPython 3.10 to 3.13; 3.12 is what it was measured with, so it comes
# first: on PATH, then from pyenv (whose shims may name versions that are not installed).
find_python() {
    local minor cand
    if [ -n "${AIRFLOW_PYTHON:-}" ]; then echo "$AIRFLOW_PYTHON"; return 0; fi
    for minor in 12 13 11 10; do
        for cand in $(command -v "python3.$minor" 2>/dev/null) \
                    $( (command -v pyenv >/dev/null 2>&1 && printf '%s\n' "$(pyenv root)"/versions/3."$minor".*/bin/python3 | sort -rV) || true); do
            if [ -x "$cand" ] && "$cand" -c "import sys, venv; sys.exit(sys.version_info[:2] != (3, $minor))" >/dev/null 2>&1; then
                echo "$cand"; return 0
            fi
        done
    done
    return 1
}

# One build at a time: the test workers (pytest-xdist), or other checkouts, may all ask at once.
mkdir -p "$CACHE"
exec 9>"$VENV.lock"
flock 9
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/airflow" ]; then
    echo "airflow_venv: reusing $VENV" >&2
else
    PY=$(find_python) || { echo "airflow_venv: error: no Python 3.10-3.13 found (PATH or pyenv) for Apache Airflow $AIRFLOW_VERSION; set AIRFLOW_PYTHON=/path/to/python3.12" >&2; exit 1; }
    echo "airflow_venv: building $VENV with $PY ($("$PY" --version 2>&1)): ${PACKAGES[*]}" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" 2>&1 | grep -v "^WARNING: Location .* is ignored" >&2 || true
    [ -x "$VENV/bin/airflow" ] || { echo "airflow_venv: error: pip did not install airflow into $VENV" >&2; exit 1; }
    AIRFLOW_HOME=$(mktemp -d) && AIRFLOW_HOME=$AIRFLOW_HOME "$VENV/bin/airflow" version >&2 && rm -rf "$AIRFLOW_HOME"
    echo "$WANT" > "$STAMP"
fi
cd "$VENV" && pwd
