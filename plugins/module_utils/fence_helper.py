# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fence helper: a least-privilege way for a killer role to terminate sessions.

The reference grants (``GRANT dp1_user TO killer WITH INHERIT FALSE, SET FALSE``) give the
killer role a bare membership, which PostgreSQL does not accept as a reason to terminate
anything. The helper is a ``SECURITY DEFINER`` function owned by a NOLOGIN role that holds
``pg_signal_backend`` (and ``pg_read_all_stats``, so it can report every column). It
terminates only sessions of roles *directly granted to* the killer role named by the
caller, and only when the caller's ``session_user`` has the privileges of that killer role.

Interface (shared with the provisioning and audit contributors):

- ``ensure_helper(session, schema, owner_role, killer_roles, state, check_mode)``
  converges the helper inside the session's current transaction and never commits.
- ``helper_status(session, schema, killer_roles)`` is read-only.

See docs/fence-helper.md for the security model.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dataplane.postgresql.plugins.module_utils import role_checks
from ansible_collections.dataplane.postgresql.plugins.module_utils.database import sql
from ansible_collections.dataplane.postgresql.plugins.module_utils.identifiers import (
    identifier_problem,
    role_name_problem,
)

DEFAULT_SCHEMA = "dataplane_fence"
DEFAULT_OWNER_ROLE = "dataplane_fence_signaler"
FUNCTION_NAME = "terminate_member_sessions"
HELPER_VERSION = "1"
COMMENT_PREFIX = "dataplane.postgresql fence helper version "
ARGUMENT_TYPES = "name, name[], name[], boolean"
OWNER_GRANTED_ROLES = ("pg_signal_backend", "pg_read_all_stats")
SEARCH_PATH_SETTING = "search_path=pg_catalog, pg_temp"

# The function body. Everything is schema-qualified and search_path is pinned, so a
# temporary object named like a catalog cannot stand in for it. No filter on state or
# backend_type (those read NULL for rows the owner could not see without
# pg_read_all_stats); the membership join decides. EXISTS (not JOIN) because 16+ keeps
# one pg_auth_members row per grantor. The stats snapshot is cleared first so a caller
# that read pg_stat_activity earlier in its transaction does not get stale rows.
FUNCTION_BODY = """
DECLARE
  v_killer oid;
BEGIN
  SELECT r.oid INTO v_killer FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) p_killer;
  IF v_killer IS NULL THEN
    RAISE EXCEPTION 'fence helper: role % does not exist', pg_catalog.quote_ident(p_killer)
      USING ERRCODE = '42704';
  END IF;
  IF NOT pg_catalog.pg_has_role(SESSION_USER, v_killer, 'USAGE') THEN
    RAISE EXCEPTION 'fence helper: permission denied: % does not have the privileges of role %',
      pg_catalog.quote_ident(SESSION_USER), pg_catalog.quote_ident(p_killer)
      USING ERRCODE = '42501';
  END IF;
  PERFORM pg_catalog.pg_stat_clear_snapshot();
  RETURN QUERY
    SELECT a.pid, a.usename, a.datname, a.application_name, a.client_addr, a.backend_start,
           CASE WHEN p_signal THEN pg_catalog.pg_terminate_backend(a.pid) ELSE false END
      FROM pg_catalog.pg_stat_activity a
      JOIN pg_catalog.pg_roles t ON t.oid OPERATOR(pg_catalog.=) a.usesysid
     WHERE NOT t.rolsuper
       AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                    WHERE m.roleid OPERATOR(pg_catalog.=) a.usesysid
                      AND m.member OPERATOR(pg_catalog.=) v_killer)
       AND (p_roles IS NULL OR a.usename OPERATOR(pg_catalog.=) ANY (p_roles))
       AND (p_databases IS NULL OR a.datname OPERATOR(pg_catalog.=) ANY (p_databases))
     ORDER BY a.pid;
END
"""


def helper_problems(schema, owner_role, killer_roles):
    """Input problems (names), empty when fine. Pure."""
    problems = []
    problem = identifier_problem(schema, "helper schema")
    if problem:
        problems.append(problem)
    elif schema.lower().startswith("pg_"):
        problems.append("helper schema %r starts with 'pg_', which PostgreSQL reserves" % schema)
    elif schema in ("public", "information_schema"):
        problems.append("helper schema %r is shared with other objects; the helper needs a schema of its own"
                        % schema)
    problem = role_name_problem(owner_role, "helper owner role")
    if problem:
        problems.append(problem)
    for killer in killer_roles or ():
        problem = role_name_problem(killer, "killer role")
        if problem:
            problems.append(problem)
    if owner_role in (killer_roles or ()):
        problems.append("the helper owner role %r must not be one of the killer roles" % owner_role)
    return problems


def function_ident(schema):
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(FUNCTION_NAME))


def function_signature(schema):
    return sql.SQL("{}({})").format(function_ident(schema), sql.SQL(ARGUMENT_TYPES))


def create_function_statement(schema):
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}(p_killer name, p_roles name[] DEFAULT NULL, "
        "p_databases name[] DEFAULT NULL, p_signal boolean DEFAULT true) "
        "RETURNS TABLE (pid integer, usename name, datname name, application_name text, "
        "client_addr inet, backend_start timestamptz, terminated boolean) "
        "LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
        "AS {body}").format(fn=function_ident(schema), body=sql.Literal(FUNCTION_BODY))


def _read_state(session, schema, owner_role):
    """One query: what exists now."""
    rows = session.rows(
        "SELECT "
        " (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = %(schema)s) AS nsp_oid,"
        " (SELECT pg_catalog.pg_get_userbyid(n.nspowner) FROM pg_catalog.pg_namespace n"
        "   WHERE n.nspname = %(schema)s) AS nsp_owner,"
        " (SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n,"
        "   pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) x"
        "   WHERE n.nspname = %(schema)s AND x.grantee = 0)) AS nsp_public,"
        " (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = %(owner)s) AS owner_oid,"
        " (SELECT r.rolcanlogin FROM pg_catalog.pg_roles r WHERE r.rolname = %(owner)s) AS owner_login,"
        " (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = %(owner)s) AS owner_super,"
        " (SELECT r.rolinherit FROM pg_catalog.pg_roles r WHERE r.rolname = %(owner)s) AS owner_inherit,"
        " (SELECT ARRAY[r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls]"
        "   FROM pg_catalog.pg_roles r WHERE r.rolname = %(owner)s) AS owner_flags,"
        " pg_catalog.current_setting('server_version_num')::int AS version_num",
        {"schema": schema, "owner": owner_role})
    state = rows[0]
    state["owner_members"] = owner_members(session, state["owner_oid"])
    state["functions"] = []
    state["foreign_objects"] = 0
    if state["nsp_oid"] is not None:
        state["foreign_objects"] = session.rows(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace = %(n)s)"
            " + (SELECT count(*) FROM pg_catalog.pg_proc p WHERE p.pronamespace = %(n)s AND p.proname <> %(f)s)"
            " + (SELECT count(*) FROM pg_catalog.pg_type t WHERE t.typnamespace = %(n)s) AS n",
            {"n": state["nsp_oid"], "f": FUNCTION_NAME})[0]["n"]
        state["functions"] = session.rows(
            "SELECT p.oid, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,"
            " p.prosrc, p.prosecdef, p.proconfig, pg_catalog.pg_get_userbyid(p.proowner) AS owner,"
            " pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,"
            " EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(p.proacl,"
            "   pg_catalog.acldefault('f', p.proowner))) x WHERE x.grantee = 0) AS public_execute"
            " FROM pg_catalog.pg_proc p WHERE p.pronamespace = %s AND p.proname = %s",
            (state["nsp_oid"], FUNCTION_NAME))
    return state


# Roles that could act as the owner role, and so redefine the SECURITY DEFINER function: any
# non-superuser member, whatever its INHERIT/SET/ADMIN options (an ADMIN-only member can grant
# itself SET, measured on 16). A member that holds ADMIN *directly* (its own pg_auth_members
# rows) on every role the owner holds is left out: it could grant itself those roles anyway, so
# the owner gives it nothing more (the case of a CREATEROLE installer on 16+, which gets ADMIN on
# the roles it creates), and so is one that has that ADMIN through a role whose privileges it
# has while it does not inherit the owner's (a managed admin and its provider group such as
# rds_superuser). Not pg_has_role(..., 'MEMBER WITH ADMIN OPTION'): that would also count ADMIN
# that reaches the member through the owner itself.
OWNER_MEMBERS_SQL = (
    "SELECT m.rolname FROM pg_catalog.pg_roles m"
    " WHERE m.oid <> %(owner)s AND NOT m.rolsuper"
    "   AND pg_catalog.pg_has_role(m.oid, %(owner)s, 'MEMBER')"
    "   AND NOT (" + " AND ".join(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles g ON g.oid = a.roleid"
        " WHERE a.admin_option AND g.rolname = '%s' AND (a.member = m.oid"
        # managed PostgreSQL: the ADMIN comes through a provider group (rds_superuser, ...), and
        # not through the owner role, since the member does not inherit the owner's privileges
        "  OR (a.member <> %%(owner)s AND pg_catalog.pg_has_role(m.oid, a.member, 'USAGE')"
        "      AND NOT pg_catalog.pg_has_role(m.oid, %%(owner)s, 'USAGE'))))" % g for g in OWNER_GRANTED_ROLES) + ")"
    " ORDER BY 1")

OWNER_FLAGS = ("CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS")


def owner_members(session, owner_oid):
    """Non-superuser roles that could act as the owner role (should be none)."""
    if owner_oid is None:
        return []
    return [r["rolname"] for r in session.rows(OWNER_MEMBERS_SQL, {"owner": owner_oid})]


def drop_function_statement(session, fn_oid):
    """DROP FUNCTION by catalog oid, as a DO block: PostgreSQL itself writes the quoted
    signature (oid::regprocedure) when the block runs, so no name read from the catalog is
    pasted into SQL text; the oid is the only value, and it goes in as a literal."""
    body = sql.SQL("BEGIN EXECUTE pg_catalog.format('DROP FUNCTION %s', "
                   "{}::pg_catalog.oid::pg_catalog.regprocedure); END").format(sql.Literal(str(int(fn_oid))))
    return sql.SQL("DO {}").format(sql.Literal(session.render(body)))


def _version_from_comment(comment):
    if comment and comment.startswith(COMMENT_PREFIX):
        return comment[len(COMMENT_PREFIX):].strip()
    return None


def _is_current(fn, owner_role):
    return (fn is not None
            and _version_from_comment(fn["comment"]) == HELPER_VERSION
            and (fn["prosrc"] or "").strip() == FUNCTION_BODY.strip()
            and bool(fn["prosecdef"])
            and SEARCH_PATH_SETTING in (fn["proconfig"] or [])
            and fn["owner"] == owner_role
            and not fn["public_execute"])


def _our_function(functions):
    for fn in functions:
        if fn["args"].replace(" ", "").startswith("p_killername,p_rolesname[],p_databasesname[],p_signalboolean"):
            return fn
    return None


def ensure_helper(session, schema=DEFAULT_SCHEMA, owner_role=DEFAULT_OWNER_ROLE, killer_roles=(),
                  state="present", check_mode=False):
    """Install, update or remove the helper inside the current transaction (no commit).

    Returns {"changed", "statements", "version", "missing_roles"}. Input problems and
    missing killer roles are reported with session.fail (which rolls the transaction back)
    before any change; in check mode missing killer roles are only listed in
    "missing_roles" (a caller may be about to create them in the same run).
    """
    killer_roles = list(dict.fromkeys(killer_roles or ()))
    problems = helper_problems(schema, owner_role, killer_roles)
    if problems:
        session.fail("invalid fence helper options: " + "; ".join(problems), problems=problems)
    statements = []
    current = _read_state(session, schema, owner_role)
    fn = _our_function(current["functions"])

    if state == "absent":
        if current["nsp_oid"] is not None:
            statements.append(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        if current["owner_oid"] is not None:
            statements.append(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner_role)))
        _run(session, statements, check_mode)
        return {"changed": bool(statements), "statements": [session.render(s) for s in statements],
                "version": None, "missing_roles": []}

    missing = []
    if killer_roles:
        found = set(r["rolname"] for r in session.rows(
            "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY (%s::text[])", (killer_roles,)))
        missing = [k for k in killer_roles if k not in found]
    if missing and not check_mode:
        session.fail("fence helper: killer role(s) do not exist: %s" % ", ".join(missing),
                     missing_roles=missing)
    # in check mode a caller (provisioning) may not have created the killer roles yet: plan
    # the grants and report them as missing instead of failing
    if current["owner_super"]:
        session.fail("fence helper: owner role %s is a superuser; the helper's owner must be an "
                     "unprivileged NOLOGIN role" % owner_role)

    if current["owner_members"]:
        members = current["owner_members"]
        session.fail("fence helper: role(s) %s can act as the owner role %s (they are members of it), and so "
                     "could redefine the helper and terminate any non-superuser session; nothing was changed. "
                     "Remove the membership (REVOKE %s FROM %s) and run again"
                     % (", ".join(members), owner_role, owner_role, ", ".join(members)),
                     owner_members=members)

    if current["foreign_objects"]:
        session.fail("fence helper: schema %s already holds %d other object(s); the helper needs a schema of "
                     "its own (its owner role owns the schema)" % (schema, current["foreign_objects"]))

    owner = sql.Identifier(owner_role)
    new16 = current["version_num"] >= 160000
    if current["owner_oid"] is None:
        statements.append(sql.SQL("CREATE ROLE {} NOLOGIN INHERIT NOCREATEROLE NOCREATEDB NOREPLICATION "
                                  "NOBYPASSRLS").format(owner))
        need_grants = list(OWNER_GRANTED_ROLES)
    else:
        attributes = ["NOLOGIN"] if current["owner_login"] else []
        attributes += ["NO" + flag for flag, on in zip(OWNER_FLAGS, current["owner_flags"] or ()) if on]
        if attributes:
            statements.append(sql.SQL("ALTER ROLE {} {}").format(owner, sql.SQL(" ".join(attributes))))
        if not current["owner_inherit"] and not new16:
            statements.append(sql.SQL("ALTER ROLE {} INHERIT").format(owner))
        fixes, need_grants = _owner_membership_plan(session, current["owner_oid"], owner, new16)
        statements += fixes
    for granted in need_grants:
        if new16:
            statements.append(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE").format(sql.Identifier(granted), owner))
        else:
            statements.append(sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), owner))

    role_part = len(statements)
    schema_id = sql.Identifier(schema)
    if current["nsp_oid"] is None:
        statements.append(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(schema_id, owner))
        statements.append(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema_id))
    else:
        if current["nsp_owner"] != owner_role:
            statements.append(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema_id, owner))
        if current["nsp_public"]:
            statements.append(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema_id))

    signature = function_signature(schema)
    for other in current["functions"]:
        if other is not fn:  # an older signature: an upgrade replaces it
            statements.append(drop_function_statement(session, other["oid"]))
    if not _is_current(fn, owner_role):
        statements.append(create_function_statement(schema))
        statements.append(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(signature, owner))
        statements.append(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(signature))
        statements.append(sql.SQL("COMMENT ON FUNCTION {} IS {}").format(
            signature, sql.Literal(COMMENT_PREFIX + HELPER_VERSION)))

    need_use = killer_roles
    if fn is not None and current["nsp_oid"] is not None and killer_roles:
        rows = session.rows(
            "SELECT k.rolname,"
            " EXISTS (SELECT 1 FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) x"
            "   WHERE p.oid = %s AND x.grantee = k.oid AND x.privilege_type = 'EXECUTE') AS exec,"
            " EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) x"
            "   WHERE n.oid = %s AND x.grantee = k.oid AND x.privilege_type = 'USAGE') AS usage"
            " FROM pg_catalog.pg_roles k WHERE k.rolname = ANY (%s::text[])",
            (fn["oid"], current["nsp_oid"], killer_roles))
        ok = set(r["rolname"] for r in rows if r["exec"] and r["usage"])
        need_use = [k for k in killer_roles if k not in ok]
    if need_use:
        grantees = sql.SQL(", ").join(sql.Identifier(k) for k in need_use)
        statements.append(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_id, grantees))
        statements.append(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(signature, grantees))

    if len(statements) > role_part:
        # A non-superuser admin (managed PostgreSQL) borrows the owner role for the rest of the
        # transaction: CREATE SCHEMA ... AUTHORIZATION / ALTER FUNCTION ... OWNER TO need SET.
        for dummy, grant, back in role_checks.borrow_statements(
                session, [owner_role], [owner_role] if current["owner_oid"] is None else []):
            statements = statements[:role_part] + [grant] + statements[role_part:] + [back]
    _run(session, statements, check_mode)
    return {"changed": bool(statements), "statements": [session.render(s) for s in statements],
            "version": HELPER_VERSION, "missing_roles": missing}


def _owner_membership_plan(session, owner_oid, owner, new16):
    """(statements, roles to grant) that leave the owner holding its two predefined roles,
    directly and with INHERIT, and nothing else: no other role (it would widen what the helper
    runs as) and no ADMIN on them (it would pass on to the owner's members). One query."""
    rows = session.rows(
        "SELECT g.rolname AS role, pg_catalog.pg_get_userbyid(a.grantor) AS grantor, a.admin_option, "
        + ("a.inherit_option" if new16 else "true") + " AS inherit_option"
        " FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles g ON g.oid = a.roleid"
        " WHERE a.member = %s ORDER BY 1, 2", (owner_oid,))
    statements = []
    for row in rows:
        by = sql.SQL(" GRANTED BY {}").format(sql.Identifier(row["grantor"])) if new16 else sql.SQL("")
        if row["role"] not in OWNER_GRANTED_ROLES:
            statements.append(sql.SQL("REVOKE {} FROM {}{}").format(sql.Identifier(row["role"]), owner, by))
        elif row["admin_option"]:
            statements.append(sql.SQL("REVOKE ADMIN OPTION FOR {} FROM {}{}").format(
                sql.Identifier(row["role"]), owner, by))
    held = set(r["role"] for r in rows if r["inherit_option"])
    return statements, [g for g in OWNER_GRANTED_ROLES if g not in held]


def _run(session, statements, check_mode):
    if check_mode:
        return
    for statement in statements:
        session.execute(statement)


def helper_status(session, schema=DEFAULT_SCHEMA, killer_roles=()):
    """Read-only: is the helper installed, current, and usable by each killer role?

    Besides the keys of the shared interface, "function" (qualified signature) and
    "owner_members" (non-superuser roles that could act as the owner role and so redefine
    the function; should be empty).
    """
    killer_roles = list(dict.fromkeys(killer_roles or ()))
    out = {"installed": False, "version": None, "current": False, "owner_role": None,
           "owner_can_signal": False, "usable_by": dict((k, False) for k in killer_roles),
           "function": None, "owner_members": []}
    nsp = session.rows("SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = %s", (schema,))
    if not nsp:
        return out
    nsp_oid = nsp[0]["oid"]
    fns = session.rows(
        "SELECT p.oid, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,"
        " p.prosrc, p.prosecdef, p.proconfig, pg_catalog.pg_get_userbyid(p.proowner) AS owner,"
        " pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,"
        " EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(p.proacl,"
        "   pg_catalog.acldefault('f', p.proowner))) x WHERE x.grantee = 0) AS public_execute,"
        " pg_catalog.pg_has_role(p.proowner, 'pg_signal_backend', 'USAGE') AS can_signal, p.proowner"
        " FROM pg_catalog.pg_proc p WHERE p.pronamespace = %s AND p.proname = %s",
        (nsp_oid, FUNCTION_NAME))
    fn = _our_function(fns)
    if fn is None:
        return out
    # roles that could act as the owner (and so redefine the function): should be none
    out["owner_members"] = owner_members(session, fn["proowner"])
    out.update(installed=True, version=_version_from_comment(fn["comment"]),
               owner_role=fn["owner"], owner_can_signal=bool(fn["can_signal"]),
               current=_is_current(fn, fn["owner"]),
               function=session.render(function_signature(schema)))
    if killer_roles:
        rows = session.rows(
            "SELECT k.rolname, pg_catalog.has_function_privilege(k.oid, %s::oid, 'EXECUTE')"
            " AND pg_catalog.has_schema_privilege(k.oid, %s::oid, 'USAGE') AS usable"
            " FROM pg_catalog.pg_roles k WHERE k.rolname = ANY (%s::text[])",
            (fn["oid"], nsp_oid, killer_roles))
        for row in rows:
            out["usable_by"][row["rolname"]] = bool(row["usable"]) and out["owner_can_signal"]
    return out
