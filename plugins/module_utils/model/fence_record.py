# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fence state a failover leaves on the server: which login roles of a database are fenced.

Where it lives: in the comment of the metadata database itself (``COMMENT ON DATABASE``),
one line that starts with ``RECORD_PREFIX`` followed by compact JSON. Why there:

- it is on the PostgreSQL server, so every controller (a laptop, AWX, another team's CI)
  reads the same truth;
- only a role with the privileges of the database's owner (the owner role, so
  ``commander_user`` through the reference setup, or a superuser) may set it: nobody without
  the Deployment's owner privileges can forge it, and ``commander_user`` needs nothing beyond
  the reference setup to write it;
- database comments are shared catalog rows, so the record is written in the *same
  transaction* as the ``REVOKE CONNECT``/``GRANT CONNECT`` it describes, from whatever
  database the module is connected to: record and ACL cannot disagree after a crash;
- it travels with the database's ACL (physical backups, ``pg_dumpall``, ``pg_dump --create``
  keep both or neither);
- it does not depend on the fence helper being installed.

A comment the database already had is kept: the record is one line of its own, replaced in
place, and every other line stays as it was.

Record fields (JSON object):

``v``          format version (``RECORD_VERSION``)
``fenced``     login roles whose CONNECT a fence took away (sorted list of names)
``admitted``   login roles a fence admitted (sorted list of names)
``phase``      ``fencing`` (REVOKE committed, destination not admitted yet) or ``complete``
``generation`` increases by one with every write; a fence compares it to detect that another
               run changed the state while it waited
``run``        an id of the run that wrote it (free text, for messages)
``by``         the login (``session_user``) that wrote it
``at``         when (UTC, ISO 8601, from the server's clock)
``application`` the writer's ``application_name``
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ..base.database import sql

RECORD_PREFIX = "dataplane.postgresql fence state: "
RECORD_VERSION = 1
PHASES = ("fencing", "complete")

READ_SQL = (
    "SELECT d.datname, pg_catalog.shobj_description(d.oid, 'pg_database') AS comment"
    " FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) ANY (%s::text[])")


class RecordError(ValueError):
    """A state line that is present but cannot be read (hand-edited or damaged)."""


def split_comment(comment):
    """(other_lines, record_line or None) of a database comment. Pure."""
    others, record = [], None
    for line in (comment or "").split("\n"):
        if line.startswith(RECORD_PREFIX) and record is None:
            record = line
        else:
            others.append(line)
    while others and others[-1] == "":
        others.pop()
    return others, record


def parse_record(comment):
    """The record in a database comment, or None when there is none. Pure.

    Raises RecordError when a record line is there but is not a valid record: a damaged
    record must never be mistaken for "no fence".
    """
    dummy, line = split_comment(comment)
    if line is None:
        return None
    try:
        record = json.loads(line[len(RECORD_PREFIX):])
    except ValueError as exc:
        raise RecordError("the fence state record is not valid JSON: %s" % exc)
    if not isinstance(record, dict) or record.get("v") != RECORD_VERSION:
        raise RecordError("the fence state record has an unknown format (expected v=%d)" % RECORD_VERSION)
    for key in ("fenced", "admitted"):
        value = record.get(key)
        if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
            raise RecordError("the fence state record's %r is not a list of role names" % key)
    if record.get("phase") not in PHASES:
        raise RecordError("the fence state record's phase %r is not one of %s" % (record.get("phase"), ", ".join(PHASES)))
    if not isinstance(record.get("generation"), int):
        raise RecordError("the fence state record's generation is not an integer")
    return record


def new_record(previous, fenced, admitted, phase, run, by, at, application=None):
    """The record that follows PREVIOUS (a record or None). Pure."""
    if phase not in PHASES:
        raise ValueError("phase must be one of %s" % ", ".join(PHASES))
    return {
        "v": RECORD_VERSION,
        "fenced": sorted(set(fenced)),
        "admitted": sorted(set(admitted)),
        "phase": phase,
        "generation": (previous or {}).get("generation", 0) + 1,
        "run": run,
        "by": by,
        "at": at,
        "application": application,
    }


def render_comment(existing_comment, record):
    """The full comment text: the existing comment's other lines, then the record. Pure.

    RECORD None removes the record line and keeps the rest (None when nothing is left).
    """
    others, dummy = split_comment(existing_comment)
    lines = list(others)
    if record is not None:
        lines.append(RECORD_PREFIX + json.dumps(record, sort_keys=True, separators=(",", ":")))
    text = "\n".join(lines)
    return text or None


def comment_statement(database, existing_comment, record):
    """COMMENT ON DATABASE that stores RECORD, keeping the rest of EXISTING_COMMENT."""
    text = render_comment(existing_comment, record)
    return sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(database), sql.Literal(text) if text is not None else sql.SQL("NULL"))


def read_comments(session, databases):
    """{database: comment or None} for the databases that exist. One query."""
    rows = session.rows(READ_SQL, (list(databases),))
    return dict((r["datname"], r["comment"]) for r in rows)


def read_states(session, databases):
    """{database: {"comment", "record", "error"}} for the databases that exist. One query.

    "record" is the parsed record (None when there is none); "error" says why a record line
    could not be read (then "record" is None and callers must treat the state as unknown).
    """
    out = {}
    for database, comment in read_comments(session, databases).items():
        entry = {"comment": comment, "record": None, "error": None}
        try:
            entry["record"] = parse_record(comment)
        except RecordError as exc:
            entry["error"] = str(exc)
        out[database] = entry
    return out


def describe(record):
    """A short human description of a record, for messages. Pure."""
    if record is None:
        return "no fence recorded"
    return "fenced: %s; admitted: %s (%s, generation %s, by %s at %s, run %s)" % (
        ", ".join(record["fenced"]) or "none", ", ".join(record["admitted"]) or "none",
        record["phase"], record["generation"], record.get("by"), record.get("at"), record.get("run"))


# First key of the two-key advisory lock that serializes fences of the same database
# (the second key is hashtext(database name)). 0x64706663 = "dpfc".
ADVISORY_LOCK_CLASS = 1685087843


# SQLSTATE of a lock wait that ran past lock_timeout.
LOCK_NOT_AVAILABLE = "55P03"
