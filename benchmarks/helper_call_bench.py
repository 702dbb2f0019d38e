#!/usr/bin/env python
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the cost of the fence helper's registry check, version 1 (0.1, no registry)
against version 2 (registry), on one server under the same load.

Sets up N Deployments (default 200) with the seed SQL, installs the current helper in
``dataplane_fence`` and the 0.1 helper (frozen in tests/support/helper_v1.py) in
``fence_v1``, opens 3 sessions per Deployment as dp1, then runs, as commander_user, the statement
the fence sends (one helper call per killer role and login role, ``p_signal = false`` so nothing
is terminated and the runs can be repeated) against each version in turn, and prints the median
of ``--rounds`` runs for each, and the median of the per-round ratio v2/v1 (both run back to
back in each round, so the ratio is less sensitive to other load on the machine).

Usage: .venv/bin/python benchmarks/helper_call_bench.py [--deployments 200] [--rounds 9]
"""

import argparse
import json
import statistics
import sys
import time

from psycopg2 import sql

# imported first: it puts the repository root on sys.path for tests.integration below
import benchlib  # noqa: F401  pylint: disable=unused-import
import fence_bench
from tests.support.helper_v1 import install_v1  # the frozen 0.1 helper (benchlib puts the root on sys.path)


def helper_statement(schema, deps):
    pairs = [(d["killer"], d[k]) for d in deps for k in ("dp1", "dp2")]
    return sql.SQL(
        "SELECT count(*) FROM unnest({k}::name[], {r}::name[]) AS p(killer, role)"
        " CROSS JOIN LATERAL {s}.terminate_member_sessions(p.killer, ARRAY[p.role], NULL, false) AS t").format(
            k=sql.Literal([p[0] for p in pairs]), r=sql.Literal([p[1] for p in pairs]), s=sql.Identifier(schema))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--version", type=int, default=16)
    parser.add_argument("--login", default=fence_bench.COMMANDER)
    args = parser.parse_args()
    args.parity = False  # fence_bench's set-up without the shared schema role
    bench = fence_bench.Bench(args)
    bench.start()
    try:
        bench.setup()
        conn = bench.connect()
        conn.autocommit = True
        install_v1(conn, "fence_v1", "fence_v1_signaler", [d["killer"] for d in bench.deps])
        conn.close()
        opened = bench.open_sessions("dp1")
        commander = bench.connect(fence_bench.COMMANDER)
        commander.autocommit = True
        cur = commander.cursor()
        times = {"v1": [], "v2": []}
        counts = {}
        for _round in range(args.rounds):
            for label, schema in (("v1", "fence_v1"), ("v2", "dataplane_fence")):
                statement = helper_statement(schema, bench.deps)
                started = time.perf_counter()
                cur.execute(statement)
                counts[label] = cur.fetchone()[0]
                times[label].append((time.perf_counter() - started) * 1000)
        commander.close()
        result = {"deployments": args.deployments, "sessions": opened, "helper_calls": 2 * args.deployments,
                  "rounds": args.rounds, "sessions_listed": counts,
                  "median_ms": dict((k, round(statistics.median(v), 1)) for k, v in times.items()),
                  # each round runs both back to back: the ratio is less sensitive to other load
                  "median_ratio_v2_over_v1": round(statistics.median(
                      b / a for a, b in zip(times["v1"], times["v2"])), 3)}
        print(json.dumps(result))
        return 0 if counts["v1"] == counts["v2"] == opened else 1
    finally:
        bench.stop()


if __name__ == "__main__":
    sys.exit(main())
