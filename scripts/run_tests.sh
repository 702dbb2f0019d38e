#!/usr/bin/env bash
# Run the test suites. `all` (what `make test` and CI run) = units, integration, airflow, ha,
# molecule, lint, sanity, galaxy, clone. Each suite must run something: a suite that finds
# nothing to run fails.
#
#   bash scripts/run_tests.sh [all | units | integration | airflow | ha | molecule | lint | sanity | galaxy | clone]...
#
# Every requested suite runs even when an earlier one failed, so one run shows every
# problem; the exit status is non-zero if any suite failed. Each suite's wall time is
# printed after it, and a summary (one line per suite, then "suites: N passed, N failed")
# closes the output. See docs/testing.md.
#
# `all` runs the suites in two lanes at once (LANE_A and LANE_B below): the two-worker pytest
# suites in one, the single-process suites and the Patroni suite (which mostly waits on
# Patroni's timers) in the other, so that both cores stay busy. Each suite's output goes to
# its own log and is printed in one piece when the suite ends, so suites never interleave;
# DATAPLANE_TEST_LANES=1 runs `all` one suite after the other, printing as it goes. Suites
# named on the command line always run one after the other.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="$ROOT/.venv/bin:$PATH" LC_ALL=C.UTF-8 ANSIBLE_NOCOLOR=1
[ -t 1 ] || export NO_COLOR=1   # ansible-lint and Molecule colour their output even in a log
PY="$ROOT/.venv/bin/python"
ALL_SUITES=(units integration airflow ha molecule lint sanity galaxy clone)
SUITES=("$@")
[ "${SUITES[0]:-all}" = all ] && SUITES=("${ALL_SUITES[@]}")

banner() { printf '\n==== %s ====\n' "$*"; }
fail() { echo "run_tests: error: $*" >&2; return 1; }

# pytest exits 5 when it collected no test; for us that is a failure, not a pass.
run_pytest() {
    local rc=0
    "$PY" -m pytest "$@" || rc=$?
    [ "$rc" != 5 ] || fail "pytest collected no test in $* (exit 5)"
    return "$rc"
}

run_units() {
    banner "unit tests"
    run_pytest tests/unit -q
}

# pytest over DATAPLANE_TEST_WORKERS pytest-xdist workers (default 2; 0 runs in one process):
# each worker starts its own servers, so tests never share a server with a test running at
# the same time.
run_pytest_workers() {
    local workers=${DATAPLANE_TEST_WORKERS:-2}
    if [ "$workers" = 0 ]; then
        run_pytest "$@"
    else
        run_pytest "$@" -n "$workers"
    fi
}

run_integration() {
    banner "integration tests (real PostgreSQL 15, 16, 17, 18; ${DATAPLANE_TEST_WORKERS:-2} pytest-xdist workers)"
    run_pytest_workers tests/integration -q --durations=15
}

# Real Apache Airflow against both planes (tests/airflow) on PostgreSQL 16, 17 and 18; its venv
# is built once under .cache/. Same workers as the integration tests.
run_airflow() {
    banner "Apache Airflow end-to-end (real apache-airflow-core, PostgreSQL 16, 17, 18; ${DATAPLANE_TEST_WORKERS:-2} workers)"
    bash scripts/airflow_venv.sh >/dev/null
    run_pytest_workers tests/airflow -q
}

# A real Patroni cluster (tests/ha, tests/support/patroni.py): Patroni from PyPI in a venv on
# /usr/bin/python3 and Debian's etcd, both fetched once into scripts/pg.py's cache. One process:
# each test starts its own cluster, and two at once on two cores would make Patroni's timing
# (ttl 10 s) the thing under test.
run_ha() {
    banner "Patroni $("$PY" -c 'from tests.support import patroni; print(patroni.PATRONI_VERSION)') with etcd: the fence across a crash of the leader (PostgreSQL 16, 18)"
    "$PY" -c 'from tests.support import patroni
print("etcd: %s\npatroni: %s" % (patroni.etcd_binary(), patroni.patroni_venv()))'
    run_pytest tests/ha -q -rxXs --durations=10
}

run_molecule() {
    banner "molecule"
    local scenario broken=() found=0
    for scenario in extensions/molecule/*/molecule.yml; do
        [ -e "$scenario" ] || continue
        found=$((found + 1))
        scenario=$(basename "$(dirname "$scenario")")
        echo "---- molecule scenario $scenario"
        (cd extensions && molecule test -s "$scenario") || broken+=("$scenario")
    done
    [ "$found" -gt 0 ] || fail "no molecule scenario found under extensions/molecule/*/"
    [ "${#broken[@]}" = 0 ] || fail "molecule scenario(s) failed: ${broken[*]}"
}

run_lint() {
    banner "ansible-lint (production profile)"
    local log rc=0
    log=$(mktemp)
    ansible-lint --profile production --offline 2>&1 | tee "$log" || rc=$?
    # ansible-lint's closing line reads "... in N files processed of M encountered ...".
    if [ "$rc" = 0 ] && ! grep -Eq '(^|[^0-9])[1-9][0-9]* files? processed' "$log"; then
        rc=1
        echo "run_tests: error: ansible-lint processed no file" >&2
    fi
    rm -f "$log"
    [ "$rc" = 0 ] || return "$rc"
    # What community collections run on their docs and changelog. antsibull-docs reads the
    # collection as Ansible installs it: the venv's ansible_collections tree (this checkout is
    # linked there as dataplane/postgresql, community.postgresql beside it).
    local site
    site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "---- antsibull-docs lint-collection-docs --plugin-docs"
    (cd "$site/ansible_collections/dataplane/postgresql" &&
        ANSIBLE_COLLECTIONS_PATH="$site" antsibull-docs lint-collection-docs --plugin-docs .)
    echo "---- antsibull-changelog lint"
    antsibull-changelog lint
}

run_sanity() {
    banner "ansible-test sanity"
    bash scripts/ansible_test.sh sanity   # fails by itself when it tests nothing
}

run_galaxy() {
    banner "galaxy-importer on the built tarball (offline)"
    "$PY" scripts/galaxy_check.py
}

run_clone() {
    banner "make demo in a fresh clone under a mode-700 folder"
    bash scripts/fresh_clone_check.sh
}

for suite in "${SUITES[@]}"; do
    declare -F "run_$suite" >/dev/null || { echo "run_tests: unknown suite '$suite' (known: all ${ALL_SUITES[*]})" >&2; exit 2; }
done

# One suite: its output (to stdout, or to LOG), its wall time, its result line; the result
# ("RC SECONDS") also goes to RESULT_FILE when given, for the summary of a run in lanes.
run_suite() {
    local suite=$1 log=${2:-} result_file=${3:-} start rc secs result
    start=$(date +%s.%N)
    # A subshell with its own `set -e`, called outside any `if`/`||` (where bash would ignore
    # -e inside it), so a failing command stops the suite but not the other suites.
    set +e
    if [ -n "$log" ]; then
        (set -e; "run_$suite") >"$log" 2>&1 </dev/null
    else
        (set -e; "run_$suite")
    fi
    rc=$?
    set -e
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" = 0 ]; then result=passed; else result="FAILED (exit $rc)"; fi
    if [ -n "$log" ]; then
        # the whole log at once, under a lock: the other lane's suites print between, never inside
        {
            flock 9
            cat "$log"
            echo "---- suite $suite: $result in ${secs} s"
        } 9>>"$LOG_DIR/.print.lock"
    else
        echo "---- suite $suite: $result in ${secs} s"
    fi
    [ -z "$result_file" ] || echo "$rc $secs" >"$result_file"
}

record() {  # suite rc secs: count it and add its summary line
    local result
    if [ "$2" = 0 ]; then
        n_passed=$((n_passed + 1)) result=passed
    else
        n_failed=$((n_failed + 1)) result="FAILED (exit $2)"
    fi
    summary+=("$(printf '  %-12s %-18s %8s s' "$1" "$result" "$3")")
}

n_passed=0 n_failed=0 summary=()
if [ "${1:-all}" = all ] && [ "${DATAPLANE_TEST_LANES:-2}" != 1 ]; then
    # Lane A: the suites that keep two pytest-xdist workers busy. Lane B: one process at a time,
    # starting with the ha suite (its cluster mostly waits on Patroni's timers, so it costs
    # lane A little) and the Airflow venv a first run builds for lane A's airflow suite.
    LANE_A=(integration airflow)
    LANE_B=(ha units molecule lint sanity galaxy clone)
    LOG_DIR="$ROOT/.cache/test-logs"
    rm -rf "$LOG_DIR" && mkdir -p "$LOG_DIR"
    run_start=$(date +%s.%N)
    echo "run_tests: suites in two lanes at once: [${LANE_A[*]}] and [${LANE_B[*]}]; each suite's output is printed when it ends (live: $LOG_DIR/<suite>.log)"
    lane() {
        local suite
        for suite in "$@"; do
            echo "---- suite $suite started"
            run_suite "$suite" "$LOG_DIR/$suite.log" "$LOG_DIR/$suite.result"
        done
    }
    (
        # the Airflow venv (a fresh clone builds it, about 75 s, mostly downloads) is made
        # while the integration suite runs; the airflow suite then reuses it
        venv_start=$(date +%s.%N)
        bash scripts/airflow_venv.sh >"$LOG_DIR/airflow-venv.log" 2>&1 </dev/null || true
        echo "---- airflow venv: $(tail -n 1 "$LOG_DIR/airflow-venv.log") ($(awk -v a="$venv_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s; $LOG_DIR/airflow-venv.log)"
        lane "${LANE_B[@]}"
    ) &
    lane_b=$!
    lane "${LANE_A[@]}" &
    lane_a=$!
    trap 'kill "$lane_a" "$lane_b" 2>/dev/null' INT TERM
    wait "$lane_a" "$lane_b" || true
    trap - INT TERM
    for suite in "${ALL_SUITES[@]}"; do
        if [ -f "$LOG_DIR/$suite.result" ]; then
            read -r rc secs <"$LOG_DIR/$suite.result"
        else
            rc="?" secs="-"
        fi
        record "$suite" "$rc" "$secs"
    done
    total=$(awk -v a="$run_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
else
    run_start=$(date +%s.%N)
    result_file=$(mktemp)
    for suite in "${SUITES[@]}"; do
        run_suite "$suite" "" "$result_file"
        read -r rc secs <"$result_file"
        record "$suite" "$rc" "$secs"
    done
    rm -f "$result_file"
    total=$(awk -v a="$run_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
fi

banner "summary"
printf '%s\n' "${summary[@]}"
echo "suites: $n_passed passed, $n_failed failed (wall time of the run: $total s)"
[ "$n_failed" = 0 ]
