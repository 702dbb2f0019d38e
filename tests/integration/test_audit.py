"""deployment_audit module, audit role and playbook against real PostgreSQL 16/17/18 (and 15).

Servers are set up with the vendor's SQL (the seed) as a superuser, optionally plus the fence
helper (ensure_helper from module_utils/server/helper.py), then drift is injected one item
at a time. Every audit is followed by a catalog comparison proving nothing changed.
"""

import json
from pathlib import Path

import pytest
from psycopg2 import sql

from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import Session
from ansible_collections.dataplane.postgresql.plugins.module_utils.server.helper_install import ensure_helper
from tests.support.reference import reference_statements
from tests.support.reports import latest_report

REPO = Path(__file__).resolve().parents[2]


class _FailingModule(object):
    """Stands in for AnsibleModule when test set-up calls module_utils directly."""

    def fail_json(self, msg, **extra):
        raise AssertionError("set-up failed: %s %s" % (msg, extra))


def make_deployment(names, dep):
    """Names for one Deployment, unique to this test (dropped at teardown)."""
    return {
        "id": dep,
        "state": "present",
        "database": names("airflow_db_%s" % dep),
        "owner_role": names("airflow_db_%s_owner" % dep),
        "killer_role": names("airflow_conn_killer_%s" % dep),
        "login_roles": {"dp1": names("dp1_user_%s" % dep), "dp2": names("dp2_user_%s" % dep)},
        "passwords": {},
        "commander_user": None,
        "update_password": False, "drop_database": False, "drop_login_roles": False,
    }


def seed_statements(rec, with_options=True):
    """The vendor's page (tests/support/reference.py) for one Deployment."""
    return reference_statements(dict(database=rec["database"], owner=rec["owner_role"], killer=rec["killer_role"],
                                     dp1=rec["login_roles"]["dp1"], dp2=rec["login_roles"]["dp2"]),
                                rec["commander_user"], member_options=with_options)


def seed(server, names, ids=("a",), helper_schema=None, with_options=True):
    """Commander, login roles and databases first, then the seed SQL; optionally the helper."""
    commander = names("commander_user")
    records = []
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(commander)))
    for dep in ids:
        rec = make_deployment(names, dep)
        rec["commander_user"] = commander
        for login in rec["login_roles"].values():
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(rec["database"])))
        for statement in seed_statements(rec, with_options):
            cur.execute(statement)
        records.append(rec)
    if helper_schema:
        install_helper(conn, names, helper_schema, [r["killer_role"] for r in records])
    conn.close()
    return records


def install_helper(conn, names, schema, killers):
    conn.autocommit = False
    session = Session(_FailingModule(), conn)
    ensure_helper(session, schema, names("fence_signaler"), killers, "present", False)
    conn.commit()
    conn.autocommit = True


CATALOG_SNAPSHOT = """
SELECT 'role' AS kind, to_jsonb(r)::text AS item FROM pg_catalog.pg_roles r
UNION ALL
SELECT 'member', to_jsonb(am)::text FROM pg_catalog.pg_auth_members am
UNION ALL
SELECT 'db', concat_ws(',', d.datname, d.datdba::regrole, d.datacl::text, d.datallowconn, d.datconnlimit)
  FROM pg_catalog.pg_database d
UNION ALL
SELECT 'nsp', concat_ws(',', n.nspname, n.nspowner::regrole, n.nspacl::text) FROM pg_catalog.pg_namespace n
UNION ALL
SELECT 'proc', concat_ws(',', p.oid::regprocedure, p.proowner::regrole, p.proacl::text, md5(p.prosrc),
       p.proconfig::text) FROM pg_catalog.pg_proc p WHERE p.pronamespace > 16384
UNION ALL
SELECT 'setting', concat_ws(',', s.setdatabase, s.setrole, s.setconfig::text) FROM pg_catalog.pg_db_role_setting s
ORDER BY 1, 2
"""


def catalog(server):
    return server.sql(CATALOG_SNAPSHOT)


def audit(run_module, server, records, user="postgres", **extra):
    args = dict(server.login_args(user), deployments=records)
    if extra.get("helper_schema") and records and "helper_owner_role" not in extra:
        # install_helper's owner: names("fence_signaler"), the same per-test suffix as the commander
        extra["helper_owner_role"] = records[0]["commander_user"].replace("commander_user", "fence_signaler", 1)
    args.update(extra)
    before = catalog(server)
    result = run_module("deployment_audit", args)
    assert catalog(server) == before, "the audit changed the catalog"
    return result


def by_check(result_dep):
    return dict((f["check"], f) for f in result_dep["findings"])


def failed_checks(result_dep):
    return sorted(f["check"] for f in result_dep["findings"] if not f["ok"])


# ----------------------------------------------------------------------------- seed only

def test_seed_only_reports_vendor_fence_failure(pg, names, run_module):
    records = seed(pg, names, ids=("a", "b"))
    commander = records[0]["commander_user"]
    for user in (commander, "postgres"):
        result = audit(run_module, pg, records, user=user, helper_schema=names("nofence"))
        assert not result["failed"], result
        assert result["changed"] is False
        assert result["connected_as"] == user
        assert result["drift"] is True and result["fence_capable"] is False
        assert result["fence_incapable"] == ["a", "b"]
        for dep, rec in zip(result["deployments"], records):
            # Everything the vendor asked for is there; only the fence would fail.
            assert failed_checks(dep) == ["fence_capability"], dep
            detail = by_check(dep)["fence_capability"]["detail"]
            assert detail.startswith("a vendor-style fence would fail: %s lacks the privileges of %s"
                                     % (commander, rec["login_roles"]["dp1"])), detail
            assert rec["login_roles"]["dp2"] in detail
            assert "install the fence helper (provision with dataplane_fence_helper: true)" in detail
            assert dep["fence_capable"] is False and dep["fence_route"] is None
            assert "fence would FAIL" in dep["summary"]
        assert any(q.startswith("SET TRANSACTION") and "READ ONLY" in q for q in result["queries"])


def test_seed_only_direct_route_really_fails(pg, names):
    """The fact the audit relies on: commander cannot terminate dp1's session directly."""
    import psycopg2
    [rec] = seed(pg, names)
    login = rec["login_roles"]["dp1"]
    victim = pg.connect(login, rec["database"])
    try:
        pid = victim.get_backend_pid()
        with pytest.raises(psycopg2.Error, match="permission denied to terminate process"):
            pg.sql("SELECT pg_terminate_backend(%s)", (pid,), user=rec["commander_user"])
    finally:
        victim.close()


# ----------------------------------------------------------------------------- clean

def test_seed_plus_helper_is_clean(pg, names, run_module):
    schema = names("fence")
    records = seed(pg, names, ids=("a", "b"), helper_schema=schema)
    result = audit(run_module, pg, records, user=records[0]["commander_user"], helper_schema=schema)
    assert result["drift"] is False, result["summary"]
    assert result["fence_capable"] is True
    assert result["helper"]["installed"] and result["helper"]["current"]
    for dep in result["deployments"]:
        assert failed_checks(dep) == []
        assert dep["fence_route"] == "helper"
        assert "vendor-style fence would fail" in by_check(dep)["fence_capability"]["detail"]
        assert dep["summary"].endswith("OK, fence capable (helper); admitted: dp1, dp2")


def test_helper_route_really_works(pg, names):
    """What the clean audit promises: commander terminates dp1's session through the helper."""
    schema = names("fence")
    [rec] = seed(pg, names, helper_schema=schema)
    victim = pg.connect(rec["login_roles"]["dp1"], rec["database"])
    pid = victim.get_backend_pid()
    rows = pg.sql(sql.SQL("SELECT pid, terminated FROM {}.terminate_member_sessions(%s)").format(
        sql.Identifier(schema)), (rec["killer_role"],), user=rec["commander_user"])
    assert (pid, True) in rows
    victim.close()


def test_audit_query_count_does_not_grow(pg16, names, run_module):
    schema = names("fence")
    records = seed(pg16, names, ids=("a", "b", "c", "d", "e"), helper_schema=schema)
    one = audit(run_module, pg16, records[:1], helper_schema=schema)
    five = audit(run_module, pg16, records, helper_schema=schema)
    # SET TRANSACTION, 6 catalog reads (one for the fence state: access and sessions), 3 of
    # helper_status(), 4 of plane parity, 1 for the databases the login may connect to, 1 for the
    # server's place in replication: the same for 1 or 5 (or 200) over the shared connection; plus
    # one query inside each metadata database (its code objects).

    def server_wide(result):
        return [q for q in result["queries"] if not q.startswith("WITH ext AS")]
    assert len(server_wide(one)) == len(server_wide(five)) <= 16
    assert len(one["queries"]) - len(server_wide(one)) == 1
    assert len(five["queries"]) - len(server_wide(five)) == 5
    assert [d["id"] for d in five["deployments"]] == ["a", "b", "c", "d", "e"]
    assert five["drift"] is False


# ----------------------------------------------------------------------------- drift

def _ids(rec, names):
    i = sql.Identifier
    return dict(db=i(rec["database"]), owner=i(rec["owner_role"]), killer=i(rec["killer_role"]),
                dp1=i(rec["login_roles"]["dp1"]), dp2=i(rec["login_roles"]["dp2"]),
                commander=i(rec["commander_user"]), extra=i(names("extra_role")))


# (name, statements, failed checks expected, text the failing detail must contain)
DRIFTS = [
    ("public_connect", ["GRANT CONNECT ON DATABASE {db} TO PUBLIC"],
     ["fence_capability", "public_connect"], "PUBLIC holds CONNECT"),
    ("killer_inherit_true", ["GRANT {dp1} TO {killer} WITH INHERIT TRUE"],
     ["killer_memberships"], "inherit true, set false"),
    ("killer_set_true", ["GRANT {dp2} TO {killer} WITH SET TRUE"],
     ["killer_memberships"], "inherit false, set true"),
    ("killer_admin", ["GRANT {dp2} TO {killer} WITH ADMIN TRUE"],
     ["killer_memberships"], "admin true"),
    ("killer_extra_membership", ["CREATE ROLE {extra} NOLOGIN", "GRANT {extra} TO {killer}"],
     ["killer_memberships"], "unexpected memberships: {extra}"),
    ("killer_missing_login", ["REVOKE {dp2} FROM {killer}"],
     ["fence_capability", "killer_memberships"], "{dp2} is not granted to {killer}"),
    ("extra_connect_grantee", ["CREATE ROLE {extra} NOLOGIN", "GRANT CONNECT ON DATABASE {db} TO {extra}"],
     ["connect_grantees"], "extra CONNECT grantee {extra} (granted by {owner})"),
    ("no_login_holds_connect", ["REVOKE CONNECT ON DATABASE {db} FROM {dp1}",
                                "REVOKE CONNECT ON DATABASE {db} FROM {dp2}"],
     ["connect_grantees", "fence_state"], "no login role holds CONNECT ({dp1}, {dp2})"),
    ("connect_third_grantor", ["CREATE ROLE {extra} NOLOGIN",
                               "GRANT CONNECT ON DATABASE {db} TO {extra} WITH GRANT OPTION",
                               "SET ROLE {extra}", "GRANT CONNECT ON DATABASE {db} TO {dp1}", "RESET ROLE"],
     ["connect_grantees", "fence_capability"], "{dp1} holds CONNECT granted by {extra}"),
    ("commander_not_in_killer", ["REVOKE {killer} FROM {commander}"],
     ["commander_killer_membership", "fence_capability"], "{commander} is not a member of the killer role"),
    ("commander_not_in_owner", ["REVOKE {owner} FROM {commander}"],
     ["commander_owner_membership", "fence_capability"], "{commander} is not a member of the owner role"),
    ("commander_killer_no_inherit", ["GRANT {killer} TO {commander} WITH INHERIT FALSE"],
     ["commander_killer_membership", "fence_capability"], "without its privileges"),
    ("killer_granted_to_other", ["CREATE ROLE {extra} LOGIN", "GRANT {killer} TO {extra}"],
     ["other_members"], "{extra} is a member of {killer}"),
    ("owner_wrong", ["CREATE ROLE {extra} NOLOGIN", "ALTER DATABASE {db} OWNER TO {extra}"],
     ["database_owner", "fence_capability"], "owned by {extra}, expected {owner}"),
    ("owner_login", ["ALTER ROLE {owner} LOGIN"], ["owner_role"], "{owner} has LOGIN"),
    # the helper refuses a killer role that can log in, and the fence_helper finding names it
    ("killer_login", ["ALTER ROLE {killer} LOGIN"], ["fence_capability", "fence_helper", "killer_role"],
     "{killer} has LOGIN"),
    ("killer_inherit_attr", ["ALTER ROLE {killer} INHERIT"], ["killer_role"], "has INHERIT"),
    ("login_superuser", ["ALTER ROLE {dp1} SUPERUSER"],
     ["fence_capability", "login_roles"], "{dp1} is a SUPERUSER"),
    ("login_in_owner", ["GRANT {owner} TO {dp2}"],
     ["fence_capability", "login_roles", "plane_privileges"], "{dp2} is a member of the owner role"),
    ("database_missing", ["DROP DATABASE {db}"], ["database_exists", "fence_capability"],
     "database {db} does not exist"),
    ("helper_not_granted", ["REVOKE EXECUTE ON FUNCTION {schema}.terminate_member_sessions("
                            "name, name[], name[], boolean) FROM {killer}"],
     ["fence_capability"], "the fence helper is not granted to {killer}"),
]


@pytest.mark.parametrize("drift", DRIFTS, ids=[d[0] for d in DRIFTS])
def test_each_drift_is_detected_and_named(pg, names, run_module, drift):
    label, statements, expected, text = drift
    schema = names("fence")
    records = seed(pg, names, ids=("a", "b"), helper_schema=schema)
    rec = records[0]
    idents = _ids(rec, names)
    idents["schema"] = sql.Identifier(schema)
    conn = pg.connect()
    cur = conn.cursor()
    for statement in statements:
        cur.execute(sql.SQL(statement).format(**idents))
    rendered = dict((k, v.strings[0]) for k, v in idents.items())
    conn.close()

    result = audit(run_module, pg, records, user="postgres", helper_schema=schema)
    assert result["drift"] is True and result["drifted"] == ["a"], result["summary"]
    first, second = result["deployments"]
    assert failed_checks(first) == expected, first["findings"]
    assert failed_checks(second) == [], second["findings"]  # the other Deployment is untouched
    details = " | ".join(f["detail"] for f in first["findings"] if not f["ok"])
    assert text.format(**rendered) in details
    assert first["summary"].startswith("a: DRIFT (%d)" % len(expected))
    assert result["fence_capable"] is ("fence_capability" not in expected)


def test_one_fenced_plane_is_not_drift(pg, names, run_module):
    """After a failover the source plane holds no CONNECT: that is the intended state."""
    schema = names("fence")
    [rec] = seed(pg, names, helper_schema=schema)
    pg.sql(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
        sql.Identifier(rec["database"]), sql.Identifier(rec["login_roles"]["dp1"])))
    result = audit(run_module, pg, [rec], user=rec["commander_user"], helper_schema=schema)
    [dep] = result["deployments"]
    assert result["drift"] is False, dep["findings"]
    assert "%s fenced (no CONNECT)" % rec["login_roles"]["dp1"] in by_check(dep)["connect_grantees"]["detail"]
    # no fence state record (a fence made by hand or by version 0.1): inferred, and said so
    assert dep["summary"].endswith("fenced: dp1, admitted: dp2 (inferred, no record)"), dep["summary"]
    assert dep["fence"]["source"] == "inferred" and dep["fence"]["admitted"] == ["dp2"]


def test_member_of_the_helper_owner_is_drift(pg, names, run_module):
    """A role that can act as the helper's owner could redefine it: every Deployment whose fence
    uses that helper reports it, and the fence still counts as capable."""
    schema = names("fence")
    records = seed(pg, names, ids=("a", "b"), helper_schema=schema)
    sneaky = names("sneaky")
    pg.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(sneaky)))
    pg.sql(sql.SQL("GRANT {} TO {} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE").format(
        sql.Identifier(names("fence_signaler")), sql.Identifier(sneaky)))
    result = audit(run_module, pg, records, user=records[0]["commander_user"], helper_schema=schema)
    assert result["drifted"] == ["a", "b"] and result["fence_capable"] is True, result["summary"]
    for dep in result["deployments"]:
        assert failed_checks(dep) == ["fence_capability", "fence_helper"] and dep["fence_route"] == "helper"
        assert "%s can act as its owner role" % sneaky in by_check(dep)["fence_capability"]["detail"]
        assert "role(s) %s can act as the owner role" % sneaky in by_check(dep)["fence_helper"]["detail"]


def test_over_grant_gives_direct_route(pg16, names, run_module):
    """INHERIT TRUE on the killer's memberships: fence works directly, but that is drift."""
    [rec] = seed(pg16, names)
    pg16.sql(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE").format(
        sql.Identifier(rec["login_roles"]["dp1"]), sql.Identifier(rec["killer_role"])))
    pg16.sql(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE").format(
        sql.Identifier(rec["login_roles"]["dp2"]), sql.Identifier(rec["killer_role"])))
    result = audit(run_module, pg16, [rec], user=rec["commander_user"], helper_schema=names("nofence"))
    [dep] = result["deployments"]
    assert dep["fence_route"] == "direct"
    assert failed_checks(dep) == ["killer_memberships"]


# ----------------------------------------------------------------------------- edges

def test_absent_deployment(pg16, names, run_module):
    [rec] = seed(pg16, names)
    gone = make_deployment(names, "gone")
    gone.update(state="absent", commander_user=rec["commander_user"], drop_database=True)
    result = audit(run_module, pg16, [gone], helper_schema=names("nofence"))
    [dep] = result["deployments"]
    assert dep["drift"] is False and dep["fence_capable"] is None
    rec2 = dict(rec, state="absent")
    result = audit(run_module, pg16, [rec2], helper_schema=names("nofence"))
    assert failed_checks(result["deployments"][0]) == ["roles_absent"]


def test_invalid_records_fail_before_connecting(run_module):
    result = run_module("deployment_audit", dict(login_host="127.0.0.1", login_port=1, deployments=[
        {"id": "a", "database": "db", "owner_role": "pg_owner", "killer_role": "k",
         "login_roles": {"dp1": "x" * 70}, "commander_user": "c", "passwords": {"dp1": "s3cret-pw"}},
        {"id": "b"}]))
    assert result["failed"]
    assert "pg_owner" in result["msg"] and "truncate" in result["msg"]
    assert "deployments[1]: missing" in result["msg"]
    assert "s3cret-pw" not in json.dumps(result)


def test_a_key_outside_the_record_is_refused(pg16, names, run_module):
    """The audit declares the record's suboptions: a key that is not part of it (a typo) is
    refused before any query, and the message names it."""
    result = run_module("deployment_audit", dict(pg16.login_args(), deployments=[
        {"id": "a", "database": "db", "owner_role": "o", "killer_role": "k",
         "login_roles": {"dp1": "x", "dp2": "y"}, "commander_user": "c", "databse": "typo"}]))
    assert result["failed"]
    assert "databse" in result["msg"], result["msg"]
    assert not result.get("queries"), result


def test_pg15_reports_the_version(pg15, names, run_module):
    [rec] = seed(pg15, names, with_options=False)
    result = audit(run_module, pg15, [rec], helper_schema=names("nofence"))
    assert not result["failed"], result
    [dep] = result["deployments"]
    checks = by_check(dep)
    assert not checks["server_version"]["ok"]
    assert "PostgreSQL 15." in checks["server_version"]["detail"]
    assert "needs PostgreSQL 16" in checks["server_version"]["detail"]
    assert "PostgreSQL 15" in json.dumps(result.get("warnings")), sorted(result)


# ----------------------------------------------------------------------------- playbook

def _inventory(tmp_path, server, user):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"dataplane_postgresql": {"hosts": {"pg-under-test": {
        "ansible_connection": "local",
        "dataplane_pg_host": server.host, "dataplane_pg_port": server.port, "dataplane_pg_user": user}}}}))
    return inventory


def _model_vars(records, names, **extra):
    """Playbook variables that resolve to these test records."""
    rec = records[0]
    tag = names.tag
    out = {
        "dataplane_deployments": [{"id": r["id"], "passwords": {"dp1": "pw1-secret", "dp2": "pw2-secret"}}
                                  for r in records],
        "dataplane_commander_user": rec["commander_user"],
        "dataplane_database_name": "airflow_db_{id}_" + tag,
        "dataplane_owner_role_name": "airflow_db_{id}_owner_" + tag,
        "dataplane_killer_role_name": "airflow_conn_killer_{id}_" + tag,
        "dataplane_login_role_name": "{plane}_user_{id}_" + tag,
        "dataplane_object_privileges": False,   # seed() sets up the vendor's SQL only
    }
    out.update(extra)
    return out


def test_playbook_seed_only_fails_after_writing_report(pg, names, ansible_playbook, tmp_path):
    records = seed(pg, names, ids=("a", "b"))
    reports = tmp_path / "reports"
    before = catalog(pg)
    proc = ansible_playbook("dataplane.postgresql.audit", inventory=_inventory(tmp_path, pg, records[0]["commander_user"]),
                            extra_vars=_model_vars(records, names, dataplane_report_dir=str(reports),
                                                   dataplane_fence_helper_schema=names("nofence")))
    assert catalog(pg) == before
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "a vendor-style fence would fail" in out
    assert "pw1-secret" not in out
    [report_file] = list(reports.glob("audit-pg-under-test-*.json"))  # one file per run
    report = json.loads(report_file.read_text())
    assert report["drift"] is True and report["fence_capable"] is False
    assert [d["id"] for d in report["deployments"]] == ["a", "b"]
    assert "pw1-secret" not in report_file.read_text()
    assert "Drift found" in out

    # The same audit with dataplane_audit_fail_on_drift: false reports and succeeds.
    proc = ansible_playbook("dataplane.postgresql.audit", inventory=_inventory(tmp_path, pg, "postgres"),
                            extra_vars=_model_vars(records, names, dataplane_audit_fail_on_drift=False,
                                                   dataplane_fence_helper_schema=names("nofence")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "a: DRIFT (1), fence would FAIL" in proc.stdout


def test_playbook_clean_server_passes(pg16, names, ansible_playbook, tmp_path):
    schema = names("fence")
    records = seed(pg16, names, ids=("a",), helper_schema=schema)
    reports = tmp_path / "reports"
    proc = ansible_playbook("dataplane.postgresql.audit", inventory=_inventory(tmp_path, pg16, records[0]["commander_user"]),
                            extra_vars=_model_vars(records, names, dataplane_report_dir=str(reports),
                                                   dataplane_fence_helper_schema=schema,
                                                   dataplane_fence_helper_owner_role=names("fence_signaler")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "a: OK, fence capable (helper); admitted: dp1, dp2" in proc.stdout
    report = latest_report(reports, "audit", "pg-under-test")
    assert report["drift"] is False and report["deployments"][0]["fence_route"] == "helper"


PROVISION = REPO / "playbooks" / "provision.yml"


@pytest.mark.skipif(not PROVISION.exists(), reason="playbooks/provision.yml not written yet")
def test_provisioned_server_is_clean(pg, names, ansible_playbook, tmp_path):
    commander = names("commander_user")
    pg.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(commander)))
    records = [{"id": "a", "commander_user": commander}, {"id": "b", "commander_user": commander}]
    extra = _model_vars(records, names)
    proc = ansible_playbook("dataplane.postgresql.provision", inventory=_inventory(tmp_path, pg, "postgres"),
                            extra_vars=extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = tmp_path / "reports"
    proc = ansible_playbook("dataplane.postgresql.audit", inventory=_inventory(tmp_path, pg, commander),
                            extra_vars=dict(extra, dataplane_report_dir=str(reports)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = latest_report(reports, "audit", "pg-under-test")
    assert report["drift"] is False
    assert all(d["fence_route"] == "helper" for d in report["deployments"])
