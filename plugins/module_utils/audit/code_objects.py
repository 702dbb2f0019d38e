# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Code that runs in other sessions: the audit's ``code_objects`` check.

A login role's sessions act as the Deployment's schema role, which may create objects in the
Airflow schema. Some objects are code that PostgreSQL runs in *other* sessions: a trigger fires
in the session that writes its table, a rule rewrites the queries of whoever runs them, an
operator or a cast is picked by name resolution in any session, an event trigger fires on DDL,
and a function runs wherever a call (or an unqualified name) resolves to it. So one plane can
leave code behind that runs in the other plane's sessions after a failover (and, from there,
``SET ROLE NONE`` and ``ALTER ROLE session_user PASSWORD ...``), or in an admin's session.

Per metadata database, one query (``CODE_OBJECTS_QUERY``) lists every trigger (not internal),
rule (not a view's ``_RETURN``), function, procedure, aggregate, operator, cast and event
trigger that PostgreSQL did not create at initdb (object id 16384 or more, which leaves out
``pg_catalog`` and ``information_schema``) and that no extension owns (``pg_depend`` deptype
``e``; triggers and rules: of a table no extension owns), plus every ``SECURITY DEFINER``
function, also an extension's. Objects of temporary schemas are left out (they live and die
with one session, and only run there).

The query runs inside a database that its planes can write to, so it resolves nothing through
the search path: every operator is written ``OPERATOR(pg_catalog.x)``, every function and
catalog is qualified with ``pg_catalog``, casts go to built-in types only, and the connection
pins ``search_path`` at start-up (which also makes the names it prints schema-qualified). A
cheap existence query comes first: most metadata databases hold no such object.

The user's own objects are accepted with the ``allowed_objects`` option
(``dataplane_audit_allowed_objects``): entries ``"<kind> <name>"`` (the name as the audit prints
it), or ``{object: "<kind> <name>", database: ..., deployment: ...}`` to accept it in one
database or one Deployment only. ``parse_allowed``, ``normalise_name`` and ``is_allowed`` are
pure (unit-tested); ``read_databases`` reads; ``finding`` is pure.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ..base import database as _database
from ..base import workers as _workers

CHECK = "code_objects"
WORKERS = 4        # threads for the per-database connections (see workers.py)
SHOWN = 10         # objects named in one finding's detail (the result lists every one)

# The kinds, in the order the findings list them.
KINDS = ("trigger", "rule", "event_trigger", "operator", "cast", "function", "procedure", "aggregate")
KIND_ALIASES = {"event trigger": "event_trigger", "window function": "function"}

# Names that the query prints (regprocedure, regoperator, format_type) are schema-qualified
# unless the schema is on the search path: with only pg_catalog there (pinned at connect time,
# database.PINNED_OPTIONS), every user object's name carries its schema, whatever the
# database's or the role's own search_path says.

# Columns: kind, name (what allowed_objects matches), owner, security_definer (routines),
# extension (an extension's SECURITY DEFINER function), runs (the function it calls) with that
# function's owner and SECURITY DEFINER flag, target (table of a trigger or rule; schema of a
# routine or operator), event (trigger: tgtype; rule: ev_type and INSTEAD; cast: castcontext;
# event trigger: its event), enabled (triggers, rules, event triggers).
CODE_OBJECTS_QUERY = """
WITH ext AS (
  SELECT d.classid, d.objid, e.extname
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
   WHERE d.deptype OPERATOR(pg_catalog.=) 'e'
     AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid
), nsp AS (
  SELECT n.oid, n.nspname
    FROM pg_catalog.pg_namespace n
   WHERE NOT pg_catalog.pg_is_other_temp_schema(n.oid)
     AND n.oid OPERATOR(pg_catalog.<>) pg_catalog.pg_my_temp_schema()
)
SELECT CASE WHEN p.prokind OPERATOR(pg_catalog.=) 'p' THEN 'procedure'
            WHEN p.prokind OPERATOR(pg_catalog.=) 'a' THEN 'aggregate'
            ELSE 'function' END::pg_catalog.text AS kind,
       p.oid::pg_catalog.regprocedure::pg_catalog.text AS name,
       pg_catalog.pg_get_userbyid(p.proowner)::pg_catalog.text AS owner,
       p.prosecdef AS security_definer,
       x.extname::pg_catalog.text AS extension,
       NULL::pg_catalog.text AS runs,
       NULL::pg_catalog.text AS runs_owner,
       NULL::pg_catalog.bool AS runs_security_definer,
       n.nspname::pg_catalog.text AS target,
       NULL::pg_catalog.text AS event,
       NULL::pg_catalog.bool AS enabled
  FROM pg_catalog.pg_proc p
  JOIN nsp n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
  LEFT JOIN ext x ON x.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
                 AND x.objid OPERATOR(pg_catalog.=) p.oid
 WHERE p.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid
   AND (x.extname IS NULL OR p.prosecdef)
UNION ALL
SELECT 'trigger',
       pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
         OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname) OPERATOR(pg_catalog.||) '.'
         OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.tgname),
       pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text,
       NULL, NULL,
       f.oid::pg_catalog.regprocedure::pg_catalog.text,
       pg_catalog.pg_get_userbyid(f.proowner)::pg_catalog.text,
       f.prosecdef,
       pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
         OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),
       t.tgtype::pg_catalog.int4::pg_catalog.text,
       t.tgenabled OPERATOR(pg_catalog.<>) 'D'
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
  JOIN nsp n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
  LEFT JOIN pg_catalog.pg_proc f ON f.oid OPERATOR(pg_catalog.=) t.tgfoid
 WHERE NOT t.tgisinternal
   AND NOT EXISTS (SELECT 1 FROM ext x
                    WHERE x.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
                      AND x.objid OPERATOR(pg_catalog.=) c.oid)
UNION ALL
SELECT 'rule',
       pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
         OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname) OPERATOR(pg_catalog.||) '.'
         OPERATOR(pg_catalog.||) pg_catalog.quote_ident(r.rulename),
       pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text,
       NULL, NULL, NULL, NULL, NULL,
       pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
         OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),
       r.ev_type::pg_catalog.text OPERATOR(pg_catalog.||)
         CASE WHEN r.is_instead THEN ' instead' ELSE '' END,
       r.ev_enabled OPERATOR(pg_catalog.<>) 'D'
  FROM pg_catalog.pg_rewrite r
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class
  JOIN nsp n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE r.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid
   AND r.rulename OPERATOR(pg_catalog.<>) '_RETURN'
   AND NOT EXISTS (SELECT 1 FROM ext x
                    WHERE x.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
                      AND x.objid OPERATOR(pg_catalog.=) c.oid)
UNION ALL
SELECT 'operator',
       o.oid::pg_catalog.regoperator::pg_catalog.text,
       pg_catalog.pg_get_userbyid(o.oprowner)::pg_catalog.text,
       NULL, NULL,
       f.oid::pg_catalog.regprocedure::pg_catalog.text,
       pg_catalog.pg_get_userbyid(f.proowner)::pg_catalog.text,
       f.prosecdef,
       n.nspname::pg_catalog.text,
       NULL, NULL
  FROM pg_catalog.pg_operator o
  JOIN nsp n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace
  LEFT JOIN pg_catalog.pg_proc f ON f.oid OPERATOR(pg_catalog.=) o.oprcode::pg_catalog.oid
 WHERE o.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid
   AND NOT EXISTS (SELECT 1 FROM ext x
                    WHERE x.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass::pg_catalog.oid
                      AND x.objid OPERATOR(pg_catalog.=) o.oid)
UNION ALL
SELECT 'cast',
       '(' OPERATOR(pg_catalog.||) pg_catalog.format_type(c.castsource, NULL) OPERATOR(pg_catalog.||) ' AS '
         OPERATOR(pg_catalog.||) pg_catalog.format_type(c.casttarget, NULL) OPERATOR(pg_catalog.||) ')',
       pg_catalog.pg_get_userbyid(CASE WHEN f.oid IS NOT NULL THEN f.proowner
                                       WHEN ts.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid THEN ts.typowner
                                       ELSE tt.typowner END)::pg_catalog.text,
       NULL, NULL,
       f.oid::pg_catalog.regprocedure::pg_catalog.text,
       pg_catalog.pg_get_userbyid(f.proowner)::pg_catalog.text,
       f.prosecdef,
       NULL,
       c.castcontext::pg_catalog.text,
       NULL
  FROM pg_catalog.pg_cast c
  LEFT JOIN pg_catalog.pg_proc f ON f.oid OPERATOR(pg_catalog.=) c.castfunc
  LEFT JOIN pg_catalog.pg_type ts ON ts.oid OPERATOR(pg_catalog.=) c.castsource
  LEFT JOIN pg_catalog.pg_type tt ON tt.oid OPERATOR(pg_catalog.=) c.casttarget
 WHERE c.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid
   AND NOT EXISTS (SELECT 1 FROM ext x
                    WHERE x.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_cast'::pg_catalog.regclass::pg_catalog.oid
                      AND x.objid OPERATOR(pg_catalog.=) c.oid)
UNION ALL
SELECT 'event_trigger',
       pg_catalog.quote_ident(e.evtname),
       pg_catalog.pg_get_userbyid(e.evtowner)::pg_catalog.text,
       NULL, NULL,
       f.oid::pg_catalog.regprocedure::pg_catalog.text,
       pg_catalog.pg_get_userbyid(f.proowner)::pg_catalog.text,
       f.prosecdef,
       NULL,
       e.evtevent::pg_catalog.text,
       e.evtenabled OPERATOR(pg_catalog.<>) 'D'
  FROM pg_catalog.pg_event_trigger e
  LEFT JOIN pg_catalog.pg_proc f ON f.oid OPERATOR(pg_catalog.=) e.evtfoid
 WHERE NOT EXISTS (SELECT 1 FROM ext x
                    WHERE x.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_event_trigger'::pg_catalog.regclass::pg_catalog.oid
                      AND x.objid OPERATOR(pg_catalog.=) e.oid)
"""


# --------------------------------------------------------------------------- the allow-list


class AllowedObjectError(ValueError):
    """An entry of allowed_objects that cannot be understood (the message says why)."""


_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]*$")


def normalise_name(text):
    """NAME as the audit compares it: outside double quotes, letter case and runs of white
    space do not matter, nor white space next to ``(``, ``)``, ``,`` and ``.``; a quoted
    identifier that would need no quotes loses them (``"public"`` is ``public``). Pure."""
    out = []
    pos = 0
    text = text.strip()
    for match in _QUOTED.finditer(text):
        out.append(_normalise_plain(text[pos:match.start()]))
        inner = match.group(1).replace('""', '"')
        out.append(inner if _PLAIN_IDENTIFIER.match(inner) else '"%s"' % inner.replace('"', '""'))
        pos = match.end()
    out.append(_normalise_plain(text[pos:]))
    return "".join(out).strip()


def _normalise_plain(part):
    part = re.sub(r"\s+", " ", part.lower())
    return re.sub(r"\s*([(),.])\s*", r"\1", part)


def _split_kind(text):
    """(kind, name) of "<kind> <name>"; the kind is one of KINDS (or an alias)."""
    if not isinstance(text, str) or not text.strip():
        raise AllowedObjectError("an entry must be a non-empty string \"<kind> <name>\", got %r" % (text,))
    words = text.strip().split(None, 2)
    kind = words[0].lower()
    rest = text.strip()[len(words[0]):].strip()
    if len(words) >= 2 and ("%s %s" % (kind, words[1].lower())) in KIND_ALIASES:
        kind = KIND_ALIASES["%s %s" % (kind, words[1].lower())]
        rest = rest[len(words[1]):].strip()
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise AllowedObjectError("%r: unknown kind %r (one of %s)" % (text, words[0], ", ".join(KINDS)))
    if not rest:
        raise AllowedObjectError("%r: the %s's name is missing" % (text, kind))
    return kind, rest


def object_key(kind, name):
    """The comparison key of one object: (kind, normalised name). A cast's name is kept in
    parentheses, ``(source AS target)``, whether or not they were written."""
    name = normalise_name(name)
    if kind == "cast" and not (name.startswith("(") and name.endswith(")")):
        name = "(%s)" % name
    return kind, name


def parse_allowed(entries):
    """The allow-list (the ``allowed_objects`` option) as a list of dicts
    ``{kind, name, database, deployment, text}``. Raises AllowedObjectError naming every
    entry it cannot read. Pure."""
    parsed, problems = [], []
    for index, entry in enumerate(entries or []):
        scope = {}
        text = entry
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - set(["object", "database", "deployment"]))
            if unknown:
                problems.append("allowed_objects[%d]: unknown key(s) %s (object, database, deployment)"
                                % (index, ", ".join(unknown)))
                continue
            text = entry.get("object")
            for key in ("database", "deployment"):
                if entry.get(key) not in (None, ""):
                    scope[key] = str(entry[key])
        try:
            kind, name = _split_kind(text)
        except AllowedObjectError as exc:
            problems.append("allowed_objects[%d]: %s" % (index, exc))
            continue
        kind, key = object_key(kind, name)
        parsed.append({"kind": kind, "name": key, "database": scope.get("database"),
                       "deployment": scope.get("deployment"), "text": "%s %s" % (kind, name.strip())})
    if problems:
        raise AllowedObjectError("; ".join(problems))
    return parsed


def is_allowed(obj, record, allowed):
    """Whether OBJ ({kind, name}) of RECORD's database is on the parsed allow-list. Pure."""
    key = object_key(obj["kind"], obj["name"])
    for entry in allowed:
        if (entry["kind"], entry["name"]) != key:
            continue
        if entry["database"] is not None and entry["database"] != record["database"]:
            continue
        if entry["deployment"] is not None and entry["deployment"] != str(record["id"]):
            continue
        return True
    return False


# --------------------------------------------------------------------------- reading

# Whether the database holds any object CODE_OBJECTS_QUERY could list: most metadata databases
# hold none (Airflow's migrations leave none), and this query costs a fresh connection about a
# fifth of the full one (measured on 16: 1.2 ms against 5.8 ms, most of it planning on a cold
# catalog cache), so the full query runs only where it can find something.
ANY_CODE_QUERY = """
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE NOT t.tgisinternal)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid
                  AND r.rulename OPERATOR(pg_catalog.<>) '_RETURN')
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast c WHERE c.oid OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger e) AS found
"""


def read_database(session):
    """The code objects of the database SESSION is connected to: one cheap query, and the
    descriptive one only where it may find something, each a statement of its own in
    autocommit (a single SELECT reads one snapshot; the session's search_path is pinned at
    connect time). Returns a list of dicts, the query's columns."""
    session.conn.autocommit = True
    if not session.rows(ANY_CODE_QUERY)[0]["found"]:
        return []
    return [dict(row) for row in session.rows(CODE_OBJECTS_QUERY)]


# Whether the login may connect to each database (any route: PUBLIC, a group, ownership,
# superuser). A managed-PostgreSQL admin usually holds no CONNECT on the metadata databases; the
# audit then skips them (and says so) instead of failing a connection. Runs in the shared
# snapshot, in the database the audit connects to.
CONNECT_QUERY = (
    "SELECT d.datname, pg_catalog.has_database_privilege(d.oid, 'CONNECT') AS can_connect "
    "FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) ANY(%(names)s::pg_catalog.text[])")


def read_connect_privileges(session, databases):
    """{database: bool} for DATABASES (names): may the login connect there."""
    if not databases:
        return {}
    return dict((row["datname"], bool(row["can_connect"]))
                for row in session.rows(CONNECT_QUERY, {"names": sorted(databases)}))


def read_databases(module, databases, also=None, workers=WORKERS):
    """Read the code objects of every database in DATABASES (a list of names), over up to
    WORKERS threads, one short connection per database (so at most WORKERS at a time, whatever
    the number of Deployments). ALSO(database, session), when given, does more work on the same
    connection before it closes (the audit names parity's objects there); its result is kept.
    Returns ({database: [objects]}, {database: error text}, {database: ALSO's result}) and never
    fails the module (a database it cannot read is reported by the finding)."""
    found, errors, extra = {}, {}, {}
    stand_ins = [_database.ThreadModule(module) for dummy in range(_workers.thread_count(len(databases), workers))]

    def job(database):
        def run(stand_in):
            session = _database.Session(stand_in, _database.connect_database(stand_in, database, fail=False))
            try:
                objects = read_database(session)
                return objects, (also(database, session) if also is not None else None)
            finally:
                session.close()
        return run

    outcomes = _workers.run_jobs([job(db) for db in databases], stand_ins)
    for database, outcome in zip(databases, outcomes):
        if outcome.error is not None:
            errors[database] = _first_line(outcome.error)
        else:
            found[database], extra[database] = outcome.result
    for stand_in in stand_ins:
        for text in stand_in.warnings:
            module.warn(text)
    return found, errors, extra


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__


# --------------------------------------------------------------------------- findings

TRIGGER_EVENTS = ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE"), (32, "TRUNCATE"))
RULE_EVENTS = {"1": "SELECT", "2": "UPDATE", "3": "INSERT", "4": "DELETE"}
CAST_CONTEXTS = {"i": "implicitly, wherever the source type meets a target of that type",
                 "a": "in assignments (INSERT, UPDATE) of the source type to a column of the target type",
                 "e": "wherever a query casts between the two types"}


def _trigger_events(tgtype):
    try:
        bits = int(tgtype)
    except (TypeError, ValueError):
        return "its events"
    timing = "INSTEAD OF" if bits & 64 else ("BEFORE" if bits & 2 else "AFTER")
    events = [name for bit, name in TRIGGER_EVENTS if bits & bit]
    return "%s %s, FOR EACH %s" % (timing, " OR ".join(events) or "?", "ROW" if bits & 1 else "STATEMENT")


def _runs(obj):
    """' it runs f(), owned by x (SECURITY DEFINER: with x's privileges)'."""
    if not obj.get("runs"):
        return ""
    text = "; it runs %s (owner %s)" % (obj["runs"], obj.get("runs_owner") or "?")
    if obj.get("runs_security_definer"):
        text += ", SECURITY DEFINER: with %s's privileges" % (obj.get("runs_owner") or "its owner")
    return text


SESSIONS = "the admitted plane's sessions after a failover, or an admin's"


def why(obj):
    """Why OBJ (a row of CODE_OBJECTS_QUERY) matters: where it runs, and as whom (the sessions
    it runs in are SESSIONS, which the finding says once). Pure."""
    kind = obj["kind"]
    if kind == "trigger":
        text = "fires %s on %s in every session that writes that table" % (
            _trigger_events(obj.get("event")), obj.get("target"))
    elif kind == "rule":
        event = (obj.get("event") or "").split(" ")
        text = ("rewrites every %s on %s (DO %s) in the session that runs it"
                % (RULE_EVENTS.get(event[0], "query"), obj.get("target"), "INSTEAD" if len(event) > 1 else "ALSO"))
    elif kind == "event_trigger":
        text = ("fires on %s in every session of the database, migrations of either plane and an admin's "
                "DDL included" % (obj.get("event") or "its event"))
    elif kind == "operator":
        text = ("chosen over PostgreSQL's own operator, when its argument types fit better, in any session "
                "whose search_path includes schema %s%s" % (obj.get("target"), " (the default search_path does)"
                                                            if obj.get("target") == "public" else ""))
    elif kind == "cast":
        text = "a cast has no schema: every session of the database applies it %s" % CAST_CONTEXTS.get(
            obj.get("event"), "when asked to")
    elif obj.get("security_definer"):
        text = "SECURITY DEFINER: runs with the privileges of its owner %s in every session that calls it" % (
            obj.get("owner"))
    else:
        text = "runs in any session that calls it, or whose unqualified call resolves to it through schema %s" % (
            obj.get("target"))
    if obj.get("enabled") is False:
        text += "; disabled now, but its table's owner can enable it" if kind in ("trigger", "rule") \
            else "; disabled now, but its owner can enable it"
    if obj.get("extension"):
        text += "; member of extension %s" % obj["extension"]
    return text + _runs(obj)


def describe(obj):
    """'trigger public.t.trg (owner x): fires ...' Pure."""
    return "%s %s (owner %s): %s" % (obj["kind"].replace("_", " "), obj["name"], obj.get("owner") or "?", why(obj))


def _sort_key(obj):
    return (KINDS.index(obj["kind"]) if obj["kind"] in KINDS else len(KINDS), obj["name"])


def record_objects(record, objects, allowed):
    """The code objects of RECORD's database as the result lists them
    ({kind, name, owner, security_definer, runs, why, allowed}), sorted. Pure."""
    out = []
    for obj in sorted(objects, key=_sort_key):
        out.append({"kind": obj["kind"], "name": obj["name"], "owner": obj.get("owner"),
                    "security_definer": bool(obj.get("security_definer")), "runs": obj.get("runs"),
                    "extension": obj.get("extension"), "why": "%s; in %s" % (why(obj), SESSIONS),
                    "allowed": is_allowed(obj, record, allowed), "text": describe(obj)})
    return out


def finding(record, objects, error, allowed, connected_as=None, skipped=False):
    """(finding {check, ok, detail}, listed objects) of RECORD. OBJECTS: the rows read from its
    database (None when it was not read), ERROR: why it could not be read, SKIPPED: the login
    holds no CONNECT privilege there (the finding then says it did not look). Pure."""
    database = record["database"]
    if skipped:
        return ({"check": CHECK, "ok": True,
                 "detail": "not checked: %s holds no CONNECT privilege on %s; audit as %s (through the owner "
                           "role) or as a superuser to list the code in it"
                           % (connected_as or "the login", database, record.get("commander_user"))}, [])
    if error is not None:
        return ({"check": CHECK, "ok": False,
                 "detail": "the code objects of %s could not be read%s: %s (a trigger, rule, operator or "
                           "function there would run unseen in other sessions)"
                           % (database, " as %s" % connected_as if connected_as else "", error)}, [])
    listed = record_objects(record, objects or [], allowed)
    bad = [o for o in listed if not o["allowed"]]
    accepted = [o for o in listed if o["allowed"]]
    if bad:
        shown = "; ".join(o["text"] for o in bad[:SHOWN])
        more = (" ... and %d more (listed in code_objects)" % (len(bad) - SHOWN)) if len(bad) > SHOWN else ""
        detail = ("%d object(s) in %s run code in other sessions (%s) and are not in "
                  "dataplane_audit_allowed_objects: %s%s" % (len(bad), database, SESSIONS, shown, more))
    else:
        detail = "no trigger, rule, event trigger, operator, cast, function, procedure or aggregate in %s " \
                 "outside extensions, and no SECURITY DEFINER function" % database
        if accepted:
            detail = "only objects in dataplane_audit_allowed_objects run code in other sessions in %s: %s" % (
                database, ", ".join("%s %s" % (o["kind"], o["name"]) for o in accepted))
    return {"check": CHECK, "ok": not bad, "detail": detail}, listed


def merge_findings(results, records, found, errors, allowed, summary_line, overall_summary, connected_as=None,
                   skipped=()):
    """Add the code_objects finding (and the ``code_objects`` list) to the audit RESULTS of the
    present RECORDS whose database was read or could not be (FOUND / ERRORS, by database), or
    was SKIPPED (no CONNECT privilege). Returns (results, overall) recomputed with
    OVERALL_SUMMARY; SUMMARY_LINE is audit.summary_line."""
    for result, record in zip(results, records):
        database = record["database"]
        if result.get("state", "present") != "present" or (
                database not in found and database not in errors and database not in skipped):
            continue
        item, listed = finding(record, found.get(database), errors.get(database), allowed, connected_as,
                               database in skipped and database not in found and database not in errors)
        result["findings"].append(item)
        result["code_objects"] = [dict((k, v) for k, v in o.items() if k != "text") for o in listed]
        result["drift"] = any(not f["ok"] for f in result["findings"])
        result["summary"] = summary_line(result)
    return results, overall_summary(results)
