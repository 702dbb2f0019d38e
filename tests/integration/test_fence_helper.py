"""The fence helper: installation, upgrade, removal, and its security boundaries."""

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.dataplane.postgresql.plugins.module_utils.server.helper import HELPER_VERSION
from tests.support.fence import Sessions, make_deployment, setup_deployments
from tests.support.helper_v1 import install_v1
from tests.support.helper_v2 import install_v2_body
from tests.support.helper_v3 import install_v3_body

FN_ARGS = "name, name[], name[], boolean"


def _helper(server, run_module, schema, owner, killers, check=False, state="present"):
    return run_module("fence_helper", dict(server.login_args(), schema=schema, owner_role=owner,
                                           killer_roles=killers, state=state), check=check)


@pytest.fixture
def deployment_pair(pg, names):
    commander = names("commander_user")
    deps = [make_deployment(names, "a"), make_deployment(names, "b")]
    setup_deployments(pg, deps, commander)
    return commander, deps


def _call(conn, schema, killer, signal=True, roles=None):
    cur = conn.cursor()
    cur.execute(sql.SQL("SELECT pid, usename, terminated FROM {}.terminate_member_sessions(%s, %s, NULL, %s)")
                .format(sql.Identifier(schema)), (killer, roles, signal))
    return cur.fetchall()


def _alive(server, pids):
    rows = server.sql("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),))
    return sorted(r[0] for r in rows)


def _wait_gone(server, pids, timeout=5.0):
    import time
    deadline = time.time() + timeout
    while _alive(server, pids) and time.time() < deadline:
        time.sleep(0.01)
    return _alive(server, pids)


def test_install_is_idempotent_and_locked_down(pg, names, deployment_pair, run_module):
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    checked = _helper(pg, run_module, schema, owner, [a["killer"]], check=True)
    assert checked["changed"] and checked["queries"] == []
    assert pg.sql("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))[0][0] == 0

    first = _helper(pg, run_module, schema, owner, [a["killer"]])
    assert first["changed"] and not first["failed"]
    assert first["status"]["installed"] and first["status"]["current"]
    assert first["status"]["usable_by"] == {a["killer"]: True}
    assert first["status"]["owner_members"] == []
    second = _helper(pg, run_module, schema, owner, [a["killer"]])
    assert second["changed"] is False and second["queries"] == []

    fn = "%s.terminate_member_sessions(%s)" % (psycopg2.extensions.quote_ident(schema, pg.connect().cursor()), FN_ARGS)
    [(secdef, config, fowner, public_exec, login, signal, stats)] = pg.sql(
        "SELECT p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner),"
        " has_function_privilege('public', p.oid, 'EXECUTE'),"
        " (SELECT rolcanlogin FROM pg_roles WHERE oid = p.proowner),"
        " pg_has_role(p.proowner, 'pg_signal_backend', 'USAGE'),"
        " pg_has_role(p.proowner, 'pg_read_all_stats', 'USAGE')"
        " FROM pg_proc p WHERE p.oid = %s::regprocedure", (fn,))
    assert secdef and config == ["search_path=pg_catalog, pg_temp"] and fowner == owner
    assert not public_exec and not login and signal and stats
    assert pg.sql("SELECT has_function_privilege(%s, %s::regprocedure, 'EXECUTE')", (a["killer"], fn))[0][0]
    assert not pg.sql("SELECT has_function_privilege(%s, %s::regprocedure, 'EXECUTE')", (b["killer"], fn))[0][0]
    assert not pg.sql("SELECT has_schema_privilege('public', %s, 'USAGE')", (schema,))[0][0]

    # a second killer role is added without touching the first
    third = _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
    assert third["changed"] and third["status"]["usable_by"] == {a["killer"]: True, b["killer"]: True}


def test_upgrade_replaces_an_old_body(pg, names, deployment_pair, run_module):
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"]])
    fn = sql.SQL("{}.terminate_member_sessions(%s)" % FN_ARGS).format(sql.Identifier(schema))
    conn = pg.connect()
    cur = conn.cursor()
    # an "old version": different body and version comment
    cur.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}(p_killer name, p_roles name[] DEFAULT NULL, "
                        "p_databases name[] DEFAULT NULL, p_signal boolean DEFAULT true) RETURNS TABLE "
                        "(pid integer, usename name, datname name, application_name text, client_addr inet, "
                        "backend_start timestamptz, terminated boolean) LANGUAGE sql SECURITY DEFINER "
                        "SET search_path = pg_catalog, pg_temp AS 'SELECT NULL::int, NULL::name, NULL::name, "
                        "NULL::text, NULL::inet, NULL::timestamptz, false WHERE false'").format(
                            sql.Identifier(schema), ))
    cur.execute(sql.SQL("COMMENT ON FUNCTION {} IS 'dataplane.postgresql fence helper version 0'").format(fn))
    conn.close()
    res = _helper(pg, run_module, schema, owner, [a["killer"]], check=True)
    assert res["changed"] and res["status"]["version"] == "0" and not res["status"]["current"]
    res = _helper(pg, run_module, schema, owner, [a["killer"]])
    assert res["changed"] and res["status"]["version"] == res["version"] and res["status"]["current"]
    assert any("CREATE OR REPLACE FUNCTION" in q for q in res["queries"])
    assert _helper(pg, run_module, schema, owner, [a["killer"]])["changed"] is False


def test_upgrade_drops_an_old_signature_by_oid(pg, names, deployment_pair, run_module):
    """An older helper with other arguments (one with a hostile parameter name) is dropped through
    its oid; PostgreSQL quotes the signature, nothing read from the catalog is pasted into SQL."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"]])
    pg.sql(sql.SQL("CREATE FUNCTION {}.terminate_member_sessions(\"p); DROP TABLE x; --\" name) RETURNS int "
                   "LANGUAGE sql AS 'SELECT 1'").format(sql.Identifier(schema)))
    checked = _helper(pg, run_module, schema, owner, [a["killer"]], check=True)
    assert checked["changed"] and any("regprocedure" in q for q in checked["statements"]), checked
    res = _helper(pg, run_module, schema, owner, [a["killer"]])
    assert not res["failed"] and res["changed"], res
    left = pg.sql("SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p JOIN pg_namespace n "
                  "ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1", (schema,))
    assert [tuple(r) for r in left] == [
        ("standby_positions", ""),
        ("terminate_member_sessions", "p_killer name, p_roles name[], p_databases name[], p_signal boolean")]
    assert res["status"]["current"] and _helper(pg, run_module, schema, owner, [a["killer"]])["changed"] is False


def test_members_of_the_owner_role_are_revoked(pg, names, deployment_pair, run_module):
    """A role that could act as the owner could redefine the helper: the status names it and ensure
    revokes the membership (per grantor). An ADMIN-only member counts: on 16+ it can grant itself
    SET. ADMIN that reaches a member through the owner does not excuse it. Extra owner attributes,
    other roles and ADMIN on the predefined roles are removed."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"]])
    i = sql.Identifier
    pg.sql(sql.SQL("ALTER ROLE {} CREATEDB CREATEROLE").format(i(owner)))
    res = _helper(pg, run_module, schema, owner, [a["killer"]])
    assert res["changed"] and not res["failed"], res
    assert any("NOCREATEROLE NOCREATEDB" in q for q in res["queries"]), res["queries"]
    assert pg.sql("SELECT rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = %s", (owner,))[0][0] is False

    sneaky = names("sneaky")
    pg.sql(sql.SQL("CREATE ROLE {} LOGIN").format(i(sneaky)))
    pg.sql(sql.SQL("GRANT {} TO {} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE").format(i(owner), i(sneaky)))
    checked = _helper(pg, run_module, schema, owner, [a["killer"]], check=True)
    assert checked["status"]["owner_members"] == [sneaky], checked
    assert any(sneaky in p and "act as the owner" in p for p in checked["status"]["problems"]), checked
    assert any(q.startswith("REVOKE") and sneaky in q for q in checked["statements"]), checked
    res = _helper(pg, run_module, schema, owner, [a["killer"]])
    assert not res["failed"] and res["status"]["owner_members"] == [] and res["status"]["problems"] == [], res
    assert not pg.sql("SELECT pg_has_role(%s, %s, 'MEMBER')", (sneaky, owner))[0][0]

    pg.sql(sql.SQL("GRANT pg_signal_backend, pg_read_all_stats TO {} WITH ADMIN OPTION").format(i(owner)))
    pg.sql(sql.SQL("GRANT pg_monitor TO {}").format(i(owner)))
    pg.sql(sql.SQL("GRANT {} TO {}").format(i(owner), i(sneaky)))
    res = _helper(pg, run_module, schema, owner, [a["killer"]])
    assert not res["failed"] and res["changed"], res
    held = pg.sql("SELECT g.rolname, a.admin_option FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
                  "WHERE a.member = %s::regrole ORDER BY 1", (owner,))
    assert held == [("pg_read_all_stats", False), ("pg_signal_backend", False)], held
    assert not pg.sql("SELECT pg_has_role(%s, %s, 'MEMBER')", (sneaky, owner))[0][0]
    assert _helper(pg, run_module, schema, owner, [a["killer"]])["changed"] is False


def test_absent_removes_everything(pg, names, deployment_pair, run_module):
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"]])
    res = _helper(pg, run_module, schema, owner, [], state="absent")
    assert res["changed"] and not res["status"]["installed"]
    assert pg.sql("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))[0][0] == 0
    assert pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (owner,))[0][0] == 0
    assert _helper(pg, run_module, schema, owner, [], state="absent")["changed"] is False


def test_helper_refuses_missing_killer_and_bad_names(pg, names, run_module):
    schema, owner = names("fence"), names("signaler")
    res = _helper(pg, run_module, schema, owner, [names("no_such_killer")])
    assert res["failed"] and "do not exist" in res["msg"]
    assert pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (owner,))[0][0] == 0
    res = _helper(pg, run_module, schema, "pg_" + owner, [])
    assert res["failed"] and "pg_" in res["msg"]


def test_members_only_and_only_their_roles(pg, names, deployment_pair, run_module):
    """commander (via killer a) kills dp1/dp2 of a, not b's; a non-member cannot use the helper."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
    sa = Sessions(pg, a["dp1"], a["database"]).open(("idle", "idle_in_tx"))
    sa_pg = Sessions(pg, a["dp1"], "postgres").open(("idle",))  # also in another database
    sb = Sessions(pg, b["dp1"], b["database"]).open(("idle",))
    outsider = names("outsider")
    pg.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(outsider)))
    try:
        conn = pg.connect(commander)
        listed = _call(conn, schema, a["killer"], signal=False)
        assert sorted(r[0] for r in listed) == sorted(sa.pids() + sa_pg.pids())
        assert not any(r[2] for r in listed)
        assert _alive(pg, sa.pids()) == sorted(sa.pids())  # listing signalled nothing
        # a killer role commander is not a member of
        with pytest.raises(psycopg2.Error) as err:
            _call(pg.connect(commander), schema, names("nobody_killer"))
        assert "does not exist" in str(err.value)
        done = _call(conn, schema, a["killer"])
        assert sorted(r[0] for r in done) == sorted(sa.pids() + sa_pg.pids()) and all(r[2] for r in done)
        assert _wait_gone(pg, sa.pids() + sa_pg.pids()) == []
        assert _alive(pg, sb.pids()) == sorted(sb.pids())
        conn.close()
        # a non-member: no USAGE on the schema
        with pytest.raises(psycopg2.Error) as err:
            _call(pg.connect(outsider), schema, b["killer"])
        assert "permission denied for schema" in str(err.value)
        # even with EXECUTE granted by mistake, the caller must have the killer role's privileges
        pg.sql(sql.SQL("GRANT USAGE ON SCHEMA {0} TO {1}; GRANT EXECUTE ON FUNCTION {0}.terminate_member_sessions("
                       + FN_ARGS + ") TO {1}").format(sql.Identifier(schema), sql.Identifier(outsider)))
        with pytest.raises(psycopg2.Error) as err:
            _call(pg.connect(outsider), schema, b["killer"])
        assert "permission denied" in str(err.value) and "privileges of role" in str(err.value)
        assert _alive(pg, sb.pids()) == sorted(sb.pids())
    finally:
        sa.close()
        sa_pg.close()
        sb.close()


def test_temp_view_search_path_attack_fails(pg, names, deployment_pair, run_module):
    """The facts' attack: a temp view named pg_stat_activity pointing at another Deployment's pid."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"]])
    victim = Sessions(pg, b["dp1"], b["database"]).open(("idle",))
    pg.sql(sql.SQL("GRANT TEMPORARY ON DATABASE postgres TO {}").format(sql.Identifier(commander)))
    # control: the same trick does fool a SECURITY DEFINER function without a pinned search_path
    pg.sql(sql.SQL("CREATE FUNCTION {0}.unsafe_list(p name) RETURNS SETOF int LANGUAGE sql SECURITY DEFINER "
                   "AS 'SELECT pid FROM pg_stat_activity WHERE usename = p'; "
                   "GRANT EXECUTE ON FUNCTION {0}.unsafe_list(name) TO {1}; GRANT USAGE ON SCHEMA {0} TO {1}")
           .format(sql.Identifier(schema), sql.Identifier(commander)))
    try:
        [pid] = victim.pids()
        conn = pg.connect(commander)
        cur = conn.cursor()
        cur.execute("SET search_path = pg_temp, pg_catalog")
        cur.execute("CREATE TEMP VIEW pg_stat_activity AS SELECT %s::int AS pid, %s::name AS usename, "
                    "%s::name AS datname, %s::oid AS usesysid", (pid, a["dp1"], b["database"], 0))
        cur.execute("GRANT SELECT ON pg_temp.pg_stat_activity TO PUBLIC")
        cur.execute("CREATE TEMP VIEW pg_auth_members AS SELECT 0::oid AS roleid, 0::oid AS member")
        cur.execute("GRANT SELECT ON pg_temp.pg_auth_members TO PUBLIC")
        cur.execute(sql.SQL("SELECT * FROM {}.unsafe_list(%s)").format(sql.Identifier(schema)), (a["dp1"],))
        assert cur.fetchall() == [(pid,)]  # the attack is real
        rows = _call(conn, schema, a["killer"])
        assert pid not in [r[0] for r in rows]
        conn.close()
        assert _alive(pg, [pid]) == [pid]
    finally:
        victim.close()


def test_superuser_sessions_are_never_terminated(pg, names, deployment_pair, run_module):
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"]])
    su = names("su")
    pg.sql(sql.SQL("CREATE ROLE {0} LOGIN SUPERUSER; GRANT {0} TO {1} WITH INHERIT FALSE, SET FALSE").format(
        sql.Identifier(su), sql.Identifier(a["killer"])))
    conn_su = pg.connect(su)
    try:
        rows = _call(pg.connect(commander), schema, a["killer"])
        assert conn_su.get_backend_pid() not in [r[0] for r in rows]
        assert _alive(pg, [conn_su.get_backend_pid()]) == [conn_su.get_backend_pid()]
    finally:
        conn_su.close()


def test_helper_installs_and_works_on_15(pg15, names, run_module):
    """On 15 the function works; the reference INHERIT/SET grants do not parse, so the killer
    only gets members through a plain GRANT (which also gives SET ROLE there)."""
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(pg15, [dep], commander)
    assert pg15.sql("SELECT count(*) FROM pg_auth_members WHERE member = %s::regrole",
                    (dep["killer"],))[0][0] == 0
    schema, owner = names("fence"), names("signaler")
    res = _helper(pg15, run_module, schema, owner, [dep["killer"]])
    assert not res["failed"] and res["status"]["current"], res
    assert _helper(pg15, run_module, schema, owner, [dep["killer"]])["changed"] is False
    live = Sessions(pg15, dep["dp1"], dep["database"]).open(("idle",))
    try:
        assert _call(pg15.connect(commander), schema, dep["killer"]) == []  # no member: nothing
        pg15.sql(sql.SQL("GRANT {} TO {}").format(sql.Identifier(dep["dp1"]), sql.Identifier(dep["killer"])))
        rows = _call(pg15.connect(commander), schema, dep["killer"])
        assert [r[0] for r in rows] == live.pids() and rows[0][2]
        assert _wait_gone(pg15, live.pids()) == []
    finally:
        live.close()


def test_helper_refuses_a_shared_schema(pg, names, run_module):
    schema, owner = names("fence"), names("signaler")
    pg.sql(sql.SQL("CREATE SCHEMA {0}; CREATE TABLE {0}.keep (x int)").format(sql.Identifier(schema)))
    res = _helper(pg, run_module, schema, owner, [])
    assert res["failed"] and "other object" in res["msg"]
    assert pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (owner,))[0][0] == 0
    assert pg.sql("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", (schema,))[0][0] == "postgres"
    res = _helper(pg, run_module, "public", owner, [])
    assert res["failed"] and "schema of its own" in res["msg"]
    pg.sql(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# --------------------------------------------------------------------------- the registry

def _fn(schema):
    return sql.SQL("{}.terminate_member_sessions(" + FN_ARGS + ")").format(sql.Identifier(schema))


def _registry(server, schema):
    return server.sql(sql.SQL("SELECT role_name::text FROM {}.killer_roles ORDER BY 1").format(sql.Identifier(schema)))


def _refused(server, user, schema, killer):
    with pytest.raises(psycopg2.Error) as err:
        _call(server.connect(user), schema, killer)
    return str(err.value)


def test_only_registered_killer_roles_terminate(pg, names, deployment_pair, run_module):
    """Neither a stray EXECUTE grant nor commander_user naming itself (or another role it has) as the
    killer terminates anything, even with a bare membership in the victim's role: the helper accepts
    only killer roles the installer registered. The registered killer still works."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    i = sql.Identifier
    _helper(pg, run_module, schema, owner, [a["killer"]])
    assert [r[0] for r in _registry(pg, schema)] == [a["killer"]]
    victim = Sessions(pg, b["dp1"], b["database"]).open(("idle", "idle_in_tx"))
    mine = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    outsider = names("outsider")
    try:
        pg.sql(sql.SQL("CREATE ROLE {} LOGIN").format(i(outsider)))
        # a stray grant: EXECUTE + USAGE, and a bare membership in the victim's login role
        pg.sql(sql.SQL("GRANT USAGE ON SCHEMA {s} TO {o}; GRANT EXECUTE ON FUNCTION {f} TO {o}; "
                       "GRANT {v} TO {o} WITH INHERIT FALSE, SET FALSE").format(
                           s=i(schema), f=_fn(schema), o=i(outsider), v=i(b["dp1"])))
        assert "not a registered killer role" in _refused(pg, outsider, schema, outsider)
        # commander_user naming itself, with the same bare membership
        pg.sql(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET FALSE").format(i(b["dp1"]), i(commander)))
        assert "not a registered killer role" in _refused(pg, commander, schema, commander)
        # commander_user naming another role it has the privileges of (the owner role) given the victim
        pg.sql(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET FALSE").format(i(b["dp1"]), i(a["owner"])))
        assert pg.sql("SELECT pg_has_role(%s, %s, 'USAGE')", (commander, a["owner"]))[0][0]
        assert "not a registered killer role" in _refused(pg, commander, schema, a["owner"])
        # b's killer role exists, holds the victim, commander has it, but it was never registered
        pg.sql(sql.SQL("GRANT USAGE ON SCHEMA {s} TO {k}; GRANT EXECUTE ON FUNCTION {f} TO {k}").format(
            s=i(schema), f=_fn(schema), k=i(b["killer"])))
        assert "not a registered killer role" in _refused(pg, commander, schema, b["killer"])
        assert _alive(pg, victim.pids()) == sorted(victim.pids())
        # the audit (as an admin) names the stray grants; ensure takes them away
        status = _helper(pg, run_module, schema, owner, [a["killer"]], check=True)["status"]
        assert any(outsider in p and "EXECUTE" in p for p in status["problems"]), status
        assert status["registered"] == {a["killer"]: True}
        res = _helper(pg, run_module, schema, owner, [a["killer"]])
        assert not res["failed"] and res["status"]["problems"] == [], res
        assert not pg.sql(sql.SQL("SELECT has_function_privilege({}, {}::regprocedure, 'EXECUTE')").format(
            sql.Literal(outsider), sql.Literal(pg.sql(sql.SQL("SELECT {}::regprocedure::text").format(
                sql.Literal(_fn(schema).as_string(pg.connect()))))[0][0])))[0][0]
        # control: the registered killer terminates its own Deployment's sessions only
        done = _call(pg.connect(commander), schema, a["killer"])
        assert sorted(r[0] for r in done) == mine.pids()
        assert _wait_gone(pg, mine.pids()) == [] and _alive(pg, victim.pids()) == sorted(victim.pids())
    finally:
        victim.close()
        mine.close()


def test_a_recreated_killer_role_is_not_registered(pg, names, deployment_pair, run_module):
    """The registry is keyed by oid and name: a killer role dropped and created again under the same
    name (with the grants given back by hand) is refused until the installer registers it again;
    the stale entry is removed then."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    i = sql.Identifier
    _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
    old_oid = pg.sql("SELECT %s::regrole::oid", (b["killer"],))[0][0]
    pg.sql(sql.SQL("REVOKE ALL ON FUNCTION {f} FROM {k}; REVOKE ALL ON FUNCTION {s}.standby_positions() FROM {k}; "
                   "REVOKE ALL ON SCHEMA {s} FROM {k}; DROP ROLE {k}; "
                   "CREATE ROLE {k} NOLOGIN NOINHERIT; GRANT {d} TO {k} WITH INHERIT FALSE, SET FALSE; "
                   "GRANT {k} TO {c}; GRANT USAGE ON SCHEMA {s} TO {k}; GRANT EXECUTE ON FUNCTION {f} TO {k}")
           .format(f=_fn(schema), s=i(schema), k=i(b["killer"]), d=i(b["dp1"]), c=i(commander)))
    victim = Sessions(pg, b["dp1"], b["database"]).open(("idle",))
    try:
        assert "not a registered killer role" in _refused(pg, commander, schema, b["killer"])
        assert _alive(pg, victim.pids()) == victim.pids()
        status = _helper(pg, run_module, schema, owner, [a["killer"]], check=True)["status"]
        assert any("oid %s no longer exists" % old_oid in p for p in status["problems"]), status
        res = _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
        assert not res["failed"] and res["unregistered"] == [b["killer"]], res
        assert res["status"]["problems"] == [] and res["status"]["registered"][b["killer"]] is True
        rows = _call(pg.connect(commander), schema, b["killer"])
        assert [r[0] for r in rows] == victim.pids() and _wait_gone(pg, victim.pids()) == []
    finally:
        victim.close()


def test_exact_killer_roles_unregisters_the_others(pg16, names, run_module):
    commander = names("commander_user")
    deps = [make_deployment(names, "a"), make_deployment(names, "b")]
    setup_deployments(pg16, deps, commander)
    schema, owner = names("fence"), names("signaler")
    a, b = deps
    first = _helper(pg16, run_module, schema, owner, [a["killer"]])
    assert not first["failed"], first
    res = _helper(pg16, run_module, schema, owner, [b["killer"]])  # additive by default
    assert [r[0] for r in _registry(pg16, schema)] == sorted([a["killer"], b["killer"]])
    res = run_module("fence_helper", dict(pg16.login_args(), schema=schema, owner_role=owner,
                                          killer_roles=[b["killer"]], exact_killer_roles=True))
    assert not res["failed"] and res["unregistered"] == [a["killer"]], res
    assert [r[0] for r in _registry(pg16, schema)] == [b["killer"]]
    assert not pg16.sql("SELECT has_schema_privilege(%s, %s, 'USAGE')", (a["killer"], schema))[0][0]
    assert run_module("fence_helper", dict(pg16.login_args(), schema=schema, owner_role=owner,
                                           killer_roles=[b["killer"]], exact_killer_roles=True))["changed"] is False


def test_login_and_privileged_roles_are_refused_as_killers(pg, names, deployment_pair, run_module):
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    assert not _helper(pg, run_module, schema, owner, [a["killer"]])["failed"]
    before = _registry(pg, schema)
    for bad in (commander, a["dp1"]):
        res = _helper(pg, run_module, schema, owner, [a["killer"], bad])
        assert res["failed"] and bad in res["msg"] and "can log in" in res["msg"], res
    creator = names("creator")
    pg.sql(sql.SQL("CREATE ROLE {} NOLOGIN CREATEROLE").format(sql.Identifier(creator)))
    res = _helper(pg, run_module, schema, owner, [creator])
    assert res["failed"] and "CREATEROLE" in res["msg"], res
    assert _registry(pg, schema) == before


def test_upgrade_from_the_0_1_helper_converges(pg, names, deployment_pair, run_module):
    """A helper installed by 0.1 (version 1, no registry) is upgraded in one run: registry created,
    killer roles registered, body replaced; the audit is clean after, a rerun changes nothing, and
    the fence works through it."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    install_v1(pg.connect(), schema, owner, [a["killer"], b["killer"]])
    checked = _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]], check=True)
    assert checked["changed"] and checked["status"]["version"] == "1" and not checked["status"]["current"]
    assert any("registry table" in p for p in checked["status"]["problems"]), checked["status"]
    assert pg.sql("SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace", (schema,))[0][0] == 0
    res = _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
    assert not res["failed"] and res["status"]["current"] and res["status"]["version"] == HELPER_VERSION, res
    assert res["status"]["problems"] == [] and all(res["status"]["usable_by"].values()), res["status"]
    assert [r[0] for r in _registry(pg, schema)] == sorted([a["killer"], b["killer"]])
    assert _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])["changed"] is False
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    try:
        rows = _call(pg.connect(commander), schema, a["killer"])
        assert [r[0] for r in rows] == live.pids() and _wait_gone(pg, live.pids()) == []
    finally:
        live.close()


def test_schema_and_its_alias_helper_schema_name_one_helper(pg, names, deployment_pair, run_module):
    """fence_helper takes the contract's schema and owner_role and, as aliases, the names the other
    modules use (helper_schema like fence and terminate_sessions, helper_owner_role like
    deployment_setup and deployment_audit): one helper either way."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    refused = run_module("fence_helper", dict(pg.login_args(), helper_schema="pg_nope", owner_role=owner,
                                              killer_roles=[a["killer"]]))
    assert refused["failed"] and refused["msg"].startswith("fence helper request refused, nothing was changed: ")
    assert refused["queries"] == [] and "pg_" in refused["problems"][0]
    first = run_module("fence_helper", dict(pg.login_args(), helper_schema=schema, helper_owner_role=owner,
                                            killer_roles=[a["killer"]]))
    assert first["changed"] and first["status"]["usable_by"] == {a["killer"]: True}
    assert set(first["timings"]) >= {"connect_ms", "ensure_ms", "total_ms"}
    again = _helper(pg, run_module, schema, owner, [a["killer"]])  # schema and owner_role, same helper
    assert again["changed"] is False and again["queries"] == []
    assert not first.get("deprecations") and not again.get("deprecations")
    # terminate_sessions and fence find it under the same name
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    try:
        res = run_module("terminate_sessions", dict(pg.login_args(commander), roles=[a["dp1"]],
                                                    killer_role=a["killer"], helper_schema=schema))
        assert not res["failed"] and res["routes"] == {a["dp1"]: "helper"} and res["remaining"] == []
        assert res["elapsed_ms"] == res["timings"]["signal_ms"] + res["timings"]["wait_ms"]
        assert res["timings"]["total_ms"] >= res["elapsed_ms"]
    finally:
        live.close()


def test_a_version_3_helper_is_upgraded_with_standby_positions(pg, names, deployment_pair, run_module):
    """A version 3 helper (no standby_positions()) still terminates; one fence_helper run adds the
    function, grants it to the killer roles only and updates the version comments."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
    pg.sql(sql.SQL("DROP FUNCTION {s}.standby_positions(); COMMENT ON FUNCTION {f} IS {v}").format(
        s=sql.Identifier(schema), f=_fn(schema), v=sql.Literal("dataplane.postgresql fence helper version 3")))
    checked = _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]], check=True)
    assert checked["changed"] and checked["status"]["version"] == "3" and not checked["status"]["current"]
    assert any("standby_positions" in p and "does not exist" in p for p in checked["status"]["problems"]), checked
    assert checked["status"]["usable_by"] == {a["killer"]: True, b["killer"]: True}
    res = _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
    assert not res["failed"] and res["status"]["current"] and res["status"]["version"] == HELPER_VERSION, res
    positions = '"%s".standby_positions()' % schema
    granted = pg.sql("SELECT r.rolname FROM pg_roles r WHERE has_function_privilege(r.oid, %s, 'EXECUTE') "
                     "AND NOT r.rolsuper ORDER BY 1", (positions,))
    assert sorted(r[0] for r in granted) == sorted([a["killer"], b["killer"], commander, owner]), granted
    conn = pg.connect(commander)  # through its killer roles, without pg_read_all_stats
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM " + positions)
        assert cur.fetchone()[0] == 0  # this server streams to no standby
    finally:
        conn.close()
    assert _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])["changed"] is False


@pytest.mark.parametrize("old", ["2", "3", "4"])
def test_an_older_helper_still_serves_the_fence_and_is_upgraded(pg, names, deployment_pair, run_module, old):
    """A helper of version 2 (0.2: the whole pg_stat_activity per call), 3 or 4 (one named killer
    role per call; 4 with standby_positions()) keeps working for terminate_sessions and the fence,
    called once per killer role, until it is upgraded; one fence_helper run replaces the body with
    this collection's (version 5 and later), which terminates the same sessions and no others,
    called once with no killer role named."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
    if old == "2":
        install_v2_body(pg.connect(), schema, owner)
    else:  # the body of versions 3 and 4, which differ in standby_positions() only
        install_v3_body(pg.connect(), schema, owner, version=old)
    checked = _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]], check=True)
    assert checked["changed"] and checked["status"]["version"] == old and not checked["status"]["current"]
    assert checked["status"]["usable_by"] == {a["killer"]: True, b["killer"]: True}
    for version in (old, HELPER_VERSION):
        live = Sessions(pg, a["dp1"], a["database"]).open(("idle", "idle_in_tx"))
        bystander = Sessions(pg, b["dp1"], b["database"]).open(("idle",))
        try:
            res = run_module("terminate_sessions", dict(pg.login_args(commander), roles=[a["dp1"]],
                                                        killer_role=a["killer"], helper_schema=schema))
            assert not res["failed"] and res["remaining"] == [], (version, res)
            assert sorted(s["pid"] for s in res["sessions"]) == sorted(live.pids()), version
            assert all(s["route"] == "helper" and s["terminated"] for s in res["sessions"]), version
            assert all(s["database"] == a["database"] and s["role"] == a["dp1"] for s in res["sessions"])
            assert _alive(pg, bystander.pids()) == sorted(bystander.pids()), version
            # one call per killer role before version 5, one call naming no killer role from it on
            [signal] = [q for q in res["queries"] if "terminate_member_sessions" in q]
            assert ("(NULL, " in signal) == (version == HELPER_VERSION), (version, signal)
            # the other killer cannot reach a's sessions, under either body
            conn = pg.connect(commander)
            assert _call(conn, schema, b["killer"], signal=False, roles=[a["dp1"]]) == []
            conn.close()
        finally:
            live.close()
            bystander.close()
        if version == old:
            res = _helper(pg, run_module, schema, owner, [a["killer"], b["killer"]])
            assert res["changed"] and res["status"]["version"] == HELPER_VERSION and res["status"]["current"], res
            assert res["status"]["problems"] == []


def test_no_killer_named_serves_every_qualifying_killer_role_and_no_other(pg, names, deployment_pair, run_module):
    """Version 5, p_killer NULL: the sessions of the roles named that are directly granted to a
    registered killer role the caller has the privileges of, in one call; not those of a role
    granted to an unregistered killer role, to a killer role the caller lacks, or to none; never a
    superuser's; and the roles must be named."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    i = sql.Identifier
    _helper(pg, run_module, schema, owner, [a["killer"]])  # b's killer role is not registered
    third = make_deployment(names, "c")
    setup_deployments(pg, [third], names("other_commander"))  # c's killer role: commander lacks it
    _helper(pg, run_module, schema, owner, [a["killer"], third["killer"]])
    loose, su = names("loose"), names("su")
    pg.sql(sql.SQL("CREATE ROLE {} LOGIN").format(i(loose)))  # granted to no killer role
    pg.sql(sql.SQL("CREATE ROLE {0} LOGIN SUPERUSER; GRANT {0} TO {1} WITH INHERIT FALSE, SET FALSE").format(
        i(su), i(a["killer"])))
    mine = Sessions(pg, a["dp1"], a["database"]).open(("idle", "idle_in_tx"))
    mine2 = Sessions(pg, a["dp2"], "postgres").open(("idle",))
    unregistered = Sessions(pg, b["dp1"], b["database"]).open(("idle",))
    lacking = Sessions(pg, third["dp1"], third["database"]).open(("idle",))
    stray = Sessions(pg, loose, "postgres").open(("idle",))
    conn_su = pg.connect(su)
    named = [a["dp1"], a["dp2"], b["dp1"], third["dp1"], loose, su]
    others = unregistered.pids() + lacking.pids() + stray.pids() + [conn_su.get_backend_pid()]
    try:
        conn = pg.connect(commander)
        listed = _call(conn, schema, None, signal=False, roles=named)
        assert sorted(r[0] for r in listed) == sorted(mine.pids() + mine2.pids()) and not any(r[2] for r in listed)
        assert sorted(set(r[1] for r in listed)) == sorted([a["dp1"], a["dp2"]])
        assert _call(conn, schema, None, signal=False, roles=[a["dp1"]]) == [
            r for r in listed if r[1] == a["dp1"]]
        assert _call(conn, schema, None, signal=False, roles=[b["dp1"], third["dp1"], loose, su]) == []
        with pytest.raises(psycopg2.Error) as err:
            _call(pg.connect(commander), schema, None)
        assert "name the roles" in str(err.value)
        # a caller with EXECUTE by mistake but no killer role's privileges reaches nothing
        outsider = names("outsider")
        pg.sql(sql.SQL("CREATE ROLE {o} LOGIN; GRANT USAGE ON SCHEMA {s} TO {o}; GRANT EXECUTE ON FUNCTION {f} TO {o}")
               .format(o=i(outsider), s=i(schema), f=_fn(schema)))
        assert _call(pg.connect(outsider), schema, None, roles=named) == []
        assert _alive(pg, mine.pids() + mine2.pids() + others) == sorted(mine.pids() + mine2.pids() + others)
        done = _call(conn, schema, None, roles=named)
        assert sorted(r[0] for r in done) == sorted(mine.pids() + mine2.pids()) and all(r[2] for r in done)
        assert _wait_gone(pg, mine.pids() + mine2.pids()) == []
        assert _alive(pg, others) == sorted(others)
        conn.close()
    finally:
        conn_su.close()
        for held in (mine, mine2, unregistered, lacking, stray):
            held.close()
