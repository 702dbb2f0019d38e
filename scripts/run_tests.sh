#!/usr/bin/env bash
# Run the test suites. `all` (what `make test` and CI run) = units, integration, molecule,
# lint, sanity. Each suite must run something: a suite that finds nothing to run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="$ROOT/.venv/bin:$PATH" LC_ALL=C.UTF-8 ANSIBLE_NOCOLOR=1
PY="$ROOT/.venv/bin/python"
SUITES=("$@")
[ "${SUITES[0]:-all}" = all ] && SUITES=(units integration molecule lint sanity)

banner() { printf '\n==== %s ====\n' "$*"; }

run_units() {
    banner "unit tests"
    "$PY" -m pytest tests/unit -q
}

run_integration() {
    banner "integration tests (real PostgreSQL 15, 16, 17, 18)"
    "$PY" -m pytest tests/integration -q
}

run_molecule() {
    banner "molecule"
    local found=0 scenario
    for scenario in extensions/molecule/*/molecule.yml; do
        [ -e "$scenario" ] || continue
        found=1
        scenario=$(basename "$(dirname "$scenario")")
        (cd extensions && molecule test -s "$scenario")
    done
    [ "$found" = 1 ] || { echo "no molecule scenario found" >&2; return 1; }
}

run_lint() {
    banner "ansible-lint (production profile)"
    ansible-lint --profile production --offline
}

run_sanity() {
    banner "ansible-test sanity"
    bash scripts/ansible_test.sh sanity
}

for suite in "${SUITES[@]}"; do
    "run_$suite"
done
echo
echo "all suites passed: ${SUITES[*]}"
