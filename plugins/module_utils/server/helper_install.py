# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Installing, upgrading and removing the fence helper (see server/helper.py for what it is).

``ensure_helper`` reads (``server/helper.py``'s ``inspect``), plans every statement from what
it read (``install_refusal``, ``plan_install``, ``plan_removal``: pure, unit-tested without a
server), then applies them inside the caller's transaction; it never commits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..base.database import sql
from .helper import (
    COMMENT_PREFIX,
    DEFAULT_OWNER_ROLE,
    DEFAULT_SCHEMA,
    HELPER_VERSION,
    OWNER_FLAGS,
    OWNER_GRANTED_ROLES,
    REGISTRY_TABLE,
    REPLICATION_SQL,
    _acl_problems,
    _disqualified,
    _entry_verdicts,
    _foreign_objects,
    _function_problems,
    _read_registry_as_owner,
    _registry_shape_ok,
    _version_from_comment,
    function_body,
    function_ident,
    function_spec,
    helper_problems,
    inspect,
    registry_ident,
)


def create_function_statement(session, schema):
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}(p_killer name, p_roles name[] DEFAULT NULL, "
        "p_databases name[] DEFAULT NULL, p_signal boolean DEFAULT true) "
        "RETURNS TABLE (pid integer, usename name, datname name, application_name text, "
        "client_addr inet, backend_start timestamptz, terminated boolean) "
        "LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp "
        "AS {body}").format(fn=function_ident(schema), body=sql.Literal(function_body(session, schema)))


def create_positions_statement(schema):
    """standby_positions() (helper version 4): the physical standbys' positions, for the fence's gate."""
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn} "
        "RETURNS TABLE (pid integer, application_name text, state text, sync_state text, "
        "flush_lsn pg_lsn, replay_lsn pg_lsn, slot_name name) "
        "LANGUAGE sql VOLATILE CALLED ON NULL INPUT SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp "
        "AS {body}").format(fn=function_spec(None, schema, positions=True)["signature"],
                            body=sql.Literal(REPLICATION_SQL))


def create_registry_statements(schema, owner):
    reg = registry_ident(schema)
    return [sql.SQL("CREATE TABLE {} (role_oid pg_catalog.oid NOT NULL, role_name pg_catalog.name NOT NULL, "
                    "PRIMARY KEY (role_oid, role_name))").format(reg),
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(reg, owner),
            sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(reg)]


DROP_KINDS = {
    ("pg_class", "v"): ("VIEW", "regclass"), ("pg_class", "m"): ("MATERIALIZED VIEW", "regclass"),
    ("pg_proc", "f"): ("FUNCTION", "regprocedure"), ("pg_proc", "w"): ("FUNCTION", "regprocedure"),
    ("pg_proc", "p"): ("PROCEDURE", "regprocedure"), ("pg_proc", "a"): ("AGGREGATE", "regprocedure"),
    ("pg_class", "r"): ("TABLE", "regclass"), ("pg_class", "p"): ("TABLE", "regclass"),
    ("pg_class", "f"): ("FOREIGN TABLE", "regclass"), ("pg_class", "S"): ("SEQUENCE", "regclass"),
    ("pg_class", "c"): ("TYPE", "regclass"), ("pg_type", "d"): ("DOMAIN", "regtype"),
    ("pg_type", "e"): ("TYPE", "regtype"), ("pg_type", "r"): ("TYPE", "regtype"),
    ("pg_type", "b"): ("TYPE", "regtype"), ("pg_type", "p"): ("TYPE", "regtype"),
    ("pg_class", "i"): ("INDEX", "regclass"), ("pg_class", "I"): ("INDEX", "regclass"),
}


DROP_ORDER = ("VIEW", "MATERIALIZED VIEW", "FUNCTION", "PROCEDURE", "AGGREGATE", "TABLE", "FOREIGN TABLE",
              "SEQUENCE", "TYPE", "DOMAIN", "INDEX")


def drop_object_statement(session, catalog, fn_oid, keyword, regtype):
    """DROP an object by catalog oid, as a DO block: PostgreSQL itself writes the quoted name
    (oid::regclass, ::regprocedure, ::regtype) when the block runs, so no name read from the
    catalog is pasted into SQL text; the oid is the only value and goes in as a literal. The
    object may already be gone (an index dropped with its table): then nothing happens."""
    body = sql.SQL("BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.{cat} WHERE oid OPERATOR(pg_catalog.=) {oid}::pg_catalog.oid) THEN "
                   "EXECUTE pg_catalog.format('DROP {kw} %s', {oid}::pg_catalog.oid::pg_catalog.{reg}); "
                   "END IF; END").format(cat=sql.Identifier(catalog), kw=sql.SQL(keyword),
                                         oid=sql.Literal(str(int(fn_oid))), reg=sql.SQL(regtype))
    return sql.SQL("DO {}").format(sql.Literal(session.render(body)))


def drop_function_statement(session, fn_oid):
    return drop_object_statement(session, "pg_proc", fn_oid, "FUNCTION", "regprocedure")


def _reset_acl_statements(on, acl, owner):
    """REVOKE everything from every grantee but the owner (CASCADE takes grant chains along)."""
    grantees = []
    for entry in acl or []:
        grantee = entry["grantee"]
        if grantee == owner and entry["grantor"] == owner:
            continue
        if grantee not in grantees:
            grantees.append(grantee)
    if not grantees:
        return []
    names = sql.SQL(", ").join(sql.SQL("PUBLIC") if g is None else sql.Identifier(g) for g in grantees)
    return [sql.SQL("REVOKE ALL ON {} FROM {} CASCADE").format(on, names)]


def ensure_helper(session, schema=DEFAULT_SCHEMA, owner_role=DEFAULT_OWNER_ROLE, killer_roles=(),
                  state="present", check_mode=False, exact=False, unregister=()):
    """Install, update, repair or remove the helper inside the current transaction (no commit).

    Registers KILLER_ROLES. With EXACT the registry (and so the grants) become exactly
    KILLER_ROLES; without it other registered killer roles stay, except entries for roles that
    were dropped, renamed or may not be killer roles (they are always removed) and the roles in
    UNREGISTER (a caller about to drop them, e.g. provisioning decommissioning a Deployment).

    Returns {"changed", "statements", "version", "missing_roles", "unregistered"}. Input
    problems, missing killer roles (outside check mode) and roles that may not be killer roles
    are reported with session.fail (which rolls the transaction back) before any change.

    The steps: read (``inspect``, the registry's entries), plan (``plan_removal`` or
    ``install_refusal`` then ``plan_install``: pure), apply (``_apply``, in the caller's
    transaction).
    """
    killer_roles = list(dict.fromkeys(killer_roles or ()))
    problems = helper_problems(schema, owner_role, killer_roles)
    if problems:
        session.fail("invalid fence helper options: " + "; ".join(problems), problems=problems)
    current = inspect(session, schema, owner_role, killer_roles)
    if state == "absent":
        statements = plan_removal(current, schema, owner_role)
        _apply(session, statements, check_mode)
        return _result(session, statements, None, [], [])
    refusal = install_refusal(current, schema, owner_role, killer_roles, check_mode)
    if refusal:
        session.fail(refusal[0], **refusal[1])
    entries = _registry_entries(session, current, schema, owner_role)
    plan = plan_install(session, current, entries, schema, owner_role, killer_roles, exact, unregister)
    statements = plan["roles"] + plan["objects"]
    if plan["objects"]:
        statements = with_borrowed(plan["roles"], plan["objects"], _owner_borrow(session, current, owner_role))
    _apply(session, statements, check_mode)
    return _result(session, statements, HELPER_VERSION, plan["missing"], plan["unregistered"])


# --------------------------------------------------------------------------- reading (besides inspect)

def _registry_entries(session, current, schema, owner_role):
    """The registry's entries: read by inspect, else read as the owner role (a managed admin
    that cannot read the table); [] when the registry is missing or malformed (it is rebuilt).
    Fails (nothing changed) when they cannot be read at all."""
    reg = current["registry"]
    if reg is None or not _registry_shape_ok(reg):
        return []
    entries = current["entries"]
    if entries is None:
        entries = _read_registry_as_owner(session, schema, owner_role)
    if entries is None:
        session.fail("fence helper: cannot read the registry %s.%s as %s; run as a superuser or a role that can "
                     "act as %s; nothing was changed"
                     % (schema, REGISTRY_TABLE, session.rows("SELECT current_user AS u")[0]["u"], owner_role))
    return entries


def _owner_borrow(session, current, owner_role):
    """role_checks.borrow_statements for the owner role: a non-superuser admin (managed
    PostgreSQL) borrows it for the rest of the transaction, since CREATE SCHEMA ...
    AUTHORIZATION and ALTER FUNCTION ... OWNER TO need SET on it."""
    from . import role_checks

    return role_checks.borrow_statements(session, [owner_role], [owner_role] if current["owner_oid"] is None else [])


# --------------------------------------------------------------------------- planning (pure)

def plan_removal(current, schema, owner_role):
    """The statements that remove the helper: its schema (with everything in it), its owner."""
    statements = []
    if current["nsp_oid"] is not None:
        statements.append(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    if current["owner_oid"] is not None:
        statements.append(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner_role)))
    return statements


def _missing_killers(current, killer_roles):
    found = set(r["name"] for r in current["killers"])
    return [k for k in killer_roles if k not in found]


def install_refusal(current, schema, owner_role, killer_roles, check_mode):
    """(message, extra result keys) when the helper may not be installed as asked, else None.

    In check mode a caller (provisioning) may not have created the killer roles yet: they are
    planned and reported as missing instead of refused."""
    missing = _missing_killers(current, killer_roles)
    if missing and not check_mode:
        return "fence helper: killer role(s) do not exist: %s" % ", ".join(missing), {"missing_roles": missing}
    found = dict((r["name"], r) for r in current["killers"])
    refused = []
    for name in killer_roles:
        row = found.get(name)
        why = row and _disqualified({"rolcanlogin": row["login"], "rolsuper": row["super"],
                                     "rolcreaterole": row["createrole"], "rolreplication": row["replication"],
                                     "rolbypassrls": row["bypassrls"]})
        if why:
            refused.append("%s (%s)" % (name, why))
    if refused:
        return ("fence helper: refusing to register as killer role(s): %s; a killer role is a NOLOGIN role "
                "without SUPERUSER, CREATEROLE, REPLICATION or BYPASSRLS; nothing was changed"
                % "; ".join(refused), {"refused_roles": refused})
    if current["owner_super"]:
        return ("fence helper: owner role %s is a superuser; the helper's owner must be an "
                "unprivileged NOLOGIN role; nothing was changed" % owner_role, {})
    return _schema_refusal(current, schema)


def _schema_refusal(current, schema):
    """install_refusal's part about other objects in the helper's schema."""
    ours = current["fn"] is not None or current["registry"] is not None
    foreign = _foreign_objects(current)
    if foreign and not ours:
        return ("fence helper: schema %s already holds %d other object(s) (%s); the helper needs a schema "
                "of its own (its owner role owns the schema); nothing was changed"
                % (schema, len(foreign), "; ".join(o["what"] for o in foreign)), {})
    undroppable = [o for o in foreign if (o["catalog"], o["kind"]) not in DROP_KINDS]
    if undroppable:
        return ("fence helper: schema %s holds object(s) this module does not remove: %s; drop them and run "
                "again; nothing was changed" % (schema, "; ".join(o["what"] for o in undroppable)), {})
    return None


def plan_install(renderer, current, entries, schema, owner_role, killer_roles, exact=False, unregister=()):
    """Every statement that installs, updates or repairs the helper, from what was read. Pure.

    CURRENT is inspect()'s answer (after install_refusal found nothing to refuse), ENTRIES the
    registry's entries (_registry_entries). RENDERER is anything with ``render(statement)`` ->
    text (the Session; it only quotes names, nothing is read). Returns {"roles": statements
    about the owner role, "objects": statements about the schema and what is in it (run as the
    owner role, see with_borrowed), "missing": killer roles that do not exist (check mode),
    "unregistered": role names whose registry entries are removed}.
    """
    kept, dropped = _registry_verdicts(entries, owner_role, killer_roles, exact, unregister)
    registered = set(e["role_name"] for e in kept)
    accepted = set(killer_roles) | registered
    objects, nsp_grant = _schema_statements(renderer, current, schema, owner_role, accepted)
    objects += _registry_statements(renderer, current, schema, owner_role, dropped,
                                    [k for k in killer_roles if k not in registered])
    grants = []
    for positions in (False, True):  # the terminating function, and standby_positions() (version 4)
        fn_statements, signature, fn_grant = _function_statements(
            renderer, current, schema, owner_role, accepted, positions)
        objects += fn_statements
        grants.append((signature, fn_grant))
    objects += _use_statements(schema, nsp_grant, grants)
    return {"roles": _owner_role_statements(current, owner_role), "objects": objects,
            "missing": _missing_killers(current, killer_roles),
            "unregistered": sorted(set(e["role_name"] for e, why in dropped))}


def with_borrowed(role_statements, object_statements, borrowed):
    """The statements in the order they run: the owner role's first, then the others between
    the grant and the give-back of each borrowed role (role_checks.borrow_statements)."""
    statements = role_statements + object_statements
    role_part = len(role_statements)
    for dummy, grant, back in borrowed:
        statements = statements[:role_part] + [grant] + statements[role_part:] + [back]
    return statements


def _owner_role_statements(current, owner_role):
    """The owner role: its attributes, what it holds, who holds it."""
    owner = sql.Identifier(owner_role)
    new16 = current["version_num"] >= 160000
    statements = []
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
        fixes, need_grants = _owner_membership_plan(current["owner_holds"], owner, new16)
        statements += fixes
        for row in current["owner_member_rows"]:
            by = sql.SQL(" GRANTED BY {}").format(sql.Identifier(row["grantor"])) if new16 else sql.SQL("")
            statements.append(sql.SQL("REVOKE {} FROM {}{} CASCADE").format(owner, sql.Identifier(row["member"]), by))
    for granted in need_grants:
        if new16:
            statements.append(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE").format(sql.Identifier(granted), owner))
        else:
            statements.append(sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), owner))
    return statements


def _registry_verdicts(entries, owner_role, killer_roles, exact, unregister):
    """(kept, dropped): who stays registered. Decided first: it decides who may hold the grants."""
    kept, dropped = _entry_verdicts(entries, owner_role)
    unregister = set(unregister or ()) - set(killer_roles)
    if exact:
        dropped += [(e, "not in killer_roles") for e in kept if e["role_name"] not in killer_roles]
        kept = [e for e in kept if e["role_name"] in killer_roles]
    dropped += [(e, "unregistered") for e in kept if e["role_name"] in unregister]
    kept = [e for e in kept if e["role_name"] not in unregister]
    return kept, dropped


def _schema_statements(renderer, current, schema, owner_role, accepted):
    """(statements, roles still to be granted USAGE): the schema, its ACL, the objects in it
    that are not the helper's and the function's other overloads."""
    statements = []
    schema_id = sql.Identifier(schema)
    nsp_grant = sorted(accepted)
    if current["nsp_oid"] is None:
        statements.append(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(schema_id, sql.Identifier(owner_role)))
        statements.append(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema_id))
    else:
        if current["nsp_owner"] != owner_role:
            statements.append(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema_id, sql.Identifier(owner_role)))
        if _acl_problems("", current["nsp_acl"], current["nsp_owner"], accepted, "USAGE"):
            statements += _reset_acl_statements(sql.SQL("SCHEMA {}").format(schema_id), current["nsp_acl"],
                                                current["nsp_owner"])
        else:
            held = _granted(current["nsp_acl"], current["nsp_owner"], "USAGE")
            nsp_grant = [k for k in nsp_grant if k not in held]
    foreign = _foreign_objects(current)
    for keyword in DROP_ORDER:
        for obj in foreign:
            kw, regtype = DROP_KINDS[(obj["catalog"], obj["kind"])]
            if kw == keyword:
                statements.append(drop_object_statement(renderer, obj["catalog"], obj["oid"], kw, regtype))
    for other in current["functions"] + current.get("positions_functions", []):
        if other is not current["fn"] and other is not current.get("positions"):  # an overload, an older signature
            statements.append(drop_function_statement(renderer, other["oid"]))
    return statements, nsp_grant


def _registry_statements(renderer, current, schema, owner_role, dropped, to_register):
    """The registry table (rebuilt when malformed), its owner and ACL, and its entries."""
    statements = []
    owner = sql.Identifier(owner_role)
    reg = current["registry"]
    reg_ident = registry_ident(schema)
    reg_broken = reg is not None and not _registry_shape_ok(reg)
    if reg_broken:
        statements.append(drop_object_statement(renderer, "pg_class", reg["oid"],
                                                "VIEW" if reg["kind"] == "v" else "TABLE", "regclass"))
    if reg is None or reg_broken:
        statements += create_registry_statements(schema, owner)
    else:
        if reg["owner"] != owner_role:
            statements.append(sql.SQL("ALTER TABLE {} OWNER TO {}").format(reg_ident, owner))
        if _acl_problems("", reg["acl"], reg["owner"], set(), None):
            statements += _reset_acl_statements(sql.SQL("TABLE {}").format(reg_ident), reg["acl"], reg["owner"])
    if dropped:
        statements.append(sql.SQL(
            "DELETE FROM {reg} k USING ROWS FROM (pg_catalog.unnest({oids}::pg_catalog.oid[]),"
            " pg_catalog.unnest({names}::pg_catalog.name[])) AS d(o, n)"
            " WHERE k.role_oid OPERATOR(pg_catalog.=) d.o AND k.role_name OPERATOR(pg_catalog.=) d.n").format(
                reg=reg_ident, oids=sql.Literal([str(e["role_oid"]) for e, why in dropped]),
                names=sql.Literal([e["role_name"] for e, why in dropped])))
    if to_register:
        statements.append(sql.SQL(
            "INSERT INTO {} (role_oid, role_name) SELECT r.oid, r.rolname FROM pg_catalog.pg_roles r"
            " WHERE r.rolname OPERATOR(pg_catalog.=) ANY ({}::pg_catalog.name[]) ON CONFLICT DO NOTHING").format(
                reg_ident, sql.Literal(to_register)))
    return statements


def _function_statements(renderer, current, schema, owner_role, accepted, positions=False):
    """(statements, signature, roles still to be granted EXECUTE): the function (with POSITIONS,
    standby_positions()), its owner, ACL and version."""
    statements = []
    owner = sql.Identifier(owner_role)
    spec = function_spec(renderer, schema, positions)
    signature = spec["signature"]
    fn = current.get("positions") if positions else current["fn"]
    create = create_positions_statement(schema) if positions else create_function_statement(renderer, schema)
    fn_grant = sorted(accepted)
    fn_problems = _function_problems(renderer, schema, fn, owner_role, spec)
    if fn is not None and (fn["result"] != spec["result"] or fn["kind"] != "f"):
        statements.append(drop_function_statement(renderer, fn["oid"]))  # CREATE OR REPLACE cannot change these
        fn = None
    if fn is None:
        statements.append(create)
        statements.append(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(signature, owner))
        statements.append(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(signature))
        statements.append(sql.SQL("COMMENT ON FUNCTION {} IS {}").format(
            signature, sql.Literal(COMMENT_PREFIX + HELPER_VERSION)))
        return statements, signature, fn_grant
    if [p for p in fn_problems if not p.startswith("it is owned by")]:
        statements.append(create)
    if fn["owner"] != owner_role:
        statements.append(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(signature, owner))
    if _acl_problems("", fn["acl"], fn["owner"], accepted, "EXECUTE"):
        statements += _reset_acl_statements(sql.SQL("FUNCTION {}").format(signature), fn["acl"], fn["owner"])
    else:
        held = _granted(fn["acl"], fn["owner"], "EXECUTE")
        fn_grant = [k for k in fn_grant if k not in held]
    if _version_from_comment(fn["comment"]) != HELPER_VERSION:
        statements.append(sql.SQL("COMMENT ON FUNCTION {} IS {}").format(
            signature, sql.Literal(COMMENT_PREFIX + HELPER_VERSION)))
    return statements, signature, fn_grant


def _use_statements(schema, nsp_grant, grants):
    """USAGE + EXECUTE for the accepted killer roles (taken from everyone else above); GRANTS:
    (function signature, roles) per function."""
    statements = []
    if nsp_grant:
        statements.append(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.SQL(", ").join(sql.Identifier(k) for k in nsp_grant)))
    for signature, fn_grant in grants:
        if fn_grant:
            statements.append(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                signature, sql.SQL(", ").join(sql.Identifier(k) for k in fn_grant)))
    return statements


def _granted(acl, owner, privilege):
    return [e["grantee"] for e in acl or [] if e["grantee"] and e["privilege"] == privilege
            and not e["grantable"] and e["grantor"] == owner]


def _owner_membership_plan(holds, owner, new16):
    """(statements, roles to grant) that leave the owner holding its two predefined roles,
    directly and with INHERIT, and nothing else: no other role (it would widen what the helper
    runs as) and no ADMIN on them (it would pass on to the owner's members)."""
    statements = []
    for row in holds:
        by = sql.SQL(" GRANTED BY {}").format(sql.Identifier(row["grantor"])) if new16 else sql.SQL("")
        if row["role"] not in OWNER_GRANTED_ROLES:
            statements.append(sql.SQL("REVOKE {} FROM {}{}").format(sql.Identifier(row["role"]), owner, by))
        elif row["admin_option"]:
            statements.append(sql.SQL("REVOKE ADMIN OPTION FOR {} FROM {}{}").format(
                sql.Identifier(row["role"]), owner, by))
    held = set(r["role"] for r in holds if r["inherit_option"])
    return statements, [g for g in OWNER_GRANTED_ROLES if g not in held]


# --------------------------------------------------------------------------- applying

def _apply(session, statements, check_mode):
    """Run STATEMENTS in the caller's transaction (never commits); nothing in check mode."""
    if check_mode:
        return
    for statement in statements:
        session.execute(statement)


def _result(session, statements, version, missing, unregistered):
    return {"changed": bool(statements), "statements": [session.render(s) for s in statements],
            "version": version, "missing_roles": missing, "unregistered": unregistered}
