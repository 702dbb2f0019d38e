"""Every part of the fence helper, tampered with by hand as postgres: the audit names what is
wrong, the fence_helper module (what provision runs) repairs it, the audit is clean again, a
rerun changes nothing, and the fence still works through the helper. PostgreSQL 16 and 18."""

import pytest
from psycopg2 import sql

from fence_support import Sessions, make_deployment, setup_deployments

FN_ARGS = "name, name[], name[], boolean"


def _body_without_superuser_check(conn, ids):
    cur = conn.cursor()
    cur.execute(sql.SQL("SELECT prosrc FROM pg_proc WHERE oid = {}::regprocedure").format(
        sql.Literal(ids["fn"].as_string(conn))))
    body = cur.fetchone()[0].replace("WHERE NOT t.rolsuper", "WHERE true")
    cur.execute(sql.SQL(
        "CREATE OR REPLACE FUNCTION {s}.terminate_member_sessions(p_killer name, p_roles name[] DEFAULT NULL, "
        "p_databases name[] DEFAULT NULL, p_signal boolean DEFAULT true) RETURNS TABLE (pid integer, "
        "usename name, datname name, application_name text, client_addr inet, backend_start timestamptz, "
        "terminated boolean) LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
        "AS {b}").format(s=ids["s"], b=sql.Literal(body)))


def _registered_then(change):
    """A tamper: register a new role z, then CHANGE it (SQL with the same placeholders)."""
    def tamper(conn, ids):
        conn.cursor().execute(sql.SQL("CREATE ROLE {z} NOLOGIN; INSERT INTO {reg} SELECT oid, rolname FROM pg_roles "
                                      "WHERE rolname = {zl}; " + change).format(**ids))
    return tamper


_stale_entry = _registered_then("DROP ROLE {z}")
_renamed_entry = _registered_then("ALTER ROLE {z} RENAME TO {z2}")


# (case id, tamper: SQL template or callable(conn, ids), what the audit must say, exact_killer_roles)
CASES = [
    ("function_owner", "ALTER FUNCTION {fn} OWNER TO {n}", "it is owned by {n}, expected {o}", False),
    ("function_body", _body_without_superuser_check, "its body differs", False),
    ("security_invoker", "ALTER FUNCTION {fn} SECURITY INVOKER", "it is not SECURITY DEFINER", False),
    ("extra_setting", "ALTER FUNCTION {fn} SET work_mem = '1MB'", "its settings are", False),
    ("search_path", "ALTER FUNCTION {fn} SET search_path = public, pg_catalog", "its settings are", False),
    ("strict", "ALTER FUNCTION {fn} STRICT", "it is STRICT", False),
    ("execute_public", "GRANT EXECUTE ON FUNCTION {fn} TO PUBLIC", "the function grants EXECUTE to PUBLIC", False),
    ("execute_other", "GRANT EXECUTE ON FUNCTION {fn} TO {x}", "the function grants EXECUTE to {x}", False),
    ("execute_grant_option", "GRANT EXECUTE ON FUNCTION {fn} TO {k} WITH GRANT OPTION",
     "EXECUTE WITH GRANT OPTION to {k}", False),
    ("schema_create", "GRANT CREATE ON SCHEMA {s} TO {k}", "grants CREATE to {k}", False),
    ("schema_usage_other", "GRANT USAGE ON SCHEMA {s} TO {x}", "grants USAGE to {x}", False),
    ("schema_owner", "ALTER SCHEMA {s} OWNER TO {n}", "is owned by {n}, expected {o}", False),
    ("registry_grant", "GRANT INSERT ON {reg} TO {c}", "the registry grants INSERT to {c}", False),
    ("registry_owner", "ALTER TABLE {reg} OWNER TO {n}", "the registry is owned by {n}", False),
    ("registry_row_security", "ALTER TABLE {reg} ENABLE ROW LEVEL SECURITY", "is not this collection's table", False),
    ("registry_replaced_by_view",
     "ALTER TABLE {reg} RENAME TO old_registry; CREATE VIEW {reg} AS SELECT oid AS role_oid, rolname AS role_name "
     "FROM pg_catalog.pg_roles", "is not this collection's table", False),
    ("registry_extra_constraint", "ALTER TABLE {reg} ADD CHECK (false) NOT VALID", "is not this collection's table",
     False),
    ("registry_index", "CREATE INDEX registry_extra ON {reg} (role_name)", "holds another object: index ", False),
    ("overload", "CREATE FUNCTION {s}.terminate_member_sessions(p_killer text) RETURNS int LANGUAGE sql AS 'SELECT 1'",
     "an overload terminate_member_sessions(p_killer text)", False),
    ("other_objects",
     "CREATE TABLE {s}.junk (x int); CREATE FUNCTION {s}.backdoor() RETURNS int LANGUAGE sql SECURITY DEFINER "
     "AS 'SELECT 1'; ALTER FUNCTION {s}.backdoor() OWNER TO {o}", "holds another object: function ", False),
    ("owner_attributes", "ALTER ROLE {o} LOGIN CREATEROLE BYPASSRLS", "has LOGIN, CREATEROLE, BYPASSRLS", False),
    ("owner_holds_another_role", "GRANT pg_monitor TO {o}", "is a member of pg_monitor", False),
    ("owner_admin_option", "GRANT pg_signal_backend TO {o} WITH ADMIN OPTION", "pg_signal_backend WITH ADMIN OPTION",
     False),
    ("owner_lost_a_role", "REVOKE pg_read_all_stats FROM {o}", "does not hold pg_read_all_stats", False),
    ("owner_held_by_login", "GRANT {o} TO {x}", "can act as the owner role", False),
    ("owner_held_admin_only", "GRANT {o} TO {n} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE",
     "can act as the owner role", False),
    ("registry_dropped_role", _stale_entry, "no longer exists", False),
    ("registry_renamed_role", _renamed_entry, "is now named {z2}", False),
    ("registry_login_role", "INSERT INTO {reg} SELECT oid, rolname FROM pg_catalog.pg_roles WHERE rolname = {cl}",
     "may not be a killer role: it can log in", False),
    ("registry_owner_role", "INSERT INTO {reg} SELECT oid, rolname FROM pg_catalog.pg_roles WHERE rolname = {ol}",
     "it is the helper's owner role", False),
    ("registry_not_a_killer", "INSERT INTO {reg} SELECT oid, rolname FROM pg_catalog.pg_roles WHERE rolname = {nl}",
     "not a killer role of any Deployment given", True),
]


@pytest.fixture(params=(16, 18), ids=("pg16", "pg18"))
def server(request, pg_server):
    return pg_server(request.param)


def _record(dep, commander):
    return {"id": dep["id"], "database": dep["database"], "owner_role": dep["owner"], "killer_role": dep["killer"],
            "login_roles": {"dp1": dep["dp1"], "dp2": dep["dp2"]}, "commander_user": commander}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_tampered_part_is_flagged_and_repaired(server, names, run_module, case):
    name, tamper, expected, exact = case
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(server, [dep], commander)
    schema, owner, outsider, spare, gone = (names("fence"), names("signaler"), names("outsider"), names("spare"),
                                            names("zed"))
    i, lit = sql.Identifier, sql.Literal
    server.sql(sql.SQL("CREATE ROLE {} LOGIN; CREATE ROLE {} NOLOGIN").format(i(outsider), i(spare)))

    def helper(check=False):
        return run_module("fence_helper", dict(server.login_args(), schema=schema, owner_role=owner,
                                               killer_roles=[dep["killer"]], exact_killer_roles=exact), check=check)

    def audit():
        res = run_module("deployment_audit", dict(server.login_args(), deployments=[_record(dep, commander)],
                                                  helper_schema=schema, helper_owner_role=owner))
        assert not res["failed"], res
        return dict((f["check"], f) for f in res["deployments"][0]["findings"])

    assert not helper()["failed"]
    clean = audit()
    assert clean["fence_helper"]["ok"] and clean["fence_capability"]["ok"], clean

    ids = dict(fn=sql.SQL("{}.terminate_member_sessions(" + FN_ARGS + ")").format(i(schema)), s=i(schema),
               o=i(owner), ol=lit(owner), k=i(dep["killer"]), x=i(outsider), n=i(spare), nl=lit(spare),
               c=i(commander), cl=lit(commander), reg=sql.SQL("{}.killer_roles").format(i(schema)),
               z=i(gone), zl=lit(gone), z2=i(gone + "2"))
    conn = server.connect()
    if callable(tamper):
        tamper(conn, ids)
    else:
        conn.cursor().execute(sql.SQL(tamper).format(**ids))
    conn.close()
    want = expected.format(n=spare, o=owner, x=outsider, k=dep["killer"], c=commander, z2=gone + "2")

    flagged = audit()["fence_helper"]
    assert not flagged["ok"] and want in flagged["detail"], flagged
    checked = helper(check=True)
    assert checked["changed"] and not checked["failed"] and any(want in p for p in checked["status"]["problems"])

    repaired = helper()
    assert repaired["changed"] and not repaired["failed"], repaired
    assert repaired["status"]["problems"] == [] and repaired["status"]["current"], repaired["status"]
    after = audit()
    assert after["fence_helper"]["ok"] and after["fence_capability"]["ok"], after
    assert helper()["changed"] is False

    # the fence still works through the repaired helper, as commander_user
    live = Sessions(server, dep["dp1"], dep["database"]).open(("idle",))
    try:
        cur = server.connect(commander).cursor()
        cur.execute(sql.SQL("SELECT pid, terminated FROM {}.terminate_member_sessions(%s)").format(i(schema)),
                    (dep["killer"],))
        assert cur.fetchall() == [(live.pids()[0], True)]
    finally:
        live.close()


def test_provision_repairs_the_helper_and_unregisters_decommissioned_killers(pg16, names, run_module):
    """Provision (deployment_setup) converges the helper the same way: a tampered helper is repaired
    in the provisioning run; a decommissioned Deployment's killer role leaves the registry in the run
    that drops it, so the next run changes nothing."""
    from test_provision import record, setup_args
    keep, gone = record(names, "keep"), record(names, "gone")
    schema, owner = names("fence"), names("signaler")
    extra = dict(fence_helper=True, helper_schema=schema, helper_owner_role=owner)
    res = run_module("deployment_setup", setup_args(pg16, [keep, gone], commander_password="cmd-secret-77", **extra))
    assert not res["failed"], res
    reg = sql.SQL("SELECT role_name::text FROM {}.killer_roles ORDER BY 1").format(sql.Identifier(schema))
    assert [r[0] for r in pg16.sql(reg)] == sorted([keep["killer_role"], gone["killer_role"]])

    fn = sql.SQL("{}.terminate_member_sessions(" + FN_ARGS + ")").format(sql.Identifier(schema))
    pg16.sql(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO PUBLIC; ALTER FUNCTION {} SET work_mem = '1MB'").format(fn, fn))
    res = run_module("deployment_setup", setup_args(pg16, [keep, gone], **extra))
    assert not res["failed"] and res["fence_helper"]["changed"], res
    [(public, config)] = pg16.sql(sql.SQL("SELECT has_function_privilege('public', {0}::regprocedure, 'EXECUTE'), "
                                          "proconfig FROM pg_proc WHERE oid = {0}::regprocedure").format(
                                              sql.Literal(fn.as_string(pg16.connect()))))
    assert public is False and config == ["search_path=pg_catalog, pg_temp"]

    res = run_module("deployment_setup", setup_args(pg16, [keep, dict(gone, state="absent")], **extra))
    assert not res["failed"], res
    assert res["fence_helper"]["unregistered"] == [gone["killer_role"]], res["fence_helper"]
    assert [r[0] for r in pg16.sql(reg)] == [keep["killer_role"]]
    again = run_module("deployment_setup", setup_args(pg16, [keep, dict(gone, state="absent")], **extra))
    assert not again["failed"] and again["changed"] is False, again
    status = run_module("fence_helper", dict(pg16.login_args(), schema=schema, owner_role=owner,
                                             killer_roles=[keep["killer_role"]]), check=True)
    assert status["changed"] is False and status["status"]["problems"] == [], status
