# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fence helper: a least-privilege way for a killer role to terminate sessions.

The reference grants (``GRANT dp1_user TO killer WITH INHERIT FALSE, SET FALSE``) give the
killer role a bare membership, which PostgreSQL does not accept as a reason to terminate
anything. The helper is a ``SECURITY DEFINER`` function owned by a NOLOGIN role that holds
``pg_signal_backend`` (and ``pg_read_all_stats``, so it can report every column). It
terminates only sessions of roles *directly granted to* the killer role named by the
caller, only when that killer role is in the helper's registry (a table in the helper's
schema that only the installer writes, keyed by role oid and name) and only when the
caller's ``session_user`` has the privileges of that killer role.

Interface (shared with the provisioning and audit contributors):

- ``ensure_helper(session, schema, owner_role, killer_roles, state, check_mode, exact=False)``
  converges every part of the helper inside the session's current transaction and never
  commits.
- ``helper_status(session, schema, killer_roles, owner_role)`` is read-only; its
  ``problems`` list names every part that differs from what ``ensure_helper`` installs.

See docs/fence-helper.md for the security model.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..base.database import sql
from ..base.identifiers import identifier_problem, role_name_problem

DEFAULT_SCHEMA = "dataplane_fence"
DEFAULT_OWNER_ROLE = "dataplane_fence_signaler"
FUNCTION_NAME = "terminate_member_sessions"
REGISTRY_TABLE = "killer_roles"
HELPER_VERSION = "5"
# the first version that takes p_killer NULL (every qualifying killer role of the roles named)
BULK_VERSION = 5
COMMENT_PREFIX = "dataplane.postgresql fence helper version "
ARGUMENT_TYPES = "name, name[], name[], boolean"
# what pg_get_function_arguments() / pg_get_function_result() read for the installed function
FUNCTION_ARGUMENTS = ("p_killer name, p_roles name[] DEFAULT NULL::name[], "
                      "p_databases name[] DEFAULT NULL::name[], p_signal boolean DEFAULT true")
FUNCTION_RESULT = ("TABLE(pid integer, usename name, datname name, application_name text, "
                   "client_addr inet, backend_start timestamp with time zone, terminated boolean)")
OWNER_GRANTED_ROLES = ("pg_signal_backend", "pg_read_all_stats")

# Version 4 adds a second function, standby_positions(): the physical standbys streaming from
# this server (pg_stat_replication, logical walsenders left out, with the slot each one uses).
# Without pg_read_all_stats a login reads NULL for every position there, so the fence's standby
# gate reads them through this function, owned by the helper's owner role, which holds
# pg_read_all_stats; it returns positions and names only (no client address, no query). EXECUTE
# goes to the killer roles, as for the other function. REPLICATION_SQL is also what a login that
# may read the positions itself runs directly.
POSITIONS_NAME = "standby_positions"
POSITIONS_RESULT = ("TABLE(pid integer, application_name text, state text, sync_state text, "
                    "flush_lsn pg_lsn, replay_lsn pg_lsn, slot_name name)")
REPLICATION_SQL = (
    "SELECT w.pid, w.application_name, w.state, w.sync_state, w.flush_lsn, w.replay_lsn, s.slot_name"
    " FROM pg_catalog.pg_stat_replication w"
    " LEFT JOIN pg_catalog.pg_replication_slots s ON s.active_pid OPERATOR(pg_catalog.=) w.pid"
    " WHERE s.slot_type IS NULL OR s.slot_type OPERATOR(pg_catalog.<>) 'logical'")
SEARCH_PATH_SETTING = "search_path=pg_catalog, pg_temp"
OWNER_FLAGS = ("CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS")
# attributes that disqualify a role from being registered as a killer role
KILLER_DISQUALIFIERS = (("rolcanlogin", "it can log in (a killer role is NOLOGIN)"),
                        ("rolsuper", "it is a superuser"),
                        ("rolcreaterole", "it has CREATEROLE"),
                        ("rolreplication", "it has REPLICATION"),
                        ("rolbypassrls", "it has BYPASSRLS"))

# The function body; {registry} is replaced by the registry table's qualified, quoted name
# (built with sql.Identifier). Everything is schema-qualified and search_path is pinned, so a
# temporary object named like a catalog cannot stand in for it. No filter on state or
# backend_type (those read NULL for rows the owner could not see without pg_read_all_stats);
# the membership join decides. EXISTS (not JOIN) because 16+ keeps one pg_auth_members row per
# grantor. The killer must be registered by oid AND name (a dropped and re-created role, or a
# reused oid, is not registered) and must not be able to log in. The stats snapshot is cleared
# first so a caller that read pg_stat_activity earlier in its transaction does not get stale rows.
# Version 3 reads the activity of the candidate sessions only: the backends whose user is a
# non-superuser role directly granted to the killer (and in p_roles) are picked by their user id
# from the snapshot, and only their rows are read (pg_stat_get_activity(pid)); version 2 read
# the whole pg_stat_activity view on every call, about 1 ms per call with 800 sessions, which a
# fence pays once per killer role. The final checks are on the activity row itself (its pid and
# user), so the selection by id can never pick another session. With no candidate role (the
# fence's list-only probe passes p_roles = '{}') it returns after the checks, reading nothing.
# Version 5 also takes p_killer NULL with the roles named (p_roles): the killer roles are then
# every role that passes the same checks (registered, cannot log in, the session user has its
# privileges) and has one of those roles directly granted to it, and the sessions are those of
# the roles in p_roles directly granted to one of them. One call then does what one call per
# killer role did: a fence of 800 Deployments called it 800 times, and each call read all the
# backends again and computed the session user's role closure again (PostgreSQL caches one
# role's closure at a time, and the owner's checks in between evicted it), 8 s under load
# against 0.2 s for one call. Named killer roles behave exactly as in version 3.
FUNCTION_BODY = """
DECLARE
  v_killer oid;
  v_login boolean;
  v_killers oid[];
  v_members oid[];
BEGIN
  IF p_killer IS NULL THEN
    IF p_roles IS NULL THEN
      RAISE EXCEPTION 'fence helper: name the roles (p_roles) when no killer role is named'
        USING ERRCODE = '22004';
    END IF;
    SELECT pg_catalog.array_agg(DISTINCT k.oid) INTO v_killers
      FROM pg_catalog.pg_roles r
      JOIN pg_catalog.pg_auth_members m ON m.roleid OPERATOR(pg_catalog.=) r.oid
      JOIN pg_catalog.pg_roles k ON k.oid OPERATOR(pg_catalog.=) m.member
     WHERE r.rolname OPERATOR(pg_catalog.=) ANY (p_roles)
       AND NOT r.rolsuper
       AND NOT k.rolcanlogin
       AND EXISTS (SELECT 1 FROM {registry} g
                    WHERE g.role_oid OPERATOR(pg_catalog.=) k.oid
                      AND g.role_name OPERATOR(pg_catalog.=) k.rolname)
       AND pg_catalog.pg_has_role(SESSION_USER, k.oid, 'USAGE');
  ELSE
    SELECT r.oid, r.rolcanlogin INTO v_killer, v_login
      FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) p_killer;
    IF v_killer IS NULL THEN
      RAISE EXCEPTION 'fence helper: role % does not exist', pg_catalog.quote_ident(p_killer)
        USING ERRCODE = '42704';
    END IF;
    IF v_login OR NOT EXISTS (SELECT 1 FROM {registry} k
                               WHERE k.role_oid OPERATOR(pg_catalog.=) v_killer
                                 AND k.role_name OPERATOR(pg_catalog.=) p_killer) THEN
      RAISE EXCEPTION 'fence helper: permission denied: role % is not a registered killer role',
        pg_catalog.quote_ident(p_killer)
        USING ERRCODE = '42501';
    END IF;
    IF NOT pg_catalog.pg_has_role(SESSION_USER, v_killer, 'USAGE') THEN
      RAISE EXCEPTION 'fence helper: permission denied: % does not have the privileges of role %',
        pg_catalog.quote_ident(SESSION_USER), pg_catalog.quote_ident(p_killer)
        USING ERRCODE = '42501';
    END IF;
    v_killers := ARRAY[v_killer];
  END IF;
  SELECT pg_catalog.array_agg(DISTINCT r.oid) INTO v_members
    FROM pg_catalog.pg_auth_members m
    JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.roleid
   WHERE m.member OPERATOR(pg_catalog.=) ANY (v_killers)
     AND NOT r.rolsuper
     AND (p_roles IS NULL OR r.rolname OPERATOR(pg_catalog.=) ANY (p_roles));
  IF v_members IS NULL THEN
    RETURN;
  END IF;
  PERFORM pg_catalog.pg_stat_clear_snapshot();
  RETURN QUERY
    SELECT a.pid, t.rolname, d.datname, a.application_name, a.client_addr, a.backend_start,
           CASE WHEN p_signal THEN pg_catalog.pg_terminate_backend(a.pid) ELSE false END
      FROM (SELECT b.id, pg_catalog.pg_stat_get_backend_pid(b.id) AS pid
              FROM pg_catalog.pg_stat_get_backend_idset() AS b(id)
             WHERE pg_catalog.pg_stat_get_backend_userid(b.id) OPERATOR(pg_catalog.=) ANY (v_members)) AS c
      CROSS JOIN LATERAL pg_catalog.pg_stat_get_activity(c.pid) AS a
      JOIN pg_catalog.pg_roles t ON t.oid OPERATOR(pg_catalog.=) a.usesysid
      LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) a.datid
     WHERE NOT t.rolsuper
       AND a.pid OPERATOR(pg_catalog.=) c.pid
       AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                    WHERE m.roleid OPERATOR(pg_catalog.=) a.usesysid
                      AND m.member OPERATOR(pg_catalog.=) ANY (v_killers))
       AND (p_roles IS NULL OR t.rolname OPERATOR(pg_catalog.=) ANY (p_roles))
       AND (p_databases IS NULL OR d.datname OPERATOR(pg_catalog.=) ANY (p_databases))
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


def positions_signature(schema):
    return sql.SQL("{}.{}()").format(sql.Identifier(schema), sql.Identifier(POSITIONS_NAME))


def function_spec(session, schema, positions=False):
    """What the helper's function (or, with POSITIONS, standby_positions()) must look like."""
    if positions:
        return {"name": POSITIONS_NAME, "signature": positions_signature(schema), "language": "sql",
                "body": REPLICATION_SQL, "arguments": "", "result": POSITIONS_RESULT}
    return {"name": FUNCTION_NAME, "signature": function_signature(schema), "language": "plpgsql",
            "body": function_body(session, schema), "arguments": FUNCTION_ARGUMENTS, "result": FUNCTION_RESULT}


def registry_ident(schema):
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(REGISTRY_TABLE))


def function_body(session, schema):
    """The body text for SCHEMA: the registry's name is quoted by sql.Identifier."""
    return FUNCTION_BODY.replace("{registry}", session.render(registry_ident(schema)))


# --------------------------------------------------------------------------- reading


def _acl_json(acl_expr, kind, owner_expr):
    return ("(SELECT pg_catalog.json_agg(pg_catalog.json_build_object("
            "'grantee', CASE WHEN x.grantee OPERATOR(pg_catalog.=) 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(x.grantee) END,"
            "'grantor', pg_catalog.pg_get_userbyid(x.grantor), 'privilege', x.privilege_type,"
            "'grantable', x.is_grantable))"
            " FROM pg_catalog.aclexplode(COALESCE(%s, pg_catalog.acldefault('%s', %s))) x)"
            % (acl_expr, kind, owner_expr))


# Every object in the helper's schema, except the implicit ones (row types of relations, array
# and multirange types), with the catalog it lives in.
SCHEMA_OBJECTS_SQL = (
    "SELECT pg_catalog.json_agg(pg_catalog.json_build_object('catalog', o.cat, 'oid', o.oid, 'name', o.name,"
    " 'kind', o.kind, 'relid', o.relid, 'what', pg_catalog.pg_describe_object(o.cat::pg_catalog.regclass, o.oid, 0))"
    " ORDER BY o.cat, o.name) FROM ("
    " SELECT 'pg_class' AS cat, c.oid, c.relname::text AS name, c.relkind::text AS kind,"
    "   (SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid OPERATOR(pg_catalog.=) c.oid) AS relid"
    "   FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_proc', p.oid, p.proname::text, p.prokind::text, NULL"
    "   FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_type', t.oid, t.typname::text, t.typtype::text, NULL"
    "   FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) n.oid"
    "    AND t.typrelid OPERATOR(pg_catalog.=) 0 AND t.typtype OPERATOR(pg_catalog.<>) 'm'"
    "    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type e WHERE e.typarray OPERATOR(pg_catalog.=) t.oid)"
    " UNION ALL SELECT 'pg_operator', x.oid, x.oprname::text, '', NULL FROM pg_catalog.pg_operator x"
    "   WHERE x.oprnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_collation', x.oid, x.collname::text, '', NULL FROM pg_catalog.pg_collation x"
    "   WHERE x.collnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_conversion', x.oid, x.conname::text, '', NULL FROM pg_catalog.pg_conversion x"
    "   WHERE x.connamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_opclass', x.oid, x.opcname::text, '', NULL FROM pg_catalog.pg_opclass x"
    "   WHERE x.opcnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_opfamily', x.oid, x.opfname::text, '', NULL FROM pg_catalog.pg_opfamily x"
    "   WHERE x.opfnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_ts_config', x.oid, x.cfgname::text, '', NULL FROM pg_catalog.pg_ts_config x"
    "   WHERE x.cfgnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_ts_dict', x.oid, x.dictname::text, '', NULL FROM pg_catalog.pg_ts_dict x"
    "   WHERE x.dictnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_ts_parser', x.oid, x.prsname::text, '', NULL FROM pg_catalog.pg_ts_parser x"
    "   WHERE x.prsnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_ts_template', x.oid, x.tmplname::text, '', NULL FROM pg_catalog.pg_ts_template x"
    "   WHERE x.tmplnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_statistic_ext', x.oid, x.stxname::text, '', NULL FROM pg_catalog.pg_statistic_ext x"
    "   WHERE x.stxnamespace OPERATOR(pg_catalog.=) n.oid"
    " UNION ALL SELECT 'pg_extension', x.oid, x.extname::text, '', NULL FROM pg_catalog.pg_extension x"
    "   WHERE x.extnamespace OPERATOR(pg_catalog.=) n.oid"
    ") o")

# Roles that could act as the owner role, and so redefine the SECURITY DEFINER function: any
# non-superuser member, whatever its INHERIT/SET/ADMIN options (an ADMIN-only member can grant
# itself SET, measured on 16). A member that holds ADMIN *directly* (its own pg_auth_members
# rows) on every role the owner holds is left out: it could grant itself those roles anyway, so
# the owner gives it nothing more (the case of a CREATEROLE installer on 16+, which gets ADMIN on
# the roles it creates), and so is one that has that ADMIN through a role whose privileges it
# has while it does not inherit the owner's (a managed admin and its provider group such as
# rds_superuser). Not pg_has_role(..., 'MEMBER WITH ADMIN OPTION'): that would also count ADMIN
# that reaches the member through the owner itself.
_EXCUSED = ("(SELECT pg_catalog.count(DISTINCT a.roleid) FROM pg_catalog.pg_auth_members a"
            " JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.roleid"
            " WHERE a.admin_option AND g.rolname OPERATOR(pg_catalog.=) ANY (%(granted)s::text[]) AND (a.member OPERATOR(pg_catalog.=) m.oid"
            # managed PostgreSQL: the ADMIN comes through a provider group (rds_superuser, ...), not
            # through the owner role, since the member does not inherit the owner's privileges
            "  OR (a.member OPERATOR(pg_catalog.<>) o.oid AND pg_catalog.pg_has_role(m.oid, a.member, 'USAGE')"
            "      AND NOT pg_catalog.pg_has_role(m.oid, o.oid, 'USAGE'))))"
            " OPERATOR(pg_catalog.=) pg_catalog.cardinality(%(granted)s::text[])")
OWNER_MEMBERS_SQL = (
    "SELECT pg_catalog.json_agg(m.rolname ORDER BY m.rolname) FROM pg_catalog.pg_roles m"
    " WHERE m.oid OPERATOR(pg_catalog.<>) o.oid AND NOT m.rolsuper AND pg_catalog.pg_has_role(m.oid, o.oid, 'MEMBER')"
    "   AND NOT " + _EXCUSED)
# The direct rows that make someone a member of the owner (the excused members' rows stay).
OWNER_MEMBER_ROWS_SQL = (
    "SELECT pg_catalog.json_agg(pg_catalog.json_build_object('member', m.rolname,"
    " 'grantor', pg_catalog.pg_get_userbyid(a.grantor), 'super', m.rolsuper) ORDER BY m.rolname)"
    " FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) a.member"
    " WHERE a.roleid OPERATOR(pg_catalog.=) o.oid AND NOT m.rolsuper AND NOT " + _EXCUSED)


def _held_sql(new16):
    return ("SELECT pg_catalog.json_agg(pg_catalog.json_build_object('role', g.rolname,"
            " 'grantor', pg_catalog.pg_get_userbyid(a.grantor), 'admin_option', a.admin_option,"
            " 'inherit_option', " + ("a.inherit_option" if new16 else "true") + ") ORDER BY g.rolname)"
            " FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.roleid"
            " WHERE a.member OPERATOR(pg_catalog.=) o.oid")


def _inspect_sql(new16):
    return (
        "SELECT n.oid AS nsp_oid, pg_catalog.pg_get_userbyid(n.nspowner) AS nsp_owner,"
        " CASE WHEN n.oid IS NOT NULL THEN " + _acl_json("n.nspacl", "n", "n.nspowner") + " END AS nsp_acl,"
        " o.oid AS owner_oid, o.rolcanlogin AS owner_login, o.rolsuper AS owner_super,"
        " o.rolinherit AS owner_inherit,"
        " ARRAY[o.rolcreaterole, o.rolcreatedb, o.rolreplication, o.rolbypassrls] AS owner_flags,"
        " CASE WHEN o.oid IS NOT NULL THEN (" + OWNER_MEMBERS_SQL + ") END AS owner_members,"
        " CASE WHEN o.oid IS NOT NULL THEN (" + OWNER_MEMBER_ROWS_SQL + ") END AS owner_member_rows,"
        " CASE WHEN o.oid IS NOT NULL THEN (" + _held_sql(new16) + ") END AS owner_holds,"
        " CASE WHEN n.oid IS NOT NULL THEN (" + SCHEMA_OBJECTS_SQL + ") END AS objects,"
        " (SELECT pg_catalog.json_agg(pg_catalog.json_build_object("
        "   'oid', p.oid, 'name', p.proname, 'args', pg_catalog.pg_get_function_identity_arguments(p.oid),"
        "   'arguments', pg_catalog.pg_get_function_arguments(p.oid),"
        "   'result', pg_catalog.pg_get_function_result(p.oid),"
        "   'prosrc', p.prosrc, 'secdef', p.prosecdef, 'config', p.proconfig, 'strict', p.proisstrict,"
        "   'volatile', p.provolatile, 'language', l.lanname, 'kind', p.prokind,"
        "   'owner', pg_catalog.pg_get_userbyid(p.proowner),"
        "   'owner_can_signal', pg_catalog.pg_has_role(p.proowner, 'pg_signal_backend', 'USAGE'),"
        "   'comment', pg_catalog.obj_description(p.oid, 'pg_proc'),"
        "   'acl', " + _acl_json("p.proacl", "f", "p.proowner") + ","
        "   'usable', (SELECT pg_catalog.json_object_agg(k.rolname,"
        "       pg_catalog.has_function_privilege(k.oid, p.oid, 'EXECUTE')"
        "       AND pg_catalog.has_schema_privilege(k.oid, n.oid, 'USAGE'))"
        "     FROM pg_catalog.pg_roles k WHERE k.rolname OPERATOR(pg_catalog.=) ANY (%(killers)s::text[])))"
        "   ORDER BY p.oid)"
        "   FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang"
        "  WHERE p.pronamespace OPERATOR(pg_catalog.=) n.oid AND p.proname OPERATOR(pg_catalog.=) ANY (%(fns)s::text[])) AS functions,"
        " (SELECT pg_catalog.json_build_object('oid', c.oid, 'kind', c.relkind,"
        "   'owner', pg_catalog.pg_get_userbyid(c.relowner),"
        "   'columns', (SELECT pg_catalog.json_agg(pg_catalog.format('%%s %%s', a.attname,"
        "                 pg_catalog.format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)"
        "               FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0"
        "                AND NOT a.attisdropped),"
        "   'constraints', (SELECT pg_catalog.json_agg(x.contype::text OPERATOR(pg_catalog.||) ':'"
        "                                              OPERATOR(pg_catalog.||) COALESCE(x.conkey::text, '{}') ORDER BY 1)"
        "                   FROM pg_catalog.pg_constraint x WHERE x.conrelid OPERATOR(pg_catalog.=) c.oid AND x.contype OPERATOR(pg_catalog.<>) 'n'),"
        "   'plain', NOT (c.relrowsecurity OR c.relforcerowsecurity OR c.relhasrules OR c.relhastriggers"
        "                 OR c.relhassubclass OR c.relispartition),"
        "   'readable', pg_catalog.has_table_privilege(c.oid, 'SELECT'),"
        "   'acl', " + _acl_json("c.relacl", "r", "c.relowner") + ")"
        "   FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relname OPERATOR(pg_catalog.=) %(registry)s) AS registry,"
        " (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', k.rolname, 'oid', k.oid,"
        "   'login', k.rolcanlogin, 'super', k.rolsuper, 'createrole', k.rolcreaterole,"
        "   'replication', k.rolreplication, 'bypassrls', k.rolbypassrls))"
        "   FROM pg_catalog.pg_roles k WHERE k.rolname OPERATOR(pg_catalog.=) ANY (%(killers)s::text[])) AS killers,"
        " pg_catalog.current_setting('server_version_num')::int AS version_num"
        " FROM (SELECT 1) AS one"
        " LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) %(schema)s"
        " LEFT JOIN pg_catalog.pg_roles o ON o.rolname OPERATOR(pg_catalog.=) %(owner)s")


REGISTRY_COLUMNS = ["role_oid oid", "role_name name"]


def _registry_shape_ok(reg):
    return (reg is not None and reg["kind"] == "r" and reg["plain"]
            and list(reg["columns"] or []) == REGISTRY_COLUMNS and list(reg["constraints"] or []) == ["p:{1,2}"])


def _read_registry(session, schema):
    """The registry's entries with what each oid is now (NULL columns for a dropped role)."""
    return session.rows(sql.SQL(
        "SELECT DISTINCT k.role_oid::bigint AS role_oid, k.role_name::text AS role_name, r.rolname AS rolname,"
        " r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolreplication, r.rolbypassrls"
        " FROM {} k LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) k.role_oid ORDER BY 2, 1").format(
            registry_ident(schema)))


def _read_registry_as_owner(session, schema, owner_role):
    """The registry's entries for a non-superuser admin (managed PostgreSQL) that cannot read the
    table: it borrows the owner role for the read (role_checks.borrow_statements) and gives it
    back at once, in the same transaction. None when there is nothing to borrow (a superuser, or
    an admin that already acts as the owner and still cannot read)."""
    # imported here: the fence and terminate_sessions, which only read the helper's status as
    # a non-admin, never need it
    from . import role_checks

    borrowed = role_checks.borrow_statements(session, [owner_role])
    if not borrowed:
        return None
    for dummy, grant, back in borrowed:
        session.execute(grant, log=False)
    entries = _read_registry(session, schema)
    for dummy, grant, back in borrowed:
        session.execute(back, log=False)
    return entries


def inspect(session, schema, owner_role, killer_roles):
    """Read everything about the helper in (at most) two queries."""
    version = session.rows("SELECT pg_catalog.current_setting('server_version_num')::int AS v")[0]["v"]
    state = session.rows(_inspect_sql(version >= 160000), {
        "schema": schema, "owner": owner_role, "killers": list(killer_roles), "fns": [FUNCTION_NAME, POSITIONS_NAME],
        "registry": REGISTRY_TABLE, "granted": list(OWNER_GRANTED_ROLES)})[0]
    for key in ("nsp_acl", "owner_members", "owner_member_rows", "owner_holds", "objects", "functions", "killers"):
        state[key] = state[key] or []
    found = state["functions"]
    state["functions"] = [f for f in found if f["name"] == FUNCTION_NAME]
    state["positions_functions"] = [f for f in found if f["name"] == POSITIONS_NAME]
    state["fn"] = _our_function(state["functions"])
    state["positions"] = next((f for f in state["positions_functions"] if f["args"] == ""), None)
    state["entries"] = None  # registry entries; None when missing, malformed or not readable
    reg = state["registry"]
    if _registry_shape_ok(reg) and reg["readable"]:
        state["entries"] = _read_registry(session, schema)
    return state


def _version_from_comment(comment):
    if comment and comment.startswith(COMMENT_PREFIX):
        return comment[len(COMMENT_PREFIX):].strip()
    return None


def _our_function(functions):
    for fn in functions:
        if fn["args"].replace(" ", "").startswith("p_killername,p_rolesname[],p_databasesname[],p_signalboolean"):
            return fn
    return None


# --------------------------------------------------------------------------- comparing


def _function_problems(session, schema, fn, owner_role, spec=None):
    """What differs in the function itself (empty when it is this collection's); SPEC is its
    function_spec() (default: the terminating function)."""
    spec = spec or function_spec(session, schema)
    if fn is None:
        return ["the function %s does not exist" % session.render(spec["signature"])]
    problems = []
    version = _version_from_comment(fn["comment"])
    if version != HELPER_VERSION:
        problems.append("its version is %s, this collection installs %s" % (version, HELPER_VERSION))
    elif (fn["prosrc"] or "").strip() != spec["body"].strip():
        problems.append("its body differs from this collection's")
    if fn["language"] != spec["language"] or fn["kind"] != "f":
        problems.append("it is a %s routine in language %s (expected a %s function)"
                        % (fn["kind"], fn["language"], spec["language"]))
    if not fn["secdef"]:
        problems.append("it is not SECURITY DEFINER")
    if list(fn["config"] or []) != [SEARCH_PATH_SETTING]:
        problems.append("its settings are %s (expected exactly %s)" % (fn["config"], SEARCH_PATH_SETTING))
    if fn["strict"] or fn["volatile"] != "v":
        volatility = {"i": "IMMUTABLE", "s": "STABLE"}.get(fn["volatile"], "VOLATILE")
        problems.append("it is %s%s (expected VOLATILE CALLED ON NULL INPUT)"
                        % ("STRICT " if fn["strict"] else "", volatility))
    if fn["arguments"] != spec["arguments"]:
        problems.append("its arguments are (%s), expected (%s)" % (fn["arguments"], spec["arguments"]))
    if fn["result"] != spec["result"]:
        problems.append("it returns %s, expected %s" % (fn["result"], spec["result"]))
    if fn["owner"] != owner_role:
        problems.append("it is owned by %s, expected %s" % (fn["owner"], owner_role))
    return problems


def _acl_problems(what, acl, owner, allowed, privilege):
    """ACL entries other than the owner's own and PRIVILEGE (without grant option, granted by the
    owner) for each role in ALLOWED."""
    problems = []
    for entry in acl or []:
        grantee = entry["grantee"]
        if grantee == owner and entry["grantor"] == owner:
            continue
        if (grantee in allowed and entry["privilege"] == privilege and not entry["grantable"]
                and entry["grantor"] == owner):
            continue
        problems.append("%s grants %s%s to %s (granted by %s)" % (
            what, entry["privilege"], " WITH GRANT OPTION" if entry["grantable"] else "",
            grantee or "PUBLIC", entry["grantor"]))
    return problems


def _disqualified(row):
    """Why a role (a pg_roles-like row) may not be a killer role; None when it may."""
    reasons = [why for column, why in KILLER_DISQUALIFIERS if row.get(column)]
    return "; ".join(reasons) or None


def _entry_verdicts(entries, owner_role):
    """(kept, dropped): registry entries that name the role they were made for and that may be
    killer roles, and the others with why."""
    kept, dropped = [], []
    for entry in entries or []:
        if entry["rolname"] is None:
            dropped.append((entry, "role oid %s no longer exists" % entry["role_oid"]))
        elif entry["rolname"] != entry["role_name"]:
            dropped.append((entry, "role oid %s is now named %s" % (entry["role_oid"], entry["rolname"])))
        elif entry["role_name"] == owner_role:
            dropped.append((entry, "it is the helper's owner role"))
        elif _disqualified(entry):
            dropped.append((entry, _disqualified(entry)))
        else:
            kept.append(entry)
    return kept, dropped


def _foreign_objects(state):
    """Objects in the schema that are not the helper's (its function or registry table)."""
    reg = state["registry"]
    reg_ok = _registry_shape_ok(reg)
    out = []
    for obj in state["objects"]:
        if obj["catalog"] == "pg_proc" and obj["name"] in (FUNCTION_NAME, POSITIONS_NAME):
            continue  # the functions and their overloads are handled on their own
        if obj["catalog"] == "pg_class" and obj["name"] == REGISTRY_TABLE and reg_ok:
            continue
        if (obj["catalog"] == "pg_class" and obj["kind"] == "i" and obj["name"] == REGISTRY_TABLE + "_pkey"
                and reg_ok and obj["relid"] == reg["oid"]):
            continue  # the registry's primary key
        out.append(obj)
    return out


def _owner_problems(state, owner_role):
    problems = []
    if state["owner_oid"] is None:
        return ["the owner role %s does not exist" % owner_role]
    attrs = (["LOGIN"] if state["owner_login"] else []) + (["SUPERUSER"] if state["owner_super"] else [])
    attrs += [flag for flag, on in zip(OWNER_FLAGS, state["owner_flags"] or ()) if on]
    if attrs:
        problems.append("the owner role %s has %s" % (owner_role, ", ".join(attrs)))
    holds = state["owner_holds"]
    for row in holds:
        if row["role"] not in OWNER_GRANTED_ROLES:
            problems.append("the owner role %s is a member of %s (granted by %s)"
                            % (owner_role, row["role"], row["grantor"]))
        elif row["admin_option"]:
            problems.append("the owner role %s holds %s WITH ADMIN OPTION (granted by %s)"
                            % (owner_role, row["role"], row["grantor"]))
    for granted in OWNER_GRANTED_ROLES:
        if not any(r["role"] == granted and r["inherit_option"] for r in holds):
            problems.append("the owner role %s does not hold %s with INHERIT" % (owner_role, granted))
    if state["owner_members"]:
        problems.append("role(s) %s can act as the owner role %s (members of it) and so could redefine "
                        "the helper" % (", ".join(state["owner_members"]), owner_role))
    return problems


def status_problems(session, schema, owner_role, killer_roles, state):
    """Every difference from what ensure_helper installs (for killer roles KILLER_ROLES), each
    naming what is wrong. Empty when the helper is exactly this collection's."""
    fn = state["fn"]
    positions = state["positions"]
    problems = ["function: %s" % p for p in _function_problems(session, schema, fn, owner_role)]
    problems += ["function %s(): %s" % (POSITIONS_NAME, p) for p in _function_problems(
        session, schema, positions, owner_role, function_spec(session, schema, positions=True))]
    for other in state["functions"] + state["positions_functions"]:
        if other is not fn and other is not positions:
            problems.append("an overload %s(%s) exists next to the function (calls become ambiguous)"
                            % (other["name"], other["args"]))
    if state["nsp_oid"] is None:
        return ["schema %s does not exist" % schema]
    if state["nsp_owner"] != owner_role:
        problems.append("schema %s is owned by %s, expected %s" % (schema, state["nsp_owner"], owner_role))
    allowed = set(killer_roles)
    if fn is not None:
        problems += _acl_problems("the function", fn["acl"], fn["owner"], allowed, "EXECUTE")
    if positions is not None:
        problems += _acl_problems("function %s()" % POSITIONS_NAME, positions["acl"], positions["owner"], allowed,
                                  "EXECUTE")
    problems += _acl_problems("schema %s" % schema, state["nsp_acl"], state["nsp_owner"], allowed, "USAGE")
    reg = state["registry"]
    if reg is None:
        problems.append("the registry table %s.%s does not exist" % (schema, REGISTRY_TABLE))
    else:
        if not _registry_shape_ok(reg):
            problems.append("the registry %s.%s is not this collection's table (kind %s, columns %s, "
                            "constraints %s, or it has row security, rules, triggers or inheritance)"
                            % (schema, REGISTRY_TABLE, reg["kind"], ", ".join(reg["columns"] or []),
                               ", ".join(reg["constraints"] or []) or "none"))
        if reg["owner"] != owner_role:
            problems.append("the registry is owned by %s, expected %s" % (reg["owner"], owner_role))
        problems += _acl_problems("the registry", reg["acl"], reg["owner"], set(), None)
    for obj in _foreign_objects(state):
        problems.append("schema %s holds another object: %s" % (schema, obj["what"]))
    problems += _owner_problems(state, owner_role)
    if state["entries"] is not None:
        kept, dropped = _entry_verdicts(state["entries"], owner_role)
        for entry, why in dropped:
            if entry["role_name"] in allowed:
                continue  # about one killer role: in killer_problems
            problems.append("the registry lists %s (oid %s), which may not be a killer role: %s"
                            % (entry["role_name"], entry["role_oid"], why))
        for entry in kept:
            if entry["role_name"] not in allowed:
                problems.append("the registry lists %s, which is not a killer role of any Deployment given"
                                % entry["role_name"])
    return problems + sum(killer_problems(state, killer_roles).values(), [])


def killer_problems(state, killer_roles):
    """{killer role: [problems that concern only it]}: not registered, may not be a killer role."""
    out = dict((k, []) for k in killer_roles)
    if state["entries"] is not None:
        kept, dropped = _entry_verdicts(state["entries"], None)
        for entry, why in dropped:
            if entry["role_name"] in out:
                out[entry["role_name"]].append("the registry lists %s (oid %s), which may not be a killer role: %s"
                                               % (entry["role_name"], entry["role_oid"], why))
        registered = set(e["role_name"] for e in kept)
        for killer in killer_roles:
            if killer not in registered:
                out[killer].append("killer role %s is not registered" % killer)
    for row in state["killers"]:
        why = _disqualified({"rolcanlogin": row["login"], "rolsuper": row["super"],
                             "rolcreaterole": row["createrole"], "rolreplication": row["replication"],
                             "rolbypassrls": row["bypassrls"]})
        if why and row["name"] in out:
            out[row["name"]].append("killer role %s may not be a killer role: %s" % (row["name"], why))
    return out


# --------------------------------------------------------------------------- changing


def owner_members(session, owner_oid):
    """Non-superuser roles that could act as the owner role (should be none)."""
    if owner_oid is None:
        return []
    rows = session.rows("SELECT (" + OWNER_MEMBERS_SQL + ") AS m FROM pg_catalog.pg_roles o WHERE o.oid OPERATOR(pg_catalog.=) %(owner)s",
                        {"owner": owner_oid, "granted": list(OWNER_GRANTED_ROLES)})
    return (rows[0]["m"] or []) if rows else []


def helper_status(session, schema=DEFAULT_SCHEMA, killer_roles=(), owner_role=DEFAULT_OWNER_ROLE):
    """Read-only: is the helper installed, current, intact, and usable by each killer role?

    Keys: installed, version, current (the function is this collection's, owned by OWNER_ROLE),
    owner_role (the function's actual owner), owner_can_signal, usable_by (per killer role:
    EXECUTE, USAGE, an owner that can signal, and registered when the registry is readable),
    function (qualified signature), owner_members (roles that could act as the owner role),
    registered (per killer role: true/false, or null when the registry cannot be read as this
    login), registry_readable, problems (every part that differs from what ensure_helper
    installs for these killer roles; each names what is wrong), killer_problems (the problems
    that concern one killer role only, per killer role; also in problems).
    """
    killer_roles = list(dict.fromkeys(killer_roles or ()))
    out = {"installed": False, "version": None, "current": False, "owner_role": None,
           "owner_can_signal": False, "usable_by": dict((k, False) for k in killer_roles),
           "function": None, "owner_members": [], "registered": dict((k, None) for k in killer_roles),
           "registry_readable": False, "problems": [], "killer_problems": {}}
    state = inspect(session, schema, owner_role, killer_roles)
    fn = state["fn"]
    out["owner_members"] = state["owner_members"]
    if fn is None:
        return out
    problems = status_problems(session, schema, owner_role, killer_roles, state)
    out["problems"] = problems
    out["killer_problems"] = killer_problems(state, killer_roles)
    registered = None
    if state["entries"] is not None:
        kept, dummy = _entry_verdicts(state["entries"], owner_role)
        registered = set(e["role_name"] for e in kept)
        out["registry_readable"] = True
    for killer in killer_roles:
        out["registered"][killer] = None if registered is None else killer in registered
    out.update(installed=True, version=_version_from_comment(fn["comment"]),
               owner_role=fn["owner"], owner_can_signal=bool(fn["owner_can_signal"]),
               current=not (_function_problems(session, schema, fn, owner_role) or _function_problems(
                   session, schema, state["positions"], owner_role, function_spec(session, schema, positions=True))),
               function=session.render(function_signature(schema)))
    usable = fn["usable"] or {}
    for killer in killer_roles:
        out["usable_by"][killer] = (bool(usable.get(killer)) and out["owner_can_signal"]
                                    and out["registered"][killer] is not False)
    return out


def takes_null_killer(version):
    """Whether an installed helper of VERSION (its comment's text) takes p_killer NULL."""
    try:
        return int(str(version)) >= BULK_VERSION
    except (TypeError, ValueError):
        return False
