"""Real Apache Airflow on either plane: provision, migrate, fail over, fail back.

Airflow (apache-airflow-core, pinned in scripts/airflow_venv.sh) runs from its own venv under
.cache/, built on first use and reused afterwards. Everything is real: the provision and
failover playbooks, PostgreSQL 16 and 18, Airflow's CLI and ORM. The sequence:

1. provision one Deployment (schema role on), `airflow db migrate` as dp1, write and read a
   variable and a pool as dp1;
2. open an Airflow ORM session of dp1 with an uncommitted write, fail over dp1 -> dp2 as
   commander_user: the session is cut off, its write is lost, dp1 cannot reconnect;
3. Airflow as dp2 reads dp1's data, writes, and runs `airflow db migrate`;
4. fail back dp2 -> dp1 the same way and check dp1 again;
5. commander_user cannot read a table Airflow created.
"""

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from tests.support.reports import latest_report
from tests.support.versions import on

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "playbooks" / "provision.yml"
FAILOVER = REPO / "playbooks" / "failover.yml"
AUDIT = REPO / "playbooks" / "audit.yml"

# An Airflow ORM session that writes without committing, waits, then tries to commit and to
# use a new session: what a scheduler holding a transaction sees when its plane is fenced.
HOLDER = r"""
import sys
from sqlalchemy import text
from airflow import settings
from airflow.models import Variable
settings.configure_orm()
session = settings.Session()
session.add(Variable(key=sys.argv[1], val="uncommitted"))
session.flush()
row = session.execute(text("SELECT current_user, session_user, pg_backend_pid()")).one()
print("READY %s %s %s" % tuple(row), flush=True)
sys.stdin.readline()
try:
    session.commit()
    print("COMMITTED", flush=True)
except Exception as exc:
    print("COMMIT FAILED: %s" % str(exc).strip().splitlines()[0], flush=True)
settings.Session.remove()
settings.engine.dispose()
try:
    with settings.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    print("RECONNECTED", flush=True)
except Exception as exc:
    print("RECONNECT FAILED: %s" % str(exc).strip().splitlines()[0], flush=True)
"""


@pytest.fixture(scope="session")
def airflow_venv():
    started = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "scripts" / "airflow_venv.sh")], capture_output=True, text=True,
                          timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    venv = Path(proc.stdout.strip().splitlines()[-1])
    print("\nairflow venv %s ready in %.1f s (%s)"
          % (venv, time.monotonic() - started, proc.stderr.strip().splitlines()[0]))
    return venv


class Airflow(object):
    """Airflow's CLI and ORM against one metadata database, as one login role."""

    def __init__(self, venv, home, server, user, database, fernet_key):
        self.venv = venv
        self.user = user
        # Both planes must share the Fernet key: with a key of its own (Airflow writes one into a
        # new airflow.cfg) a plane cannot decrypt the other's variables and reports them missing.
        self.env = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                        AIRFLOW__CORE__FERNET_KEY=fernet_key,
                        AIRFLOW__CORE__UNIT_TEST_MODE="False", AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
                        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://%s@%s:%d/%s" % (
                            user, server.host, server.port, database))
        home.mkdir(parents=True, exist_ok=True)

    def cli(self, *args, ok=True, timeout=300):
        proc = subprocess.run([str(self.venv / "bin" / "airflow")] + list(args), capture_output=True, text=True,
                              env=self.env, timeout=timeout, check=False)
        if ok:
            assert proc.returncode == 0, "airflow %s as %s failed:\n%s\n%s" % (
                " ".join(args), self.user, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc

    def hold(self, key):
        """Start HOLDER; return the process once its write is flushed (uncommitted)."""
        proc = subprocess.Popen([str(self.venv / "bin" / "python"), "-c", HOLDER, key], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            proc.kill()
            raise AssertionError("the Airflow session did not start: %s %s" % (line, proc.stderr.read()[-3000:]))
        return proc, line.split()

    @staticmethod
    def release(proc):
        out, err = proc.communicate("go\n", timeout=120)
        return out


def playbook(playbook_path, server, tmp_path, extra):
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"dataplane_postgresql": {"hosts": {"pg": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "dataplane_pg_host": server.host, "dataplane_pg_port": server.port}}}}))
    env = dict(os.environ, LC_ALL="C.UTF-8", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(playbook_path),
                           "-i", str(inventory), "-e", json.dumps(extra)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=str(REPO), check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    return proc


def audit_report(server, tmp_path, extra):
    """Run the audit playbook (it must pass) and return its JSON report of host pg."""
    reports = tmp_path / "audit-reports"
    playbook(AUDIT, server, tmp_path, dict(extra, dataplane_report_dir=str(reports)))
    return latest_report(reports, "audit")   # one file per run: this run's is the newest


def code_objects(report):
    """{Deployment id: (its code_objects finding, the objects listed)}."""
    out = {}
    for dep in report["deployments"]:
        [finding] = [f for f in dep["findings"] if f["check"] == "code_objects"]
        out[dep["id"]] = (finding, dep["code_objects"])
    return out


def table_count(server, database):
    return server.sql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE n.nspname = 'public' AND c.relkind = 'r'", dbname=database)[0][0]


# PostgreSQL 16 and 18, the oldest and the newest supported: what changed in between (17's MAINTAIN
# privilege, for one) is on one side or the other. docs/testing.md says why not 17 as well.
@on(16, 18)
def test_airflow_runs_on_either_plane(pg, names, tmp_path, airflow_venv):
    server = pg
    dep_id = names("af")
    commander = names("commander")
    database, schema_role = "airflow_db_%s" % dep_id, "airflow_db_%s_schema" % dep_id
    login = {"dp1": "dp1_user_%s" % dep_id, "dp2": "dp2_user_%s" % dep_id}
    server.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(commander)))
    common = {"dataplane_commander_user": commander,
              "dataplane_deployments": [{"id": dep_id, "passwords": {"dp1": "dp1-secret-pw", "dp2": "dp2-secret-pw"}}]}
    playbook(PROVISION, server, tmp_path, dict(common, dataplane_pg_user="postgres"))
    fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
    airflow = dict((plane, Airflow(airflow_venv, tmp_path / ("home-" + plane), server, login[plane], database,
                                   fernet_key)) for plane in ("dp1", "dp2"))

    # 1. dp1 migrates, writes and reads.
    started = time.monotonic()
    airflow["dp1"].cli("db", "migrate")
    migrate_s = time.monotonic() - started
    tables = table_count(server, database)
    assert tables >= 50
    owners = server.sql("SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = 'public'", dbname=database)
    assert owners == [(schema_role,)]
    # Airflow's migrations leave no code behind that runs in other sessions (no trigger, rule,
    # function, operator, ...): the audit, as commander_user, passes with nothing allowed.
    report = audit_report(server, tmp_path, dict(common, dataplane_pg_user=commander))
    finding, objects = code_objects(report)[dep_id]
    assert finding["ok"] and objects == [], finding
    assert report["drift"] is False, report["summary"]
    airflow["dp1"].cli("variables", "set", "written_by", "dp1")
    airflow["dp1"].cli("pools", "set", "dp1_pool", "3", "made by dp1")
    assert airflow["dp1"].cli("variables", "get", "written_by").stdout.strip().splitlines()[-1] == "dp1"

    current, other = "dp1", "dp2"
    for round_trip in range(2):   # failover, then failback: the same checks each way
        # 2. An Airflow session of the active plane holds an uncommitted write; fail over.
        holder, ready = airflow[current].hold("uncommitted_%s" % current)
        assert ready[1:3] == [schema_role, login[current]]
        playbook(FAILOVER, server, tmp_path, dict(common, dataplane_pg_user=commander,
                                                  dataplane_failover_from=current, dataplane_failover_to=other))
        output = Airflow.release(holder)
        assert "COMMIT FAILED" in output and ("terminating connection" in output or "closed" in output), output
        assert "RECONNECT FAILED" in output and "permission denied for database" in output, output
        denied = airflow[current].cli("db", "check", ok=False)   # `variables get` would hide the error
        assert denied.returncode != 0 and "permission denied for database" in denied.stdout + denied.stderr
        assert server.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (login[current],)) == [(0,)]

        # 3. The other plane reads what was written before, writes, and migrates.
        airflow[other].cli("db", "check")
        assert airflow[other].cli("variables", "get", "written_by").stdout.strip().splitlines()[-1] == current
        assert "dp1_pool" in airflow[other].cli("pools", "list").stdout
        assert airflow[other].cli("variables", "get", "uncommitted_%s" % current, ok=False).returncode != 0
        airflow[other].cli("variables", "set", "written_by", other)
        airflow[other].cli("db", "migrate")
        airflow[other].cli("db", "check-migrations", "-t", "5")
        assert table_count(server, database) == tables
        current, other = other, current

    # 4b. Both planes migrated and wrote: still no code objects, still no drift.
    report = audit_report(server, tmp_path, dict(common, dataplane_pg_user=commander))
    finding, objects = code_objects(report)[dep_id]
    assert finding["ok"] and objects == [], finding
    assert report["drift"] is False, report["summary"]

    # 5. The orchestrator keeps no access to Airflow's data.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege) as denied:
        server.sql("SELECT * FROM variable", user=commander, dbname=database)
    assert "permission denied for table variable" in str(denied.value)
    print("airflow db migrate as dp1 on a fresh database: %.1f s, %d tables" % (migrate_s, tables))
