#!/usr/bin/env bash
# The `clone` suite of scripts/run_tests.sh: clone this repository into a folder that no
# other user can enter (mode 700, under $HOME: root's home folder is mode 700 too) and run
# `make demo` there, with the venv created from scratch. As root this is the case where
# the unprivileged PostgreSQL server user must still reach the server binaries.
#
#   bash scripts/fresh_clone_check.sh [REF]      (default REF: HEAD; committed work only)
#
# Exit 0 only if the demo in the clone exits 0 and says that the fence held. pip's own
# cache and the machine-wide PostgreSQL binary cache (scripts/pg.py) are reused, so this
# takes about a minute when they are warm. The clone is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
REF=${1:-HEAD}

PARENT=${DATAPLANE_CLONE_PARENT:-$HOME}
WORK=$(mktemp -d "$PARENT/dataplane-clone.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
chmod 700 "$WORK"
MODE=$(stat -c %a "$WORK")
[ "$MODE" = 700 ] || { echo "fresh_clone_check: error: $WORK has mode $MODE, not 700" >&2; exit 1; }

echo "fresh_clone_check: cloning $REF ($(git rev-parse --short "$REF")) into $WORK/postgresql (mode 700 parent, user $(id -un))"
git clone --quiet --no-hardlinks "$ROOT" "$WORK/postgresql"
git -C "$WORK/postgresql" checkout --quiet --detach "$(git rev-parse "$REF")"
[ ! -e "$WORK/postgresql/.venv" ] || { echo "fresh_clone_check: error: the clone has a .venv" >&2; exit 1; }

LOG="$WORK/demo.log"
rc=0
# The caller's environment, less any virtualenv of ours: PATH without .venv/bin entries.
CLEAN_PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v '/\.venv/bin$' | paste -sd: -)
env -u VIRTUAL_ENV -u PYTHONPATH -u MAKEFLAGS -u MAKELEVEL PATH="$CLEAN_PATH" TERM=dumb NO_COLOR=1 \
    make -C "$WORK/postgresql" demo >"$LOG" 2>&1 || rc=$?
tail -n 25 "$LOG"
if [ "$rc" != 0 ]; then
    echo "fresh_clone_check: error: make demo in the clone exited $rc" >&2
    exit 1
fi
grep -q "The fence held" "$LOG" || { echo "fresh_clone_check: error: the demo did not report that the fence held" >&2; exit 1; }
grep -q "^setup_venv: creating .venv" "$LOG" || { echo "fresh_clone_check: error: the clone did not build its own venv" >&2; exit 1; }
echo "fresh_clone_check: make demo passed in a fresh clone under a mode-700 folder"
