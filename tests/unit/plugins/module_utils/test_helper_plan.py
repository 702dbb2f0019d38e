"""The fence helper's install plan (module_utils/server/helper_install.py), without a server:
what inspect() read -> statements (plan_install, plan_removal) or a refusal (install_refusal)."""

from ansible_collections.dataplane.postgresql.plugins.module_utils.server import helper as _helper
from ansible_collections.dataplane.postgresql.plugins.module_utils.server.helper_install import (
    install_refusal,
    plan_install,
    plan_removal,
    with_borrowed,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.server.memberships import statement_text

SCHEMA, OWNER = "dataplane_fence", "dataplane_fence_signaler"


class Renderer(object):
    """What the plan needs of a Session: render() quotes names; nothing is read."""

    @staticmethod
    def render(statement):
        return statement_text(statement)


def killer(name, **flags):
    row = {"name": name, "oid": 1, "login": False, "super": False, "createrole": False, "replication": False,
           "bypassrls": False}
    row.update(flags)
    return row


def fresh(killers=("k1",), version=160015):
    """inspect() on a server without the helper."""
    return {"nsp_oid": None, "nsp_owner": None, "nsp_acl": [], "owner_oid": None, "owner_login": None,
            "owner_super": None, "owner_inherit": None, "owner_flags": None, "owner_members": [],
            "owner_member_rows": [], "owner_holds": [], "objects": [], "functions": [],
            "killers": [killer(k) for k in killers], "registry": None, "entries": None, "version_num": version,
            "fn": None, "positions": None, "positions_functions": []}


def acl(owner, privilege, grantees):
    own = [{"grantee": owner, "grantor": owner, "privilege": privilege, "grantable": False}]
    return own + [{"grantee": g, "grantor": owner, "privilege": privilege, "grantable": False} for g in grantees]


def entry(name, oid=1):
    return {"role_oid": oid, "role_name": name, "rolname": name, "rolcanlogin": False, "rolsuper": False,
            "rolcreaterole": False, "rolreplication": False, "rolbypassrls": False}


def installed(killers=("k1",)):
    """inspect() on a server where this version's helper is installed for KILLERS."""
    fn = {"oid": 10, "args": "p_killer name, p_roles name[], p_databases name[], p_signal boolean",
          "arguments": _helper.FUNCTION_ARGUMENTS, "result": _helper.FUNCTION_RESULT,
          "prosrc": _helper.function_body(Renderer, SCHEMA), "secdef": True,
          "config": [_helper.SEARCH_PATH_SETTING], "strict": False, "volatile": "v", "language": "plpgsql",
          "kind": "f", "owner": OWNER, "comment": _helper.COMMENT_PREFIX + _helper.HELPER_VERSION,
          "acl": acl(OWNER, "EXECUTE", killers)}
    positions = dict(fn, oid=12, name=_helper.POSITIONS_NAME, args="", arguments="", result=_helper.POSITIONS_RESULT,
                     prosrc=_helper.REPLICATION_SQL, language="sql", acl=acl(OWNER, "EXECUTE", killers))
    registry = {"oid": 11, "kind": "r", "plain": True, "columns": list(_helper.REGISTRY_COLUMNS),
                "constraints": ["p:{1,2}"], "owner": OWNER, "readable": True, "acl": acl(OWNER, "SELECT", [])}
    state = fresh(killers)
    state.update({"nsp_oid": 5, "nsp_owner": OWNER, "nsp_acl": acl(OWNER, "USAGE", killers), "owner_oid": 6,
                  "owner_login": False, "owner_super": False, "owner_inherit": True,
                  "owner_flags": [False, False, False, False],
                  "owner_holds": [{"role": r, "grantor": "postgres", "admin_option": False, "inherit_option": True}
                                  for r in _helper.OWNER_GRANTED_ROLES],
                  "objects": [], "functions": [fn], "fn": fn, "registry": registry,
                  "positions": positions, "positions_functions": [positions],
                  "entries": [entry(k, i + 100) for i, k in enumerate(killers)]})
    return state


def texts(statements):
    return [statement_text(s) for s in statements]


def test_fresh_server_plans_the_owner_then_the_schema_registry_function_and_grants():
    current = fresh()
    assert install_refusal(current, SCHEMA, OWNER, ["k1"], False) is None
    plan = plan_install(Renderer, current, [], SCHEMA, OWNER, ["k1"])
    assert texts(plan["roles"]) == [
        'CREATE ROLE "%s" NOLOGIN INHERIT NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS' % OWNER,
        'GRANT "pg_signal_backend" TO "%s" WITH INHERIT TRUE' % OWNER,
        'GRANT "pg_read_all_stats" TO "%s" WITH INHERIT TRUE' % OWNER]
    objects = texts(plan["objects"])
    assert [t.split(" ")[0] for t in objects] == [
        "CREATE", "REVOKE", "CREATE", "ALTER", "REVOKE", "INSERT", "CREATE", "ALTER", "REVOKE", "COMMENT",
        "CREATE", "ALTER", "REVOKE", "COMMENT", "GRANT", "GRANT", "GRANT"]
    assert objects[0] == 'CREATE SCHEMA "%s" AUTHORIZATION "%s"' % (SCHEMA, OWNER)
    assert objects[10].startswith('CREATE OR REPLACE FUNCTION "%s"."standby_positions"() RETURNS TABLE' % SCHEMA)
    assert "LANGUAGE sql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER SET search_path = pg_catalog" in objects[10]
    assert objects[-3:] == ['GRANT USAGE ON SCHEMA "%s" TO "k1"' % SCHEMA,
                            'GRANT EXECUTE ON FUNCTION "%s"."terminate_member_sessions"(%s) TO "k1"'
                            % (SCHEMA, _helper.ARGUMENT_TYPES),
                            'GRANT EXECUTE ON FUNCTION "%s"."standby_positions"() TO "k1"' % SCHEMA]
    assert plan["missing"] == [] and plan["unregistered"] == []


def test_before_16_the_owner_gets_plain_grants():
    plan = plan_install(Renderer, fresh(version=150010), [], SCHEMA, OWNER, ["k1"])
    assert texts(plan["roles"])[1:] == ['GRANT "pg_signal_backend" TO "%s"' % OWNER,
                                        'GRANT "pg_read_all_stats" TO "%s"' % OWNER]


def test_installed_helper_plans_nothing():
    current = installed()
    assert install_refusal(current, SCHEMA, OWNER, ["k1"], False) is None
    plan = plan_install(Renderer, current, current["entries"], SCHEMA, OWNER, ["k1"])
    assert plan == {"roles": [], "objects": [], "missing": [], "unregistered": []}


def test_exact_unregisters_and_revokes_the_roles_not_asked_for():
    current = installed(("k1", "k2"))
    plan = plan_install(Renderer, current, current["entries"], SCHEMA, OWNER, ["k1"], exact=True)
    objects = texts(plan["objects"])
    assert plan["unregistered"] == ["k2"]
    assert [t.split(" ")[0] for t in objects] == ["REVOKE", "DELETE", "REVOKE", "REVOKE", "GRANT", "GRANT", "GRANT"]
    # an ACL entry for a role not accepted resets the ACL (CASCADE), then the accepted are granted again
    assert objects[0] == 'REVOKE ALL ON SCHEMA "%s" FROM "k1", "k2" CASCADE' % SCHEMA
    assert all(t.endswith('TO "k1"') for t in objects[-3:])


def test_a_new_killer_is_registered_and_granted_only_what_it_lacks():
    current = installed()
    current["killers"].append(killer("k2"))
    plan = plan_install(Renderer, current, current["entries"], SCHEMA, OWNER, ["k1", "k2"])
    objects = texts(plan["objects"])
    assert objects[0].startswith('INSERT INTO "%s"."killer_roles"' % SCHEMA)
    assert objects[1:] == ['GRANT USAGE ON SCHEMA "%s" TO "k2"' % SCHEMA,
                           'GRANT EXECUTE ON FUNCTION "%s"."terminate_member_sessions"(%s) TO "k2"'
                           % (SCHEMA, _helper.ARGUMENT_TYPES),
                           'GRANT EXECUTE ON FUNCTION "%s"."standby_positions"() TO "k2"' % SCHEMA]


def test_a_version_3_helper_gets_standby_positions_and_new_version_comments():
    current = installed()
    fn = dict(current["fn"], comment=_helper.COMMENT_PREFIX + "3")
    current.update(fn=fn, functions=[fn], positions=None, positions_functions=[])
    objects = texts(plan_install(Renderer, current, current["entries"], SCHEMA, OWNER, ["k1"])["objects"])
    assert [t.split(" ")[0] for t in objects] == ["CREATE", "COMMENT", "CREATE", "ALTER", "REVOKE", "COMMENT", "GRANT"]
    assert objects[1].endswith("IS 'dataplane.postgresql fence helper version %s'" % _helper.HELPER_VERSION)
    assert objects[-1] == 'GRANT EXECUTE ON FUNCTION "%s"."standby_positions"() TO "k1"' % SCHEMA


def test_refusals_come_before_any_statement():
    missing = fresh(killers=())
    assert install_refusal(missing, SCHEMA, OWNER, ["k1"], False) == (
        "fence helper: killer role(s) do not exist: k1", {"missing_roles": ["k1"]})
    # in check mode the caller may not have created it yet: planned, reported as missing
    assert install_refusal(missing, SCHEMA, OWNER, ["k1"], True) is None
    assert plan_install(Renderer, missing, [], SCHEMA, OWNER, ["k1"])["missing"] == ["k1"]
    login = fresh()
    login["killers"] = [killer("k1", login=True)]
    message, extra = install_refusal(login, SCHEMA, OWNER, ["k1"], False)
    assert extra == {"refused_roles": ["k1 (it can log in (a killer role is NOLOGIN))"]}
    taken = fresh()
    taken.update(nsp_oid=5, objects=[{"catalog": "pg_class", "kind": "r", "name": "t", "oid": 7, "relid": None,
                                      "what": "table dataplane_fence.t"}])
    message, extra = install_refusal(taken, SCHEMA, OWNER, ["k1"], False)
    assert "already holds 1 other object(s) (table dataplane_fence.t)" in message


def test_removal_drops_the_schema_then_the_owner():
    assert texts(plan_removal(installed(), SCHEMA, OWNER)) == [
        'DROP SCHEMA "%s" CASCADE' % SCHEMA, 'DROP ROLE "%s"' % OWNER]
    assert plan_removal(fresh(), SCHEMA, OWNER) == []


def test_borrowed_owner_role_wraps_the_statements_after_the_owner_role_part():
    assert with_borrowed(["r1"], ["o1", "o2"], [("owner", "grant", "back")]) == [
        "r1", "grant", "o1", "o2", "back"]
    assert with_borrowed(["r1"], ["o1"], []) == ["r1", "o1"]
