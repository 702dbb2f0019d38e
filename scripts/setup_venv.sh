#!/usr/bin/env bash
# Create or refresh .venv: a Python >= 3.12 virtualenv with the pinned development
# requirements, community.postgresql (from the `ansible` wheel on PyPI, since Ansible Galaxy
# may be out of reach), and this checkout linked in as the collection dataplane.postgresql.
# A rerun with nothing to do takes well under a second and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=.venv
ANSIBLE_WHEEL_VERSION=14.5.0   # ships community.postgresql 4.2.0

find_python() {
    local cand
    for cand in "${PYTHON:-}" python3.14 python3.13 python3.12 python3; do
        [ -n "$cand" ] || continue
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            command -v "$cand"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for cand in $(printf '%s\n' "$(pyenv root)"/versions/3.1[2-9]*/bin/python3 | sort -rV); do
            if "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
                echo "$cand"; return 0
            fi
        done
    fi
    return 1
}

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    PY=$(find_python) || { echo "setup_venv: error: Python 3.12 or newer is required (ansible-core 2.21); none found on PATH or in pyenv. Install one, or set PYTHON=/path/to/python3.12" >&2; exit 1; }
    echo "setup_venv: creating $VENV with $PY ($("$PY" --version 2>&1))"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
STAMP="$VENV/.requirements.sha256"
WANT=$(cat requirements-dev.txt scripts/setup_venv.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "setup_venv: installing requirements-dev.txt"
    "$VENV/bin/python" -m pip install -qq --disable-pip-version-check -r requirements-dev.txt

    COLL="$SITE/ansible_collections"
    if [ ! -f "$COLL/community/postgresql/MANIFEST.json" ]; then
        echo "setup_venv: adding community.postgresql from the ansible==$ANSIBLE_WHEEL_VERSION wheel"
        mkdir -p .cache/wheels
        if ! ls .cache/wheels/ansible-"$ANSIBLE_WHEEL_VERSION"-*.whl >/dev/null 2>&1; then
            "$VENV/bin/python" -m pip download -qq --disable-pip-version-check --no-deps \
                -d .cache/wheels "ansible==$ANSIBLE_WHEEL_VERSION"
        fi
        rm -rf "$COLL/community/postgresql"
        "$VENV/bin/python" - "$COLL/.." .cache/wheels/ansible-"$ANSIBLE_WHEEL_VERSION"-*.whl <<'PY'
import sys, zipfile
dest, wheel = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    members = [n for n in zf.namelist() if n.startswith("ansible_collections/community/postgresql/")]
    zf.extractall(dest, members)
PY
    fi
    echo "$WANT" > "$STAMP"
fi

# This checkout is the collection dataplane.postgresql.
mkdir -p "$SITE/ansible_collections/dataplane"
LINK="$SITE/ansible_collections/dataplane/postgresql"
if [ "$(readlink "$LINK" 2>/dev/null)" != "$ROOT" ]; then
    rm -rf "$LINK"
    ln -s "$ROOT" "$LINK"
fi
