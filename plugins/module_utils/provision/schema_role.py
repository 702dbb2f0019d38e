# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared schema role: Airflow works (migrations included) the same on either plane.

Per Deployment a NOLOGIN role (``airflow_db_{id}_schema`` by default) owns Airflow's objects
and holds USAGE and CREATE on the Airflow schema (``public`` by default). Every login role is
a member ``WITH INHERIT FALSE, SET TRUE, ADMIN FALSE`` and has it as its role in the metadata
database (``ALTER ROLE <login> IN DATABASE <db> SET role = '<schema role>'``), so whatever
plane runs ``airflow db migrate`` creates objects owned by the schema role, which the other
plane can use and migrate after a failover.

Why SET TRUE and INHERIT FALSE: the per-database role setting needs SET (PostgreSQL checks
it when the session starts); without INHERIT, a session that leaves the schema role
(``SET ROLE NONE``) has no privilege on Airflow's objects and cannot create any in the
schema, so it fails loudly instead of creating objects owned by one plane's login role.
``RESET ROLE`` and ``DISCARD ALL`` (poolers) go back to the schema role. The schema role is
never a member of the owner or killer role and never granted to ``commander_user``: the
orchestrator keeps no access to Airflow's data.

This file has the pure planning (unit-tested without a server) and the few functions that
run it (``converge``), used by the deployment_setup module. Role, membership and role setting
statements use the module's connection; the schema privileges (and the optional hand-over
of objects owned by a login role) need one short connection to each metadata database.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..server.role_settings import (
    MEMBERSHIP_OPTIONS,
    ROLES_QUERY,
    SETTINGS_QUERY,
    effective_role_setting,
    setting_value,
)

import json

from ansible.module_utils.common.text.converters import to_native
from ..base import database as _database
from ..server import role_checks as _role_checks
from ..base import workers as _workers

# Attributes the schema role must not have (pg_roles column -> keyword that clears it).
FORBIDDEN_ATTRIBUTES = (("rolcanlogin", "NOLOGIN"), ("rolsuper", "NOSUPERUSER"), ("rolcreatedb", "NOCREATEDB"),
                        ("rolcreaterole", "NOCREATEROLE"), ("rolreplication", "NOREPLICATION"),
                        ("rolbypassrls", "NOBYPASSRLS"))
SCHEMA_PRIVILEGES = ("USAGE", "CREATE")
# Threads (one connection each at a time) for the step inside the metadata databases; a new
# connection costs the server a few ms, so a rerun at 200 Deployments spends most of this
# step waiting on connections. The measurement: benchmarks/README.md (provision rerun).
SCHEMA_WORKERS = 4


def wanted(record):
    """Whether RECORD (a deployment_model record) asks for a schema role."""
    return bool(record.get("schema_role"))


def grants_for(record):
    """The membership grants (memberships.converge_grants format) the schema role needs:
    every login role a member with MEMBERSHIP_OPTIONS; never a member of the owner or killer
    role, never granted to commander_user (those are revoked when PostgreSQL shows them)."""
    schema_role = record["schema_role"]
    grants = []
    for plane in sorted(record["login_roles"]):
        grant = {"group": schema_role, "target_role": record["login_roles"][plane],
                 "granted_by": None, "state": "present"}
        grant.update(MEMBERSHIP_OPTIONS)
        grants.append(grant)
    return grants


def forbidden_pairs(record):
    """(group, member) memberships that must not exist."""
    schema_role = record["schema_role"]
    return [(record["owner_role"], schema_role), (record["killer_role"], schema_role),
            (schema_role, record["commander_user"])]


def plan_shared(records, catalog, check_mode):
    """Statements on shared catalogs (roles, role settings) for the present RECORDS. Pure.

    catalog: {"roles": {name: {pg_roles attribute columns}}, "settings": [{rolname, datname,
    setconfig}], "databases": set of names that exist (or will, in check mode)}.
    Returns [(record index, ("create_role"|"alter_role"|"set_role_setting", ...))].
    """
    actions = []
    for index, rec in enumerate(records):
        if rec.get("state", "present") != "present" or not wanted(rec):
            continue
        name = rec["schema_role"]
        current = catalog["roles"].get(name)
        if current is None:
            actions.append((index, ("create_role", name)))
        else:
            fixes = [word for column, word in FORBIDDEN_ATTRIBUTES if current.get(column)]
            if fixes:
                actions.append((index, ("alter_role", name, fixes)))
        for plane in sorted(rec["login_roles"]):
            login = rec["login_roles"][plane]
            found = effective_role_setting(catalog["settings"], login, rec["database"])
            specific = [r for r in catalog["settings"] if r["rolname"] == login and r.get("datname") == rec["database"]]
            if found != name or not any(setting_value(r.get("setconfig")) == name for r in specific):
                actions.append((index, ("set_role_setting", login, rec["database"], name)))
    return actions


def plan_database(record, facts, reassign_owned):
    """Statements to run inside RECORD's database. Pure.

    facts: {"schema_exists": bool, "privileges": set of privilege names the schema role holds
    directly on the schema, "owned": {login: [object descriptions]}, "shared_owned":
    {login: [descriptions]}} or None when the database does not exist yet (check mode).
    Returns (actions, problems, warnings).
    """
    schema, role = record["airflow_schema"], record["schema_role"]
    actions, problems, warnings = [], [], []
    if facts is None or not facts["schema_exists"]:
        if facts is not None or schema != "public":  # a new database has schema public
            actions.append(("create_schema", schema))
        missing = list(SCHEMA_PRIVILEGES)
    else:
        missing = [p for p in SCHEMA_PRIVILEGES if p not in facts["privileges"]]
    if missing:
        actions.append(("grant_schema", schema, role, missing))
    owned = dict((k, v) for k, v in ((facts or {}).get("owned") or {}).items() if v)
    if owned:
        described = "; ".join(
            "%s owns %d: %s%s" % (login, len(objs), ", ".join(objs[:10]), ", ..." if len(objs) > 10 else "")
            for login, objs in sorted(owned.items()))
        if not reassign_owned:
            warnings.append("Deployment %r: objects in %s are owned by a login role, so the other plane "
                            "cannot use or migrate them (%s); set dataplane_schema_reassign_owned "
                            "(reassign_owned) to hand them to %s" % (record["id"], record["database"],
                                                                     described, role))
        else:
            shared = dict((k, v) for k, v in ((facts or {}).get("shared_owned") or {}).items() if v)
            if shared:
                problems.append("Deployment %r: cannot hand the objects of %s to %s with REASSIGN OWNED: "
                                "the login role(s) also own shared objects (%s), which it would move too"
                                % (record["id"], ", ".join(sorted(owned)), role,
                                   "; ".join("%s: %s" % (k, ", ".join(v)) for k, v in sorted(shared.items()))))
            else:
                actions.append(("reassign_owned", sorted(owned), role))
    return actions, problems, warnings


# Before a decommission hands the schema role's objects to the admin (REASSIGN OWNED), the
# code among them that would then run with the new owner's privileges for whoever calls it is
# made to run with the caller's: SECURITY DEFINER functions and procedures become SECURITY
# INVOKER, views get security_invoker, and rules on its tables are disabled (a rule's actions
# are checked with the table owner's privileges). Written by the tenant, they would otherwise
# run as the admin (a superuser) for the login roles that keep CONNECT on the kept database.
# One DO block, run in that database (hostile ground: everything qualified, names formatted by
# the server). Nothing is dropped: the new owner may enable what it trusts.
DISARM_SQL = """DO $dataplane_disarm$
DECLARE
  v_owner pg_catalog.oid := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) {role});
  v_routine pg_catalog.regprocedure;
  v_view pg_catalog.regclass;
  v_rule record;
BEGIN
  FOR v_routine IN SELECT p.oid FROM pg_catalog.pg_proc p
                    WHERE p.proowner OPERATOR(pg_catalog.=) v_owner AND p.prosecdef LOOP
    EXECUTE pg_catalog.format('ALTER ROUTINE %s SECURITY INVOKER', v_routine);
  END LOOP;
  FOR v_view IN SELECT c.oid FROM pg_catalog.pg_class c
                 WHERE c.relowner OPERATOR(pg_catalog.=) v_owner AND c.relkind OPERATOR(pg_catalog.=) 'v' LOOP
    EXECUTE pg_catalog.format('ALTER VIEW %s SET (security_invoker = true)', v_view);
  END LOOP;
  FOR v_rule IN SELECT w.ev_class::pg_catalog.regclass AS rel, w.rulename
                  FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) w.ev_class
                 WHERE c.relowner OPERATOR(pg_catalog.=) v_owner AND c.relkind OPERATOR(pg_catalog.<>) 'v'
                   AND w.ev_enabled OPERATOR(pg_catalog.<>) 'D' LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE RULE %I', v_rule.rel, v_rule.rulename);
  END LOOP;
END
$dataplane_disarm$"""


def action_sql(sql, action):
    """The composed statement for one action (names quoted, never interpolated)."""
    kind = action[0]
    ident = sql.Identifier
    if kind == "create_role":
        return sql.SQL("CREATE ROLE {} NOLOGIN").format(ident(action[1]))
    if kind == "alter_role":
        return sql.SQL("ALTER ROLE {} " + " ".join(action[2])).format(ident(action[1]))
    if kind == "set_role_setting":
        return sql.SQL("ALTER ROLE {} IN DATABASE {} SET role = {}").format(
            ident(action[1]), ident(action[2]), sql.Literal(action[3]))
    if kind == "reset_role_setting":
        return sql.SQL("ALTER ROLE {} IN DATABASE {} RESET role").format(ident(action[1]), ident(action[2]))
    if kind == "create_schema":
        return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(action[1]))
    if kind == "grant_schema":
        return sql.SQL("GRANT {} ON SCHEMA {} TO {}").format(
            sql.SQL(", ").join(sql.SQL(p) for p in action[3] if p in SCHEMA_PRIVILEGES),
            ident(action[1]), ident(action[2]))
    if kind == "reassign_owned":
        return sql.SQL("REASSIGN OWNED BY {} TO {}").format(
            sql.SQL(", ").join(ident(n) for n in action[1]), ident(action[2]))
    if kind == "drop_owned":
        return sql.SQL("DROP OWNED BY {}").format(ident(action[1]))
    if kind == "disarm_owned":
        return sql.SQL(DISARM_SQL).format(role=sql.Literal(action[1]))
    if kind == "drop_role":
        return sql.SQL("DROP ROLE {}").format(ident(action[1]))
    raise ValueError("unknown schema role action %r" % (kind,))


def state_of(record, catalog, db_facts, memberships):
    """What diff mode shows for RECORD's schema role."""
    name = record.get("schema_role")
    role = catalog["roles"].get(name)
    logins = [record["login_roles"][p] for p in sorted(record["login_roles"])]
    members = sorted("%s (inherit %s, set %s, admin %s)" % (
        r["member"], _flag(r.get("inherit_option")), _flag(r.get("set_option")), _flag(r.get("admin_option")))
        for r in memberships if r["group"] == name)
    return {
        "name": name,
        "exists": role is not None,
        "attributes": sorted(w for c, w in FORBIDDEN_ATTRIBUTES if role and role.get(c)),
        "members": members,
        "role_settings": dict((login, effective_role_setting(catalog["settings"], login, record["database"]))
                              for login in logins),
        "schema": record.get("airflow_schema"),
        "schema_privileges": sorted((db_facts or {}).get("privileges") or []),
    }


class _ByRole(object):
    """A catalog and membership rows grouped by role once, so that the state of each of many
    records is built from its own rows (state_of filters by role: same result, no scan of
    every row per record)."""

    def __init__(self, catalog, memberships):
        self._catalog = catalog
        self._settings, self._members = {}, {}
        for row in catalog["settings"]:
            self._settings.setdefault(row["rolname"], []).append(row)
        for row in memberships:
            self._members.setdefault(row["group"], []).append(row)

    def catalog(self, record):
        settings = []
        for login in sorted(set(record["login_roles"].values())):
            settings.extend(self._settings.get(login, ()))
        return dict(self._catalog, settings=settings)

    def members(self, record):
        return self._members.get(record.get("schema_role"), [])


def _flag(value):
    return "?" if value is None else ("true" if value else "false")


# --------------------------------------------------------------------------- server side

DATABASES_QUERY = "SELECT d.datname FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) ANY(%s)"
# Inside one metadata database, in one round trip: the schema, the schema role's direct
# privileges on it, and what the login roles own here (pg_shdepend, deptype 'o') and in shared
# catalogs (dbid 0), as three arrays in the same order (login role, object description).
DATABASE_QUERY = """
SELECT n.oid IS NOT NULL AS schema_exists,
       COALESCE((SELECT pg_catalog.array_agg(DISTINCT a.privilege_type::text)
                   FROM pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
                   JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantee
                  WHERE g.rolname OPERATOR(pg_catalog.=) %(role)s), '{}') AS privileges,
       o.rolnames AS owned_by, o.shared AS owned_shared, o.objects AS owned_objects
  FROM (SELECT 1) AS one
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) %(schema)s
 CROSS JOIN (
       SELECT pg_catalog.array_agg(x.rolname::text ORDER BY x.rolname, x.object, x.shared) AS rolnames,
              pg_catalog.array_agg(x.shared ORDER BY x.rolname, x.object, x.shared) AS shared,
              pg_catalog.array_agg(x.object ORDER BY x.rolname, x.object, x.shared) AS objects
         FROM (SELECT r.rolname, (sd.dbid OPERATOR(pg_catalog.=) 0) AS shared,
                      pg_catalog.pg_describe_object(sd.classid, sd.objid, sd.objsubid) AS object
                 FROM pg_catalog.pg_shdepend sd
                 JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) sd.refobjid
                WHERE sd.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass AND sd.deptype OPERATOR(pg_catalog.=) 'o'
                  AND r.rolname OPERATOR(pg_catalog.=) ANY(%(logins)s)
                  AND sd.dbid OPERATOR(pg_catalog.=) ANY (ARRAY[0, (SELECT d.oid FROM pg_catalog.pg_database d
                                       WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())])) x) o
"""


# Most metadata databases need only this: does the schema exist, and which privileges does the
# schema role (by oid, read on the module's connection) hold on it directly.
SCHEMA_QUERY = """
SELECT n.oid IS NOT NULL AS schema_exists,
       COALESCE((SELECT pg_catalog.array_agg(DISTINCT a.privilege_type::text)
                   FROM pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
                  WHERE a.grantee OPERATOR(pg_catalog.=) %(role_oid)s::pg_catalog.oid), '{}') AS privileges
  FROM (SELECT 1) AS one
  LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) %(schema)s
"""
# Where the login roles own objects: pg_shdepend is a shared catalog, so one query on the
# module's connection covers every database (dbid 0: shared objects). Only a metadata database
# where a login role owns something needs DATABASE_QUERY, which describes the objects there.
OWNERS_QUERY = """
SELECT r.rolname, d.datname
  FROM pg_catalog.pg_shdepend sd
  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) sd.refobjid
  JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) sd.dbid
 WHERE sd.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass AND sd.deptype OPERATOR(pg_catalog.=) 'o'
   AND r.rolname OPERATOR(pg_catalog.=) ANY(%(logins)s) AND d.datname OPERATOR(pg_catalog.=) ANY(%(databases)s)
 GROUP BY r.rolname, d.datname
"""
ROLE_OIDS_QUERY = "SELECT r.rolname, r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%s)"


def _login_names(records):
    return sorted(set(n for r in records for n in r["login_roles"].values()))


def read_owners(session, records):
    """{database: set of login roles that own objects in it} for RECORDS (one query)."""
    owners = {}
    for row in session.rows(OWNERS_QUERY, {"logins": _login_names(records),
                                           "databases": sorted(set(r["database"] for r in records))}):
        owners.setdefault(row["datname"], set()).add(row["rolname"])
    return owners


def owns_objects_in(record, owners):
    """Whether a login role of RECORD owns objects in its database (read_owners' answer)."""
    return bool(owners.get(record["database"], set()) & set(record["login_roles"].values()))


def read_shared(session, records):
    logins = _login_names(records)
    roles = dict((row["rolname"], row) for row in session.rows(
        ROLES_QUERY, {"roles": sorted(set(r["schema_role"] for r in records if wanted(r)))}))
    settings = session.rows(SETTINGS_QUERY, {"logins": logins, "databases": sorted(set(r["database"] for r in records))})
    databases = set(row["datname"] for row in session.rows(
        DATABASES_QUERY, (sorted(set(r["database"] for r in records)),)))
    return {"roles": roles, "settings": settings, "databases": databases}


def read_database(db_session, record, role_oid=None, owned_here=True):
    """The facts plan_database needs, read over a Session connected to RECORD's database
    (one query). OWNED_HERE False (read_owners found no object of RECORD's login roles in the
    database): only the schema and the privileges of the schema role (ROLE_OID) are read."""
    if not owned_here:
        facts = db_session.rows(SCHEMA_QUERY, {"role_oid": role_oid, "schema": record["airflow_schema"]})[0]
        return {"schema_exists": bool(facts["schema_exists"]), "privileges": set(facts["privileges"] or []),
                "owned": {}, "shared_owned": {}}
    logins = [record["login_roles"][p] for p in sorted(record["login_roles"])]
    facts = db_session.rows(DATABASE_QUERY, {"role": record["schema_role"], "schema": record["airflow_schema"],
                                             "logins": logins})[0]
    owned, shared = {}, {}
    for login, is_shared, description in zip(facts["owned_by"] or (), facts["owned_shared"] or (),
                                             facts["owned_objects"] or ()):
        (shared if is_shared else owned).setdefault(login, []).append(description)
    return {"schema_exists": bool(facts["schema_exists"]), "privileges": set(facts["privileges"] or []),
            "owned": owned, "shared_owned": shared}


def converge(module, session, records, options, check_mode, sql, memberships):
    """Converge the schema role of every record; the caller's session is in autocommit.

    options: reassign_owned (bool), decommission_owner (str or None: the connecting role),
    dropped_databases (names the caller dropped), all_grantors (bool: memberships judged across
    every grantor's rows, see memberships.converge_grants). Returns a dict with changed, statements,
    per_deployment ({index: [texts]}), before/after ({index: state}), warnings.
    Fails the module (through session.fail) on any error.
    """
    run = _SchemaRoleRun(module, session, records, options, check_mode, sql, memberships)
    if not run.present and not run.absent:
        return run.out
    # 0. A borrow an earlier run left behind (it died before giving it back) is given back first.
    left_over, notes = give_back_leftovers(session, records, check_mode)
    for index in sorted(left_over):
        for text in left_over[index]:
            run.log(index, text)
    run.out["warnings"].extend(notes)
    run.catalog = read_shared(session, records)
    run.before_members = memberships.read_memberships(session, run.schema_roles())
    run.shared()
    run.databases()
    run.decommission()
    session.conn.autocommit = True
    run.before_after()
    run.out["changed"] = bool(run.out["statements"])
    session.queries.extend(run.out["statements"])
    return run.out


def membership_grants(present):
    """The grants (memberships.converge_grants) of the present Deployments' schema roles: the
    login roles as members (grants_for), the forbidden pairs revoked. Pure."""
    grants = []
    for dummy, rec in present:
        grants.extend(grants_for(rec))
        for group, member in forbidden_pairs(rec):
            grants.append({"group": group, "target_role": member, "state": "absent", "granted_by": None,
                           "inherit_option": None, "set_option": None, "admin_option": None})
    return grants


def plan_decommission(record, catalog, dropped_databases):
    """The actions that remove RECORD's schema role: the kept login roles' role setting in its
    database reset, then the role dropped; none when the role does not exist. Pure."""
    if catalog["roles"].get(record["schema_role"]) is None:
        return []
    actions = []
    if record["database"] in catalog["databases"] and record["database"] not in dropped_databases:
        for plane in sorted(record["login_roles"]):
            login = record["login_roles"][plane]
            if (not record.get("drop_login_roles")
                    and any(r["rolname"] == login and r.get("datname") == record["database"]
                            and setting_value(r.get("setconfig")) is not None for r in catalog["settings"])):
                actions.append(("reset_role_setting", login, record["database"]))
    actions.append(("drop_role", record["schema_role"]))
    return actions


class _SchemaRoleRun(object):
    """One converge call: what it read, the facts per Deployment and its result, and its steps
    in the order they run (shared, databases, decommission, before_after)."""

    def __init__(self, module, session, records, options, check_mode, sql, memberships):
        self.module, self.session, self.records, self.options = module, session, records, options
        self.check_mode, self.sql, self.memberships = check_mode, sql, memberships
        self.present = [(i, r) for i, r in enumerate(records) if r.get("state", "present") == "present" and wanted(r)]
        self.absent = [(i, r) for i, r in enumerate(records) if r.get("state") == "absent" and wanted(r)]
        self.out = {"changed": False, "statements": [], "per_deployment": {}, "before": {}, "after": {},
                    "warnings": []}
        self.catalog = None
        self.before_members = None
        self.membership_result = {}
        self.db_facts, self.db_before = {}, {}  # per record index: the facts after the step / as first read

    def log(self, index, text):
        self.out["per_deployment"].setdefault(index, []).append(text)
        self.out["statements"].append(text)

    def schema_roles(self):
        return sorted(set(r["schema_role"] for dummy, r in self.present + self.absent))

    def dropped(self):
        return self.options.get("dropped_databases") or ()

    def shared(self):
        """Step 1. Shared catalogs (roles, memberships, role settings): one transaction."""
        session, check_mode, catalog = self.session, self.check_mode, self.catalog
        with session.transaction(check_mode, "schema role set-up failed, its transaction was rolled back: %s"):
            shared_actions = plan_shared([r if (i, r) in self.present else dict(r, state="absent")
                                          for i, r in enumerate(self.records)], catalog, check_mode)
            for index, action in shared_actions:
                if action[0] == "set_role_setting" and action[2] not in catalog["databases"] and not check_mode:
                    continue  # the caller failed to create it; reported by the caller
                _run(session, check_mode, action_sql(self.sql, action), self.log, index)
            grants = membership_grants(self.present)
            first = len(session.queries)
            result = self.membership_result = self.memberships.converge_grants(
                session, grants, check_mode, fail_on_missing=not check_mode,
                all_grantors=self.options.get("all_grantors", False)) if grants else {"statements": []}
            for text in result.get("statements") or []:
                for index, rec in self.present:
                    if session.render(self.sql.Identifier(rec["schema_role"])) in text:
                        self.log(index, text)
                        break
            del session.queries[first:]  # logged above, per Deployment
            for remaining in result.get("remaining") or []:
                self.out["warnings"].append(
                    "membership %s -> %s is still held through grantor(s) %s; revoke it as them"
                    % (remaining["target_role"], remaining["group"], ", ".join(remaining["grantors"])))

    def databases(self):
        """Step 2. Inside each metadata database: schema privileges, optional hand-over, decommission."""
        session = self.session
        # First, on the shared catalogs: where the login roles own objects, and the schema roles'
        # oids, in a transaction ended at once (nothing stays open on this connection while the
        # databases are visited).
        reachable = [r for dummy, r in self.present + self.absent if r["database"] in self.catalog["databases"]
                     and r["database"] not in self.dropped()]
        reached = [r for r in reachable if r.get("state", "present") == "present"]
        owners, role_oids = {}, {}
        if reached:
            owners = read_owners(session, reached)
            role_oids = dict((row["rolname"], row["oid"]) for row in session.rows(
                ROLE_OIDS_QUERY, (sorted(set(rec["schema_role"] for rec in reached)),)))
            session.rollback()
        # A non-superuser admin (managed PostgreSQL) can neither connect to a metadata database
        # (CONNECT is the planes' and the owner's only) nor grant on its schema or reassign the
        # schema role's objects: it borrows the owner and schema roles (WITH INHERIT, SET; it holds
        # ADMIN on them) in a committed transaction for this step, and gives them back afterwards,
        # also when the step fails.
        borrowed = _borrow(session, reachable, self.check_mode)
        try:
            problems = _converge_databases(self.module, session, self.present, self.absent, self.catalog,
                                           self.options, self.check_mode, self.sql, self.db_facts, self.db_before,
                                           self.log, self.out["warnings"], owners, role_oids)
        finally:
            _give_back(session, borrowed)
        if problems:
            session.fail("schema role set-up failed (changes in other databases stay, a rerun converges):\n- "
                         + "\n- ".join(problems), problems=problems)

    def decommission(self):
        """Step 3. Decommission: reset the kept login roles' setting, then drop the schema role."""
        with self.session.transaction(self.check_mode,
                                      "dropping the schema role failed, its transaction was rolled back: %s"):
            for index, rec in self.absent:
                for action in plan_decommission(rec, self.catalog, self.dropped()):
                    _run(self.session, self.check_mode, action_sql(self.sql, action), self.log, index)

    def before_after(self):
        """Before and after, per Deployment (after = predicted in check mode)."""
        catalog, before_members = self.catalog, self.before_members
        if self.check_mode:
            after_catalog = _predict(catalog, self.records, self.present, self.absent)
            after_members = _predict_members(before_members, self.present, self.absent)
        elif not self.out["statements"] and not self.membership_result.get("statements"):
            # Nothing ran (a rerun with nothing to do): the shared catalogs read before are the state after.
            after_catalog, after_members = catalog, before_members
        else:
            after_catalog = read_shared(self.session, self.records)
            after_members = self.memberships.read_memberships(self.session, self.schema_roles())
        before_view, after_view = _ByRole(catalog, before_members), _ByRole(after_catalog, after_members)
        for index, rec in self.present + self.absent:
            before = state_of(rec, before_view.catalog(rec),
                              self.db_before.get(index, self.db_facts.get(index)), before_view.members(rec))
            after_facts = _after_facts(rec, self.db_facts.get(index), self.out["per_deployment"].get(index),
                                       self.check_mode)
            after = state_of(rec, after_view.catalog(rec), after_facts, after_view.members(rec))
            self.out["before"][index], self.out["after"][index] = before, after


def _converge_databases(module, session, present, absent, catalog, options, check_mode, sql, db_facts, db_before,
                        log, warnings_out, owners, role_oids):
    """Step 2 of converge: one short connection per metadata database, spread over up to
    SCHEMA_WORKERS threads (workers.run_jobs). OWNERS (read_owners) decides which databases
    get the light query (SCHEMA_QUERY, with the schema role's oid from ROLE_OIDS) and which the
    one that describes the login roles' objects (DATABASE_QUERY). Logs, facts, warnings and
    problems are passed on in record order once every database is done, as a sequential run
    would. Returns the problems (and adds warnings to WARNINGS_OUT)."""
    dropped = options.get("dropped_databases") or ()
    steps, jobs = [], []
    for index, rec in present + absent:
        step = _DatabaseStep(index, rec, role_oids.get(rec["schema_role"]), owns_objects_in(rec, owners))
        steps.append(step)
        if rec["database"] not in catalog["databases"]:
            if rec.get("state", "present") == "present":
                for action in plan_database(rec, None, options.get("reassign_owned"))[0]:
                    step.texts.append(session.render(action_sql(sql, action)))
        elif rec["database"] not in dropped:
            jobs.append(lambda dummy, step=step: step.run(module, catalog, options, check_mode, sql))
    outcomes = _workers.run_jobs(jobs, [None] * _workers.thread_count(len(jobs), SCHEMA_WORKERS))
    problems = []
    for outcome in outcomes:
        if outcome.error is not None:  # a bug, not the server's answer (run() catches those)
            problems.append("schema role step failed: %s" % to_native(outcome.error))
    for step in steps:
        for text in step.texts:
            log(step.index, text)
        if step.facts is not None:
            db_facts[step.index] = step.facts
            db_before[step.index] = step.before_facts
        warnings_out.extend(step.warnings)
        problems.extend(step.problems)
        for text in step.module_warnings:
            module.warn(text)
    return problems


class _DatabaseStep(object):
    """The work inside one metadata database, for one record; run in a worker thread. It
    never fails the module: what happened is kept here (statements run, facts, warnings,
    problems) for the module's thread."""

    def __init__(self, index, record, role_oid=None, owned_here=True):
        self.index, self.record = index, record
        self.role_oid, self.owned_here = role_oid, owned_here
        self.texts, self.warnings, self.problems, self.module_warnings = [], [], [], []
        self.facts = self.before_facts = None  # after the run / as first read (diff mode's before)

    def run(self, module, catalog, options, check_mode, sql):
        rec = self.record
        database = rec["database"]
        stand_in = _database.ThreadModule(module)
        try:
            db_session = _database.thread_database_session(stand_in, database)
        except Exception as exc:
            self.problems.append("Deployment %r: cannot connect to %s: %s" % (rec["id"], database, to_native(exc)))
            return
        finally:
            self.module_warnings.extend(stand_in.warnings)

        def log(dummy, text):
            self.texts.append(text)

        try:
            if rec.get("state", "present") == "present":
                facts = self.facts = self.before_facts = read_database(db_session, rec, self.role_oid,
                                                                       self.owned_here)
                actions, found, warnings = plan_database(rec, facts, options.get("reassign_owned"))
                self.warnings.extend(warnings)
                if found:
                    self.problems.extend(found)
                    return
            else:
                exists = catalog["roles"].get(rec["schema_role"]) is not None
                if not exists:
                    return
                new_owner = options.get("decommission_owner") or db_session.rows("SELECT current_user AS u")[0]["u"]
                actions = [("disarm_owned", rec["schema_role"]), ("reassign_owned", [rec["schema_role"]], new_owner),
                           ("drop_owned", rec["schema_role"])]
            if not actions:
                return  # only read: closing the connection ends its transaction, no round trip
            for action in actions:
                _run(db_session, check_mode, action_sql(sql, action), log, self.index)
            db_session.end_transaction(check_mode)
            if rec.get("state", "present") == "present" and actions and not check_mode:
                self.facts = read_database(db_session, rec, self.role_oid, self.owned_here)
                db_session.rollback()
        except Exception as exc:
            self.problems.append("Deployment %r: in database %s: %s" % (rec["id"], database, to_native(exc).strip()))
        finally:
            db_session.close()


# A borrow that spans transactions (this step's) is recorded on the borrowed role itself
# (role_checks.BORROW_MARK), in the same transaction as the GRANT.
ROLE_COMMENTS_QUERY = ("SELECT r.rolname, pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment"
                       " FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY (%s::text[])")


def _comment_sql(role, text):
    return _database.sql.SQL("COMMENT ON ROLE {} IS {}").format(
        _database.sql.Identifier(role), _database.sql.Literal(text) if text is not None else _database.sql.SQL("NULL"))


def _borrow(session, records, check_mode):
    """Let a non-superuser admin act as the owner and schema roles of RECORDS (committed, so the
    connections to their databases see it), each borrow recorded on the role (BORROW_MARK).
    Returns what to give back; nothing for a superuser. In check mode the schema role may not
    exist yet: only the owner roles are borrowed then."""
    names = set()
    for rec in records:
        names.add(rec["owner_role"])
        if rec.get("schema_role"):
            names.add(rec["schema_role"])
    comments = dict((r["rolname"], r["comment"]) for r in session.rows(ROLE_COMMENTS_QUERY, (sorted(names),)))
    pairs = _role_checks.borrow_statements(session, sorted(names & set(comments)), with_own=True)
    me = session.rows("SELECT current_user::text AS me")[0]["me"] if pairs else None
    out, statements = [], []
    for name, grant, back, own in pairs:
        previous = comments.get(name)
        mark = {"by": me, "restore": list(own) if own is not None else None, "comment": previous}
        statements += [grant, _comment_sql(name, _role_checks.BORROW_MARK + json.dumps(mark, sort_keys=True))]
        out.append((name, back, previous))
    session.execute_many(statements, log=False)
    session.commit()
    return out


def _give_back(session, borrowed):
    statements = []
    for name, back, previous in borrowed:
        statements += [back, _comment_sql(name, previous)]
    session.execute_many(statements, log=False)
    session.commit()


def give_back_leftovers(session, records, check_mode):
    """Give back the borrows that an earlier run recorded and never gave back (BORROW_MARK on an
    owner or schema role of RECORDS), in one committed transaction (nothing in check mode).
    Returns (per record index: statements, warnings). A borrow recorded by another role is given
    back when this role may act as its grantor (a superuser, or that role itself); otherwise it
    is only reported."""
    roles = {}
    for index, rec in enumerate(records):
        for name in (rec["owner_role"], rec.get("schema_role")):
            if name:
                roles.setdefault(name, index)
    found = [(r["rolname"], _role_checks.borrow_mark(r["comment"])) for r in session.rows(ROLE_COMMENTS_QUERY, (sorted(roles),))]
    found = [(name, mark) for name, mark in found if mark is not None]
    per_record, warnings = {}, []
    if not found:
        return per_record, warnings
    me = session.rows("SELECT current_user::text AS me, r.rolsuper FROM pg_catalog.pg_roles r"
                      " WHERE r.rolname OPERATOR(pg_catalog.=) current_user")[0]
    statements = []
    for name, mark in sorted(found):
        who = mark["by"]
        if who != me["me"] and not me["rolsuper"]:
            warnings.append("role %s was borrowed by %s during a provision that did not finish (%s still holds "
                            "INHERIT and SET on it); run provision as %s or as a superuser to give it back"
                            % (name, who, who, who))
            continue
        role, member = _database.sql.Identifier(name), _database.sql.Identifier(who)
        if mark["restore"] is None:
            back = _database.sql.SQL("REVOKE {} FROM {} GRANTED BY {}").format(role, member, member)
        else:
            back = _database.sql.SQL("GRANT {} TO {} WITH INHERIT {}, SET {} GRANTED BY {}").format(
                role, member, _database.sql.SQL("TRUE" if mark["restore"][0] else "FALSE"),
                _database.sql.SQL("TRUE" if mark["restore"][1] else "FALSE"), member)
        texts = [session.render(back), session.render(_comment_sql(name, mark.get("comment")))]
        statements += texts
        per_record.setdefault(roles[name], []).extend(texts)
        warnings.append("role %s was still borrowed by %s (INHERIT and SET) from a provision that did not finish: %s"
                        % (name, who, "given back now" if not check_mode else "it would be given back (check mode)"))
    if statements and not check_mode:
        session.execute_many(statements, log=False)
        session.commit()
    return per_record, warnings


def _run(session, check_mode, statement, log, index):
    """Run STATEMENT (not in check mode) and LOG(INDEX, its text); the text stays out of the
    session's queries (converge adds them per Deployment)."""
    log(index, session.render(statement) if check_mode else session.execute(statement, log=False))


def _after_facts(rec, facts, texts, check_mode):
    if not check_mode or rec.get("state", "present") != "present":
        return facts if rec.get("state", "present") == "present" else None
    return {"privileges": set(SCHEMA_PRIVILEGES)}


def _predict(catalog, records, present, absent):
    roles = dict(catalog["roles"])
    settings = [dict(s) for s in catalog["settings"]]
    for dummy, rec in present:
        roles[rec["schema_role"]] = {}
        for login in rec["login_roles"].values():
            settings = [s for s in settings if not (s["rolname"] == login and s.get("datname") == rec["database"])]
            settings.append({"rolname": login, "datname": rec["database"], "setconfig": ["role=" + rec["schema_role"]]})
    for dummy, rec in absent:
        roles.pop(rec["schema_role"], None)
        for login in rec["login_roles"].values():
            settings = [s for s in settings if not (s["rolname"] == login and s.get("datname") == rec["database"])]
    return {"roles": roles, "settings": settings, "databases": catalog["databases"]}


def _predict_members(rows, present, absent):
    gone = set(r["schema_role"] for dummy, r in absent)
    out = [dict(r) for r in rows if r["group"] not in gone and r["member"] not in gone]
    for dummy, rec in present:
        for grant in grants_for(rec):
            out = [r for r in out if not (r["group"] == grant["group"] and r["member"] == grant["target_role"])]
            out.append({"group": grant["group"], "member": grant["target_role"], "inherit_option": False,
                        "set_option": True, "admin_option": False})
        out = [r for r in out if (r["group"], r["member"]) not in set(forbidden_pairs(rec))]
    return out
