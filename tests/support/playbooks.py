"""Running the collection's playbooks against a test server: the playbooks, inventories, the
runner behind the ``ansible_playbook`` fixture, what their output says (PLAY RECAP, the summary
tasks), real login attempts, and ``Env``: provisioned Deployments with the way to run the
playbooks on them."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg2
from psycopg2 import sql

from tests.support import REPO
from tests.support.reports import latest_report
from tests.support.sessions import Sessions

PLAYBOOKS = REPO / "playbooks"
PROVISION = PLAYBOOKS / "provision.yml"
FAILOVER = PLAYBOOKS / "failover.yml"
AUDIT = PLAYBOOKS / "audit.yml"
BIN = Path(sys.executable).parent


def run_playbook(playbook, extra_vars=None, inventory=None, check=False, diff=False, env=None, timeout=600,
                 args=()):
    """The venv's ansible-playbook on PLAYBOOK (a path or a collection's playbook name) with the
    venv's Python as interpreter, from the repository root; returns the CompletedProcess."""
    cmd = [str(BIN / "ansible-playbook"), str(playbook)]
    if inventory:
        cmd += ["-i", str(inventory)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd += list(args)
    run_env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, LC_ALL="C.UTF-8",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    run_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=timeout, cwd=str(REPO),
                          check=False)


def inventory(tmp_path, server, user):
    """A one-host inventory (host ``pg``) for SERVER, connecting as USER, with the running
    Python as the interpreter (interpreter discovery may pick a broken shim)."""
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "dataplane_pg_host": server.host, "dataplane_pg_port": server.port, "dataplane_pg_user": user}
    path = tmp_path / ("inventory-%s.json" % user)
    path.write_text(json.dumps({"dataplane_postgresql": {"hosts": {"pg": host}}}))
    return path


def write_inventory(path, server, hosts=None):
    """One group dataplane_postgresql; each host is the same server unless told otherwise."""
    hosts = hosts or {"pg": {}}
    lines = ["dataplane_postgresql:", "  hosts:"]
    for name, extra in hosts.items():
        hostvars = dict(ansible_connection="local", ansible_python_interpreter=sys.executable,
                        dataplane_pg_host=server.host, dataplane_pg_port=server.port)
        hostvars.update(extra)
        lines.append("    %s:" % name)
        lines.extend("      %s: %s" % (k, json.dumps(v)) for k, v in hostvars.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def database_of(server, user, name):
    """Create database NAME as USER (a managed admin has no CREATE in ``postgres``: the fence
    helper lives in a database it owns). Returns NAME."""
    conn = psycopg2.connect(**server.dsn(user=user))
    try:
        conn.autocommit = True
        conn.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    return name


def recap(stdout):
    """PLAY RECAP -> {host: {ok, changed, failed, ...}}."""
    out = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            out[match.group(1)] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2)))
    return out


def debug_lines(stdout, task):
    """The msg list of the debug task TASK (its full title, role prefix included), in order."""
    section = stdout.split("TASK [%s]" % task)[1].split("TASK [")[0]
    return [json.loads(line.strip().rstrip(",")) for line in section.splitlines()
            if line.strip().startswith('"') and not line.strip().startswith('"msg"')]


def summary_lines(stdout, task="Failover summary"):
    """The lines of the failover summary (the debug task's msg list), in order."""
    return debug_lines(stdout, "dataplane.postgresql.failover : %s" % task)


def provision_lines(stdout):
    """The lines of the provisioning summary, in order."""
    return debug_lines(stdout, "dataplane.postgresql.deployments : Provisioning summary")


def login(server, user, dbname):
    """A real login attempt: ('admitted', None) or ('refused', first line of the error)."""
    try:
        psycopg2.connect(host=server.host, port=server.port, user=user, dbname=dbname,
                         connect_timeout=5).close()
        return "admitted", None
    except psycopg2.OperationalError as exc:
        return "refused", str(exc).strip().splitlines()[0]


def connect_as(server, user, dbname):
    """A connection (autocommit) as USER to DBNAME: a plane's login as Airflow would open it."""
    conn = psycopg2.connect(host=server.host, port=server.port, user=user, dbname=dbname, connect_timeout=5)
    conn.autocommit = True
    return conn


def can_log_in(server, user, dbname):
    """Whether USER can log in to DBNAME now (a real login attempt; any refusal is False)."""
    try:
        connect_as(server, user, dbname).close()
        return True
    except psycopg2.OperationalError:
        return False


def count_sessions(server, roles):
    """How many sessions of ROLES SERVER has now."""
    return server.sql("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = ANY(%s)",
                      (list(roles),))[0][0]


class Env(object):
    """A set of Deployments on one server plus the way to run the playbooks: ``provision()``
    (as postgres), ``failover()`` and ``audit()`` (as the commander login it creates), real
    logins, and live sessions (``sessions``, closed by the ``env`` fixture)."""

    def __init__(self, server, names, ansible_playbook, tmp_path, count=2):
        self.server = server
        self.run = ansible_playbook
        self.tmp = tmp_path
        self.commander = names("commander")
        self.ids = [names("f%d" % i) for i in range(count)]
        self.deployments = [{"id": i, "passwords": {"dp1": "pw-1-" + i, "dp2": "pw-2-" + i}} for i in self.ids]
        self.inventory = write_inventory(tmp_path / "inventory.yml", server)
        self.sessions = Sessions(server)  # tests/support/sessions.py
        server.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.commander)))

    def db(self, dep_id):
        return "airflow_db_%s" % dep_id

    def role(self, plane, dep_id):
        return "%s_user_%s" % (plane, dep_id)

    def add_deployment(self, dep_id):
        self.ids.append(dep_id)
        self.deployments.append({"id": dep_id, "passwords": {"dp1": "pw-1-" + dep_id, "dp2": "pw-2-" + dep_id}})

    def provision(self):
        proc = self.run(PROVISION, inventory=self.inventory,
                        extra_vars={"dataplane_pg_user": "postgres", "dataplane_deployments": self.deployments,
                                    "dataplane_commander_user": self.commander})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def failover(self, source, destination, user=None, run_env=None, args=(), **extra):
        """The failover playbook; RUN_ENV and ARGS go to ``run_playbook`` (``env``, ``args``)."""
        extra_vars = {"dataplane_pg_user": user or self.commander, "dataplane_deployments": self.deployments,
                      "dataplane_commander_user": self.commander,
                      "dataplane_failover_from": source, "dataplane_failover_to": destination}
        extra_vars.update(extra)
        return self.run(FAILOVER, inventory=self.inventory, extra_vars=extra_vars, env=run_env, args=args)

    def failover_ok(self, source, destination, **extra):
        proc = self.failover(source, destination, **extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def audit(self, **extra):
        """The audit playbook as commander_user with a report directory: (process, its report)."""
        extra_vars = {"dataplane_pg_user": self.commander, "dataplane_deployments": self.deployments,
                      "dataplane_commander_user": self.commander, "dataplane_report_dir": str(self.tmp / "reports")}
        extra_vars.update(extra)
        proc = self.run(AUDIT, inventory=self.inventory, extra_vars=extra_vars)
        return proc, latest_report(self.tmp / "reports", "audit")

    def logins(self, dep_id):
        return dict((plane, login(self.server, self.role(plane, dep_id), self.db(dep_id)))
                    for plane in ("dp1", "dp2"))

    def assert_active(self, plane, dep_id):
        other = "dp2" if plane == "dp1" else "dp1"
        result = self.logins(dep_id)
        assert result[plane] == ("admitted", None), result
        assert result[other][0] == "refused" and "permission denied for database" in result[other][1], result


class Deployments(object):
    """COUNT Deployments (ids ``s0``, ``s1``, ... made unique) and a commander login on SERVER, for
    the schema role tests: ``playbook(path, user, ...)`` runs any playbook on them (as postgres
    unless USER says otherwise); ``db``, ``schema`` and ``login`` give the model's names."""

    def __init__(self, server, names, ansible_playbook, tmp_path, count=2):
        self.server = server
        self.run = ansible_playbook
        self.commander = names("commander")
        self.ids = [names("s%d" % i) for i in range(count)]
        self.deployments = [{"id": i, "passwords": {"dp1": "secret-one-" + i, "dp2": "secret-two-" + i}}
                            for i in self.ids]
        self.inventory = write_inventory(tmp_path / "inventory.yml", server)
        server.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.commander)))

    def playbook(self, playbook, user="postgres", check=False, diff=False, deployments=None, **extra):
        extra_vars = {"dataplane_pg_user": user, "dataplane_commander_user": self.commander,
                      "dataplane_deployments": deployments or self.deployments}
        extra_vars.update(extra)
        return self.run(playbook, inventory=self.inventory, extra_vars=extra_vars, check=check, diff=diff)

    @staticmethod
    def db(i):
        return "airflow_db_%s" % i

    @staticmethod
    def schema(i):
        return "airflow_db_%s_schema" % i

    @staticmethod
    def login(plane, i):
        return "%s_user_%s" % (plane, i)
