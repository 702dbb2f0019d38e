#!/usr/bin/env python
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the failover playbook at N Deployments (default 200) x 3 live dp1 sessions, next to its floors.

    .venv/bin/python benchmarks/failover_bench.py [--deployments 200] [--sessions 3] [--version 16] [--runs 1] [--json FILE]

Starts its own PostgreSQL (scripts/pg.py, max_connections=1000), provisions the Deployments
with `ansible-playbook dataplane.postgresql.provision` (the reference setup, the shared schema
role and the fence helper, as a user would), then for each run:

1. times the floors: a one-task `ansible-playbook` (one `debug` task) on the same inventory,
   and one `psql` session as the superuser doing, per Deployment, `REVOKE CONNECT` from its
   dp1 role, `pg_terminate_backend` of that role's sessions (read from pg_stat_activity) and
   `GRANT CONNECT` to its dp2 role, with the sessions of step 2 open (then CONNECT is put back
   as it was, untimed);
2. opens SESSIONS sessions per Deployment as its dp1 login role (idle; idle in transaction with
   an uncommitted INSERT; active pg_sleep; in that order);
3. runs `ansible-playbook dataplane.postgresql.failover -e dataplane_failover_from=dp1
   -e dataplane_failover_to=dp2` as commander_user, with a JSON report directory, while a
   thread polls pg_stat_activity from a superuser connection every 10 ms;
4. reports the wall time and the time, counted from the start of ansible-playbook, at which
   the last dp1 session was gone; checks that every Deployment of the report is verified and
   that no dp1 session is left; then fails back (dp2 -> dp1, not timed) for the next run.

It prints the wall time next to each floor with the ratio (min and median over the runs), and
the milliseconds each Deployment adds above the one-task playbook.

Targets (issue 23), judged on the median of the runs, for these shapes:
  200 x 3   wall <= 2 s, and the last dp1 session gone <= 2 s (issue 13)
  800 x 1   wall <= 2 x the psql floor
  3 x 3     wall <= 2 x the one-task playbook
Other shapes have no target. Exit 1 when a target is missed or a check fails. The timings
depend on the machine's load: say it.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from psycopg2 import sql

import benchlib
from tests.support.sessions import Sessions  # noqa: E402  (benchlib puts the repository on sys.path)

COMMANDER = "commander_user"
STATES = ("idle", "idle in transaction", "active")
# (deployments, sessions) -> targets: wall seconds, ratio to the one-task playbook, ratio to psql
TARGETS = {
    (200, 3): dict(wall_s=2.0, gone_s=2.0),
    (800, 1): dict(psql_ratio=2.0),
    (3, 3): dict(playbook_ratio=2.0),
}


class SessionWatcher(threading.Thread):
    """Poll the number of sessions of some roles until it is 0 (or stop() is called)."""

    def __init__(self, port, roles, started):
        super(SessionWatcher, self).__init__(daemon=True)
        self.conn = benchlib.connect(port)
        self.conn.autocommit = True
        self.roles = list(roles)
        self.started = started
        self.gone_after = None
        self._stop = threading.Event()

    def run(self):
        cur = self.conn.cursor()
        while not self._stop.is_set():
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = ANY(%s)", (self.roles,))
            if cur.fetchone()[0] == 0:
                self.gone_after = time.perf_counter() - self.started
                return
            time.sleep(0.01)

    def stop(self):
        self._stop.set()
        self.join()
        self.conn.close()


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.base = benchlib.make_work_dir("dataplane-failover-bench-")
        self.ids = ["%03d" % n for n in range(args.deployments)]
        self.live = None
        self.server = None

    def start(self):
        self.server = benchlib.PgServer(self.args.version, self.base / "srv", ["max_connections=1000"]).start(attempts=3)
        self.port = self.server.port
        self.inventory = self.base / "inventory.json"
        self.vars = self.base / "vars.json"
        self.reports = self.base / "reports"

    def stop(self):
        self.close_sessions()
        benchlib.discard_work_dir(self.base, self.base / "srv")

    def write_inventory(self, user):
        self.inventory.write_text(json.dumps({"dataplane_postgresql": {"hosts": {"bench": {
            "ansible_connection": "local", "ansible_python_interpreter": benchlib.PYTHON,
            "dataplane_pg_host": "127.0.0.1", "dataplane_pg_port": self.port, "dataplane_pg_user": user}}}}))

    def provision(self):
        self.vars.write_text(json.dumps({
            "dataplane_commander_password": "commander-bench-secret",
            "dataplane_deployments": [{"id": i, "passwords": {"dp1": "pw-dp1-%s" % i, "dp2": "pw-dp2-%s" % i}}
                                      for i in self.ids]}))
        self.write_inventory("postgres")
        benchlib.run_playbook(["dataplane.postgresql.provision", "-i", self.inventory, "-e", "@%s" % self.vars])
        for i in self.ids:  # a table the idle-in-transaction session writes to
            conn = benchlib.connect(self.port, dbname="airflow_db_%s" % i)
            conn.autocommit = True
            conn.cursor().execute(sql.SQL("SET ROLE {}; CREATE TABLE t (src text)").format(
                sql.Identifier("airflow_db_%s_schema" % i)))
            conn.close()
        self.write_inventory(COMMANDER)

    def open_sessions(self):
        """idle; idle in transaction with an uncommitted INSERT; active pg_sleep (tests/support)."""
        self.live = Sessions(self.server, application="bench", tx_sql="INSERT INTO t VALUES ('uncommitted')")
        for i in self.ids:
            for state in STATES[:self.args.sessions]:
                self.live.open_one("dp1_user_%s" % i, "airflow_db_%s" % i, state, wait=False)
        self.live.wait_active()
        return len(self.live.items)

    def one_task(self):
        return benchlib.one_task_playbook(self.inventory, self.base)

    def psql_fence(self):
        """The psql floor, with the sessions open: one superuser session doing REVOKE,
        pg_terminate_backend and GRANT per Deployment (dp1 -> dp2); seconds. Afterwards CONNECT
        is put back as it was (untimed), and the terminated sessions are waited for."""
        conn = benchlib.connect(self.port)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT d.datname, pg_catalog.has_database_privilege(r.rolname, d.datname, 'CONNECT')"
                    " FROM pg_catalog.pg_database d JOIN pg_catalog.pg_roles r"
                    " ON r.rolname = 'dp2_user_' || substr(d.datname, 12)"
                    " WHERE d.datname LIKE 'airflow\\_db\\_%'")
        dp2_connect = dict(cur.fetchall())
        lines = []
        for i in self.ids:
            db, dp1, dp2 = ('"airflow_db_%s"' % i, "dp1_user_%s" % i, '"dp2_user_%s"' % i)
            lines += ['REVOKE CONNECT ON DATABASE %s FROM "%s";' % (db, dp1),
                      "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                      " WHERE usename = '%s';" % dp1,
                      "GRANT CONNECT ON DATABASE %s TO %s;" % (db, dp2)]
        script = self.base / "psql-fence.sql"
        script.write_text("\n".join(lines) + "\n")
        psql = Path(self.server.info["bin_dir"]) / "psql"
        started = time.perf_counter()
        proc = subprocess.run([str(psql), "-X", "-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                               "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-f", str(script)],
                              capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit("psql failed: %s" % proc.stderr)
        for i in self.ids:  # back as it was
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier("airflow_db_%s" % i), sql.Identifier("dp1_user_%s" % i)))
            if not dp2_connect["airflow_db_%s" % i]:
                cur.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                    sql.Identifier("airflow_db_%s" % i), sql.Identifier("dp2_user_%s" % i)))
        conn.close()
        self.close_sessions()
        deadline = time.monotonic() + 30
        while self.sessions_left("dp1") and time.monotonic() < deadline:
            time.sleep(0.05)
        return elapsed

    def close_sessions(self):
        if self.live is not None:
            self.live.close()
        self.live = None

    def failover(self, src, dst, timed):
        shutil.rmtree(str(self.reports), ignore_errors=True)
        argv = ["dataplane.postgresql.failover", "-i", self.inventory, "-e", "@%s" % self.vars,
                "-e", "dataplane_failover_from=%s" % src, "-e", "dataplane_failover_to=%s" % dst,
                "-e", "dataplane_report_dir=%s" % self.reports]
        watcher = None
        if timed:
            started = time.perf_counter()
            watcher = SessionWatcher(self.port, ["%s_user_%s" % (src, i) for i in self.ids], started)
            watcher.start()
        try:
            wall, _stdout = benchlib.run_playbook(argv)
        finally:
            if watcher:
                watcher.stop()
        # one report file per run (failover-<host>-<run id>.json); the directory was emptied above
        report = json.loads(next(self.reports.glob("failover-bench-*.json")).read_text())
        return wall, (watcher.gone_after if watcher else None), report

    def sessions_left(self, plane):
        conn = benchlib.connect(self.port)
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename LIKE %s", ("%s\\_user\\_%%" % plane,))
        count = cur.fetchone()[0]
        conn.close()
        return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=3, choices=(0, 1, 2, 3),
                        help="dp1 sessions per Deployment: idle, idle in transaction, active (in that order)")
    parser.add_argument("--version", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1, help="repeat (failing back in between)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    bench = Bench(args)
    figures = {"deployments": args.deployments, "sessions_per_deployment": args.sessions, "postgresql": args.version,
               "load_average_1m": round(os.getloadavg()[0], 2), "wall_s": [], "last_session_gone_s": [],
               "one_task_playbook_s": [], "psql_fence_s": []}
    wall, one_task, psql = benchlib.Figure(), benchlib.Figure(), benchlib.Figure()
    ok = True
    try:
        began = time.monotonic()
        bench.start()
        bench.provision()
        print("setup: PostgreSQL %d on port %d, %d Deployments provisioned in %.1f s"
              % (args.version, bench.port, args.deployments, time.monotonic() - began))
        for run in range(args.runs):
            one_task.add(bench.one_task())
            bench.open_sessions()
            psql.add(bench.psql_fence())
            opened = bench.open_sessions()
            took, gone, report = bench.failover("dp1", "dp2", timed=True)
            wall.add(took)
            verified = sum(1 for d in report["deployments"] if d["verified"])
            terminated = sum(d["sessions_terminated"] for d in report["deployments"])
            left = bench.sessions_left("dp1")
            print("run %d: %d sessions opened; wall %.2f s (one-task playbook %.2f s, psql %.2f s); last dp1 session "
                  "gone after %s s; verified %d/%d; %d sessions terminated; %d dp1 sessions left; fence "
                  "time_total_ms %s; load %.2f"
                  % (run + 1, opened, took, one_task.values[-1], psql.values[-1],
                     "%.2f" % gone if gone is not None else "never", verified, len(report["deployments"]),
                     terminated, left, report.get("time_total_ms"), os.getloadavg()[0]))
            ok &= (verified == args.deployments == len(report["deployments"]) and report["verified"]
                   and left == 0 and (gone is not None or not args.sessions)
                   and terminated == args.deployments * args.sessions)
            figures["wall_s"].append(round(took, 3))
            figures["last_session_gone_s"].append(round(gone, 3) if gone is not None else None)
            figures["one_task_playbook_s"].append(round(one_task.values[-1], 3))
            figures["psql_fence_s"].append(round(psql.values[-1], 3))
            bench.close_sessions()
            if run + 1 < args.runs:
                bench.failover("dp2", "dp1", timed=False)  # fail back, not timed
    finally:
        bench.stop()
    figures["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    target = TARGETS.get((args.deployments, args.sessions), {})
    shape = "failover %d x %d" % (args.deployments, args.sessions)
    figures["versus_one_task_playbook"] = benchlib.versus_floor(
        shape, wall, one_task, "one-task ansible-playbook", target_ratio=target.get("playbook_ratio"),
        target_s=target.get("wall_s"))
    figures["versus_psql"] = benchlib.versus_floor(
        shape, wall, psql, "psql: REVOKE, pg_terminate_backend, GRANT per Deployment",
        target_ratio=target.get("psql_ratio"))
    gone = benchlib.Figure(g for g in figures["last_session_gone_s"] if g is not None)
    if args.deployments >= 100:  # the growth: too few Deployments give no slope
        per = [(w - f) * 1000.0 / args.deployments for w, f in zip(wall.values, one_task.values)]
        figures["ms_per_deployment_above_one_task"] = round(sorted(per)[len(per) // 2], 2)
        print("%s: each Deployment adds %.2f ms above the one-task playbook (median)"
              % (shape, figures["ms_per_deployment_above_one_task"]))
    if gone.values:
        print("%s: last dp1 session gone after %.2f / %.2f s (min / median)%s"
              % (shape, gone.min, gone.median, "; target <= %.1f s: %s" % (
                  target["gone_s"], "met" if gone.median <= target["gone_s"] else "NOT MET")
                  if "gone_s" in target else ""))
    met = all(figures[k].get("met", True) for k in ("versus_one_task_playbook", "versus_psql"))
    if "gone_s" in target:
        met = met and bool(gone.values) and gone.median <= target["gone_s"]
    figures.update(median_last_session_gone_s=gone.median, targets=target, all_verified=bool(ok),
                   met=bool(ok and met))
    print(json.dumps(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
