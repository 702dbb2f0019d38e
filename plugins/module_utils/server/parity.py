# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plane parity: can the other plane use and migrate what this plane can?

Everything is read from shared catalogs over the one connection the audit or the fence
already has (to ``postgres``), for every Deployment at once, so no connection to each
Airflow database is needed:

* ``pg_shdepend`` records, per database (``dbid``), which role owns each object (deptype
  ``o``) and which roles an object's ACL mentions (deptype ``a``);
* ``pg_db_role_setting`` holds the per-database ``role`` setting of each login role;
* ``pg_auth_members`` and ``pg_roles`` hold memberships and attributes.

Limits (PostgreSQL's, documented in docs/airflow-objects.md): objects owned by the bootstrap
superuser are not recorded in ``pg_shdepend``; an ACL mention says that a role holds some
privilege on an object, not which one. Object names live in each database's own catalog:
``describe_objects`` names them for the databases that drifted only.

``read_facts(session, records)`` reads; ``audit_findings`` (symmetric, for the audit) and
``preflight_problems`` (directional, source -> destination, for the failover) are pure.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..base.database import MIN_SERVER_VERSION_NUM, as_session
from .role_settings import MEMBERSHIP_OPTIONS, ROLES_QUERY, SETTINGS_QUERY, effective_role_setting

CHECKS = ("schema_role", "role_settings", "object_owners", "plane_privileges")
ATTRIBUTES = ("rolcanlogin", "rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls")
SAMPLE = 20  # object ids kept per (database, role, class) for naming

# On 16+ a CREATEROLE admin that creates a role gets an ADMIN-only row on it (no INHERIT, no
# SET): the managed-PostgreSQL provisioning admin's row on the schema role. It gives nothing the
# admin's CREATEROLE does not already give, so it is not counted as a member.
# The roles are looked up by name once (w, s), and pg_auth_members is matched by oid against
# those sets (hashed): a name compared with the whole list on every membership row took 0.5 s at
# 800 Deployments (2,400 names, 4,800 rows), which the fence's preflight paid.
MEMBERSHIPS_QUERY_16 = """
WITH w AS MATERIALIZED (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(roles)s)),
     s AS MATERIALIZED (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(schema_roles)s))
SELECT g.rolname AS "group", m.rolname AS member, pg_catalog.bool_or(am.inherit_option) AS inherit_option,
       pg_catalog.bool_or(am.set_option) AS set_option, pg_catalog.bool_or(am.admin_option) AS admin_option
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid
  JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member
 WHERE (am.member OPERATOR(pg_catalog.=) ANY (SELECT w.oid FROM w) OR am.roleid OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM s))
   AND NOT (am.roleid OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM s) AND m.rolcreaterole AND NOT m.rolsuper
            AND am.admin_option AND NOT am.inherit_option AND NOT am.set_option)
 GROUP BY 1, 2
"""
MEMBERSHIPS_QUERY_15 = """
WITH w AS MATERIALIZED (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(roles)s)),
     s AS MATERIALIZED (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(schema_roles)s))
SELECT g.rolname AS "group", m.rolname AS member, NULL::boolean AS inherit_option,
       NULL::boolean AS set_option, pg_catalog.bool_or(am.admin_option) AS admin_option
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid
  JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member
 WHERE am.member OPERATOR(pg_catalog.=) ANY (SELECT w.oid FROM w) OR am.roleid OPERATOR(pg_catalog.=) ANY (SELECT s.oid FROM s)
 GROUP BY 1, 2
"""
# Owners of every object in the Deployments' databases, and the ACL mentions of the login and
# schema roles there: one scan of pg_shdepend's (dbid, ...) index per database. Grouping by role
# oid and naming the role per group (not joining pg_roles per row) keeps this at ~20 ms for 200
# databases of 60 tables each (25,000 pg_shdepend rows), measured.
SHDEPEND_QUERY = """
SELECT d.datname, pg_catalog.pg_get_userbyid(sd.refobjid) AS rolname, sd.deptype::text AS deptype,
       sd.classid::pg_catalog.regclass::text AS class, pg_catalog.count(*) AS n,
       pg_catalog.array_agg(sd.objid::text OPERATOR(pg_catalog.||)
                              CASE WHEN sd.objsubid OPERATOR(pg_catalog.<>) 0
                                   THEN '.' OPERATOR(pg_catalog.||) sd.objsubid::text ELSE '' END
                            ORDER BY sd.objid, sd.objsubid) AS objects
  FROM (SELECT ARRAY(SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(roles)s)) AS oids) AS s
 CROSS JOIN pg_catalog.pg_database d
  JOIN pg_catalog.pg_shdepend sd ON sd.dbid OPERATOR(pg_catalog.=) d.oid
 WHERE d.datname OPERATOR(pg_catalog.=) ANY(%(databases)s)
   AND sd.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
   AND (sd.deptype OPERATOR(pg_catalog.=) 'o' OR (sd.deptype OPERATOR(pg_catalog.=) 'a' AND sd.refobjid OPERATOR(pg_catalog.=) ANY(s.oids)))
 GROUP BY d.datname, sd.refobjid, sd.deptype, sd.classid
"""


def _logins(record):
    return [record["login_roles"][p] for p in sorted(record["login_roles"])]


def read_facts(session, records, version_num=MIN_SERVER_VERSION_NUM):
    """The parity facts of RECORDS (present ones), in four queries whatever their number."""
    records = [r for r in records if r.get("state", "present") == "present"]
    logins = sorted(set(n for r in records for n in _logins(r)))
    schema_roles = sorted(set(r["schema_role"] for r in records if r.get("schema_role")))
    databases = sorted(set(r["database"] for r in records))
    roles = logins + schema_roles
    facts = {"roles": {}, "memberships": [], "settings": [], "objects": []}
    if not records:
        return facts
    for row in session.rows(ROLES_QUERY, {"roles": roles}):
        facts["roles"][row["rolname"]] = dict((a, bool(row[a])) for a in ATTRIBUTES)
    query = MEMBERSHIPS_QUERY_16 if version_num >= MIN_SERVER_VERSION_NUM else MEMBERSHIPS_QUERY_15
    facts["memberships"] = session.rows(query, {"roles": roles, "schema_roles": schema_roles})
    facts["settings"] = [dict(r, setconfig=list(r["setconfig"] or [])) for r in
                         session.rows(SETTINGS_QUERY, {"logins": logins, "databases": databases})]
    owners = set(schema_roles)
    for row in session.rows(SHDEPEND_QUERY, {"databases": databases, "roles": roles}):
        # What a schema role owns is the healthy case: counted, not listed.
        listed = [] if row["deptype"] == "o" and row["rolname"] in owners else list(row["objects"] or [])
        facts["objects"].append({"database": row["datname"], "role": row["rolname"], "deptype": row["deptype"],
                                 "class": row["class"], "count": int(row["n"]), "objects": listed})
    return facts


def _index(facts):
    """Lookups by member, database and role (built once per facts; hundreds of Deployments)."""
    lists = (facts["memberships"], facts["objects"], facts["settings"])
    key = tuple((id(x), len(x)) for x in lists)   # rebuilt when a list is replaced or grows
    index = facts.get("_index")
    if index is None or index["key"] != key:
        index = {"key": key, "member": {}, "objects": {}, "settings": {}}
        for row in facts["memberships"]:
            index["member"].setdefault(row["member"], []).append(row)
        for o in facts["objects"]:
            index["objects"].setdefault((o["database"], o["deptype"]), []).append(o)
        for row in facts["settings"]:
            index["settings"].setdefault(row["rolname"], []).append(row)
        facts["_index"] = index
    return index


def _setting(facts, login, database):
    return effective_role_setting(_index(facts)["settings"].get(login, []), login, database)


def _memberships_of(facts, member):
    return dict((r["group"], r) for r in _index(facts)["member"].get(member, []))


def _options(row):
    if row.get("set_option") is None:
        return "admin %s" % _flag(row.get("admin_option"))
    return "inherit %s, set %s, admin %s" % (_flag(row.get("inherit_option")), _flag(row.get("set_option")),
                                             _flag(row.get("admin_option")))


def _flag(value):
    return "true" if value else "false"


def _objects(facts, database, deptype):
    return list(_index(facts)["objects"].get((database, deptype), []))


def _describe(entries, names=None):
    """'3 in pg_class (t1, t2, seq) owned by x' style text."""
    parts = []
    for o in sorted(entries, key=lambda e: (e["role"], e["class"])):
        shown = [(names or {}).get((o["database"], o["class"], k), k) for k in o["objects"][:SAMPLE]]
        more = ", ..." if o["count"] > SAMPLE else ""
        parts.append("%d in %s" % (o["count"], o["class"]) + (" (%s%s)" % (", ".join(shown), more) if shown else ""))
    return "; ".join(parts)


def _acl_keys(facts, database, role):
    return set((o["class"], k) for o in _objects(facts, database, "a") if o["role"] == role for k in o["objects"])


def audit_findings(record, facts, names=None):
    """Parity findings ({check, ok, detail}) of one present Deployment. Pure.

    NAMES: optional {(database, class, object id): description} from describe_objects().
    """
    db = record["database"]
    logins = _logins(record)
    schema_role = record.get("schema_role")
    findings = []

    if schema_role:
        role = facts["roles"].get(schema_role)
        problems = []
        if role is None:
            problems.append("%s does not exist" % schema_role)
        else:
            attrs = [a[3:].upper() for a in ATTRIBUTES if role.get(a)]
            if attrs:
                problems.append("%s has attributes %s (it must be NOLOGIN with none)" % (schema_role, ", ".join(attrs)))
            groups = sorted(_memberships_of(facts, schema_role))
            if groups:
                problems.append("%s is a member of %s (it must be a member of no role)" % (schema_role, ", ".join(groups)))
            members = dict((r["member"], r) for r in facts["memberships"] if r["group"] == schema_role)
            for login in logins:
                row = members.get(login)
                if row is None:
                    problems.append("%s is not a member of %s" % (login, schema_role))
                elif row.get("set_option") is False:
                    problems.append("%s is a member of %s without SET, so its role setting is ignored (the "
                                    "session runs as %s, with a warning)" % (login, schema_role, login))
            others = sorted(set(members) - set(logins))
            if others:
                problems.append("%s is granted to %s (only the login roles may be its members)"
                                % (schema_role, ", ".join(others)))
        findings.append({"check": "schema_role", "ok": not problems,
                         "detail": "; ".join(problems) if problems else
                         "%s: NOLOGIN, no attributes, members %s (%s)" % (
                             schema_role, ", ".join(logins), _options(dict(MEMBERSHIP_OPTIONS)))})

        wrong = []
        for login in logins:
            value = _setting(facts, login, db)
            if value != schema_role:
                wrong.append("%s starts as %s in %s (want role = %s: ALTER ROLE %s IN DATABASE %s SET role = '%s')"
                             % (login, value or "itself", db, schema_role, login, db, schema_role))
        findings.append({"check": "role_settings", "ok": not wrong,
                         "detail": "; ".join(wrong) if wrong else
                         "%s start as %s in %s" % (", ".join(logins), schema_role, db)})

    owned = _objects(facts, db, "o")
    if schema_role:
        stray = [o for o in owned if o["role"] != schema_role]
        rule = "owned by a role other than %s" % schema_role
    else:
        stray = [o for o in owned if o["role"] in logins]
        rule = "owned by a login role"
    by_owner = {}
    for o in stray:
        by_owner.setdefault(o["role"], []).append(o)
    findings.append({"check": "object_owners", "ok": not stray,
                     "detail": ("objects in %s %s: " % (db, rule) + "; ".join(
                         "%s owns %s" % (owner, _describe(entries, names)) for owner, entries in sorted(by_owner.items())))
                     if stray else "no object in %s is %s" % (db, rule)})

    diffs = []
    acl = dict((login, _acl_keys(facts, db, login)) for login in logins)
    groups = dict((login, dict((g, _options(r)) for g, r in _memberships_of(facts, login).items())) for login in logins)
    for login in logins:
        for other in logins:
            if other == login:
                continue
            extra = sorted(acl[login] - acl[other])
            if extra:
                diffs.append("%s holds privileges on %d object(s) in %s that %s lacks: %s" % (
                    login, len(extra), db, other, ", ".join(
                        "%s %s" % (c, (names or {}).get((db, c, k), k)) for c, k in extra[:SAMPLE])))
            only = sorted((g, o) for g, o in groups[login].items() if groups[other].get(g) != o)
            if only:
                diffs.append("%s is a member of %s, %s is not (with these options)" % (
                    login, ", ".join("%s (%s)" % (g, o) for g, o in only), other))
    findings.append({"check": "plane_privileges", "ok": not diffs,
                     "detail": "; ".join(diffs) if diffs else
                     "%s hold the same privileges in %s and the same memberships" % (", ".join(logins), db)})
    return findings


def preflight_problems(record, facts, source, destination, names=None):
    """Why DESTINATION (a login role) could not use or migrate what SOURCE could, in RECORD's
    database (list of str, empty when it can). Pure."""
    db = record["database"]
    schema_role = record.get("schema_role")
    problems = []
    src_setting = _setting(facts, source, db)
    dst_setting = _setting(facts, destination, db)
    if schema_role and dst_setting != schema_role:
        problems.append("%s would not start as the schema role %s in %s (role setting: %s)"
                        % (destination, schema_role, db, dst_setting or "none"))
    elif not schema_role and src_setting != dst_setting:
        problems.append("%s starts as %s in %s, %s as %s"
                        % (source, src_setting or "itself", db, destination, dst_setting or "itself"))
    src_groups = _memberships_of(facts, source)
    dst_groups = _memberships_of(facts, destination)
    for group, row in sorted(src_groups.items()):
        other = dst_groups.get(group)
        if other is None:
            problems.append("%s is a member of %s, %s is not" % (source, group, destination))
        elif any(row.get(k) and not other.get(k) for k in ("inherit_option", "set_option")):
            problems.append("%s is a member of %s with (%s), %s only with (%s)"
                            % (source, group, _options(row), destination, _options(other)))
    owned = [o for o in _objects(facts, db, "o") if o["role"] == source]
    if owned:
        problems.append("%s owns objects in %s that %s could neither use nor migrate: %s"
                        % (source, db, destination, _describe(owned, names)))
    extra = sorted(_acl_keys(facts, db, source) - _acl_keys(facts, db, destination))
    if extra:
        problems.append("%s holds privileges on %d object(s) in %s that %s lacks (%s)" % (
            source, len(extra), db, destination,
            ", ".join("%s %s" % (c, (names or {}).get((db, c, k), k)) for c, k in extra[:SAMPLE])))
    return problems


def flagged_objects(findings_facts, records):
    """{database: [(class, object id)]} of the objects the findings would name."""
    wanted = {}
    for record in records:
        db, schema_role = record["database"], record.get("schema_role")
        logins = _logins(record)
        for o in _objects(findings_facts, db, "o") + _objects(findings_facts, db, "a"):
            if (o["deptype"] == "o" and (o["role"] != schema_role if schema_role else o["role"] in logins)) \
                    or (o["deptype"] == "a" and o["role"] in logins):
                wanted.setdefault(db, set()).update((o["class"], k) for k in o["objects"][:SAMPLE])
    return dict((db, sorted(v)) for db, v in wanted.items())


DESCRIBE_QUERY = """
SELECT x.class, x.key,
       pg_catalog.pg_describe_object(o.classid, o.objid, o.objsubid) AS name,
       COALESCE((pg_catalog.pg_identify_object(o.classid, o.objid, o.objsubid)).schema
                OPERATOR(pg_catalog.~) '^pg_(toast_)?temp_[0-9]+$', false) AS temporary
  FROM ROWS FROM (pg_catalog.unnest(%(classes)s::text[]), pg_catalog.unnest(%(keys)s::text[])) AS x(class, key)
 CROSS JOIN LATERAL (SELECT x.class::pg_catalog.regclass::oid AS classid,
                            pg_catalog.split_part(x.key, '.', 1)::oid AS objid,
                            COALESCE(NULLIF(pg_catalog.split_part(x.key, '.', 2), ''), '0')::int AS objsubid) AS o
"""


def describe_objects(connect_database, wanted):
    """Name the objects WANTED ({database: [(class, key)]}) with one short connection to each of
    those databases (only the drifted ones). CONNECT_DATABASE(name) returns a database.Session
    or a DB-API connection. Returns ({(database, class, key): name},
    set of such keys that are temporary objects); a database that cannot be reached is skipped
    (its objects stay unnamed and count)."""
    names, temporary = {}, set()
    for database, items in sorted(wanted.items()):
        try:
            session = as_session(connect_database(database))
        except Exception:  # naming is a courtesy: the findings stand without it
            continue
        try:
            for row in session.rows(DESCRIBE_QUERY, {"classes": [c for c, k in items],
                                                     "keys": [k for c, k in items]}):
                key = (database, row["class"], row["key"])
                if row["name"]:
                    names[key] = row["name"]
                if row["temporary"]:
                    temporary.add(key)
        except Exception:
            pass
        finally:
            session.close()
    return names, temporary


def without_temporary(facts, temporary):
    """FACTS without the TEMPORARY objects ({(database, class, key)}): a session's temporary
    tables go with the session (the fence ends it), so they are no parity drift."""
    if not temporary:
        return facts
    out = dict((k, v) for k, v in facts.items() if k != "_index")
    out["objects"] = []
    for o in facts["objects"]:
        keep = [k for k in o["objects"] if (o["database"], o["class"], k) not in temporary]
        dropped = len(o["objects"]) - len(keep)
        if dropped and o["count"] - dropped > 0:
            out["objects"].append(dict(o, objects=keep, count=o["count"] - dropped))
        elif not dropped:
            out["objects"].append(o)
    return out


def resolve(facts, records, connect_database):
    """(facts without temporary objects, names) after naming the flagged objects of RECORDS."""
    wanted = flagged_objects(facts, records)
    if not wanted:
        return facts, {}
    names, temporary = describe_objects(connect_database, wanted)
    return without_temporary(facts, temporary), names


def merge_findings(results, records, facts, names, summary_line, overall_summary):
    """Add the parity findings to the audit RESULTS (one per record, same order) and return
    (results, overall) recomputed. SUMMARY_LINE and OVERALL_SUMMARY are the audit's own
    (audit/checks.py), passed in because server code never imports an action package."""
    for result, record in zip(results, records):
        if result.get("state", "present") != "present":
            continue
        result["findings"].extend(audit_findings(record, facts, names))
        result["drift"] = any(not f["ok"] for f in result["findings"])
        result["summary"] = summary_line(result)
    return results, overall_summary(results)


def fence_record(dep):
    """The parity record of a fence module's Deployment (source and destination login roles)."""
    return {"id": dep["name"], "state": "present", "database": dep["database"], "schema_role": dep.get("schema_role"),
            "login_roles": {"destination": dep["destination_role"], "source": dep["source_role"]}}
