#!/usr/bin/env python
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: fence N Deployments (default 200) with 3 live sessions each, as commander_user.

Standalone: starts its own PostgreSQL 16 under /tmp with scripts/pg.py
(--set max_connections=1000), runs the vendor's reference setup for every Deployment plus
the fence helper, opens 3 sessions per Deployment as its dp1 login role (idle; idle in
transaction with an uncommitted INSERT; active pg_sleep), then

1. runs the fence module once, directly (as Ansible runs it: a Python process with its
   arguments in a JSON file) and reports ``time_total_ms`` (inside the module, from the
   first statement to the last verification) and the process wall time;
2. fences back (dp2 -> dp1) with the module, re-opens the sessions as dp1 and fences again
   with ``ansible-playbook`` running a one-task playbook, and reports its wall time.

With ``--parity`` every Deployment also gets the shared schema role (memberships, role
settings, ``--tables`` tables it owns, 60 by default, like Airflow's schema), the sessions run
as the schema role, and the fence runs with ``parity_policy=refuse``; check mode runs twice first,
without and with the parity check, to show what the check costs in the preflight.

With ``--statements`` the module run is also counted in round trips: the server logs every
statement of the fencing login (``ALTER ROLE ... SET log_statement = 'all'``, so the sessions
being fenced log nothing), and the lines the module run added to the server log are counted
(one line per statement string the module sent; ``a; b`` sent at once is one round trip).

With ``--standby`` a streaming hot standby (through a replication slot) is started after the
set-up and given to the fence in ``standbys``, so the module's ``standbys_ms`` shows what the
standby gate and the hot standby's session check cost.

Usage: .venv/bin/python benchmarks/fence_bench.py [--deployments 200] [--sessions 3] [--version 16] [--parity]
       [--statements] [--standby]
Exit status 0 only when every Deployment was verified fenced in both runs.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from psycopg2 import sql

import benchlib
from tests.support.reference import reference_statements  # the seed SQL (benchlib puts the root on sys.path)
from tests.support.sessions import Sessions

COMMANDER = "commander_user"
# The fence's wait for the sessions to go: one such poll per interval, as many as it takes.
POLL_PREFIX = "SELECT pid, usename, datname, application_name, client_addr, backend_start FROM pg_catalog.pg_stat_activity"


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.base = benchlib.make_work_dir("dataplane-fence-bench-")
        self.port = benchlib.free_port()
        self.deps = [dict(id="%03d" % n, database="airflow_db_%03d" % n, owner="airflow_db_%03d_owner" % n,
                          killer="airflow_conn_killer_%03d" % n, dp1="dp1_user_%03d" % n, dp2="dp2_user_%03d" % n,
                          schema="airflow_db_%03d_schema" % n)
                     for n in range(args.deployments)]
        self.server = None
        self.standby = None
        self.live = None

    def connect(self, user="postgres", dbname="postgres", **kw):
        return benchlib.connect(self.port, user=user, dbname=dbname, **kw)

    def start(self):
        self.server = benchlib.PgServer(self.args.version, self.base / "srv", ["max_connections=1000"],
                                        port=self.port).start(attempts=1)

    def start_standby(self):
        self.standby = benchlib.PgServer(self.args.version, self.base / "standby", standby_of=self.server,
                                         slot="bench_standby").start()
        lsn = self.server.sql("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")[0][0]
        if not self.standby.replayed(lsn, timeout=600):
            raise RuntimeError("the standby did not catch up")

    def stop(self):
        self.close_sessions()
        if self.standby is not None:
            self.standby.stop()
        benchlib.discard_work_dir(self.base, self.base / "srv")

    def setup(self):
        conn = self.connect()
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(COMMANDER)))
        for dep in self.deps:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dep["database"])))
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN; CREATE ROLE {} LOGIN").format(
                sql.Identifier(dep["dp1"]), sql.Identifier(dep["dp2"])))
            cur.execute(sql.SQL("; ").join(reference_statements(dep, COMMANDER)))
            if self.args.parity:  # the shared schema role, as the deployments role provisions it
                ident = dict((k, sql.Identifier(v)) for k, v in dep.items())
                cur.execute(sql.SQL("CREATE ROLE {schema} NOLOGIN; "
                                    "GRANT {schema} TO {dp1}, {dp2} WITH INHERIT FALSE, SET TRUE; "
                                    "ALTER ROLE {dp1} IN DATABASE {database} SET role = {lit}; "
                                    "ALTER ROLE {dp2} IN DATABASE {database} SET role = {lit}").format(
                                        lit=sql.Literal(dep["schema"]), **ident))
        conn.close()
        for dep in self.deps:
            db = self.connect(dbname=dep["database"])
            db.autocommit = True
            if self.args.parity:
                db.cursor().execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {0}; SET ROLE {0}; "
                                            "CREATE TABLE t (src text)").format(sql.Identifier(dep["schema"]))
                                    + sql.SQL("").join(sql.SQL("; CREATE TABLE {} (id serial PRIMARY KEY, v text)")
                                                       .format(sql.Identifier("airflow_%02d" % i))
                                                       for i in range(self.args.tables)))
            else:
                db.cursor().execute(sql.SQL("CREATE TABLE t (src text); ALTER TABLE t OWNER TO {0}; GRANT ALL ON t TO {1}")
                                    .format(sql.Identifier(dep["owner"]), sql.Identifier(dep["dp1"])))
            db.close()
        benchlib.run_module("fence_helper", dict(self.login("postgres"), killer_roles=[d["killer"] for d in self.deps]))

    def login(self, user):
        return dict(login_host="127.0.0.1", login_port=self.port, login_user=user, login_db="postgres")

    def open_sessions(self, role_key):
        """idle; idle in transaction with an uncommitted INSERT; active pg_sleep (async, no threads):
        tests/support/sessions.py."""
        kinds = ["idle", "idle_in_tx", "active"][:self.args.sessions] + ["idle"] * max(0, self.args.sessions - 3)
        self.live = Sessions(self.server, application="bench", tx_sql="INSERT INTO t VALUES ('uncommitted')")
        for dep in self.deps:
            for kind in kinds:
                self.live.open_one(dep[role_key], dep["database"], kind, wait=False)
        return len(self.live.items)

    def close_sessions(self):
        if self.live is not None:
            self.live.close()
        self.live = None

    def fence_args(self, src="dp1", dst="dp2", parity=None):
        parity = parity or ("refuse" if self.args.parity else "ignore")
        standbys = [{"name": "standby", "host": "127.0.0.1", "port": self.standby.port}] if self.standby else []
        return dict(self.login(self.args.login), parity_policy=parity, standbys=standbys, deployments=[
            dict(name=d["id"], database=d["database"], source_role=d[src], destination_role=d[dst],
                 killer_role=d["killer"], schema_role=d["schema"] if self.args.parity else None)
            for d in self.deps])

    def log_statements(self, on):
        """Log (or stop logging) every statement of the fencing login; returns the log's size now."""
        conn = self.connect()
        conn.autocommit = True
        conn.cursor().execute(sql.SQL("ALTER ROLE {} SET log_statement = {}").format(
            sql.Identifier(self.args.login), sql.Literal("all" if on else "none")))
        conn.close()
        return self.log_path().stat().st_size

    def log_path(self):
        return Path(self.server.info["data_dir"]).parent / "server.log"

    def statements_since(self, offset):
        """The statements logged since OFFSET (bytes into the server log), one per round trip."""
        with open(str(self.log_path()), "rb") as log:
            log.seek(offset)
            lines = log.read().decode("utf-8", "replace").splitlines()
        return [line.split("statement: ", 1)[1] for line in lines if "LOG:  statement: " in line]

    def sessions_left(self, role_key):
        conn = self.connect()
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = ANY(%s)",
                    ([d[role_key] for d in self.deps],))
        count = cur.fetchone()[0]
        conn.close()
        return count

    def playbook(self):
        work = self.base / "play"
        work.mkdir()
        (work / "inventory.ini").write_text(
            "[dataplane_postgresql]\nbench ansible_connection=local ansible_python_interpreter=%s\n" % benchlib.PYTHON)
        (work / "vars.json").write_text(json.dumps({"fence_args": self.fence_args()}))
        (work / "fence.yml").write_text(
            "- hosts: dataplane_postgresql\n"
            "  gather_facts: false\n"
            "  tasks:\n"
            "    - name: Fence every Deployment\n"
            "      dataplane.postgresql.fence: \"{{ fence_args }}\"\n")
        # one task; the minimal stdout callback prints the module's JSON result
        wall, stdout = benchlib.run_playbook(["-i", work / "inventory.ini", "-e", "@%s" % (work / "vars.json"),
                                              work / "fence.yml"], cwd=work, env={"ANSIBLE_STDOUT_CALLBACK": "minimal"})
        return wall, json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1])


def summarize(label, result, wall):
    deps = result["deployments"]
    killed = sum(len(d["sessions_terminated"]) for d in deps)
    verified = sum(1 for d in deps if d["verified"])
    fence_ms = [d["time_to_fence_ms"] for d in deps if d["time_to_fence_ms"] is not None]
    print("%-16s deployments=%d verified=%d sessions_terminated=%d time_total_ms=%d max_time_to_fence_ms=%s "
          "wall_s=%.2f" % (label, len(deps), verified, killed, result["time_total_ms"],
                           max(fence_ms) if fence_ms else None, wall))
    print("%-16s phases: %s" % ("", json.dumps(result.get("timings"))))
    return verified == len(deps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--version", type=int, default=16)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--parity", action="store_true",
                        help="shared schema role per Deployment and the fence's parity check (parity_policy=refuse)")
    parser.add_argument("--tables", type=int, default=60, help="with --parity: tables per database")
    parser.add_argument("--login", default=COMMANDER,
                        help="role the fence connects as (default commander_user; postgres for comparison)")
    parser.add_argument("--standby", action="store_true",
                        help="start a streaming hot standby and give it to the fence (standbys)")
    parser.add_argument("--statements", action="store_true",
                        help="count the module run's statements (round trips) in the server log")
    args = parser.parse_args()
    bench = Bench(args)
    ok = True
    figures = {}
    try:
        t = time.monotonic()
        bench.start()
        bench.setup()
        print("setup: PostgreSQL %d on port %d, %d Deployments (seed SQL + fence helper) in %.1f s"
              % (args.version, bench.port, args.deployments, time.monotonic() - t))
        if args.standby:
            t = time.monotonic()
            bench.start_standby()
            print("standby: streaming on port %d, caught up in %.1f s" % (bench.standby.port, time.monotonic() - t))

        opened = bench.open_sessions("dp1")
        print("opened %d sessions as the dp1 login roles" % opened)
        if args.parity:
            wall, checked = benchlib.run_module("fence", bench.fence_args(parity="ignore"), check_mode=True)
            summarize("check, no parity", checked, wall)
            figures["check_preflight_ms_without_parity"] = checked["timings"].get("preflight_ms")
        wall, checked = benchlib.run_module("fence", bench.fence_args(), check_mode=True)
        summarize("check mode", checked, wall)
        ok &= not checked.get("failed")
        figures["check_preflight_ms"] = checked["timings"].get("preflight_ms")
        offset = bench.log_statements(True) if args.statements else None
        wall, result = benchlib.run_module("fence", bench.fence_args())
        if args.statements:
            bench.log_statements(False)
            statements = bench.statements_since(offset)
            polls = [t for t in statements if t.startswith(POLL_PREFIX)]
            figures["module_statements"] = len(statements)
            figures["module_statements_without_polls"] = len(statements) - len(polls)
            print("module statements (round trips): %d, of which %d polls of pg_stat_activity"
                  % (len(statements), len(polls)))
            for text in statements:
                print("    %s" % (text if len(text) < 160 else text[:157] + "..."))
        ok &= summarize("module", result, wall)
        ok &= bench.sessions_left("dp1") == 0
        figures["module_time_total_ms"] = result["time_total_ms"]
        figures["module_timings"] = result.get("timings")
        figures["module_process_wall_s"] = round(wall, 3)
        bench.close_sessions()

        _wall, back = benchlib.run_module("fence", bench.fence_args("dp2", "dp1"), allow_failure=True)  # fail back: dp1 admitted again
        ok &= not back.get("failed")
        opened = bench.open_sessions("dp1")
        wall, result = bench.playbook()
        ok &= summarize("ansible-playbook", result, wall)
        ok &= bench.sessions_left("dp1") == 0
        figures["playbook_time_total_ms"] = result["time_total_ms"]
        figures["playbook_wall_s"] = round(wall, 3)
        figures.update(deployments=args.deployments, sessions_per_deployment=args.sessions,
                       postgresql=args.version, all_verified=bool(ok))
        print(json.dumps(figures))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        bench.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
