# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the least-privilege name checks (module_utils/role_checks) for many Deployments.

Starts its own PostgreSQL (scripts/pg.py) under /tmp, creates the roles and memberships of
COUNT provisioned Deployments (vendor grants, one commander_user), then times read_facts()
(three catalog queries) and name_problems() for all of them, as a rerun of the provision would.

Usage: .venv/bin/python benchmarks/role_checks_bench.py [--count 1000] [--version 16] [--runs 3]
Not a test: it prints wall times and exits 0 when no name was refused.
"""

import argparse
import time

import benchlib


class _Module(object):
    def fail_json(self, **kwargs):
        raise SystemExit("failed: %s" % kwargs.get("msg"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--version", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from ansible_collections.dataplane.postgresql.plugins.module_utils.server import role_checks
    from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import Session
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import (
        expand_deployments,
    )

    records = expand_deployments([{"id": "b%04d" % i} for i in range(args.count)])
    with benchlib.scratch_postgresql(args.version) as (info, dummy):
        conn = benchlib.connect(info["port"])
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("CREATE ROLE commander_user LOGIN")
        cur.execute("""DO $$ BEGIN FOR i IN 0..%d LOOP
          EXECUTE format('CREATE ROLE %%I NOLOGIN; CREATE ROLE %%I NOLOGIN NOINHERIT; CREATE ROLE %%I LOGIN;
                          CREATE ROLE %%I LOGIN; GRANT %%I, %%I TO %%I WITH INHERIT FALSE, SET FALSE;
                          GRANT %%I, %%I TO commander_user',
            'airflow_db_b' || lpad(i::text, 4, '0') || '_owner', 'airflow_conn_killer_b' || lpad(i::text, 4, '0'),
            'dp1_user_b' || lpad(i::text, 4, '0'), 'dp2_user_b' || lpad(i::text, 4, '0'),
            'dp1_user_b' || lpad(i::text, 4, '0'), 'dp2_user_b' || lpad(i::text, 4, '0'),
            'airflow_conn_killer_b' || lpad(i::text, 4, '0'),
            'airflow_db_b' || lpad(i::text, 4, '0') || '_owner', 'airflow_conn_killer_b' || lpad(i::text, 4, '0'));
        END LOOP; END $$""" % (args.count - 1))
        session = Session(_Module(), conn)
        for run in range(args.runs):
            started = time.monotonic()
            facts = role_checks.read_facts(session, records, "dataplane_fence_signaler")
            read = time.monotonic() - started
            problems = role_checks.name_problems(records, facts, {"helper_owner": "dataplane_fence_signaler"})
            total = time.monotonic() - started
            print("run %d: %d Deployments, %d roles read in %.3f s, checked in %.3f s, %d problem(s)"
                  % (run + 1, len(records), len(facts["roles"]), read, total, len(problems)))
            if problems:
                print("\n".join(problems[:5]))
                return 1
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
