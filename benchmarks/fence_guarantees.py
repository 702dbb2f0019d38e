#!/usr/bin/env python
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure what the fence guarantees under stress (the figures of docs/fence-guarantees.md).

Standalone: starts its own PostgreSQL (default 16) under /tmp with scripts/pg.py, with the
test servers' settings (synchronous_commit=off, fsync=off), runs the vendor's reference setup
for one Deployment plus the fence helper, and fences as commander_user:

storm     100 client threads log in as the source role over loopback, write a row, and reconnect
          at once (10 ms pause) whenever anything fails; the fence runs in the middle of the
          storm, which goes on for --after seconds. Counted: source logins that succeeded and
          source rows committed after the fence module returned, and the most source sessions
          pg_stat_activity showed at any poll after it returned.
killed    ansible-playbook runs the fence (controlled mode, a 2 s drain, so it is still running)
          and is killed once the module is seen polling: SIGKILL to ansible-playbook, SIGTERM to
          it, and SIGINT to its whole process group (Ctrl-C in a terminal). Checked: the fence
          still completes (record "complete" with this run's id, source refused, destination
          admitted) or, when the module itself was interrupted, neither plane is admitted and a
          rerun converges.
restart   the server restarts (fast, and immediate = crash) while the fence waits in its drain,
          from the state a failback left (the destination holds no CONNECT). Checked: neither
          plane is admitted afterwards, the record says "fencing", and a rerun converges.

Usage: .venv/bin/python benchmarks/fence_guarantees.py [--runs 5] [--threads 100] [--after 3]
       [--version 16] [--only storm,killed,restart] [--json FILE]
Exit status 0 only when every run of every scenario held the guarantee.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

import benchlib
from tests.support.reference import deployment_names, setup_deployments  # the seed SQL (root put on sys.path by benchlib)

COMMANDER = "commander_user"
RECORD_PREFIX = "dataplane.postgresql fence state: "


class Server(benchlib.PgServer):
    """tests/support's server (connect, sql, pg_ctl, wait_ready), plus the fence's login options."""

    def login(self, user=COMMANDER):
        return self.login_args(user)


class Bench(object):
    def __init__(self, args):
        self.args = args
        self.work = benchlib.make_work_dir("dataplane-fence-guarantees-")
        self.srv = Server(args.version, self.work / "pg", ["max_connections=%d" % (args.threads + 100)]).start(1)
        info = self.srv.info
        self.dep = deployment_names("g")
        setup_deployments(self.srv, [self.dep], COMMANDER)
        self.srv.sql(sql.SQL("ALTER TABLE t ADD COLUMN at timestamptz DEFAULT clock_timestamp()").format(),
                     dbname=self.dep["database"])
        benchlib.run_module("fence_helper", dict(self.srv.login("postgres"), killer_roles=[self.dep["killer"]]))
        self.version = info["version"]

    def stop(self):
        try:
            benchlib.stop_postgresql(self.work / "pg")
        finally:
            shutil.rmtree(str(self.work), ignore_errors=True)

    # --- helpers ------------------------------------------------------------------------------
    def fence_args(self, src="dp1", dst="dp2", **extra):
        d = self.dep
        args = dict(self.srv.login(), deployments=[dict(name=d["id"], database=d["database"], source_role=d[src],
                                                        destination_role=d[dst], killer_role=d["killer"])])
        args.update(extra)
        return args

    def fence(self, src="dp1", dst="dp2", **extra):
        return benchlib.run_module("fence", self.fence_args(src, dst, **extra), allow_failure=True)

    def admitted(self):
        """{plane: holds CONNECT} for dp1 and dp2."""
        rows = self.srv.sql("SELECT has_database_privilege(%s, %s, 'CONNECT'), has_database_privilege(%s, %s, "
                            "'CONNECT')", (self.dep["dp1"], self.dep["database"], self.dep["dp2"],
                                           self.dep["database"]))
        return {"dp1": rows[0][0], "dp2": rows[0][1]}

    def can_login(self, plane):
        try:
            self.srv.connect(self.dep[plane], self.dep["database"]).close()
            return True
        except psycopg2.OperationalError:
            return False

    def record(self):
        comment = self.srv.sql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                               (self.dep["database"],))[0][0] or ""
        for line in comment.split("\n"):
            if line.startswith(RECORD_PREFIX):
                return json.loads(line[len(RECORD_PREFIX):])
        return None

    def source_sessions(self, plane="dp1"):
        return self.srv.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (self.dep[plane],))[0][0]

    def commander_polling(self):
        return self.srv.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND query LIKE "
                            "'%%FROM pg_catalog.pg_stat_activity WHERE usename = ANY%%'", (COMMANDER,))[0][0] > 0

    def wait_until(self, predicate, timeout=30, step=0.01):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(step)
        return predicate()

    def back_to(self, admitted="dp1"):
        """Fence the other plane so that ADMITTED holds CONNECT (and the other one not)."""
        other = "dp2" if admitted == "dp1" else "dp1"
        if self.admitted()[admitted] and not self.admitted()[other]:
            return
        dummy, res = self.fence(other, admitted, on_state_change="proceed")
        if res.get("failed"):
            raise SystemExit("could not reset the state: %s" % res.get("msg"))

    def rows(self):
        return self.srv.sql("SELECT count(*) FROM t", dbname=self.dep["database"])[0][0]

    # --- scenario: reconnect storm -------------------------------------------------------------
    def storm(self, run):
        self.back_to("dp1")
        self.srv.sql("TRUNCATE t", dbname=self.dep["database"])
        stop = threading.Event()
        returned = {}
        stats = {"logins_after": 0, "logins": 0, "errors": 0}
        lock = threading.Lock()

        def client(n):
            conn = None
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = self.srv.connect(self.dep["dp1"], self.dep["database"], connect_timeout=5,
                                                application_name="storm-%d" % n)
                        with lock:
                            stats["logins"] += 1
                            if "t" in returned:
                                stats["logins_after"] += 1
                    conn.cursor().execute("INSERT INTO t (src) VALUES ('dp1')")
                    time.sleep(0.01)
                except psycopg2.Error:
                    with lock:
                        stats["errors"] += 1
                    try:
                        if conn is not None:
                            conn.close()
                    except psycopg2.Error:
                        pass
                    conn = None
                    time.sleep(0.01)
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(self.args.threads)]
        for thread in threads:
            thread.start()
        self.wait_until(lambda: self.source_sessions() >= self.args.threads, timeout=30)
        before = self.source_sessions()
        wall, res = self.fence(run_id="storm-%d" % run)
        with lock:
            returned["t"] = time.monotonic()
        rows_at_return = self.rows()
        max_after = 0
        deadline = time.monotonic() + self.args.after
        while time.monotonic() < deadline:
            max_after = max(max_after, self.source_sessions())
            time.sleep(0.05)
        rows_after = self.rows() - rows_at_return
        stop.set()
        for thread in threads:
            thread.join(30)
        dep = res["deployments"][0]
        out = dict(run=run, verified=bool(dep.get("verified")), sessions_before=before,
                   sessions_terminated=len(dep["sessions_terminated"]), time_to_fence_ms=dep["time_to_fence_ms"],
                   module_wall_s=round(wall, 3), logins_after=stats["logins_after"], rows_after=rows_after,
                   max_source_sessions_after=max_after, failed_attempts=stats["errors"],
                   msg=res.get("msg") if res.get("failed") else None)
        out["held"] = out["verified"] and rows_after == 0 and stats["logins_after"] == 0
        return out

    # --- scenario: killed ansible-playbook ----------------------------------------------------
    def killed(self, run, how):
        self.back_to("dp1")
        live = self.srv.connect(self.dep["dp1"], self.dep["database"], application_name="killed-idle")
        run_id = "killed-%s-%d" % (how, run)
        play = self.work / ("play-%s-%d" % (how, run))
        play.mkdir()
        (play / "inventory.ini").write_text("[dataplane_postgresql]\nbench ansible_connection=local "
                                            "ansible_python_interpreter=%s\n" % benchlib.PYTHON)
        (play / "vars.json").write_text(json.dumps({"fence_args": self.fence_args(
            run_id=run_id, mode="controlled", drain_timeout=2)}))
        (play / "fence.yml").write_text(
            "- hosts: dataplane_postgresql\n  gather_facts: false\n  tasks:\n"
            "    - name: Fence\n      dataplane.postgresql.fence: \"{{ fence_args }}\"\n")
        env = dict(os.environ, LC_ALL="C.UTF-8", ANSIBLE_NOCOLOR="1", ANSIBLE_PYTHON_INTERPRETER=benchlib.PYTHON)
        proc = subprocess.Popen([str(benchlib.VENV_BIN / "ansible-playbook"), "-i", str(play / "inventory.ini"),
                                 "-e", "@%s" % (play / "vars.json"), str(play / "fence.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=str(play),
                                start_new_session=True)
        seen = self.wait_until(self.commander_polling, timeout=60)
        killed_at = time.monotonic()
        if how == "sigkill":
            proc.send_signal(signal.SIGKILL)
        elif how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:  # Ctrl-C in a terminal: SIGINT to the whole foreground process group
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
        # the module (if alive) finishes on its own: wait until no commander session remains
        self.wait_until(lambda: self.srv.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                             (COMMANDER,))[0][0] == 0, timeout=60, step=0.05)
        done_s = time.monotonic() - killed_at
        rec = self.record()
        completed = bool(rec and rec["run"] == run_id and rec["phase"] == "complete")
        refused, admitted = not self.can_login("dp1"), self.can_login("dp2")
        try:
            live.close()
        except psycopg2.Error:
            pass
        out = dict(run=run, signal=how, module_seen_polling=seen, completed=completed,
                   record_phase=rec and rec["phase"], record_run=rec and rec["run"], source_refused=refused,
                   destination_admitted=admitted, seconds_until_module_ended=round(done_s, 2))
        if completed:
            out["held"] = refused and admitted
        else:  # interrupted: it must have left a safe state, and a rerun converges
            state = self.admitted()
            dummy, res = self.fence(run_id=run_id + "-rerun")
            out.update(interrupted_admitted=state, rerun_verified=bool(res["deployments"][0].get("verified")))
            out["held"] = not state["dp1"] and out["rerun_verified"]
        return out

    # --- scenario: server restart mid-fence ------------------------------------------------------
    def restart(self, run, mode):
        self.back_to("dp1")  # dp2 holds no CONNECT: the fence below must admit it
        live = self.srv.connect(self.dep["dp1"], self.dep["database"], application_name="restart-idle")
        run_id = "restart-%s-%d" % (mode, run)
        out = {}

        def fence():
            out["res"] = self.fence(run_id=run_id, mode="controlled", drain_timeout=5)[1]

        thread = threading.Thread(target=fence, daemon=True)
        thread.start()
        seen = self.wait_until(self.commander_polling, timeout=60)
        if mode == "immediate":
            self.srv.pg_ctl("--mode", "immediate", "stop")
            self.srv.pg_ctl("--log", str(self.work / "pg" / "server.log"), "--wait", "start")
        else:
            self.srv.pg_ctl("--mode", "fast", "--log", str(self.work / "pg" / "server.log"), "--wait", "restart")
        self.srv.wait_ready()
        thread.join(60)
        try:
            live.close()
        except psycopg2.Error:
            pass
        state = self.admitted()
        rec = self.record()
        res = out["res"]
        dummy, again = self.fence(run_id=run_id + "-rerun")
        rerun_ok = bool(again["deployments"][0].get("verified")) and self.record()["phase"] == "complete"
        result = dict(run=run, mode=mode, module_seen_polling=seen, module_failed=bool(res.get("failed")),
                      msg=(res.get("msg") or "")[:160], admitted_after_restart=state,
                      record_phase=rec and rec["phase"], rerun_verified=rerun_ok,
                      refused_after_rerun=not self.can_login("dp1"), admitted_after_rerun=self.can_login("dp2"))
        result["held"] = (not state["dp1"] and not state["dp2"] and result["record_phase"] == "fencing"
                          and rerun_ok and result["refused_after_rerun"] and result["admitted_after_rerun"])
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--after", type=float, default=3.0, help="seconds the storm goes on after the fence")
    parser.add_argument("--version", type=int, default=16)
    parser.add_argument("--only", default="storm,killed,restart")
    parser.add_argument("--json", help="write every run's figures to this file")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    bench = Bench(args)
    print("PostgreSQL %s on port %d, Deployment %s, %d run(s) per scenario"
          % (bench.version, bench.srv.port, bench.dep["database"], args.runs))
    results = {}
    try:
        if "storm" in wanted:
            results["storm"] = [bench.storm(n) for n in range(1, args.runs + 1)]
        if "killed" in wanted:
            results["killed"] = [bench.killed(n, how) for how in ("sigkill", "sigterm", "sigint_group")
                                 for n in range(1, args.runs + 1)]
        if "restart" in wanted:
            results["restart"] = [bench.restart(n, mode) for mode in ("fast", "immediate")
                                  for n in range(1, args.runs + 1)]
    finally:
        bench.stop()
    ok = True
    for name, runs in results.items():
        held = sum(1 for r in runs if r["held"])
        ok &= held == len(runs)
        print("%-8s held in %d of %d runs" % (name, held, len(runs)))
        for r in runs:
            print("  " + json.dumps(r, sort_keys=True))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(results, postgresql=bench.version, threads=args.threads),
                                              indent=2, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
