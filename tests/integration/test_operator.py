"""What an operator reads at 3 a.m., through the playbooks against real PostgreSQL 16: the audit
of a subset stays within it, a record that contradicts the catalog is never answered with
"fail over again", and every error says what happened, whether anything changed, and what to
do (each test checks the message's content, not only that the run failed)."""

import json
import re

from psycopg2 import sql

from test_failover import FAILOVER, REPO, Env, count_sessions, recap, summary_lines
from tests.support.reports import latest_report

AUDIT = REPO / "playbooks" / "audit.yml"


def make_env(pg16, names, ansible_playbook, tmp_path, count):
    e = Env(pg16, names, ansible_playbook, tmp_path, count)
    e.provision()
    return e


def audit(e, **extra):
    extra_vars = {"dataplane_pg_user": e.commander, "dataplane_deployments": e.deployments,
                  "dataplane_commander_user": e.commander, "dataplane_report_dir": str(e.tmp / "reports")}
    extra_vars.update(extra)
    proc = e.run(AUDIT, inventory=e.inventory, extra_vars=extra_vars)
    return proc, latest_report(e.tmp / "reports", "audit")


def test_audit_of_a_subset_stays_within_it(pg16, names, ansible_playbook, tmp_path):
    e = make_env(pg16, names, ansible_playbook, tmp_path, 3)
    chosen, other, third = e.ids
    try:
        proc, report = audit(e, dataplane_audit_deployments=[chosen])
        assert proc.returncode == 0, proc.stdout
        assert [d["id"] for d in report["deployments"]] == [chosen] and report["drift"] is False, report["summary"]
        assert report["summary"] == [s for s in report["summary"] if s.startswith(chosen + ": OK, fence capable")]
        assert other not in proc.stdout.split("Audit summary")[1] and third not in proc.stdout.split("Audit summary")[1]
        # drift outside the subset is not this audit's: PUBLIC gets CONNECT on another Deployment
        pg16.sql(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(e.db(other))))
        proc, report = audit(e, dataplane_audit_deployments="%s,%s" % (chosen, third))
        assert proc.returncode == 0 and report["drifted"] == [], report["summary"]
        # ... and the full audit still sees it
        proc, report = audit(e)
        assert proc.returncode != 0 and report["drifted"] == [other], report["summary"]
        # an id that is not a Deployment is named, with the ids that exist
        proc, report = audit(e, dataplane_audit_deployments=[chosen, "nope"])
        assert proc.returncode != 0 and report["drifted"] == ["nope"]
        assert "nope: DRIFT (1): dataplane_audit_deployments names it, but dataplane_deployments has no such id " \
            "(its ids: %s)" % ", ".join(e.ids) in proc.stdout, proc.stdout
    finally:
        e.sessions.close()


def test_audit_of_a_forged_record_says_which_plane_the_catalog_admits(pg16, names, ansible_playbook, tmp_path):
    """A record saying the healthy plane is fenced: the audit names the plane the catalog admits
    and says to check before any failover; it never advises failing over again."""
    e = make_env(pg16, names, ansible_playbook, tmp_path, 1)
    dep_id = e.ids[0]
    try:
        e.failover_ok("dp1", "dp2")
        comment = pg16.sql("SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database "
                           "WHERE datname = %s", (e.db(dep_id),))[0][0]
        dp1, dp2 = e.role("dp1", dep_id), e.role("dp2", dep_id)
        forged = comment.replace(dp1, "\x00").replace(dp2, dp1).replace("\x00", dp2)
        pg16.sql(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(e.db(dep_id)), sql.Literal(forged)))
        proc, report = audit(e)
        assert proc.returncode != 0
        finding = [f for f in report["deployments"][0]["findings"] if f["check"] == "fence_state"][0]
        assert not finding["ok"]
        assert ("the record contradicts the catalog: the catalog admits plane dp2 (%s) and refuses plane dp1 (%s), "
                "the record says the opposite. Check which plane's Airflow is running before any failover"
                % (dp2, dp1)) in finding["detail"], finding["detail"]
        assert "fail over again" not in proc.stdout.lower() and "fail over again" not in json.dumps(report).lower()
        e.assert_active("dp2", dep_id)   # the audit changed nothing
    finally:
        e.sessions.close()
