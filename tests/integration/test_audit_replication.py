"""The audit and streaming replication, on a real primary with streaming hot standbys (16, 18).

The Deployments are provisioned and failed over with the playbooks (as ``commander_user``,
with a report), then audited with ``dataplane_audit_last_report`` and ``dataplane_standbys``:

- a standby that was cut off during the failover (its WAL receiver stopped) is named with its
  slot and its gap, and a fenced plane's session on a listed hot standby is named; once the
  standby caught up and the session ended, the same audit passes;
- a standby promoted after missing the fence admits both planes again, and the audit fails
  with "the fence was probably lost in a promotion: run the failover again"; a standby
  promoted after it had the fence passes; running the failover again on the promoted one, as
  the message says, makes its audit pass.

Until the fence returns the fence's WAL position (``wal``) itself, the test writes it into the
report from the server: the position right after the failover, the timeline of the current WAL
file, the system identifier.
"""

import json
import sys
import time

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.dataplane.postgresql.plugins.filter.audit_report import audit_last_report
from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import expand_deployments
from tests.support.reports import latest_report
from tests.support.server import PgServer, remove, scratch_dir

LOST = "the fence was probably lost in a promotion: run the failover again"
POSITION_SQL = ("SELECT pg_catalog.pg_current_wal_lsn()::text, "
                "pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8), "
                "(SELECT system_identifier FROM pg_catalog.pg_control_system())::text")


@pytest.fixture(params=[16, 18], ids=["pg16", "pg18"])
def cluster(request):
    """start(name, slot=None): a primary ("primary"), then streaming hot standbys of it, each in
    a folder named after it (its application_name). Everything is stopped and removed after."""
    root = scratch_dir("dataplane-auditrep-")
    servers = [PgServer(request.param, root / "primary", ["max_connections=100"]).start()]

    def start(name, slot=None):
        servers.append(PgServer(request.param, root / name, standby_of=servers[0], slot=slot).start())
        return servers[-1]
    try:
        yield servers[0], start
    finally:
        for server in reversed(servers):
            server.stop()
        remove(root)


class Plane(object):
    """One Deployment, provisioned on PRIMARY, and the playbooks as commander_user."""

    def __init__(self, primary, names, ansible_playbook, tmp_path):
        self.primary, self.run, self.tmp = primary, ansible_playbook, tmp_path
        self.commander = names("commander")
        self.id = names("r")
        self.database = "airflow_db_%s" % self.id
        self.dp1, self.dp2 = "dp1_user_%s" % self.id, "dp2_user_%s" % self.id
        self.deployments = [{"id": self.id, "passwords": {"dp1": "pw-1", "dp2": "pw-2"}}]
        primary.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.commander)))

    def inventory(self, server):
        """Host "pg" is SERVER: after a promotion the same host name reaches another server."""
        path = self.tmp / ("inventory-%d.json" % server.port)
        path.write_text(json.dumps({"dataplane_postgresql": {"hosts": {"pg": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "dataplane_pg_host": server.host, "dataplane_pg_port": server.port}}}}))
        return path

    def playbook(self, name, server, **extra):
        extra_vars = {"dataplane_pg_user": self.commander, "dataplane_deployments": self.deployments,
                      "dataplane_commander_user": self.commander}
        extra_vars.update(extra)
        return self.run("dataplane.postgresql.%s" % name, inventory=self.inventory(server), extra_vars=extra_vars)

    def provision(self):
        proc = self.playbook("provision", self.primary, dataplane_pg_user="postgres")
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def failover(self, server, source="dp1", destination="dp2"):
        """Fail over on SERVER (not waiting for standbys); returns the report's path, with ``wal``."""
        reports = self.tmp / ("failover-reports-%d" % server.port)
        proc = self.playbook("failover", server, dataplane_failover_from=source, dataplane_failover_to=destination,
                             dataplane_failover_standby_policy="ignore", dataplane_report_dir=str(reports))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [path] = sorted(reports.glob("failover-pg-*.json"))
        report = json.loads(path.read_text())
        if not report.get("wal"):
            lsn, timeline, system_identifier = server.sql(POSITION_SQL)[0]
            report["wal"] = {"revoke_lsn": lsn, "final_lsn": lsn, "timeline": int(timeline, 16),
                             "system_identifier": system_identifier}
            path.write_text(json.dumps(report))
        return path

    def audit(self, server, report, standbys=()):
        """The audit playbook on SERVER with the failover report REPORT: (process, audit report)."""
        reports = self.tmp / "audit-reports"
        proc = self.playbook("audit", server, dataplane_audit_last_report=str(report), dataplane_report_dir=str(reports),
                             dataplane_standbys=[{"name": s.base.name, "host": s.host, "port": s.port}
                                                 for s in standbys])
        return proc, latest_report(reports, "audit")

    def audit_module(self, run_module, server, report, standbys=()):
        """The deployment_audit module alone (what the role passes it), for the checks that need
        no second playbook run: its result."""
        records = expand_deployments(self.deployments, commander_user=self.commander)
        return run_module("deployment_audit", dict(
            server.login_args(self.commander), deployments=records, last_report=audit_last_report(str(report), "pg"),
            standbys=[{"name": s.base.name, "host": s.host, "port": s.port} for s in standbys]))


def caught_up(primary, standby):
    lsn = primary.sql("SELECT pg_catalog.pg_current_wal_lsn()::text")[0][0]
    assert standby.replayed(lsn), "%s did not replay %s" % (standby.base.name, lsn)


def cut_off(primary, standby):
    """Stop STANDBY's WAL receiver (it keeps serving reads) and wait until the primary lost it.
    Returns the standby's primary_conninfo, for reconnect()."""
    conninfo = standby.sql("SELECT pg_catalog.current_setting('primary_conninfo')")[0][0]
    standby.sql("ALTER SYSTEM SET primary_conninfo = ''")
    standby.sql("SELECT pg_catalog.pg_reload_conf()")
    deadline = time.monotonic() + 30
    while primary.sql("SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_replication WHERE application_name = %s",
                      (standby.base.name,))[0][0]:
        assert time.monotonic() < deadline, "the primary still streams to %s" % standby.base.name
        time.sleep(0.05)
    return conninfo


def reconnect(primary, standby, conninfo):
    standby.sql(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo)))
    standby.sql("SELECT pg_catalog.pg_reload_conf()")
    caught_up(primary, standby)


def findings(report):
    [dep] = report["deployments"]
    return dict((f["check"], f) for f in dep["findings"])


def can_login(server, role, database):
    try:
        psycopg2.connect(host=server.host, port=server.port, user=role, dbname=database, connect_timeout=5).close()
        return True
    except psycopg2.OperationalError:
        return False


def test_a_lagging_slot_and_sessions_on_a_listed_standby_are_named(cluster, names, ansible_playbook, run_module,
                                                                   tmp_path):
    primary, start = cluster
    standby = start("standby", slot="standby")
    plane = Plane(primary, names, ansible_playbook, tmp_path)
    plane.provision()
    caught_up(primary, standby)
    held = psycopg2.connect(host=standby.host, port=standby.port, user=plane.dp1, dbname=plane.database)
    conninfo = cut_off(primary, standby)
    report = plane.failover(primary)
    assert not can_login(primary, plane.dp1, plane.database)

    proc, audit = plane.audit(primary, report, standbys=[standby])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    checks = findings(audit)
    assert checks["last_failover"]["ok"], checks["last_failover"]
    positions = checks["standby_positions"]
    assert not positions["ok"] and "standby standby (listed)" not in positions["detail"], positions
    assert "standby standby (not connected, slot standby) has flushed up to" in positions["detail"], positions
    assert "bytes behind the fence of run" in positions["detail"], positions
    [entry] = audit["replication"]["standbys"]
    assert entry["source"] == "slot" and entry["listed"] and entry["state"] == "behind", entry
    assert entry["gap_bytes"] > 0 and entry["position_from"] == "standby", entry
    sessions = checks["standby_sessions"]
    assert not sessions["ok"], sessions
    assert ("%s (plane dp1) is fenced but has 1 session(s) on standby standby (127.0.0.1:%d) (pid %d; database %s)"
            % (plane.dp1, standby.port, held.get_backend_pid(), plane.database)) in sessions["detail"], sessions
    assert "standby_sessions: " in out and "standby_positions: " in out

    held.close()
    reconnect(primary, standby, conninfo)
    audit = plane.audit_module(run_module, primary, report, standbys=[standby])
    assert not audit["failed"] and not audit["drift"], audit["summary"]
    checks = findings(audit)
    assert all(checks[c]["ok"] for c in ("last_failover", "standby_positions", "standby_sessions")), checks
    [entry] = audit["replication"]["standbys"]
    assert entry["source"] == "replication" and entry["state"] == "flushed" and entry["gap_bytes"] == 0, entry


def test_a_standby_promoted_without_the_fence_fails_the_audit(cluster, names, ansible_playbook, run_module, tmp_path):
    primary, start = cluster
    missed, kept = start("missed"), start("kept")
    plane = Plane(primary, names, ansible_playbook, tmp_path)
    plane.provision()
    caught_up(primary, missed)
    cut_off(primary, missed)
    report = plane.failover(primary)
    caught_up(primary, kept)
    missed.promote()
    kept.promote()
    # the split brain the audit must see: on the promoted standby both planes are admitted
    assert can_login(missed, plane.dp1, plane.database) and can_login(missed, plane.dp2, plane.database)
    assert not can_login(kept, plane.dp1, plane.database)

    proc, audit = plane.audit(missed, report)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    lost = findings(audit)["last_failover"]
    assert not lost["ok"] and lost["detail"].startswith(LOST + ": "), lost
    assert "%s has no fence record, the failover's run" % plane.database in lost["detail"], lost
    assert "the server is on timeline 2, the failover ran on timeline 1" in lost["detail"], lost
    assert LOST in out
    assert audit["replication"]["server"]["timeline"] == 2, audit["replication"]

    audit = plane.audit_module(run_module, kept, report)  # promoted with the fence: its record proves it
    assert not audit["failed"] and not audit["drift"], audit["summary"]
    kept_finding = findings(audit)["last_failover"]
    assert kept_finding["ok"] and "it was promoted since" in kept_finding["detail"], kept_finding
    assert findings(audit)["standby_positions"]["detail"].startswith("not compared: "), findings(audit)

    again = plane.failover(missed)  # what the message says
    assert not can_login(missed, plane.dp1, plane.database)
    proc, audit = plane.audit(missed, again)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert findings(audit)["last_failover"]["ok"], findings(audit)
