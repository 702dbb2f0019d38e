# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Least-privilege checks of the names a Deployment model resolves, before any change.

Two halves:

- ``read_facts(session, records, helper_owner)``: one catalog query for every role name
  the records use (attributes, memberships up and down, owned databases, privileged or
  predefined roles reachable by membership) and one for every database, plus what the
  connecting role may do (superuser, CREATEROLE, CREATEDB, ADMIN OPTION per role).
- ``name_problems(records, facts, options)``: pure; every reason to refuse, each naming the
  Deployment, the name and why. ``admin_problems(...)``: pure; what a non-superuser admin
  (Amazon RDS / Aurora, Cloud SQL, Azure Flexible Server) lacks for the planned changes,
  naming the missing grant.

And the managed-PostgreSQL helper ``borrow_statements(session, roles)``: on PostgreSQL 16+ a
``CREATEROLE`` admin holds only ADMIN (not SET, not INHERIT) on the roles it creates, while
``ALTER DATABASE ... OWNER TO r``, ``CREATE SCHEMA ... AUTHORIZATION r`` and
``ALTER FUNCTION ... OWNER TO r`` need "able to SET ROLE r", and changing the ACL of an
object owned by r needs r's privileges. The admin grants itself ``r WITH INHERIT TRUE, SET
TRUE`` for the duration of the transaction and takes it back before commit (or restores the
options of a row it already had).

See docs/managed-postgresql.md and the "Names the collection refuses" section of README.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ..model import deployment as _deployment
from ..base.database import sql
from ..base.identifiers import name_listing

PRIVILEGED_ATTRIBUTES = (("rolsuper", "SUPERUSER"), ("rolcreaterole", "CREATEROLE"),
                         ("rolbypassrls", "BYPASSRLS"), ("rolreplication", "REPLICATION"))
# Databases no Deployment may take over (the model's list: PostgreSQL's own, and managed
# services' maintenance databases).
SYSTEM_DATABASES = _deployment.SYSTEM_DATABASES

# One query for all role names. ``up``: every role each named role is a member of, directly
# or through others (any options: a SET-only or ADMIN-only path still lets it become or grant
# that role). Predefined roles are the pg_* roles the server created (oid below 16384).
ROLE_FACTS_SQL = """
WITH RECURSIVE named AS (
  SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY (%(names)s::text[])
), up(start, grp) AS (
  SELECT n.oid, a.roleid FROM named n JOIN pg_catalog.pg_auth_members a ON a.member OPERATOR(pg_catalog.=) n.oid
  UNION
  SELECT up.start, a.roleid FROM up JOIN pg_catalog.pg_auth_members a ON a.member OPERATOR(pg_catalog.=) up.grp
), reach AS (
  SELECT up.start AS oid,
         pg_catalog.array_agg(DISTINCT g.rolname::text)
           FILTER (WHERE g.oid OPERATOR(pg_catalog.<) 16384 AND g.rolname::pg_catalog.text OPERATOR(pg_catalog.~~) 'pg\\_%%') AS predefined,
         pg_catalog.array_agg(DISTINCT g.rolname::text)
           FILTER (WHERE g.rolsuper OR g.rolcreaterole OR g.rolbypassrls OR g.rolreplication) AS privileged
    FROM up JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) up.grp GROUP BY up.start
), groups AS (
  SELECT a.member AS oid, pg_catalog.array_agg(DISTINCT g.rolname::text) AS names
    FROM pg_catalog.pg_auth_members a JOIN named n ON n.oid OPERATOR(pg_catalog.=) a.member
    JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.roleid GROUP BY a.member
), members AS (
  SELECT a.roleid AS oid, pg_catalog.array_agg(DISTINCT m.rolname::text) AS names
    FROM pg_catalog.pg_auth_members a JOIN named n ON n.oid OPERATOR(pg_catalog.=) a.roleid
    JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) a.member
   WHERE NOT m.rolsuper AND NOT m.rolcreaterole GROUP BY a.roleid
), owns AS (
  SELECT d.datdba AS oid, pg_catalog.array_agg(d.datname::text ORDER BY d.datname) AS names
    FROM pg_catalog.pg_database d GROUP BY d.datdba
)
SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolbypassrls, r.rolreplication, r.rolcanlogin, r.rolinherit,
       COALESCE(gr.names, '{}') AS member_of, COALESCE(re.predefined, '{}') AS predefined,
       COALESCE(re.privileged, '{}') AS privileged_groups, COALESCE(me.names, '{}') AS members,
       COALESCE(ow.names, '{}') AS owns,
       pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION') AS acting_admin,
       pg_catalog.pg_has_role(current_user, r.oid, 'USAGE') AS acting_usage
  FROM named n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.oid
  LEFT JOIN reach re ON re.oid OPERATOR(pg_catalog.=) n.oid LEFT JOIN groups gr ON gr.oid OPERATOR(pg_catalog.=) n.oid
  LEFT JOIN members me ON me.oid OPERATOR(pg_catalog.=) n.oid LEFT JOIN owns ow ON ow.oid OPERATOR(pg_catalog.=) n.oid
"""

DATABASE_FACTS_SQL = """
SELECT d.datname, pg_catalog.pg_get_userbyid(d.datdba) AS owner, d.datistemplate,
       pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE') AS acting_owns
  FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) ANY (%(names)s::text[])
"""

ACTING_SQL = """
SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolcreaterole AS createrole, r.rolcreatedb AS createdb,
       pg_catalog.current_database() AS database,
       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS database_create,
       pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'MEMBER WITH ADMIN OPTION') AS admin_signal,
       pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER WITH ADMIN OPTION') AS admin_stats
  FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user
"""


def record_names(rec):
    """(kind, name) of every role a record names, commander last."""
    out = [("owner role", rec["owner_role"]), ("killer role", rec["killer_role"])]
    out += [("%s login role" % plane, name) for plane, name in sorted((rec.get("login_roles") or {}).items())]
    if rec.get("schema_role"):
        out.append(("schema role", rec["schema_role"]))
    out.append(("commander_user", rec["commander_user"]))
    return out


def read_facts(session, records, helper_owner):
    """Catalog facts for name_problems/admin_problems: three queries for all records."""
    names = set([helper_owner]) if helper_owner else set()
    for rec in records:
        names.update(name for dummy, name in record_names(rec))
    roles = dict((row["rolname"], row) for row in session.rows(ROLE_FACTS_SQL, {"names": sorted(names)}))
    databases = dict((row["datname"], row) for row in session.rows(
        DATABASE_FACTS_SQL, {"names": sorted(set(rec["database"] for rec in records))}))
    acting = session.rows(ACTING_SQL)[0]
    return {"roles": roles, "databases": databases, "acting": acting}


def _privileged(fact):
    return [word for column, word in PRIVILEGED_ATTRIBUTES if fact.get(column)]


def _listing(names):
    return name_listing(names, 10)


def name_problems(records, facts, options):
    """Every reason to refuse the names of RECORDS against FACTS (pure).

    options: helper_owner (name of the fence helper's owner role).
    Checks, per Deployment (present or absent: an absent one drops its roles):
    - no role of the model is a superuser, CREATEROLE, BYPASSRLS or REPLICATION role, or a
      member (at any depth, with any options) of one, or of a predefined pg_* role;
    - no role of the model is the fence helper's owner role; commander_user is no other
      role of any Deployment;
    - for present Deployments, an existing role must not visibly belong to another
      Deployment: the owner role holds no role and owns no other database; the killer role
      is a member of this Deployment's login roles only; a login role is granted to no role
      but this killer (admins with CREATEROLE excepted) and is no member of any owner or
      killer role of this run; owner and killer roles are granted to nobody but the
      commanders (and admins); the database is not a system or template database, not the
      database the module connects to, and not owned by another Deployment's owner role.
    """
    roles = facts["roles"]
    databases = facts["databases"]
    acting = facts.get("acting") or {}
    helper_owner = options.get("helper_owner")
    problems = []
    owners = dict((rec["owner_role"], rec["id"]) for rec in records)
    killers = dict((rec["killer_role"], rec["id"]) for rec in records)
    commanders = set(rec["commander_user"] for rec in records)
    # roles every Deployment's commander holds: an existing role granted to a commander
    # looks like an owner or killer role of some Deployment
    commander_groups = set()
    for name in commanders:
        fact = roles.get(name)
        if fact:
            commander_groups.update(fact["member_of"])

    for rec in records:
        label = "Deployment %r" % rec["id"]
        present = rec.get("state", "present") == "present"
        logins = set((rec.get("login_roles") or {}).values())
        own_names = set([rec["owner_role"], rec["killer_role"]]) | logins
        for kind, name in record_names(rec):
            is_commander = kind == "commander_user"
            if helper_owner and name == helper_owner:
                problems.append("%s: %s %r is the fence helper's owner role (it holds pg_signal_backend); "
                                "choose another name" % (label, kind, name))
                continue
            if not is_commander and name in commanders:
                problems.append("%s: %s %r is a commander_user; commander_user must not be a role of any "
                                "Deployment" % (label, kind, name))
                continue
            fact = roles.get(name)
            if fact is None or is_commander:
                continue  # a new role is created with the model's attributes
            flags = _privileged(fact)
            if flags:
                problems.append("%s: %s %r exists and is %s; the model's roles must not hold these "
                                "attributes (commander_user would be granted its power)"
                                % (label, kind, name, "/".join(flags)))
                continue
            if fact["predefined"]:
                problems.append("%s: %s %r exists and is a member of predefined role(s) %s; refused "
                                "(commander_user or the fence would reach their power)"
                                % (label, kind, name, _listing(fact["predefined"])))
                continue
            if fact["privileged_groups"]:
                problems.append("%s: %s %r exists and is a member of privileged role(s) %s "
                                "(SUPERUSER/CREATEROLE/BYPASSRLS/REPLICATION); refused"
                                % (label, kind, name, _listing(fact["privileged_groups"])))
                continue
            if name == acting.get("name"):
                problems.append("%s: %s %r is the role this run connects as" % (label, kind, name))
                continue
            if not present:
                continue
            problems.extend(_belongs_elsewhere(label, kind, name, fact, rec, logins, owners, killers,
                                               commanders, own_names))
        if present:
            problems.extend(_database_problems(label, rec, databases.get(rec["database"]), acting,
                                               owners, commander_groups))
    return problems


def _belongs_elsewhere(label, kind, name, fact, rec, logins, owners, killers, commanders, own_names):
    out = []
    if kind == "owner role":
        if fact["member_of"]:
            out.append("%s: owner role %r exists and is a member of %s; the model's owner role holds no "
                       "role" % (label, name, _listing(fact["member_of"])))
        others = [d for d in fact["owns"] if d != rec["database"]]
        if others:
            out.append("%s: owner role %r exists and owns other database(s) %s; it belongs to another "
                       "Deployment or application" % (label, name, _listing(others)))
    elif kind == "schema role":
        # Every login role acts as the schema role in the metadata database, and provisioning
        # clears its attributes: it must be this Deployment's own, never a role that another
        # Deployment, an application or an administrator uses.
        members = [m for m in fact["members"] if m not in logins]
        if members:
            out.append("%s: schema role %r exists and is granted to %s, not only to this Deployment's "
                       "login roles; it belongs to another Deployment or application"
                       % (label, name, _listing(members)))
        if fact["member_of"]:
            out.append("%s: schema role %r exists and is a member of %s; the model's schema role holds no "
                       "role" % (label, name, _listing(fact["member_of"])))
        if fact["owns"]:
            out.append("%s: schema role %r exists and owns database(s) %s" % (label, name, _listing(fact["owns"])))
    elif kind == "killer role":
        extra = [g for g in fact["member_of"] if g not in logins]
        if extra:
            out.append("%s: killer role %r exists and is a member of %s, not login roles of this "
                       "Deployment; it belongs to another Deployment (the fence would terminate their "
                       "sessions)" % (label, name, _listing(extra)))
        if fact["owns"]:
            out.append("%s: killer role %r exists and owns database(s) %s" % (label, name, _listing(fact["owns"])))
    else:  # a login role
        members = [m for m in fact["members"] if m != rec["killer_role"]]
        if members:
            out.append("%s: %s %r exists and is granted to %s; a login role is granted only to its "
                       "Deployment's killer role (it belongs to another Deployment?)"
                       % (label, kind, name, _listing(members)))
        groups = [g for g in fact["member_of"] if (g in owners or g in killers or g in commanders)]
        if groups:
            out.append("%s: %s %r exists and is a member of %s (an owner, killer or commander role); "
                       "refused" % (label, kind, name, _listing(groups)))
    if kind in ("owner role", "killer role"):
        members = [m for m in fact["members"] if m not in commanders]
        if members:
            out.append("%s: %s %r exists and is granted to %s; the model grants it only to commander_user "
                       "(it belongs to another Deployment?)" % (label, kind, name, _listing(members)))
    return out


def _database_problems(label, rec, db, acting, owners, commander_groups):
    name = rec["database"]
    if name in SYSTEM_DATABASES or (db is not None and db["datistemplate"]):
        return ["%s: database %r is a system or template database; refused" % (label, name)]
    if name == acting.get("database"):
        return ["%s: database %r is the database this run connects to (where the fence helper lives); "
                "refused" % (label, name)]
    if db is None or db["owner"] == rec["owner_role"]:
        return []
    current = db["owner"]
    if current in owners and owners[current] != rec["id"]:
        return ["%s: database %r is owned by %r, the owner role of Deployment %r; refused"
                % (label, name, current, owners[current])]
    if current in commander_groups:
        return ["%s: database %r is owned by %r, a role granted to commander_user (another Deployment's "
                "owner role?); refused" % (label, name, current)]
    return []


def commander_warnings(records, facts):
    """A commander_user holding privileged attributes works but is not least privilege:
    warn (the collection does not refuse it; the failover may run as an admin anyway)."""
    out = []
    for name in sorted(set(rec["commander_user"] for rec in records)):
        fact = facts["roles"].get(name)
        if fact and (_privileged(fact) or fact["predefined"] or fact["privileged_groups"]):
            what = _privileged(fact) + fact["predefined"] + fact["privileged_groups"]
            out.append("commander_user %r holds %s; it needs none of it (the owner and killer roles suffice)"
                       % (name, "/".join(what)))
    return out


def admin_problems(facts, needs):
    """What a non-superuser admin lacks for the planned changes (pure); [] for a superuser.

    needs: {"create_roles": bool, "create_databases": [db], "admin_on": {role: why},
            "own_databases": {db: why}, "helper_predefined": bool}
    """
    acting = facts["acting"]
    if acting["superuser"]:
        return []
    who = acting["name"]
    out = []
    if (needs.get("create_roles") or needs.get("admin_on")) and not acting["createrole"]:
        out.append("the connecting role %r is not a superuser and lacks CREATEROLE (needed to create and "
                   "grant the Deployments' roles)" % who)
    if needs.get("create_databases") and not acting["createdb"]:
        out.append("the connecting role %r lacks CREATEDB (needed for CREATE DATABASE %s)"
                   % (who, _listing(needs["create_databases"])))
    for role, why in sorted((needs.get("admin_on") or {}).items()):
        fact = facts["roles"].get(role)
        if fact is not None and not fact["acting_admin"]:
            out.append("the connecting role %r lacks ADMIN OPTION on role %r (needed to %s); have its creator "
                       "or a superuser run GRANT %s TO %s WITH ADMIN TRUE, INHERIT FALSE, SET FALSE"
                       % (who, role, why, sql_quote(role), sql_quote(who)))
    for db, why in sorted((needs.get("own_databases") or {}).items()):
        fact = facts["databases"].get(db)
        if fact is not None and not fact["acting_owns"] and fact["owner"] not in (needs.get("borrowed") or ()):
            out.append("the connecting role %r does not own database %r and lacks the privileges of its owner "
                       "%r (needed to %s)" % (who, db, fact["owner"], why))
    if needs.get("helper_schema") and not acting["database_create"]:
        out.append("the connecting role %r lacks CREATE on database %r, where the fence helper's schema is "
                   "created; connect to a database it owns (dataplane_pg_database / login_db) or have the "
                   "owner GRANT CREATE ON DATABASE %s TO %s"
                   % (who, acting["database"], sql_quote(acting["database"]), sql_quote(who)))
    if needs.get("helper_predefined"):
        for column, role in (("admin_signal", "pg_signal_backend"), ("admin_stats", "pg_read_all_stats")):
            if not acting[column]:
                out.append("the connecting role %r lacks ADMIN OPTION on %s, which the fence helper's owner "
                           "role must be granted (on RDS/Aurora rds_superuser, on Cloud SQL cloudsqlsuperuser, "
                           "on Azure azure_pg_admin holds it)" % (who, role))
    return out


def sql_quote(name):
    """Double-quoted identifier for a message (never executed)."""
    return '"%s"' % name.replace('"', '""')


# ---------------------------------------------------------------------------------------------
# Borrowing a role for the length of a transaction (managed PostgreSQL).

BORROW_SQL = """
SELECT r.rolname,
       pg_catalog.pg_has_role(current_user, r.oid, 'USAGE') AND pg_catalog.pg_has_role(current_user, r.oid, 'SET')
         AS has_both,
       (SELECT ARRAY[a.inherit_option, a.set_option] FROM pg_catalog.pg_auth_members a
         WHERE a.roleid OPERATOR(pg_catalog.=) r.oid AND a.member OPERATOR(pg_catalog.=) me.oid AND a.grantor OPERATOR(pg_catalog.=) me.oid) AS own_row,
       pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION') AS admin
  FROM pg_catalog.pg_roles r, pg_catalog.pg_roles me
 WHERE r.rolname OPERATOR(pg_catalog.=) ANY (%(names)s::text[]) AND me.rolname OPERATOR(pg_catalog.=) current_user AND NOT me.rolsuper
"""


# A borrow that spans transactions (the schema role step's, schema_role._borrow) is recorded
# on the borrowed role itself, in the same transaction as the GRANT: its comment holds this
# marker and what to restore. If the
# run dies before giving the role back (a lost connection, a killed ansible-playbook), the next
# provision finds the marker and gives the role back first (schema_role.give_back_leftovers), and the audit
# names it meanwhile (audit: the borrowed_roles finding). COMMENT ON ROLE needs what the borrow needs
# (CREATEROLE and ADMIN on the role), and the previous comment is kept in the marker and put back.
BORROW_MARK = "dataplane.postgresql borrowed: "


def borrow_mark(comment):
    """The borrow recorded in a role's COMMENT (a dict: by, restore, comment), or None."""
    if not comment or not comment.startswith(BORROW_MARK):
        return None
    try:
        mark = json.loads(comment[len(BORROW_MARK):])
    except ValueError:
        return None
    if not isinstance(mark, dict) or not isinstance(mark.get("by"), str):
        return None
    restore = mark.get("restore")
    if restore is not None and not (isinstance(restore, list) and len(restore) == 2
                                    and all(isinstance(v, bool) for v in restore)):
        return None
    if mark.get("comment") is not None and not isinstance(mark["comment"], str):
        return None
    return mark


def borrow_statements(session, role_names, new_roles=(), with_own=False):
    """[(role, grant, give_back)]: the statements that let a non-superuser admin act as each
    role of ROLE_NAMES inside the current transaction. ``grant`` is ``GRANT r TO CURRENT_USER
    WITH INHERIT TRUE, SET TRUE``; ``give_back`` is ``REVOKE r FROM CURRENT_USER`` (it removes
    only the row this admin granted) or, when the admin already had a row of its own, a GRANT
    restoring that row's options. Empty for a superuser, and nothing for a role the admin
    already has SET and INHERIT on. NEW_ROLES (created in this transaction, possibly not yet,
    in check mode) count as roles the admin has no row on. WITH_OWN: each tuple has a fourth
    item, the options [inherit, set] of the admin's own row before (None: no row)."""
    names = sorted(set(role_names))
    if not names:
        return []
    superuser = session.rows("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user")[0]["rolsuper"]
    if superuser:
        return []
    found = dict((r["rolname"], r) for r in session.rows(BORROW_SQL, {"names": names}))
    me = sql.SQL("CURRENT_USER")
    out = []
    for name in names:
        row = found.get(name)
        if row is None and name not in new_roles:
            continue
        if row is not None and row["has_both"]:
            continue
        if row is not None and not row["admin"]:
            session.fail("the connecting role lacks ADMIN OPTION on role %r, which it must act as for this change "
                         "(ALTER ... OWNER TO / its objects' ACLs); have the role's creator run GRANT %s TO "
                         "<admin> WITH ADMIN TRUE, INHERIT FALSE, SET FALSE; nothing was changed by this step"
                         % (name, sql_quote(name)), missing_grant="ADMIN OPTION on %s" % name)
        role = sql.Identifier(name)
        grant = sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET TRUE").format(role, me)
        own = row["own_row"] if row is not None else None
        if own is None:
            back = sql.SQL("REVOKE {} FROM {}").format(role, me)
        else:
            back = sql.SQL("GRANT {} TO {} WITH INHERIT {}, SET {}").format(
                role, me, sql.SQL("TRUE" if own[0] else "FALSE"), sql.SQL("TRUE" if own[1] else "FALSE"))
        out.append((name, grant, back, own) if with_own else (name, grant, back))
    return out


def plan_needs(actions, grants, current_rows, acting_grantor, new_roles, fence_helper, helper_owner_exists):
    """What the planned changes ask of a non-superuser admin (pure), for admin_problems.

    actions: (dep index, action tuple) as planned by deployment_setup; grants: membership
    grant dicts; current_rows: pg_auth_members rows {group, member, grantor} now."""
    needs = {"create_roles": False, "create_databases": [], "admin_on": {}, "own_databases": {},
             "helper_predefined": bool(fence_helper and not helper_owner_exists)}
    new_dbs = set()
    for dummy, action in actions:
        kind = action[0]
        if kind == "create_role":
            needs["create_roles"] = True
        elif kind == "create_database":
            needs["create_databases"].append(action[1])
            new_dbs.add(action[1])
        elif kind in ("alter_role", "set_password", "drop_role") and action[1] not in new_roles:
            needs["admin_on"].setdefault(action[1], {"alter_role": "ALTER ROLE it", "set_password": "set its password",
                                                     "drop_role": "DROP ROLE it"}[kind])
        elif kind == "alter_database_owner":
            if action[2] not in new_roles:
                needs["admin_on"].setdefault(action[2], "make it a database owner (SET ROLE, borrowed for the "
                                                        "transaction)")
            if action[1] not in new_dbs:
                needs["own_databases"].setdefault(action[1], "ALTER DATABASE ... OWNER TO %s" % action[2])
    have = set((r["group"], r["member"]) for r in current_rows if r["grantor"] == acting_grantor)
    for grant in grants:
        if (grant["group"], grant["target_role"]) not in have and grant["group"] not in new_roles:
            needs["admin_on"].setdefault(grant["group"], "grant it to %s" % grant["target_role"])
    return needs
