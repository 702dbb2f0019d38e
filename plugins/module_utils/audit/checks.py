# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only audit of Deployments against the model (used by the deployment_audit module).

Two halves:

* ``read_catalog(session, records, helper_schema)`` reads everything the checks need for
  *all* Deployments in a fixed number of queries (server, databases with their CONNECT
  ACL entries, roles, memberships, role privileges) plus ``helper_status()`` of the fence
  helper, and returns plain, JSON-able *facts*.
* ``audit_deployments(records, facts)`` is pure: facts in, findings out. Each finding is
  ``{"check", "ok", "detail"}``; a Deployment drifts when any finding is not ok.

Facts layout (what the unit tests build by hand)::

    {"server_version_num": 160015, "connected_as": "postgres", "connected_superuser": True,
     "databases": {"airflow_db_a": {"owner": "airflow_db_a_owner",
                                    "connect": [{"grantee": None (PUBLIC) | "role",
                                                 "grantor": "role", "grantable": False}]}},
     "roles": {"dp1_user_a": {"super": False, "login": True, "inherit": True}},
     "memberships": [{"group", "member", "grantor", "admin_option", "inherit_option",
                      "set_option"}],              # inherit/set None before PostgreSQL 16
     "privileges": {"member": {"role": {"member": bool, "usage": bool}}},
     "helper": helper_status() result or None, "helper_schema": "dataplane_fence"}
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..model import fence_record
from ..server import role_checks
from ..base.database import MIN_SERVER_VERSION_NUM, version_label
from ..model.fence_view import fence_view

SIGNAL_ROLE = "pg_signal_backend"
HELPER_HINT = "install the fence helper (provision with dataplane_fence_helper: true)"

CHECKS = (
    "server_version",
    "database_exists",
    "database_owner",
    "public_connect",
    "connect_grantees",
    "owner_role",
    "killer_role",
    "killer_memberships",
    "commander_owner_membership",
    "commander_killer_membership",
    "other_members",
    "login_roles",
    "fence_capability",
    "fence_helper",
    "fence_state",
)
ABSENT_CHECKS = ("database_absent", "roles_absent")


def _quote_list(names):
    return ", ".join(names) if names else "none"


# --------------------------------------------------------------------------- reading


def _role_names(record):
    names = [record["owner_role"], record["killer_role"]] + list(record["login_roles"].values())
    if record.get("schema_role"):
        names.append(record["schema_role"])
    return names


SERVER_QUERY = (
    "SELECT pg_catalog.current_setting('server_version_num')::int AS version_num, "
    "current_user AS connected_as, "
    "(SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user) AS superuser")

DATABASES_QUERY = (
    "SELECT d.datname, pg_catalog.pg_get_userbyid(d.datdba) AS owner, "
    "pg_catalog.shobj_description(d.oid, 'pg_database') AS comment, "
    "a.grantee OPERATOR(pg_catalog.=) 0 AS to_public, "
    "CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END AS grantee, "
    "pg_catalog.pg_get_userbyid(a.grantor) AS grantor, a.is_grantable "
    "FROM pg_catalog.pg_database d "
    "LEFT JOIN LATERAL pg_catalog.aclexplode("
    "COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a "
    "ON a.privilege_type OPERATOR(pg_catalog.=) 'CONNECT' "
    "WHERE d.datname OPERATOR(pg_catalog.=) ANY(%(names)s) "
    "ORDER BY d.datname, grantee, grantor")

ROLES_QUERY = (
    "SELECT r.rolname, r.rolsuper, r.rolcanlogin, r.rolinherit, "
    "pg_catalog.shobj_description(r.oid, 'pg_authid') AS comment "
    "FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(names)s)")

# One row per grantor; PostgreSQL < 16 has no inherit_option / set_option columns (NULL).
_MEMBERSHIPS_QUERY = (
    "SELECT g.rolname AS \"group\", m.rolname AS member, gr.rolname AS grantor, "
    "am.admin_option, {options} "
    "FROM pg_catalog.pg_auth_members am "
    "JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid "
    "JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member "
    "LEFT JOIN pg_catalog.pg_roles gr ON gr.oid OPERATOR(pg_catalog.=) am.grantor "
    "WHERE m.rolname OPERATOR(pg_catalog.=) ANY(%(members)s) OR g.rolname OPERATOR(pg_catalog.=) ANY(%(groups)s) "
    "ORDER BY 1, 2, 3")
MEMBERSHIPS_QUERY_16 = _MEMBERSHIPS_QUERY.format(options="am.inherit_option, am.set_option")
MEMBERSHIPS_QUERY_15 = _MEMBERSHIPS_QUERY.format(options="NULL::boolean AS inherit_option, "
                                                         "NULL::boolean AS set_option")

# pg_has_role() by oid: existing roles only (by name it raises for a missing role).
PRIVILEGES_QUERY = (
    "SELECT p.member, p.role, "
    "pg_catalog.pg_has_role(m.oid, r.oid, 'MEMBER') AS is_member, "
    "pg_catalog.pg_has_role(m.oid, r.oid, 'USAGE') AS has_usage "
    "FROM ROWS FROM (pg_catalog.unnest(%(members)s::text[]), pg_catalog.unnest(%(roles)s::text[])) "
    "AS p(member, role) "
    "JOIN pg_catalog.pg_roles m ON m.rolname OPERATOR(pg_catalog.=) p.member "
    "JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) p.role")


# Per (login role, database): can it connect (any route: PUBLIC, groups, other grantors), and
# how many sessions it has there (pg_stat_activity shows every role's usename/datname).
LOGIN_ACCESS_QUERY = (
    "SELECT p.login, p.db, pg_catalog.has_database_privilege(r.oid, d.oid, 'CONNECT') AS can_connect, "
    "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a "
    "  WHERE a.usesysid OPERATOR(pg_catalog.=) r.oid AND a.datid OPERATOR(pg_catalog.=) d.oid)::int AS sessions "
    "FROM ROWS FROM (pg_catalog.unnest(%(logins)s::text[]), pg_catalog.unnest(%(dbs)s::text[])) AS p(login, db) "
    "JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) p.login "
    "JOIN pg_catalog.pg_database d ON d.datname OPERATOR(pg_catalog.=) p.db")


class _LoggingReader(object):
    """The audit changes nothing; it still reports every statement it ran (without values).

    Wraps the Session so that helper_status() (fence_helper.py) is logged the same way.
    """

    def __init__(self, session):
        self._session = session

    def rows(self, statement, params=None):
        self._session.queries.append(self._session.render(statement))
        return self._session.rows(statement, params)

    def __getattr__(self, name):
        return getattr(self._session, name)


def read_catalog(session, records, helper_schema, helper_status=None, helper_owner_role=None):
    """Read the facts for every record; a fixed number of queries whatever the count.

    HELPER_STATUS (fence_helper.helper_status) is called once, for the killer roles of the
    present records, with HELPER_OWNER_ROLE as the owner the helper should have."""
    session = _LoggingReader(session)
    facts = {"helper_schema": helper_schema}
    row = session.rows(SERVER_QUERY)[0]
    facts["server_version_num"] = row["version_num"]
    facts["connected_as"] = row["connected_as"]
    facts["connected_superuser"] = bool(row["superuser"])

    databases = sorted(set(r["database"] for r in records))
    role_names = set()
    commanders = set()
    killers = set()
    for record in records:
        role_names.update(_role_names(record))
        commanders.add(record["commander_user"])
        killers.add(record["killer_role"])

    facts["databases"] = {}
    comments = {}
    for row in session.rows(DATABASES_QUERY, {"names": databases}):
        entry = facts["databases"].setdefault(row["datname"], {"owner": row["owner"], "connect": []})
        comments[row["datname"]] = row["comment"]
        if row["to_public"] is None:  # no CONNECT entry at all
            continue
        entry["connect"].append({"grantee": row["grantee"], "grantor": row["grantor"],
                                 "grantable": bool(row["is_grantable"])})

    facts["roles"] = {}
    for row in session.rows(ROLES_QUERY, {"names": sorted(role_names | commanders | set([SIGNAL_ROLE]))}):
        facts["roles"][row["rolname"]] = {"super": bool(row["rolsuper"]), "login": bool(row["rolcanlogin"]),
                                          "inherit": bool(row["rolinherit"]),
                                          "borrowed": role_checks.borrow_mark(row["comment"])}

    query = MEMBERSHIPS_QUERY_16 if facts["server_version_num"] >= MIN_SERVER_VERSION_NUM else MEMBERSHIPS_QUERY_15
    facts["memberships"] = session.rows(query, {"members": sorted(killers | commanders),
                                                "groups": sorted(role_names)})

    pairs = set()
    for record in records:
        commander = record["commander_user"]
        database = facts["databases"].get(record["database"])
        owners = set([record["owner_role"]]) | (set([database["owner"]]) if database else set())
        extra_grantees = set(e["grantee"] for e in (database or {}).get("connect", []) if e["grantee"])
        for owner in owners:
            pairs.add((commander, owner))
        pairs.add((commander, record["killer_role"]))
        pairs.add((commander, SIGNAL_ROLE))
        for login in record["login_roles"].values():
            pairs.add((commander, login))
            for owner in owners:
                pairs.add((login, owner))
            for grantee in extra_grantees - set([login]):
                pairs.add((login, grantee))
    pairs = sorted(pairs)
    facts["privileges"] = {}
    for row in session.rows(PRIVILEGES_QUERY, {"members": [p[0] for p in pairs], "roles": [p[1] for p in pairs]}):
        facts["privileges"].setdefault(row["member"], {})[row["role"]] = {
            "member": bool(row["is_member"]), "usage": bool(row["has_usage"])}

    read_fence_facts(session, records, facts, comments)

    facts["helper"] = None
    if helper_status is not None:
        facts["helper"] = _read_helper(session, records, helper_schema, helper_status, helper_owner_role)
    return facts


def read_fence_facts(session, records, facts, comments):
    """The fence state records of the databases (from COMMENTS, {database: comment}), and per
    login role whether it can connect and how many sessions it has there (one query)."""
    facts["fence_states"] = {}
    for database, comment in comments.items():
        entry = {"record": None, "error": None}
        try:
            entry["record"] = fence_record.parse_record(comment)
        except fence_record.RecordError as exc:
            entry["error"] = str(exc)
        facts["fence_states"][database] = entry
    pairs = sorted(set((login, r["database"]) for r in records if r["database"] in facts["databases"]
                       for login in r["login_roles"].values()))
    facts["login_access"] = {}
    for row in session.rows(LOGIN_ACCESS_QUERY, {"logins": [p[0] for p in pairs], "dbs": [p[1] for p in pairs]}):
        facts["login_access"].setdefault(row["db"], {})[row["login"]] = {
            "can_connect": bool(row["can_connect"]), "sessions": int(row["sessions"])}


def _read_helper(session, records, helper_schema, helper_status, helper_owner_role):
    """The fence helper's status for the killer roles of the present records (the registry may
    hold exactly those)."""
    killers = sorted(set(r["killer_role"] for r in records if r.get("state", "present") == "present"))
    if helper_owner_role:
        return helper_status(session, helper_schema, killers, helper_owner_role)
    return helper_status(session, helper_schema, killers)


# --------------------------------------------------------------------------- comparing


def _privilege(facts, member, role):
    return facts["privileges"].get(member, {}).get(role, {"member": False, "usage": False})


def _finding(check, ok, detail):
    return {"check": check, "ok": bool(ok), "detail": detail}


def _fmt_options(row):
    if row.get("inherit_option") is None:
        return "admin %s" % str(bool(row.get("admin_option"))).lower()
    return "inherit %s, set %s, admin %s" % tuple(
        str(bool(row.get(k))).lower() for k in ("inherit_option", "set_option", "admin_option"))


def _describe_membership(row):
    return "%s (granted by %s; %s)" % (row["group"], row.get("grantor") or "?", _fmt_options(row))


def _check_role_attrs(check, name, role, want_noinherit):
    if role is None:
        return _finding(check, False, "role %s does not exist" % name)
    problems = []
    if role["login"]:
        problems.append("has LOGIN (must be NOLOGIN)")
    if want_noinherit and role["inherit"]:
        problems.append("has INHERIT (must be NOINHERIT)")
    if role["super"]:
        problems.append("is a SUPERUSER")
    if problems:
        return _finding(check, False, "role %s %s" % (name, "; ".join(problems)))
    return _finding(check, True, "role %s is NOLOGIN%s" % (name, ", NOINHERIT" if want_noinherit else ""))


def _commander_membership(check, facts, commander, role_name, what):
    roles = facts["roles"]
    if commander not in roles:
        return _finding(check, False, "commander_user %s does not exist" % commander)
    if role_name not in roles:
        return _finding(check, False, "%s %s does not exist" % (what, role_name))
    if roles[commander]["super"]:
        return _finding(check, True, "%s is a superuser (has the privileges of %s)" % (commander, role_name))
    priv = _privilege(facts, commander, role_name)
    direct = [m for m in facts["memberships"] if m["member"] == commander and m["group"] == role_name]
    how = "; ".join(_describe_membership(m) for m in direct) if direct else "indirectly, through another role"
    if not priv["member"]:
        return _finding(check, False, "%s is not a member of the %s %s" % (commander, what, role_name))
    if not priv["usage"]:
        return _finding(check, False, "%s is a member of the %s %s but without its privileges (%s): "
                                      "grant it WITH INHERIT TRUE" % (commander, what, role_name, how))
    return _finding(check, True, "%s is a member of %s with its privileges: %s" % (commander, role_name, how))


def _direct_route(facts, commander, logins):
    """(capable, reasons why not) for pg_terminate_backend by commander itself."""
    roles = facts["roles"]
    if roles.get(commander, {}).get("super"):
        return True, []
    signal = _privilege(facts, commander, SIGNAL_ROLE)["usage"]
    missing = []
    for login in logins:
        role = roles.get(login)
        if role is None:
            continue
        if role["super"]:
            missing.append(login)  # only superusers may terminate a superuser's sessions
        elif not (signal or _privilege(facts, commander, login)["usage"]):
            missing.append(login)
    return not missing, missing


def _direct_how(facts, commander):
    """Why the direct route works; every reason but superuser is wider than the fence needs."""
    if facts["roles"].get(commander, {}).get("super"):
        return "it is a superuser"
    if _privilege(facts, commander, SIGNAL_ROLE)["usage"]:
        return "it has the privileges of pg_signal_backend: it may terminate any non-superuser session"
    return "it has the privileges of the login roles: it may also read and change their data"


def _helper_route(facts, record):
    """(capable, reasons why not) for the fence helper used as the killer role."""
    helper = facts.get("helper")
    killer = record["killer_role"]
    commander = record["commander_user"]
    roles = facts["roles"]
    schema = facts.get("helper_schema")
    if not helper or not helper.get("installed"):
        return False, ["the fence helper is not installed in schema %s" % schema]
    reasons = []
    if not helper.get("current"):
        reasons.append("the fence helper in schema %s is outdated (version %s); re-run provision"
                       % (schema, helper.get("version")))
    if not helper.get("owner_can_signal"):
        reasons.append("the fence helper's owner %s lacks pg_signal_backend" % helper.get("owner_role"))
    if not helper.get("usable_by", {}).get(killer):
        reasons.append("the fence helper is not granted to %s" % killer)
    if killer not in roles:
        reasons.append("killer role %s does not exist" % killer)
    elif roles[killer]["login"]:
        reasons.append("killer role %s can log in, and the fence helper refuses killer roles that can" % killer)
    elif helper.get("registered", {}).get(killer) is False:
        reasons.append("killer role %s is not registered with the fence helper; re-run provision" % killer)
    elif not (roles.get(commander, {}).get("super") or _privilege(facts, commander, killer)["usage"]):
        reasons.append("%s lacks the privileges of %s" % (commander, killer))
    for login in record["login_roles"].values():
        if login not in roles:
            continue
        if not any(m["member"] == killer and m["group"] == login for m in facts["memberships"]):
            reasons.append("%s is not granted to %s, so the helper will not touch its sessions" % (login, killer))
        if roles[login]["super"]:
            reasons.append("%s is a superuser; the helper never terminates superusers" % login)
    return not reasons, reasons


def _borrowed_roles(record, roles):
    """A failing finding when a provision that did not finish left the owner or schema role
    borrowed (role_checks.BORROW_MARK): the admin still holds INHERIT and SET on it. None else."""
    problems = []
    for name in (record["owner_role"], record.get("schema_role")):
        mark = (roles.get(name) or {}).get("borrowed") if name else None
        if mark:
            problems.append("%s still holds INHERIT and SET on %s, borrowed by a provision that did not finish; "
                            "run provision (as %s or a superuser) to give it back" % (mark["by"], name, mark["by"]))
    return _finding("borrowed_roles", False, "; ".join(problems)) if problems else None


def _audit_present(record, facts):
    """(findings, route) of a present Deployment: ROUTE is how a fence would terminate its
    sessions ("direct" or "helper"), None when the fence would fail. Pure: a step per check."""
    roles = facts["roles"]
    owner_name = record["owner_role"]
    killer = record["killer_role"]
    commander = record["commander_user"]
    logins = [record["login_roles"][p] for p in sorted(record["login_roles"])]

    findings = _server_version_findings(facts["server_version_num"])
    database_findings, fence_blockers = _database_findings(record, facts, logins)
    findings.extend(database_findings)
    findings.append(_check_role_attrs("owner_role", owner_name, roles.get(owner_name), False))
    findings.append(_check_role_attrs("killer_role", killer, roles.get(killer), True))
    borrowed = _borrowed_roles(record, roles)
    if borrowed:
        findings.append(borrowed)
    findings.append(_killer_memberships_finding(facts, killer, logins))
    findings.append(_commander_membership("commander_owner_membership", facts, commander, owner_name, "owner role"))
    findings.append(_commander_membership("commander_killer_membership", facts, commander, killer, "killer role"))
    findings.append(_other_members_finding(facts, owner_name, killer, commander, logins))

    database = facts["databases"].get(record["database"])
    actual_owner = database["owner"] if database else owner_name
    fence_blockers.extend(_commander_blockers(facts, commander, actual_owner))
    login_finding, login_blockers = _login_roles_finding(facts, owner_name, actual_owner, logins)
    findings.append(login_finding)
    fence_blockers.extend(login_blockers)
    capability, route = _fence_capability_finding(record, facts, logins, fence_blockers)
    findings.append(capability)
    findings.append(_helper_integrity_finding(facts, killer))
    return findings, route


def _server_version_findings(version):
    if version >= MIN_SERVER_VERSION_NUM:
        return []
    return [_finding("server_version", False,
                     "PostgreSQL %s cannot record the INHERIT/SET membership options "
                     "(needs PostgreSQL 16 or newer): the killer role's memberships "
                     "cannot be least-privilege" % version_label(version))]


def _database_findings(record, facts, logins):
    """(findings, fence blockers) of the database: it exists, its owner, who holds CONNECT."""
    dbname = record["database"]
    owner_name = record["owner_role"]
    database = facts["databases"].get(dbname)
    if database is None:
        return ([_finding("database_exists", False, "database %s does not exist" % dbname)],
                ["database %s does not exist" % dbname])
    findings = [_finding("database_exists", True, "database %s exists" % dbname)]
    blockers = []
    if database["owner"] == owner_name:
        findings.append(_finding("database_owner", True, "owned by %s" % owner_name))
    else:
        findings.append(_finding("database_owner", False, "owned by %s, expected %s"
                                 % (database["owner"], owner_name)))
    public = [e for e in database["connect"] if e["grantee"] is None]
    if public:
        findings.append(_finding("public_connect", False, "PUBLIC holds CONNECT (granted by %s): "
                                 "every role can connect, revoking a login role's CONNECT fences nothing"
                                 % _quote_list(sorted(set(e["grantor"] for e in public)))))
        blockers.append("PUBLIC holds CONNECT on %s" % dbname)
    else:
        findings.append(_finding("public_connect", True, "PUBLIC has no CONNECT"))
    finding, connect_blockers = _connect_grantees_finding(facts, database, logins)
    return findings + [finding], blockers + connect_blockers


def _connect_grantees_finding(facts, database, logins):
    """(finding, fence blockers): CONNECT is held by the login roles only, granted by the owner."""
    actual_owner = database["owner"]
    problems = []
    notes = []
    blockers = []
    by_grantee = {}
    for entry in database["connect"]:
        if entry["grantee"] is not None:
            by_grantee.setdefault(entry["grantee"], []).append(entry)
    fenced = [login for login in logins if not by_grantee.get(login)]
    if len(fenced) == len(logins):
        problems.append("no login role holds CONNECT (%s): no data plane can connect"
                        % ", ".join(logins))
    elif fenced:
        # One plane without CONNECT is the state a failover leaves behind, not drift.
        notes.append("%s fenced (no CONNECT)" % ", ".join(fenced))
    for login in logins:
        entries = by_grantee.get(login, [])
        if not entries:
            continue
        grantors = sorted(set(e["grantor"] for e in entries))
        foreign = [g for g in grantors if g != actual_owner]
        notes.append("%s (granted by %s)" % (login, ", ".join(grantors)))
        if foreign:
            problems.append("%s holds CONNECT granted by %s, not by the owner %s: the owner cannot revoke it"
                            % (login, ", ".join(foreign), actual_owner))
            blockers.append("%s's CONNECT granted by %s cannot be revoked as the owner"
                            % (login, ", ".join(foreign)))
    others = sorted(g for g in by_grantee if g not in logins and g != actual_owner)
    for grantee in others:
        grantors = sorted(set(e["grantor"] for e in by_grantee[grantee]))
        problems.append("extra CONNECT grantee %s (granted by %s)" % (grantee, ", ".join(grantors)))
        via = [login for login in logins if _privilege(facts, login, grantee)["member"]]
        if via:
            blockers.append("%s can still connect through %s's CONNECT" % (", ".join(via), grantee))
    if problems:
        return _finding("connect_grantees", False, "; ".join(problems)), blockers
    return _finding("connect_grantees", True, "CONNECT held by exactly %s" % "; ".join(notes)), blockers


def _killer_memberships_finding(facts, killer, logins):
    """The killer's memberships: exactly the login roles, INHERIT FALSE, SET FALSE (no ADMIN)."""
    version = facts["server_version_num"]
    if killer not in facts["roles"]:
        return _finding("killer_memberships", False, "killer role %s does not exist" % killer)
    rows = [m for m in facts["memberships"] if m["member"] == killer]
    problems = []
    for login in logins:
        mine = [m for m in rows if m["group"] == login]
        if not mine:
            problems.append("%s is not granted to %s" % (login, killer))
            continue
        if version >= MIN_SERVER_VERSION_NUM:
            # What the killer holds is the union (OR) of every grantor's row.
            bad = [m for m in mine if m["inherit_option"] or m["set_option"] or m["admin_option"]]
            if bad:
                held = [k.upper() for k in ("inherit", "set", "admin") if any(m[k + "_option"] for m in mine)]
                problems.append("%s effectively granted with %s TRUE through %s (must be INHERIT FALSE, "
                                "SET FALSE whoever granted it)"
                                % (login, ", ".join(held), "; ".join(_describe_membership(m) for m in bad)))
    others = [m for m in rows if m["group"] not in logins]
    if others:
        problems.append("unexpected memberships: %s" % "; ".join(_describe_membership(m) for m in others))
    if version < MIN_SERVER_VERSION_NUM:
        problems.append("PostgreSQL %s has no INHERIT/SET membership options (needs 16)"
                        % version_label(version))
    if problems:
        return _finding("killer_memberships", False, "; ".join(problems))
    return _finding("killer_memberships", True, "%s holds %s with INHERIT FALSE, SET FALSE"
                    % (killer, ", ".join(logins)))


def _other_members_finding(facts, owner_name, killer, commander, logins):
    """Whoever else gets the owner's or the killer's privileges (through INHERIT or SET) can
    change CONNECT / drop the database, or fence through the helper."""
    extra = [m for m in facts["memberships"]
             if m["group"] in (owner_name, killer) and m["member"] != commander and m["member"] not in logins
             and (m["inherit_option"] is None or m["inherit_option"] or m["set_option"])]
    if extra:
        return _finding("other_members", False, "; ".join(
            "%s is a member of %s (granted by %s; %s)" % (m["member"], m["group"], m.get("grantor") or "?",
                                                          _fmt_options(m)) for m in extra))
    return _finding("other_members", True, "only %s holds %s and %s" % (commander, owner_name, killer))


def _commander_blockers(facts, commander, actual_owner):
    """What stops commander_user from switching CONNECT."""
    roles = facts["roles"]
    if commander not in roles:
        return ["commander_user %s does not exist" % commander]
    if not roles[commander]["super"] and not _privilege(facts, commander, actual_owner)["usage"]:
        return ["%s lacks the privileges of the database owner %s (cannot switch CONNECT)"
                % (commander, actual_owner)]
    return []


def _login_roles_finding(facts, owner_name, actual_owner, logins):
    """(finding, fence blockers): the login roles exist, can log in and are not above the fence."""
    roles = facts["roles"]
    problems = []
    blockers = []
    for login in logins:
        role = roles.get(login)
        if role is None:
            problems.append("%s does not exist" % login)
            blockers.append("login role %s does not exist" % login)
            continue
        if role["super"]:
            problems.append("%s is a SUPERUSER" % login)
            blockers.append("%s is a superuser: CONNECT does not fence it" % login)
        elif _privilege(facts, login, owner_name)["member"] or _privilege(facts, login, actual_owner)["member"]:
            problems.append("%s is a member of the owner role %s" % (login, actual_owner))
            blockers.append("%s is a member of the owner role: revoking its CONNECT does not fence it" % login)
        if not role["login"]:
            problems.append("%s has NOLOGIN" % login)
    if problems:
        return _finding("login_roles", False, "; ".join(problems)), blockers
    return _finding("login_roles", True, "%s: LOGIN, not superusers, not members of %s"
                    % (", ".join(logins), actual_owner)), blockers


def _fence_capability_finding(record, facts, logins, fence_blockers):
    """(finding, route): whether commander_user can fence, and how; FENCE_BLOCKERS (what else
    stops the fence) make it fail whatever the route."""
    as_who = commander = record["commander_user"]
    if facts.get("connected_as") and facts["connected_as"] != commander:
        as_who = "%s (evaluated while connected as %s)" % (commander, facts["connected_as"])
    route, detail = _termination_route(record, facts, logins, as_who)
    if fence_blockers:
        # Terminating is not enough (or not even possible): say what else stops the fence.
        tail = detail if route is None else None
        route = None
        detail = "the fence would fail for %s: %s" % (as_who, "; ".join(fence_blockers))
        if tail:
            detail += "; and " + tail
    ok = route is not None
    helper = facts.get("helper") or {}
    if helper.get("installed") and helper.get("owner_members"):
        # the fence works, but these roles could redefine the helper: drift, whatever the route
        ok = False
        detail += ("; the fence helper is not safe: %s can act as its owner role %s and so redefine it "
                   "(REVOKE %s FROM %s)" % (", ".join(helper["owner_members"]), helper.get("owner_role"),
                                            helper.get("owner_role"), ", ".join(helper["owner_members"])))
    return _finding("fence_capability", ok, detail), route


def _termination_route(record, facts, logins, as_who):
    """(route or None, detail): how commander_user (AS_WHO) terminates the login roles' sessions."""
    commander = record["commander_user"]
    direct_ok, direct_missing = _direct_route(facts, commander, logins)
    helper_ok, helper_reasons = _helper_route(facts, record)
    if direct_ok:
        detail = "%s can terminate the login roles' sessions directly (%s)" % (as_who, _direct_how(facts, commander))
        if helper_ok:
            detail += " (and through the fence helper)"
        return "direct", detail
    if helper_ok:
        return "helper", ("%s can terminate the login roles' sessions through the fence helper %s.%s as %s "
                          "(version %s); a vendor-style fence would fail: %s lacks the privileges of %s"
                          % (as_who, facts.get("helper_schema"), "terminate_member_sessions",
                             record["killer_role"], (facts.get("helper") or {}).get("version"), commander,
                             ", ".join(direct_missing)))
    if facts.get("helper") and facts["helper"].get("installed"):
        return None, ("a vendor-style fence would fail: %s lacks the privileges of %s, and the fence helper "
                      "cannot be used: %s" % (commander, ", ".join(direct_missing), "; ".join(helper_reasons)))
    return None, ("a vendor-style fence would fail: %s lacks the privileges of %s; %s"
                  % (commander, ", ".join(direct_missing), HELPER_HINT))


def _fence_state_finding(record, facts):
    """(finding or None, view): which plane is fenced and admitted, and what contradicts it.

    Drift: a damaged record, a record in phase fencing (an interrupted failover), a fenced
    login role that can connect again or still has sessions in the database, a record that
    says a login role is admitted while it cannot connect, no plane admitted at all.
    """
    dbname = record["database"]
    database = facts["databases"].get(dbname)
    if database is None or "fence_states" not in facts:
        return None, None
    entry = facts["fence_states"].get(dbname) or {}
    access = (facts.get("login_access") or {}).get(dbname, {})
    logins = record["login_roles"]
    holders = set(login for login in logins.values() if access.get(login, {}).get("can_connect"))
    public = any(e["grantee"] is None for e in database["connect"])
    view = fence_view(logins, True, entry.get("record"), entry.get("error"), holders, public)
    plane_of = dict((login, plane) for plane, login in logins.items())
    problems = []
    if view["state"] == "damaged":
        problems.append("the fence state record cannot be read (%s): which plane is fenced is unknown; "
                        "repair the database's comment or re-admit explicitly" % view["error"])
    if view["state"] == "unknown":
        problems.append("no plane can connect and no fence is recorded (an interrupted failover?)")
    if view["state"] == "interrupted":
        problems.append("the record is in phase 'fencing': a failover stopped (or is still running) after "
                        "revoking CONNECT; rerun the failover to complete it")
    # The record contradicts the catalog: every plane it fences can connect, and none it admits
    # can. Which one is true is for a person to find out; a failover on the record's word could
    # fence the plane that runs Airflow.
    contradicted = (view["source"] == "record" and view["state"] != "interrupted" and view["fenced_roles"]
                    and all(login in holders for login in view["fenced_roles"])
                    and view["admitted_roles"] and not any(login in holders for login in view["admitted_roles"]))
    if contradicted:
        problems.append(
            "the record contradicts the catalog: the catalog admits %s and refuses %s, the record says the "
            "opposite. Check which plane's Airflow is running before any failover (a failover on the record's "
            "word could fence the healthy plane); then make the record true with the failover towards the plane "
            "that should run, or provision with dataplane_readmit_fenced_planes" % (
                ", ".join("plane %s (%s)" % (plane_of.get(r, "?"), r) for r in sorted(view["fenced_roles"])),
                ", ".join("plane %s (%s)" % (plane_of.get(r, "?"), r) for r in sorted(view["admitted_roles"]))))
    for login in view["fenced_roles"]:
        if access.get(login, {}).get("can_connect") and not contradicted:
            problems.append("%s (plane %s) is fenced but can connect again (CONNECT granted back?); check who "
                            "granted it and which plane's Airflow is running before you fence it again"
                            % (login, plane_of.get(login, "?")))
        if access.get(login, {}).get("sessions"):
            problems.append("%s (plane %s) is fenced but has %d session(s) in %s"
                            % (login, plane_of.get(login, "?"), access[login]["sessions"], dbname))
    if view["source"] == "record" and not contradicted:
        for login in view["admitted_roles"]:
            if login not in holders and view["state"] != "interrupted":
                problems.append("the record says %s (plane %s) is admitted, but it cannot connect"
                                % (login, plane_of.get(login, "?")))
    for note in view["notes"]:
        if "names login roles that are not" in note or "record fences nobody" in note:
            problems.append(note)
    detail = view["text"]
    if problems:
        detail += ": " + "; ".join(problems)
    return _finding("fence_state", not problems, detail), view


def _helper_integrity_finding(facts, killer):
    """Every part of the installed fence helper, compared with what fence_helper installs:
    function (owner, body, settings), ACLs of the function, schema and registry, other objects
    in the schema, the owner role (attributes, memberships both ways) and the registry entries.
    Not installed is not drift here (fence_capability says whether the fence needs it)."""
    helper = facts.get("helper") or {}
    schema = facts.get("helper_schema")
    if not helper.get("installed"):
        return _finding("fence_helper", True, "no fence helper installed in schema %s" % schema)
    per_killer = helper.get("killer_problems") or {}
    theirs = set(p for k, ps in per_killer.items() if k != killer for p in ps)
    # the helper is shared: its problems concern every Deployment, except those of other killer roles
    problems = [p for p in helper.get("problems") or [] if p not in theirs]
    if problems:
        return _finding("fence_helper", False, "the fence helper in schema %s differs from what "
                        "dataplane.postgresql.fence_helper installs (provision repairs it): %s"
                        % (schema, "; ".join(problems)))
    detail = "the fence helper in schema %s (version %s) is intact" % (schema, helper.get("version"))
    if helper.get("registered") and not helper.get("registry_readable"):
        detail += ("; its registry of killer roles cannot be read as %s (run the audit as an admin to "
                   "check it)" % facts.get("connected_as"))
    return _finding("fence_helper", True, detail)


def _audit_absent(record, facts):
    findings = []
    if record.get("drop_database"):
        exists = record["database"] in facts["databases"]
        findings.append(_finding("database_absent", not exists, "database %s %s" % (
            record["database"], "still exists" if exists else "is absent")))
    names = [record["owner_role"], record["killer_role"]]
    if record.get("drop_login_roles"):
        names += [record["login_roles"][p] for p in sorted(record["login_roles"])]
    left = [n for n in names if n in facts["roles"]]
    findings.append(_finding("roles_absent", not left, ("roles still exist: %s" % ", ".join(left))
                             if left else "%s are absent" % ", ".join(names)))
    return findings, None


def audit_deployment(record, facts):
    """Findings for one Deployment record (from the deployment_model filter)."""
    state = record.get("state", "present")
    view = None
    if state == "absent":
        findings, route = _audit_absent(record, facts)
    else:
        findings, route = _audit_present(record, facts)
        finding, view = _fence_state_finding(record, facts)
        if finding is not None:
            findings.append(finding)
    failed = [f for f in findings if not f["ok"]]
    result = {
        "id": record["id"],
        "state": state,
        "database": record["database"],
        "findings": findings,
        "drift": bool(failed),
        "fence_capable": route is not None if state == "present" else None,
        "fence_route": route,
    }
    if view is not None:
        result["fence"] = view
    result["summary"] = summary_line(result)
    return result


def summary_line(result):
    failed = [f for f in result["findings"] if not f["ok"]]
    if result["state"] == "absent":
        head = "%s (absent): %s" % (result["id"], "DRIFT" if failed else "OK")
    elif not failed:
        head = "%s: OK, fence capable (%s)" % (result["id"], result["fence_route"])
    else:
        head = "%s: DRIFT (%d), fence %s" % (result["id"], len(failed), "capable (%s)" % result["fence_route"]
                                             if result["fence_capable"] else "would FAIL")
    if result.get("fence"):
        head += "; " + result["fence"]["text"]
    if failed:
        head += ": " + " | ".join("%s: %s" % (f["check"], f["detail"]) for f in failed)
    return head


def audit_deployments(records, facts):
    """Audit every record; return (per-Deployment results, overall summary dict)."""
    results = [audit_deployment(r, facts) for r in records]
    return results, overall_summary(results)


def overall_summary(results):
    """The overall verdict of per-Deployment audit RESULTS. Pure."""
    present = [r for r in results if r.get("state", "present") == "present"]
    return {
        "drift": any(r["drift"] for r in results),
        "drifted": [r["id"] for r in results if r["drift"]],
        "fence_capable": all(r["fence_capable"] for r in present),
        "fence_incapable": [r["id"] for r in present if not r["fence_capable"]],
    }
