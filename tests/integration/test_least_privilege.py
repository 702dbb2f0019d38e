"""Least privilege at the edges (issue 11 items 1, 2 and 5), on real servers.

- Every privileged or foreign name a model can resolve to is refused before any change, with
  a message naming the Deployment, the name and why; a catalog snapshot (roles with their
  attributes, pg_auth_members with grantors and options, database owners and ACLs, the
  database list) is identical before and after.
- A failure after CREATE DATABASE names the databases that stayed.
- Managed PostgreSQL: provision, rerun (changed=0), failover as commander_user and audit,
  through the playbooks, as a non-superuser admin shaped like Amazon RDS/Aurora's master user,
  Cloud SQL's and Azure Flexible Server's; an admin lacking a grant gets it named.
"""

import json

import psycopg2
import pytest
from psycopg2 import sql

from conftest import create_managed_admin
from tests.support.playbooks import database_of
from tests.support.playbooks import inventory as _inventory
from tests.support.reports import latest_report

PROVISION = "dataplane.postgresql.provision"
FAILOVER = "dataplane.postgresql.failover"
AUDIT = "dataplane.postgresql.audit"


def snapshot(server):
    """Server-wide catalog facts a refused run must leave identical."""
    conn = server.connect()
    cur = conn.cursor()
    cur.execute("SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, rolcanlogin,"
                " rolinherit FROM pg_roles ORDER BY 1")
    roles = cur.fetchall()
    cur.execute("SELECT g.rolname, m.rolname, gr.rolname, am.admin_option, am.inherit_option, am.set_option"
                " FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid"
                " JOIN pg_roles m ON m.oid = am.member JOIN pg_roles gr ON gr.oid = am.grantor ORDER BY 1, 2, 3")
    members = cur.fetchall()
    cur.execute("SELECT datname, pg_get_userbyid(datdba), datacl::text FROM pg_database ORDER BY 1")
    databases = cur.fetchall()
    cur.execute("SELECT nspname, pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace ORDER BY 1")
    schemas = cur.fetchall()
    conn.close()
    return {"roles": roles, "memberships": members, "databases": databases, "schemas": schemas}


def record(names, dep_id, commander):
    return {"id": names(dep_id), "database": names("db_" + dep_id), "owner_role": names("own_" + dep_id),
            "killer_role": names("kil_" + dep_id),
            "login_roles": {"dp1": names("dp1_" + dep_id), "dp2": names("dp2_" + dep_id)},
            "passwords": {"dp1": "pw-one-secret", "dp2": "pw-two-secret"}, "commander_user": commander}


def setup_args(server, records, user="postgres", **extra):
    args = dict(server.login_args(user=user), deployments=records)
    args.update(extra)
    return args


def create_role(server, name, attributes="NOLOGIN"):
    server.sql(sql.SQL("CREATE ROLE {} " + attributes).format(sql.Identifier(name)).as_string(server.connect()))


@pytest.fixture(params=[16, 18], ids=["pg16", "pg18"])
def server(request, pg_server):
    return pg_server(request.param)


@pytest.fixture
def base(server, names, run_module):
    """One provisioned Deployment 'a' (the other Deployment of the cases) and its commander."""
    commander = names("cmd")
    create_role(server, commander, "LOGIN")
    rec_a = record(names, "a", commander)
    res = run_module("deployment_setup", setup_args(server, [rec_a], fence_helper=False))
    assert not res["failed"], res
    return rec_a


CASES = {
    # name: (how to build the bad record from (names, server, other), expected words)
    "superuser_dba_as_killer": "SUPERUSER",
    "postgres_as_killer": "SUPERUSER",
    "signal_backend_login_as_killer": "predefined role(s) pg_signal_backend",
    "helper_owner_as_owner": "fence helper's owner role",
    "other_deployments_killer": "not login roles of this Deployment",
    "other_deployments_owner": "owns other database(s)",
    "login_named_postgres": "SUPERUSER",
    "other_deployments_login": "is granted to",
    "commander_as_owner": "is a commander_user",
    "createrole_as_owner": "CREATEROLE",
    "bypassrls_as_killer": "BYPASSRLS",
    "replication_login": "REPLICATION",
    "member_of_privileged_group": "member of privileged role(s)",
    "other_deployments_database": "a role granted to commander_user",
    "database_postgres": "system or template database",
    # the schema role (every login role acts as it; provisioning clears its attributes)
    "schema_role_is_the_admin": "SUPERUSER",
    "schema_role_is_other_deployments_login": "is granted to",
    "schema_role_is_other_deployments_owner": "is granted to",
    "schema_role_is_helper_owner": "fence helper's owner role",
    "schema_role_is_an_application_role": "exists and is a member of",
    "database_is_rds_maintenance": "system or template database",
}


def bad_record(case, names, server, other):
    rec = record(names, "b", other["commander_user"])
    if case == "superuser_dba_as_killer":
        rec["killer_role"] = names("dba")
        create_role(server, rec["killer_role"], "LOGIN SUPERUSER")
        return rec, rec["killer_role"]
    if case == "postgres_as_killer":
        rec["killer_role"] = "postgres"
        return rec, "postgres"
    if case == "signal_backend_login_as_killer":
        rec["killer_role"] = names("signaller")
        create_role(server, rec["killer_role"], "LOGIN")
        server.sql('GRANT pg_signal_backend TO "%s"' % rec["killer_role"])
        return rec, rec["killer_role"]
    if case == "helper_owner_as_owner":
        rec["owner_role"] = "dataplane_fence_signaler"
        return rec, "dataplane_fence_signaler"
    if case == "other_deployments_killer":
        rec["killer_role"] = other["killer_role"]
        return rec, other["killer_role"]
    if case == "other_deployments_owner":
        rec["owner_role"] = other["owner_role"]
        return rec, other["owner_role"]
    if case == "login_named_postgres":
        rec["login_roles"]["dp1"] = "postgres"
        return rec, "postgres"
    if case == "other_deployments_login":
        rec["login_roles"]["dp2"] = other["login_roles"]["dp2"]
        return rec, other["login_roles"]["dp2"]
    if case == "commander_as_owner":
        rec["owner_role"] = other["commander_user"]
        return rec, other["commander_user"]
    if case == "createrole_as_owner":
        rec["owner_role"] = names("creator")
        create_role(server, rec["owner_role"], "NOLOGIN CREATEROLE")
        return rec, rec["owner_role"]
    if case == "bypassrls_as_killer":
        rec["killer_role"] = names("bypass")
        create_role(server, rec["killer_role"], "NOLOGIN BYPASSRLS")
        return rec, rec["killer_role"]
    if case == "replication_login":
        rec["login_roles"]["dp1"] = names("repl")
        create_role(server, rec["login_roles"]["dp1"], "LOGIN REPLICATION")
        return rec, rec["login_roles"]["dp1"]
    if case == "member_of_privileged_group":
        group = names("su_group")
        rec["killer_role"] = names("inner")
        create_role(server, group, "NOLOGIN SUPERUSER")
        create_role(server, rec["killer_role"], "NOLOGIN NOINHERIT")
        server.sql('GRANT "%s" TO "%s" WITH INHERIT FALSE, SET TRUE' % (group, rec["killer_role"]))
        return rec, rec["killer_role"]
    if case == "other_deployments_database":
        rec["database"] = other["database"]
        return rec, other["database"]
    if case == "database_postgres":
        rec["database"] = "postgres"
        return rec, "postgres"
    schema_roles = {"schema_role_is_the_admin": "postgres",
                    "schema_role_is_other_deployments_login": other["login_roles"]["dp1"],
                    "schema_role_is_other_deployments_owner": other["owner_role"],
                    "schema_role_is_helper_owner": "dataplane_fence_signaler"}
    if case in schema_roles:
        rec["schema_role"] = schema_roles[case]
        return rec, rec["schema_role"]
    if case == "schema_role_is_an_application_role":
        rec["schema_role"] = names("app_writer")
        create_role(server, names("app"), "NOLOGIN")
        create_role(server, rec["schema_role"], "NOLOGIN")
        server.sql('GRANT "%s" TO "%s"' % (names("app"), rec["schema_role"]))
        return rec, rec["schema_role"]
    if case == "database_is_rds_maintenance":
        rec["database"] = "rdsadmin"
        return rec, "rdsadmin"
    raise AssertionError(case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_privileged_or_foreign_name_refused_with_catalog_unchanged(case, server, names, run_module, base):
    rec, name = bad_record(case, names, server, base)
    good = record(names, "c", base["commander_user"])   # a valid Deployment in the same run
    before = snapshot(server)
    # the signaler case is with the helper off: the name is refused all the same
    res = run_module("deployment_setup", setup_args(server, [good, rec],
                                                    fence_helper=case != "helper_owner_as_owner"))
    after = snapshot(server)
    assert res["failed"], res
    assert after == before
    assert res["queries"] == []
    msg = res["msg"]
    assert msg.startswith("nothing changed"), msg
    line = [p for p in res["problems"] if ("Deployment %r" % rec["id"]) in p and repr(name) in p]
    assert line, msg
    assert any(CASES[case] in p for p in line), msg
    assert not any(("Deployment %r" % good["id"]) in p for p in res["problems"]), msg


def test_playbook_refuses_superuser_killer_override(pg16, names, ansible_playbook, tmp_path):
    """The issue's first case through the playbook: killer_role_name: dba (LOGIN SUPERUSER)."""
    dba = names("dba")
    create_role(pg16, dba, "LOGIN SUPERUSER")
    commander = names("cmd")
    create_role(pg16, commander, "LOGIN")
    dep_id = names("c")
    before = snapshot(pg16)
    proc = ansible_playbook(PROVISION, inventory=_inventory(tmp_path, pg16, "postgres"), extra_vars={
        "dataplane_deployments": [{"id": dep_id, "killer_role_name": dba,
                                   "passwords": {"dp1": "pw-one-secret", "dp2": "pw-two-secret"}}],
        "dataplane_commander_user": commander})
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Deployment %r: killer role %r exists and is SUPERUSER" % (dep_id, dba) in out, out
    assert snapshot(pg16) == before
    assert pg16.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (dba,)) == [(True,)]


def test_existing_roles_matching_the_model_are_adopted(server, names, run_module, base):
    """Not everything existing is refused: a rerun, and hand-made roles shaped as the model says."""
    again = run_module("deployment_setup", setup_args(server, [base], fence_helper=False))
    assert not again["failed"] and again["changed"] is False, again
    rec = record(names, "d", base["commander_user"])
    create_role(server, rec["owner_role"], "NOLOGIN")
    create_role(server, rec["killer_role"], "NOLOGIN NOINHERIT")
    create_role(server, rec["login_roles"]["dp1"], "LOGIN")
    res = run_module("deployment_setup", setup_args(server, [base, rec], fence_helper=False))
    assert not res["failed"], res


def test_helper_refusal_comes_before_create_database(server, names, run_module, base):
    """The fence helper's own refusal (its schema holds a foreign table) is found by a dry run
    of the helper before CREATE DATABASE: nothing is created."""
    schema = names("fence")
    server.sql('CREATE SCHEMA "%s"; CREATE TABLE "%s".intruder (i int)' % (schema, schema))
    rec = record(names, "e", base["commander_user"])
    before = snapshot(server)
    res = run_module("deployment_setup", setup_args(server, [rec], fence_helper=True, helper_schema=schema,
                                                    helper_owner_role=names("signaler")))
    assert res["failed"], res
    assert "already holds" in res["msg"] and "other object(s)" in res["msg"], res["msg"]
    assert snapshot(server) == before


def test_failure_after_create_database_names_what_stayed(server, names, run_module, base):
    """Item 2: CREATE DATABASE cannot be rolled back. A failure later in the run (here: another
    session holds the row of an existing login role whose password is to be set, and the run's
    lock_timeout expires) rolls back everything else, and the message lists exactly the
    databases that stayed."""
    rec = record(names, "e", base["commander_user"])
    rec["update_password"] = True
    create_role(server, rec["login_roles"]["dp1"], "LOGIN PASSWORD 'old-secret-1'")
    holder = server.connect(autocommit=False)
    try:
        holder.cursor().execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 5").format(
            sql.Identifier(rec["login_roles"]["dp1"])))
        res = run_module("deployment_setup", setup_args(server, [rec], fence_helper=False,
                                                        connect_params={"options": "-c lock_timeout=300"}))
    finally:
        holder.rollback()
        holder.close()
    assert res["failed"], res
    assert res["created_databases"] == [rec["database"]]
    assert "database(s) created and left in place: %s" % rec["database"] in res["msg"], res["msg"]
    assert "lock timeout" in res["msg"], res["msg"]
    assert server.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                      (rec["database"],)) == [("postgres",)]
    assert server.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (rec["owner_role"],)) == []
    # a rerun finishes the job
    res = run_module("deployment_setup", setup_args(server, [rec], fence_helper=False))
    assert not res["failed"] and res["created_databases"] == [], res


# ------------------------------------------------------------------ managed PostgreSQL

def _recap(proc):
    for line in proc.stdout.splitlines():
        if line.startswith("pg ") and "ok=" in line:
            return dict((k, int(v)) for k, v in (part.split("=") for part in line.split()[2:]))
    raise AssertionError(proc.stdout + proc.stderr)


def _login(server, user, dbname):
    try:
        psycopg2.connect(**server.dsn(user=user, dbname=dbname)).close()
        return "admitted"
    except psycopg2.OperationalError as exc:
        return "refused: %s" % str(exc).strip().splitlines()[0]


def _managed_vars(names, ids, commander, schema, owner, **extra):
    out = {"dataplane_deployments": [{"id": i, "passwords": {"dp1": "pw-1-secret", "dp2": "pw-2-secret"}}
                                     for i in ids],
           "dataplane_commander_user": commander, "dataplane_commander_password": "cmd-secret-77",
           "dataplane_fence_helper_schema": schema, "dataplane_fence_helper_owner_role": owner}
    out.update(extra)
    return out


def _managed_flow(server, shape, names, ansible_playbook, tmp_path):
    admin = create_managed_admin(server, names("%s_admin" % shape), shape)
    assert server.sql("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s", (admin,)) == [(False, True)]
    commander = names("commander")
    ids = [names("m1"), names("m2")]
    extra = _managed_vars(names, ids, commander, names("fence"), names("signaler"))
    # The fence helper lives in a database the admin owns (it has no CREATE on "postgres").
    ops = database_of(server, admin, names("ops"))
    extra["dataplane_pg_database"] = ops
    as_admin = _inventory(tmp_path, server, admin)

    first = ansible_playbook(PROVISION, inventory=as_admin, extra_vars=extra)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _recap(first)["changed"] >= 1
    rerun = ansible_playbook(PROVISION, inventory=as_admin, extra_vars=extra)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _recap(rerun)["changed"] == 0, rerun.stdout

    # The admin keeps no SET or INHERIT on the roles it borrowed (only PostgreSQL's ADMIN rows).
    lasting = server.sql("SELECT g.rolname FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid"
                         " JOIN pg_roles m ON m.oid = am.member WHERE m.rolname = %s"
                         " AND (am.inherit_option OR am.set_option) AND g.rolname NOT LIKE 'pg\\_%%'"
                         " AND g.rolname <> %s", (admin, {"rds": "rds_superuser", "cloudsql": "cloudsqlsuperuser",
                                                          "azure": "azure_pg_admin"}[shape]))
    assert lasting == [], lasting
    for dep_id in ids:
        db = "airflow_db_%s" % dep_id
        assert server.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                          (db,)) == [("airflow_db_%s_owner" % dep_id,)]
        assert _login(server, "dp1_user_%s" % dep_id, db) == "admitted"

    # live sessions of the source plane, then the failover as commander_user
    conns = [psycopg2.connect(**server.dsn(user="dp1_user_%s" % i, dbname="airflow_db_%s" % i)) for i in ids]
    try:
        proc = ansible_playbook(FAILOVER, inventory=_inventory(tmp_path, server, commander),
                                extra_vars=dict(extra, dataplane_failover_from="dp1", dataplane_failover_to="dp2"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for dep_id in ids:
            db = "airflow_db_%s" % dep_id
            assert _login(server, "dp2_user_%s" % dep_id, db) == "admitted"
            assert "permission denied for database" in _login(server, "dp1_user_%s" % dep_id, db)
            assert server.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                              ("dp1_user_%s" % dep_id,)) == [(0,)]
    finally:
        for conn in conns:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    reports = tmp_path / "reports"
    for user in (admin, commander):
        proc = ansible_playbook(AUDIT, inventory=_inventory(tmp_path, server, user),
                                extra_vars=dict(extra, dataplane_report_dir=str(reports)))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = latest_report(reports, "audit")
        assert report["drift"] is False, report
        assert all(d["fence_route"] == "helper" for d in report["deployments"]), report


def test_managed_admin_flow_every_version(pg, names, ansible_playbook, tmp_path):
    """Amazon RDS/Aurora-shaped admin on 16, 17 and 18."""
    _managed_flow(pg, "rds", names, ansible_playbook, tmp_path)


@pytest.mark.parametrize("shape", ["cloudsql", "azure"])
def test_managed_admin_flow_other_providers(pg16, shape, names, ansible_playbook, tmp_path):
    _managed_flow(pg16, shape, names, ansible_playbook, tmp_path)


def test_managed_admin_missing_grants_are_named(pg16, names, run_module):
    """An admin without ADMIN on pg_signal_backend/pg_read_all_stats, and login roles it did
    not create: refused before any change, each missing grant named."""
    admin = create_managed_admin(pg16, names("weak_admin"), "rds", group_grants=("pg_monitor",))
    commander = names("cmd")
    create_role(pg16, commander, "LOGIN")
    rec = record(names, "w", commander)
    create_role(pg16, rec["login_roles"]["dp1"], "LOGIN")   # made by postgres: the admin has no ADMIN on it
    before = snapshot(pg16)
    res = run_module("deployment_setup", setup_args(pg16, [rec], user=admin, fence_helper=True,
                                                    helper_owner_role=names("signaler"),
                                                    helper_schema=names("fence")))
    assert res["failed"], res
    assert snapshot(pg16) == before
    msg = res["msg"]
    assert "lacks ADMIN OPTION on pg_signal_backend" in msg, msg
    assert "lacks ADMIN OPTION on pg_read_all_stats" in msg, msg
    assert "lacks ADMIN OPTION on role %r" % rec["login_roles"]["dp1"] in msg, msg
    assert "lacks CREATE on database 'postgres'" in msg, msg


def test_managed_admin_refuses_itself_and_its_group(pg16, names, run_module):
    """The admin's own name or its provider group as a Deployment role is refused."""
    admin = create_managed_admin(pg16, names("rds_admin"), "rds")
    commander = names("cmd")
    create_role(pg16, commander, "LOGIN")
    rec = record(names, "g", commander)
    rec["killer_role"] = "rds_superuser"
    rec["owner_role"] = admin
    before = snapshot(pg16)
    res = run_module("deployment_setup", setup_args(pg16, [rec], user=admin, fence_helper=False))
    assert res["failed"] and snapshot(pg16) == before, res
    assert "owner role %r exists and is CREATEROLE" % admin in res["msg"], res["msg"]
    assert "killer role 'rds_superuser' exists and is a member of predefined role(s)" in res["msg"], res["msg"]


def test_managed_admin_check_mode_then_reference_acl(pg, names, run_module):
    """As an RDS-shaped admin: check mode changes nothing and shows the borrowing; the real run
    leaves the reference ACL (grantor the owner role) and memberships; a rerun changes nothing."""
    admin = create_managed_admin(pg, names("rds_admin"), "rds")
    ops = names("ops")
    conn = pg.connect(user=admin)
    conn.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ops)))
    conn.close()
    rec = record(names, "r", names("cmd"))
    args = dict(setup_args(pg, [rec], user=admin, commander_password="cmd-secret-77",
                           helper_owner_role=names("signaler"), helper_schema=names("fence")),
                login_db=ops)
    before = snapshot(pg)
    res = run_module("deployment_setup", args, check=True)
    assert not res["failed"] and res["changed"], res
    assert snapshot(pg) == before
    text = "\n".join(res["queries"])
    assert 'GRANT "%s" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE' % rec["owner_role"] in text, text
    assert 'REVOKE "%s" FROM CURRENT_USER' % rec["owner_role"] in text, text

    res = run_module("deployment_setup", args)
    assert not res["failed"], res
    owner, dp1, dp2 = rec["owner_role"], rec["login_roles"]["dp1"], rec["login_roles"]["dp2"]
    acl = pg.sql("SELECT datacl::text[] FROM pg_database WHERE datname = %s", (rec["database"],))[0][0]
    assert sorted(acl) == sorted(["=T/%s" % owner, "%s=CTc/%s" % (owner, owner), "%s=c/%s" % (dp1, owner),
                                  "%s=c/%s" % (dp2, owner)])
    rows = pg.sql("SELECT m.rolname, gr.rolname, am.admin_option, am.inherit_option, am.set_option"
                  " FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member"
                  " JOIN pg_roles gr ON gr.oid = am.grantor WHERE g.rolname = %s ORDER BY 1, 2", (owner,))
    # the admin keeps PostgreSQL's ADMIN-only row (from CREATE ROLE); commander gets the plain grant
    assert sorted(rows) == sorted([(admin, "postgres", True, False, False),
                                   (rec["commander_user"], admin, False, True, True)])
    again = run_module("deployment_setup", args)
    assert not again["failed"] and again["changed"] is False and again["queries"] == [], again


def test_fence_helper_module_as_managed_admin(server, names, run_module):
    """The helper's own module, as an RDS-shaped admin in a database it owns: installs, reruns
    with no change, leaves the admin no SET/INHERIT on the owner role, and a killer can use it."""
    admin = create_managed_admin(server, names("rds_admin"), "rds")
    ops, killer, owner, schema = names("ops"), names("killer"), names("signaler"), names("fence")
    conn = server.connect(user=admin)
    conn.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ops)))
    conn.cursor().execute(sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(sql.Identifier(killer)))
    conn.close()
    args = dict(server.login_args(user=admin, dbname=ops), killer_roles=[killer], owner_role=owner, schema=schema)
    res = run_module("fence_helper", args)
    assert not res["failed"] and res["changed"], res
    assert 'GRANT "%s" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE' % owner in res["queries"], res["queries"]
    again = run_module("fence_helper", args)
    assert not again["failed"] and again["changed"] is False, again
    rows = server.sql("SELECT gr.rolname, am.admin_option, am.inherit_option, am.set_option FROM pg_auth_members am"
                      " JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member"
                      " JOIN pg_roles gr ON gr.oid = am.grantor WHERE g.rolname = %s AND m.rolname = %s",
                      (owner, admin))
    assert rows == [("postgres", True, False, False)], rows
    owner_of = server.sql("SELECT pg_get_userbyid(p.proowner), p.prosecdef FROM pg_proc p JOIN pg_namespace n"
                          " ON n.oid = p.pronamespace WHERE n.nspname = %s", (schema,), dbname=ops)
    assert owner_of == [(owner, True)] * 2, owner_of  # the helper's two functions
    usable = server.sql("SELECT has_function_privilege(%s, p.oid, 'EXECUTE') FROM pg_proc p JOIN pg_namespace n"
                        " ON n.oid = p.pronamespace WHERE n.nspname = %s", (killer, schema), dbname=ops)
    assert usable == [(True,)] * 2


def test_managed_admin_decommission(server, names, run_module):
    """Decommission as an RDS-shaped admin: keep the database (it goes to the admin), then drop
    everything; reruns change nothing."""
    admin = create_managed_admin(server, names("rds_admin"), "rds")
    rec = record(names, "x", names("cmd"))
    args = setup_args(server, [rec], user=admin, commander_password="cmd-secret-77", fence_helper=False)
    assert not run_module("deployment_setup", args)["failed"]
    keep = setup_args(server, [dict(rec, state="absent")], user=admin, fence_helper=False)
    res = run_module("deployment_setup", keep)
    assert not res["failed"] and res["changed"], res
    assert server.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                      (rec["database"],)) == [(admin,)]
    assert server.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (rec["owner_role"],)) == []
    full = setup_args(server, [dict(rec, state="absent", drop_database=True, drop_login_roles=True)], user=admin,
                      fence_helper=False)
    res = run_module("deployment_setup", full)
    assert not res["failed"] and res["dropped_databases"] == [rec["database"]], res
    assert server.sql("SELECT 1 FROM pg_roles WHERE rolname = ANY(%s)", (list(rec["login_roles"].values()),)) == []
    again = run_module("deployment_setup", full)
    assert not again["failed"] and again["changed"] is False, again


def test_managed_admin_drops_database_it_does_not_own(server, names, run_module):
    """drop_database straight away (the database still owned by the owner role) as a managed admin."""
    admin = create_managed_admin(server, names("rds_admin"), "rds")
    rec = record(names, "y", names("cmd"))
    assert not run_module("deployment_setup", setup_args(server, [rec], user=admin, commander_password="cmd-secret-77",
                                                         fence_helper=False))["failed"]
    full = setup_args(server, [dict(rec, state="absent", drop_database=True, drop_login_roles=True)], user=admin,
                      fence_helper=False)
    res = run_module("deployment_setup", full)
    assert not res["failed"] and res["dropped_databases"] == [rec["database"]], res
    assert server.sql("SELECT 1 FROM pg_database WHERE datname = %s", (rec["database"],)) == []


def test_privileged_commander_is_warned_not_refused(server, names, run_module):
    """Decision (docs/managed-postgresql.md): a commander_user with CREATEROLE works, with a warning."""
    commander = names("cmd")
    create_role(server, commander, "LOGIN CREATEROLE")
    rec = record(names, "w", commander)
    res = run_module("deployment_setup", setup_args(server, [rec], fence_helper=False))
    assert not res["failed"], res
    assert "commander_user %r holds CREATEROLE" % commander in json.dumps(res), sorted(res)


def test_managed_admin_decommission_beside_a_superusers_helper(pg16, names, run_module):
    """A superuser installed the fence helper for another Deployment; a managed admin that
    provisioned without the helper decommissions its own Deployment: its killer role holds no
    grant on the helper, so no REVOKE on the helper's schema (which it may not use) is planned."""
    server = pg16
    schema = names("fence")
    other_killer = names("killer_other")
    server.sql(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(other_killer)))
    res = run_module("fence_helper", dict(server.login_args(), killer_roles=[other_killer], schema=schema,
                                          owner_role=names("signaler")))
    assert not res["failed"], res
    admin = create_managed_admin(server, names("rds_admin"), "rds")
    rec = record(names, "z", names("cmd"))
    assert not run_module("deployment_setup", setup_args(server, [rec], user=admin, commander_password="cmd-secret-77",
                                                         fence_helper=False, helper_schema=schema))["failed"]
    full = setup_args(server, [dict(rec, state="absent", drop_database=True, drop_login_roles=True)], user=admin,
                      fence_helper=False, helper_schema=schema)
    res = run_module("deployment_setup", full)
    assert not res["failed"] and res["dropped_databases"] == [rec["database"]], res.get("msg")
    assert not any(schema in q for q in res["queries"]), res["queries"]
    assert server.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (rec["killer_role"],)) == []
    # the other Deployment's killer keeps its use of the helper
    assert server.sql("SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) x JOIN pg_roles r"
                      " ON r.oid = x.grantee WHERE n.nspname = %s AND r.rolname = %s", (schema, other_killer)) == [(1,)]


class _Refused(Exception):
    pass


class _Caller(object):
    """What database.Session asks of a module: only fail_json (the server decides the rest)."""

    def fail_json(self, msg="", **kwargs):
        raise _Refused(msg)


def _held_by(server, member, roles):
    return sorted(server.sql("SELECT g.rolname, am.inherit_option, am.set_option FROM pg_auth_members am"
                             " JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member"
                             " WHERE m.rolname = %s AND g.rolname = ANY(%s) AND (am.inherit_option OR am.set_option)",
                             (member, list(roles))))


def _comments(server, roles):
    return dict(server.sql("SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles"
                           " WHERE rolname = ANY(%s)", (list(roles),)))


def test_a_borrow_left_by_a_run_that_died_is_named_then_given_back(pg16, names, ansible_playbook, tmp_path):
    """A managed admin's provision borrows the owner and schema roles in a committed transaction
    for the step inside the metadata databases. A run that dies there (here: the borrow is made
    through the collection's own code, then the connection is simply closed) leaves the admin
    holding INHERIT and SET on them. The audit names it; the next provision gives it back first,
    says so, and puts back the role's own comment."""
    from ansible_collections.dataplane.postgresql.plugins.module_utils.provision import schema_role
    from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import (
        Session,
        make_durable,
    )

    server = pg16
    admin = create_managed_admin(server, names("rds_admin"), "rds")
    commander = names("commander")
    dep_id = names("b1")
    extra = _managed_vars(names, [dep_id], commander, names("fence"), names("signaler"))
    ops = database_of(server, admin, names("ops"))
    extra["dataplane_pg_database"] = ops
    as_admin = _inventory(tmp_path, server, admin)
    first = ansible_playbook(PROVISION, inventory=as_admin, extra_vars=extra)
    assert first.returncode == 0, first.stdout + first.stderr
    owner, schema = "airflow_db_%s_owner" % dep_id, "airflow_db_%s_schema" % dep_id
    assert _held_by(server, admin, [owner, schema]) == []
    server.sql(sql.SQL("COMMENT ON ROLE {} IS 'team ledger'").format(sql.Identifier(owner)).as_string(server.connect()))

    # The borrow of a run that dies before giving it back.
    conn = psycopg2.connect(**server.dsn(user=admin, dbname=ops))
    make_durable(conn)
    record = {"id": dep_id, "owner_role": owner, "schema_role": schema, "database": "airflow_db_%s" % dep_id}
    schema_role._borrow(Session(_Caller(), conn), [record], False)
    conn.close()
    assert _held_by(server, admin, [owner, schema]) == [(owner, True, True), (schema, True, True)]

    reports = tmp_path / "reports"
    audit = ansible_playbook(AUDIT, inventory=_inventory(tmp_path, server, commander),
                             extra_vars=dict(extra, dataplane_report_dir=str(reports)))
    assert audit.returncode != 0, audit.stdout
    report = latest_report(reports, "audit")
    [finding] = [f for f in report["deployments"][0]["findings"] if f["check"] == "borrowed_roles"]
    assert finding["ok"] is False
    for name in (owner, schema):
        assert "%s still holds INHERIT and SET on %s" % (admin, name) in finding["detail"], finding

    rerun = ansible_playbook(PROVISION, inventory=as_admin, extra_vars=extra)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _recap(rerun)["changed"] >= 1, rerun.stdout
    said = rerun.stdout + rerun.stderr  # module warnings go to stderr
    for name in (owner, schema):
        assert ("role %s was still borrowed by %s (INHERIT and SET) from a provision that did not finish: "
                "given back now" % (name, admin)) in said, said
    assert _held_by(server, admin, [owner, schema]) == []
    assert _comments(server, [owner, schema]) == {owner: "team ledger", schema: None}

    again = ansible_playbook(PROVISION, inventory=as_admin, extra_vars=extra)
    assert again.returncode == 0 and _recap(again)["changed"] == 0, again.stdout
    assert _comments(server, [owner, schema]) == {owner: "team ledger", schema: None}
    audit = ansible_playbook(AUDIT, inventory=_inventory(tmp_path, server, commander),
                             extra_vars=dict(extra, dataplane_report_dir=str(reports)))
    assert audit.returncode == 0, audit.stdout


def test_the_helpers_database_is_refused_as_a_metadata_database(pg16, names, run_module):
    """The database the run connects to holds the fence helper: no Deployment may take it over."""
    ops = names("ops")
    pg16.sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ops)).as_string(pg16.connect()))
    commander = names("cmd")
    rec = dict(record(names, "h", commander), database=ops)
    before = snapshot(pg16)
    res = run_module("deployment_setup", dict(setup_args(pg16, [rec]), login_db=ops))
    assert res["failed"] and res["queries"] == [], res
    assert snapshot(pg16) == before
    assert ("Deployment %r: database %r is the database this run connects to (where the fence helper lives)"
            % (rec["id"], ops)) in res["msg"], res["msg"]


def test_managed_admin_decommission_with_the_fence_helper(server, names, run_module):
    """A managed admin decommissions a Deployment whose killer role the fence helper serves: the
    helper's use is taken from the killer role (the admin borrows the helper's owner role for it)
    before the role is dropped, and the helper stays for the other Deployment."""
    admin = create_managed_admin(server, names("rds_admin"), "rds")
    ops = database_of(server, admin, names("ops"))
    commander = names("cmd")
    gone, kept = record(names, "x", commander), record(names, "y", commander)
    helper = dict(helper_owner_role=names("signaler"), helper_schema=names("fence"))
    args = dict(setup_args(server, [gone, kept], user=admin, commander_password="cmd-secret-77", **helper),
                login_db=ops)
    res = run_module("deployment_setup", args)
    assert not res["failed"], res
    absent = dict(args, deployments=[dict(gone, state="absent", drop_database=True, drop_login_roles=True), kept])
    res = run_module("deployment_setup", absent)
    assert not res["failed"] and res["changed"], res
    assert server.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (gone["killer_role"],)) == []
    acl = server.sql("SELECT p.proacl::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                     " WHERE n.nspname = %s", (helper["helper_schema"],), dbname=ops)
    assert acl and kept["killer_role"] in acl[0][0], acl
    # the admin holds no SET or INHERIT on the helper's owner afterwards
    assert _held_by(server, admin, [helper["helper_owner_role"]]) == []
    again = run_module("deployment_setup", absent)
    assert not again["failed"] and again["changed"] is False, again
