# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: audit 200 Deployments with dataplane.postgresql.deployment_audit on PostgreSQL 16.

Starts its own PostgreSQL (scripts/pg.py) under /tmp, sets up DEPLOYMENTS Deployments with the
vendor's SQL plus the fence helper, then times (wall seconds):

  module, clean       one module call for every Deployment, as commander_user (drift false)
  module, 10% drift   the same after injecting drift into every 10th Deployment (each found)
  module, 1 Deployment  for comparison (start-up + connect dominate)
  playbook            the real `ansible-playbook dataplane.postgresql.audit` with a JSON report

Usage: .venv/bin/python benchmarks/audit_bench.py [--version 16] [--deployments 200]
Not a test: it prints wall times and exits 0 when every run behaved as expected.
"""

import argparse
import json
import time

from psycopg2 import sql

import benchlib
from tests.support.reference import reference_statements  # the seed SQL (benchlib puts the root on sys.path)

COMMANDER = "bench_commander"


def shared(result):
    """The queries run over the audit's shared connection (not inside each metadata database)."""
    return [q for q in result["queries"] if not q.startswith("WITH ext AS")]


def names_for(i):
    dep = "b%03d" % i
    return {"id": dep, "database": "airflow_db_%s" % dep, "owner_role": "airflow_db_%s_owner" % dep,
            "killer_role": "airflow_conn_killer_%s" % dep,
            "login_roles": {"dp1": "dp1_user_%s" % dep, "dp2": "dp2_user_%s" % dep},
            "commander_user": COMMANDER, "state": "present"}


def setup(conn, records):
    from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import Session
    from ansible_collections.dataplane.postgresql.plugins.module_utils.server.helper_install import (
        ensure_helper,
    )

    class _Module(object):
        def fail_json(self, msg, **extra):
            raise SystemExit("set-up failed: %s" % msg)

    i = sql.Identifier
    cur = conn.cursor()
    cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(i(COMMANDER)))
    for rec in records:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN; CREATE ROLE {} LOGIN").format(
            i(rec["login_roles"]["dp1"]), i(rec["login_roles"]["dp2"])))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(i(rec["database"])))
        cur.execute(sql.SQL("; ").join(reference_statements(
            dict(database=rec["database"], owner=rec["owner_role"], killer=rec["killer_role"],
                 dp1=rec["login_roles"]["dp1"], dp2=rec["login_roles"]["dp2"]), COMMANDER)))
    conn.autocommit = False
    ensure_helper(Session(_Module(), conn), "dataplane_fence", "dataplane_fence_signaler",
                  [r["killer_role"] for r in records], "present", False)
    conn.commit()
    conn.autocommit = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, default=16)
    parser.add_argument("--deployments", type=int, default=200)
    args = parser.parse_args()

    with benchlib.scratch_postgresql(args.version, settings=["fsync=off"]) as (info, base):
        port = info["port"]
        conn = benchlib.connect(port)
        conn.autocommit = True
        records = [names_for(i) for i in range(args.deployments)]
        t0 = time.perf_counter()
        setup(conn, records)
        print("PostgreSQL %s, %d Deployments set up (vendor SQL + fence helper) in %.1f s"
              % (info["version"], len(records), time.perf_counter() - t0))
        module_args = dict(login_host="127.0.0.1", login_port=port, login_user=COMMANDER, deployments=records)

        clean_t, clean = benchlib.run_module("deployment_audit", module_args)
        assert clean["drift"] is False and clean["fence_capable"], clean["summary"][:3]
        print("module, clean        %6.3f s  drift=%s deployments=%d queries=%d shared + %d inside the databases "
              "(module's own timer %d ms: %s)"
              % (clean_t, clean["drift"], len(clean["deployments"]), len(shared(clean)),
                 len(clean["queries"]) - len(shared(clean)), clean["elapsed_ms"], clean["timings"]))

        drifted = records[::10]
        cur = conn.cursor()
        for rec in drifted:
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(rec["database"])))
        drift_t, drift = benchlib.run_module("deployment_audit", module_args)
        assert drift["drifted"] == [r["id"] for r in drifted], drift["drifted"]
        print("module, 10%% drift    %6.3f s  drifted=%d (every injected one found)" % (drift_t, len(drift["drifted"])))
        for rec in drifted:
            cur.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(rec["database"])))

        one_t, one = benchlib.run_module("deployment_audit", dict(module_args, deployments=records[:1]))
        assert len(shared(one)) == len(shared(clean))
        print("module, 1 Deployment %6.3f s  queries=%d shared (same count as for %d) + %d inside its database"
              % (one_t, len(shared(one)), len(records), len(one["queries"]) - len(shared(one))))

        work = base / "play"
        work.mkdir()
        (work / "inventory.json").write_text(json.dumps({"dataplane_postgresql": {"hosts": {"bench": {
            "ansible_connection": "local", "dataplane_pg_host": "127.0.0.1", "dataplane_pg_port": port,
            "dataplane_pg_user": COMMANDER}}}}))
        extra = {"dataplane_deployments": [{"id": r["id"]} for r in records],
                 "dataplane_commander_user": COMMANDER, "dataplane_report_dir": str(work / "reports"),
                 # the set-up above is the vendor's reference setup, without the shared schema role
                 "dataplane_object_privileges": False}
        play_t, _stdout = benchlib.run_playbook(["-i", work / "inventory.json", "dataplane.postgresql.audit",
                                                 "-e", json.dumps(extra)])
        # one report file per run (audit-<host>-<run id>.json): the newest is this run's
        report = json.loads(max((work / "reports").glob("audit-bench-*.json"),
                                key=lambda path: path.stat().st_mtime_ns).read_text())
        assert report["drift"] is False and len(report["deployments"]) == len(records)
        print("playbook             %6.3f s  ansible-playbook dataplane.postgresql.audit, report written"
              % play_t)
        conn.close()


if __name__ == "__main__":
    main()
