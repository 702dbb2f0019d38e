# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit's ``login_passwords`` check: is each login role's stored password the one given?

Any role may change its own password (``ALTER ROLE session_user PASSWORD ...``), and so may code
that one plane leaves in the other plane's sessions (a trigger, see code_objects.py): the fenced
plane could then log in under the admitted plane's name. When the audit is given the login roles'
passwords (the records' ``passwords``) and its login may read ``pg_authid`` (a superuser), it
compares each stored verifier (SCRAM-SHA-256, or md5) with the password given, on the managed
node (scram.password_matches), and reports a role whose password was changed outside the
collection. No password, verifier or salt is ever returned or logged; only whether they match.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..base.scram import password_matches

CHECK = "login_passwords"

READABLE_QUERY = ("SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS readable")
VERIFIERS_QUERY = ("SELECT a.rolname, a.rolpassword FROM pg_catalog.pg_authid a "
                   "WHERE a.rolname OPERATOR(pg_catalog.=) ANY(%(names)s::pg_catalog.text[])")


def wanted(records):
    """{login role: (record id, plane, password)} of the present RECORDS that carry a password."""
    out = {}
    for record in records:
        if record.get("state", "present") != "present":
            continue
        for plane, password in sorted((record.get("passwords") or {}).items()):
            login = record["login_roles"].get(plane)
            if login and password not in (None, ""):
                out[login] = (record["id"], plane, password)
    return out


def read_facts(session, records):
    """Compare, in SESSION's snapshot, the stored passwords of the login roles of RECORDS that
    carry one. Returns None when no record carries a password, else {"readable": bool,
    "match": {login role: True | False | None (a format that cannot be compared) |
    "none" (no password stored)}}; roles that do not exist are left out. The verifiers
    themselves are dropped here."""
    given = wanted(records)
    if not given:
        return None
    facts = {"readable": bool(session.rows(READABLE_QUERY)[0]["readable"]), "match": {}}
    if not facts["readable"]:
        return facts
    for row in session.rows(VERIFIERS_QUERY, {"names": sorted(given)}):
        login = row["rolname"]
        stored = row["rolpassword"]
        if stored is None:
            facts["match"][login] = "none"
        else:
            facts["match"][login] = password_matches(stored, given[login][2], login)
    return facts


def finding(record, facts, connected_as=None):
    """The login_passwords finding of RECORD, or None when no password was given for it. Pure."""
    if facts is None or record.get("state", "present") != "present":
        return None
    planes = [(plane, record["login_roles"][plane]) for plane in sorted(record.get("passwords") or {})
              if plane in record["login_roles"] and (record["passwords"][plane] not in (None, ""))]
    if not planes:
        return None
    logins = ", ".join(login for dummy, login in planes)
    if not facts.get("readable"):
        return {"check": CHECK, "ok": True,
                "detail": "not checked: %s cannot read pg_authid (only a superuser can); the passwords of %s "
                          "were not compared" % (connected_as or "the login", logins)}
    problems, notes, same = [], [], []
    for plane, login in planes:
        match = facts["match"].get(login, "missing")
        if match == "missing":
            continue  # the login_roles finding reports a missing role
        if match == "none":
            problems.append("%s (plane %s) has no password stored: not the one given (changed outside the "
                            "collection?)" % (login, plane))
        elif match is False:
            problems.append("%s (plane %s): the stored password is not the one given: changed outside the "
                            "collection (ALTER ROLE ... PASSWORD, which the role itself, or code running in "
                            "its sessions, may run); provision with update_password: true sets it back"
                            % (login, plane))
        elif match is None:
            notes.append("%s (plane %s): stored in a format that cannot be compared" % (login, plane))
        else:
            same.append(login)
    if problems:
        return {"check": CHECK, "ok": False, "detail": "; ".join(problems + notes)}
    detail = "the stored passwords of %s are the ones given" % (", ".join(same) if same else "no login role")
    if notes:
        detail += "; " + "; ".join(notes)
    return {"check": CHECK, "ok": True, "detail": detail}


def merge_findings(results, records, facts, summary_line, overall_summary, connected_as=None):
    """Add the login_passwords finding to the RESULTS of RECORDS that carry passwords; returns
    (results, overall) recomputed."""
    if facts is None:
        return results, overall_summary(results)
    for result, record in zip(results, records):
        item = finding(record, facts, connected_as)
        if item is None:
            continue
        result["findings"].append(item)
        result["drift"] = any(not f["ok"] for f in result["findings"])
        result["summary"] = summary_line(result)
    return results, overall_summary(results)
