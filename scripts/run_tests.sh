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
# `all` runs the suites in three lanes at once (LANES below): the two-worker pytest suites, the
# single-process suites that compute, and the suites that mostly wait, so that both cores stay
# busy. Each suite's output goes to its own log and is printed in one piece when the suite
# ends, so suites never interleave; DATAPLANE_TEST_LANES=1 runs `all` one suite after the other,
# printing as it goes. Suites named on the command line always run one after the other.
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
        run_pytest "$@" -n "$workers" --dist worksteal   # a worker that runs out takes from the other
    fi
}

run_integration() {
    banner "integration tests (real PostgreSQL 15, 16, 17, 18; ${DATAPLANE_TEST_WORKERS:-2} pytest-xdist workers)"
    run_pytest_workers tests/integration -q --durations=15
}

# Real Apache Airflow against both planes (tests/airflow) on PostgreSQL 18; its venv is built
# once per machine (scripts/airflow_venv.sh).
run_airflow() {
    banner "Apache Airflow end-to-end (real apache-airflow-core, PostgreSQL 18)"
    bash scripts/airflow_venv.sh >/dev/null
    run_pytest tests/airflow -q   # one test: one process
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
    local suite=$1 log=${2:-} result_file=${3:-} start rc secs result cpu_file cpu
    start=$(date +%s.%N)
    cpu_file=$(mktemp)
    # A subshell with its own `set -e`, called outside any `if`/`||` (where bash would ignore
    # -e inside it), so a failing command stops the suite but not the other suites. On its way
    # out it notes the CPU time of the processes it waited for (`times`, children's line):
    # the suite's CPU seconds, which unlike its wall time do not depend on what else runs.
    set +e
    if [ -n "$log" ]; then
        (trap 'times >"$cpu_file"' EXIT; set -e; "run_$suite") >"$log" 2>&1 </dev/null
    else
        (trap 'times >"$cpu_file"' EXIT; set -e; "run_$suite")
    fi
    rc=$?
    set -e
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    cpu=$(awk 'function s(t) { split(t, p, /[ms]/); return p[1] * 60 + p[2] }
               NR == 2 { printf "%.0f", s($1) + s($2) }' "$cpu_file")
    rm -f "$cpu_file"
    if [ "$rc" = 0 ]; then result=passed; else result="FAILED (exit $rc)"; fi
    if [ -n "$log" ]; then
        # the whole log at once, under a lock: the other lane's suites print between, never inside
        {
            flock 9
            cat "$log"
            echo "---- suite $suite: $result in ${secs} s (CPU ${cpu:-?} s)"
        } 9>>"$LOG_DIR/.print.lock"
    else
        echo "---- suite $suite: $result in ${secs} s (CPU ${cpu:-?} s)"
    fi
    [ -z "$result_file" ] || echo "$rc $secs ${cpu:-?}" >"$result_file"
}

record() {  # suite rc secs cpu: count it and add its summary line
    local result
    if [ "$2" = 0 ]; then
        n_passed=$((n_passed + 1)) result=passed
    else
        n_failed=$((n_failed + 1)) result="FAILED (exit $2)"
    fi
    summary+=("$(printf '  %-12s %-18s %8s s   CPU %5s s' "$1" "$result" "$3" "$4")")
}

n_passed=0 n_failed=0 summary=()
if [ "${1:-all}" = all ] && [ "${DATAPLANE_TEST_LANES:-3}" != 1 ]; then
    # Three lanes at once, each running its suites one after the other (2 cores): the two-worker
    # integration suite, the longest; single-process suites that compute; and the suites that
    # mostly wait (ha on Patroni's timers, clone and a first galaxy run on downloads), then
    # airflow, with the Airflow venv first (built once per machine, then reused).
    LANES=("integration" "units molecule lint sanity" "ha clone galaxy airflow")
    LOG_DIR="$ROOT/.cache/test-logs"
    rm -rf "$LOG_DIR" && mkdir -p "$LOG_DIR"
    run_start=$(date +%s.%N)
    echo "run_tests: ${#LANES[@]} lanes at once:$(printf ' [%s]' "${LANES[@]}"); each suite's output is printed when it ends (live: $LOG_DIR/<suite>.log)"
    lane() {
        local suite
        for suite in "$@"; do
            echo "---- suite $suite started"
            run_suite "$suite" "$LOG_DIR/$suite.log" "$LOG_DIR/$suite.result"
        done
    }
    airflow_venv() {
        local venv_start
        venv_start=$(date +%s.%N)
        bash scripts/airflow_venv.sh >"$LOG_DIR/airflow-venv.log" 2>&1 </dev/null || true
        echo "---- airflow venv: $(tail -n 1 "$LOG_DIR/airflow-venv.log") ($(awk -v a="$venv_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
    }
    # The integration suite shares the two cores with the other lanes' processes: a third worker
    # gives it the share that lets it end about when they do (set DATAPLANE_TEST_WORKERS to choose).
    export DATAPLANE_TEST_WORKERS=${DATAPLANE_TEST_WORKERS:-3}
    lane_pids=()
    for index in "${!LANES[@]}"; do
        # shellcheck disable=SC2086  # a lane is a list of suite names
        if [ "$index" = 2 ]; then (airflow_venv; lane ${LANES[$index]}) & else lane ${LANES[$index]} & fi
        lane_pids+=($!)
    done
    trap 'kill "${lane_pids[@]}" 2>/dev/null' INT TERM
    wait "${lane_pids[@]}" || true
    trap - INT TERM
    for suite in "${ALL_SUITES[@]}"; do
        if [ -f "$LOG_DIR/$suite.result" ]; then
            read -r rc secs cpu <"$LOG_DIR/$suite.result"
        else
            rc="?" secs="-" cpu="-"
        fi
        record "$suite" "$rc" "$secs" "$cpu"
    done
    total=$(awk -v a="$run_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
else
    run_start=$(date +%s.%N)
    result_file=$(mktemp)
    for suite in "${SUITES[@]}"; do
        run_suite "$suite" "" "$result_file"
        read -r rc secs cpu <"$result_file"
        record "$suite" "$rc" "$secs" "$cpu"
    done
    rm -f "$result_file"
    total=$(awk -v a="$run_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
fi

banner "summary"
printf '%s\n' "${summary[@]}"
echo "suites: $n_passed passed, $n_failed failed (wall time of the run: $total s)"
[ "$n_failed" = 0 ]
