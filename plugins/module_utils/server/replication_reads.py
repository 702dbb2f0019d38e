# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reads of a server's place in streaming replication, with no grant beyond a login.

* ``read_server(session)``: one query on the server itself - in recovery or not, its WAL
  position, timeline and system identifier, and its standbys as the server knows them
  (``pg_stat_replication``, physical replication slots);
* ``read_standby(module, standby, roles)``: a short read-only connection to a hot standby
  (``{name, host, port}``) with the module's login - its received and replayed positions, its
  system identifier, and the sessions of ROLES there;

What a login without ``pg_monitor`` (or ``pg_read_all_stats``) sees, measured on 16 and 18:
``pg_stat_replication`` gives pid and application_name, and NULL positions;
``pg_replication_slots``, ``pg_current_wal_lsn()``, ``pg_walfile_name()``,
``pg_control_system()``, ``pg_control_checkpoint()`` and, on a standby,
``pg_last_wal_receive_lsn()`` / ``pg_last_wal_replay_lsn()`` need no grant. A physical slot's
``restart_lsn`` follows what its standby reported as flushed.

The timeline of a server that is not in recovery is read from the name of its current WAL
file: ``pg_control_checkpoint().timeline_id`` keeps the old timeline after a promotion until
the end-of-recovery checkpoint completes (measured: still 1 right after ``pg_promote``
returned on 16.15, 2 a second later).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..base.database import pinned_conn_params

try:
    from ansible_collections.community.postgresql.plugins.module_utils.postgres import connect_to_db
except ImportError:  # pragma: no cover - reported by ensure_required_libs() when the module connects
    connect_to_db = None

# The walsenders of physical standbys (a logical walsender streams through a logical slot:
# left out), each with its slot when it streams through one, and the physical slots no
# walsender uses (a standby that is not connected now). Positions are NULL for a login that
# may not read them; a slot's restart_lsn is readable by anyone.
SENDERS_QUERY = (
    "SELECT pg_catalog.json_agg(pg_catalog.json_build_object("
    "'pid', w.pid, 'application_name', w.application_name, 'state', w.state, "
    "'flush_lsn', w.flush_lsn::text, 'replay_lsn', w.replay_lsn::text, "
    "'slot', s.slot_name, 'slot_active', s.active, 'slot_restart_lsn', s.restart_lsn::text) "
    "ORDER BY COALESCE(w.application_name, s.slot_name::text), s.slot_name) "
    "FROM pg_catalog.pg_stat_replication w "
    "FULL JOIN (SELECT x.slot_name, x.active, x.active_pid, x.restart_lsn, x.slot_type "
    "           FROM pg_catalog.pg_replication_slots x) s "
    "ON s.active_pid OPERATOR(pg_catalog.=) w.pid "
    "WHERE s.slot_type IS NULL OR s.slot_type OPERATOR(pg_catalog.=) 'physical'")

SERVER_QUERY = (
    "SELECT pg_catalog.pg_is_in_recovery() AS in_recovery, "
    "CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL "
    "ELSE pg_catalog.pg_current_wal_lsn()::text END AS current_lsn, "
    "CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL "
    "ELSE pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) END AS wal_timeline, "
    "CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_receive_lsn()::text END AS receive_lsn, "
    "CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()::text END AS replay_lsn, "
    "(SELECT c.timeline_id FROM pg_catalog.pg_control_checkpoint() c) AS checkpoint_timeline, "
    "(SELECT y.system_identifier FROM pg_catalog.pg_control_system() y)::text AS system_identifier, "
    "(" + SENDERS_QUERY + ") AS senders")

# On a listed standby: the same facts, and the sessions of the given login roles (in any
# database: the fence takes a fenced role's sessions everywhere). usename and pid of every
# session are visible without a grant.
SESSIONS_QUERY = (
    "SELECT a.usename AS role, a.datname AS database, a.pid "
    "FROM pg_catalog.pg_stat_activity a "
    "WHERE a.usename OPERATOR(pg_catalog.=) ANY(%(roles)s::text[]) "
    "ORDER BY a.usename, a.datname, a.pid")

# A standby that does not answer within this many seconds is reported as unreachable (unless
# the user's connect_params say otherwise).
CONNECT_TIMEOUT = 10


def _timeline(row):
    """The server's current timeline: its WAL file's, else (in recovery) the last checkpoint's."""
    if row.get("wal_timeline"):
        try:
            return int(row["wal_timeline"], 16)
        except ValueError:
            pass
    return row.get("checkpoint_timeline")


def read_server(session):
    """One query: {in_recovery, current_lsn, receive_lsn, replay_lsn, timeline, checkpoint_timeline,
    system_identifier, senders: [{pid, application_name, state, flush_lsn, replay_lsn, slot, slot_active,
    slot_restart_lsn}]}. Runs inside a read-only transaction; the query is logged by the caller."""
    row = session.rows(SERVER_QUERY)[0]
    return {
        "in_recovery": bool(row["in_recovery"]),
        "current_lsn": row["current_lsn"],
        "receive_lsn": row["receive_lsn"],
        "replay_lsn": row["replay_lsn"],
        "timeline": _timeline(row),
        "checkpoint_timeline": row["checkpoint_timeline"],
        "system_identifier": row["system_identifier"],
        "senders": row["senders"] or [],
    }


def standby_conn_params(module, standby):
    """The module's connection options for STANDBY ({name, host, port}): same login, same
    database, read-only (a standby refuses writes anyway; this says so from the start)."""
    params = dict(module.params)
    params.update(login_host=standby["host"], login_port=standby.get("port") or 5432, login_unix_socket=None)
    params["connect_params"] = dict(module.params.get("connect_params") or {})
    params["connect_params"].setdefault("connect_timeout", CONNECT_TIMEOUT)
    kw = pinned_conn_params(module, params)
    kw["options"] = "%s -c default_transaction_read_only=on" % kw["options"]
    return kw


def _one_line(error):
    return " ".join(part.strip() for part in str(error).strip().splitlines() if part.strip())


def read_standby(module, standby, roles):
    """Connect to STANDBY and read it: {name, host, port, reachable, error, in_recovery,
    receive_lsn, replay_lsn, timeline, system_identifier, sessions: [{role, database, pid}]}.
    A connection that fails is reported (reachable False, error), never raised."""
    out = {"name": standby["name"], "host": standby["host"], "port": standby.get("port") or 5432,
           "reachable": False, "error": None, "sessions": []}
    conn, error = connect_to_db(module, standby_conn_params(module, standby), autocommit=True, fail_on_conn=False)
    if conn is None:
        out["error"] = _one_line(error or "cannot connect")
        return out
    try:
        cursor = conn.cursor()
        cursor.execute(SERVER_QUERY)
        names = [col[0] for col in cursor.description]
        row = cursor.fetchone()
        row = dict(row) if isinstance(row, dict) else dict(zip(names, row))
        cursor.execute(SESSIONS_QUERY, {"roles": sorted(roles)})
        names = [col[0] for col in cursor.description]
        sessions = [dict(r) if isinstance(r, dict) else dict(zip(names, r)) for r in cursor.fetchall()]
    except Exception as exc:  # a driver error: the standby's facts are unknown, say why
        out["error"] = _one_line(exc)
        return out
    finally:
        conn.close()
    out.update(reachable=True, in_recovery=bool(row["in_recovery"]), receive_lsn=row["receive_lsn"],
               replay_lsn=row["replay_lsn"], current_lsn=row["current_lsn"], timeline=_timeline(row),
               system_identifier=row["system_identifier"], sessions=sessions)
    return out
