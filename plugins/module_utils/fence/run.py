# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fence module's run against the server: lock, preflight, REVOKE, signal, wait, verify, the
standbys, GRANT.

plugins/modules/fence.py holds the documentation and the argument spec and calls run_fence();
the decisions (input checks, preflight verdicts, records to write) are the pure functions of
module_utils/fence/plan.py. This file and fence/standby.py (the WAL position, the standby gate,
hot standbys, commits that wait for a synchronous standby) talk to PostgreSQL for the fence,
through the Session wrapper of module_utils/base/database.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import signal
import time
import uuid

from ..base.database import MIN_SERVER_VERSION_NUM, Session, connect, sql, version_label
from ..model.fence_record import ADVISORY_LOCK_CLASS, LOCK_NOT_AVAILABLE
from .plan import (
    deployment_result,
    expected_key,
    failure_summary,
    fenced_roles,
    is_complete_for,
    option_problems,
    planned_records,
    preflight_verdict,
    record_problem,
    standby_gate_message,
    state_change_message,
    state_key,
)
from ..model import fence_record
from ..base import results as _results
from ..server import sessions as sess
from ..server.helper import POSITIONS_NAME
from .standby import Replication

# What plugins/modules/ takes from this entry point (a module imports its action's entry point
# only; see docs/architecture.md).
from ..base.database import connection_argument_spec
from ..server.helper import DEFAULT_SCHEMA
from .plan import ON_STATE_CHANGE, STANDBY_POLICIES

__all__ = ["run_fence", "connection_argument_spec", "DEFAULT_SCHEMA", "ON_STATE_CHANGE", "STANDBY_POLICIES"]

_VIA_SQL = """ARRAY(
  SELECT CASE
           WHEN x.grantee OPERATOR(pg_catalog.=) 0
             THEN 'PUBLIC (CONNECT granted to PUBLIC by ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(x.grantor)
                  OPERATOR(pg_catalog.||) ')'
           WHEN x.grantee OPERATOR(pg_catalog.=) s.oid THEN 'a direct grant by ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(x.grantor)
                OPERATOR(pg_catalog.||) CASE WHEN x.grantor OPERATOR(pg_catalog.=) db.datdba THEN ' (the owner)'
                                             ELSE ' (another grantor: only it or a superuser can revoke it)' END
           ELSE 'group role ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(x.grantee) OPERATOR(pg_catalog.||) ' (CONNECT granted by '
                OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(x.grantor) OPERATOR(pg_catalog.||) ')'
         END
    FROM pg_catalog.aclexplode(COALESCE(db.datacl, pg_catalog.acldefault('d', db.datdba))) x
   WHERE x.privilege_type OPERATOR(pg_catalog.=) 'CONNECT'
     AND (x.grantee OPERATOR(pg_catalog.=) 0
          OR (x.grantee OPERATOR(pg_catalog.=) s.oid AND (%(extra)s OR x.grantor OPERATOR(pg_catalog.<>) db.datdba))
          OR (x.grantee OPERATOR(pg_catalog.<>) ALL (ARRAY[0, s.oid]::pg_catalog.oid[]) AND pg_catalog.pg_has_role(s.oid, x.grantee, 'USAGE'))))"""

# The server's clock, for the fence state record's "at" (UTC, ISO 8601).
_NOW_SQL = """pg_catalog.to_char(pg_catalog.clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""

# Which of the roles a previous record listed as fenced still cannot connect (kept as fenced).
STILL_FENCED_SQL = """
SELECT u.database, u.role
  FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) AS u(database, role)
  JOIN pg_catalog.pg_database db ON db.datname OPERATOR(pg_catalog.=) u.database
  JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) u.role
 WHERE NOT r.rolsuper AND NOT pg_catalog.has_database_privilege(r.oid, db.oid, 'CONNECT')"""

# Membership in the database owner role is checked twice, on purpose with two modes:
# - preflight refuses a source role that is a member in any way (MEMBER): with SET or ADMIN it
#   could become the owner from a session elsewhere and grant itself CONNECT back, so CONNECT
#   cannot fence it even when it does not inherit the owner's privileges;
# - verification explains a CONNECT that survived the REVOKE, and only an inheriting
#   membership (USAGE) passes the owner's CONNECT on.
# can_acl is read for every database at once, before the rows (``mine``, an init plan):
# PostgreSQL keeps the role closure of one role at a time, and the login's (commander_user:
# every owner and killer role, 1,600 at 800 Deployments) was computed again on each row,
# between the source roles' checks; that made this query grow with the square of the
# Deployments (3 s at 800, issue 23). Placed last, its parameter is the fourth.
PREFLIGHT_SQL = """
SELECT u.ord,
       db.oid IS NOT NULL AS db_exists,
       pg_catalog.pg_get_userbyid(db.datdba) AS owner,
       s.oid IS NOT NULL AS src_exists, COALESCE(s.rolsuper, false) AS src_super,
       t.oid IS NOT NULL AS dst_exists,
       COALESCE(pg_catalog.pg_has_role(s.oid, db.datdba, 'MEMBER'), false) AS src_owner_member,
       (me.rolsuper OR db.oid OPERATOR(pg_catalog.=) ANY (mine.dbs)) AS can_acl,
       pg_catalog.has_database_privilege(s.oid, db.oid, 'CONNECT') AS src_connect,
       pg_catalog.has_database_privilege(t.oid, db.oid, 'CONNECT') AS dst_connect,
       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(db.datacl, pg_catalog.acldefault('d', db.datdba))) x
                WHERE x.grantee OPERATOR(pg_catalog.=) s.oid AND x.grantor OPERATOR(pg_catalog.=) db.datdba
                  AND x.privilege_type OPERATOR(pg_catalog.=) 'CONNECT') AS src_owner_entry,
       CASE WHEN db.oid IS NULL OR s.oid IS NULL THEN ARRAY[]::text[] ELSE %s END AS other_connect,
       pg_catalog.shobj_description(db.oid, 'pg_database') AS comment,
       %s AS now_utc
  FROM ROWS FROM (pg_catalog.unnest(%%s::text[]), pg_catalog.unnest(%%s::text[]), pg_catalog.unnest(%%s::text[]))
       WITH ORDINALITY AS u(database, source, dest, ord)
  LEFT JOIN pg_catalog.pg_database db ON db.datname OPERATOR(pg_catalog.=) u.database
  LEFT JOIN pg_catalog.pg_roles s ON s.rolname OPERATOR(pg_catalog.=) u.source
  LEFT JOIN pg_catalog.pg_roles t ON t.rolname OPERATOR(pg_catalog.=) u.dest
  LEFT JOIN pg_catalog.pg_roles me ON me.rolname OPERATOR(pg_catalog.=) CURRENT_USER
 CROSS JOIN (SELECT ARRAY(SELECT d.oid FROM pg_catalog.pg_database d
                           WHERE d.datname OPERATOR(pg_catalog.=) ANY (%%s::text[])
                             AND pg_catalog.pg_has_role(CURRENT_USER, d.datdba, 'USAGE')) AS dbs) AS mine
 ORDER BY u.ord""" % (_VIA_SQL % {"extra": "false"}, _NOW_SQL)

VERIFY_SQL = """
SELECT u.ord,
       pg_catalog.has_database_privilege(s.oid, db.oid, 'CONNECT') AS src_connect,
       pg_catalog.has_database_privilege(t.oid, db.oid, 'CONNECT') AS dst_connect,
       CASE WHEN s.rolsuper THEN ARRAY['SUPERUSER']::text[] ELSE ARRAY[]::text[] END
       OPERATOR(pg_catalog.||) CASE WHEN pg_catalog.pg_has_role(s.oid, db.datdba, 'USAGE')
               THEN ARRAY['membership in the owner role ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(db.datdba)]
               ELSE ARRAY[]::text[] END
       OPERATOR(pg_catalog.||) %s AS connect_via,
       %s AS now_utc, pg_catalog.pg_current_wal_lsn()::pg_catalog.text AS wal_lsn
  FROM ROWS FROM (pg_catalog.unnest({dbs}::text[]), pg_catalog.unnest({srcs}::text[]),
                  pg_catalog.unnest({dsts}::text[])) WITH ORDINALITY AS u(database, source, dest, ord)
  LEFT JOIN pg_catalog.pg_database db ON db.datname OPERATOR(pg_catalog.=) u.database
  LEFT JOIN pg_catalog.pg_roles s ON s.rolname OPERATOR(pg_catalog.=) u.source
  LEFT JOIN pg_catalog.pg_roles t ON t.rolname OPERATOR(pg_catalog.=) u.dest
 ORDER BY u.ord""" % (_VIA_SQL % {"extra": "true"}, _NOW_SQL)


def ms(seconds):
    return int(round(seconds * 1000))


# Signals that end a module process when the controller goes away: SIGINT (Ctrl-C reaches the
# whole process group), SIGTERM (ansible-playbook stopping its workers), SIGHUP (terminal closed).
SHIELDED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Shield(object):
    """From the first REVOKE on, the fence finishes instead of dying half-way: a stopped fence
    leaves neither plane admitted until someone reruns it. A signal then only cuts a controlled
    drain short (the sessions are terminated at once); the rest is bounded by wait_timeout."""

    def __init__(self):
        self.received = []

    def arm(self):
        for signum in SHIELDED_SIGNALS:
            signal.signal(signum, self.note)

    def note(self, signum, dummy_frame):
        self.received.append(signal.Signals(signum).name)

    def hit(self):
        return bool(self.received)


class Fence(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.deps = self.params["deployments"]
        self.results = [deployment_result(d) for d in self.deps]
        self.session = None
        self.version = 0
        self.timings = _results.Timings()
        self.state_changes = []
        self.shield = Shield()
        self.expected = {}
        self.backend_pid = None
        self.t0 = None
        self.replication = Replication(self)
        self._by_role = None

    # --- helpers -------------------------------------------------------------------------
    def fail(self, msg, **extra):
        extra.setdefault("deployments", self.results)
        extra.setdefault("run_id", self.params["run_id"])
        timings = self.timings.as_dict()
        extra.setdefault("timings", timings)
        extra.setdefault("time_total_ms", timings["total_ms"])
        extra.setdefault("wal", self.replication.wal)
        extra.setdefault("standbys", self.replication.standbys())
        self.session.fail(msg, **extra)

    def by_role(self, role):
        """The indexes of the Deployments whose source role is ROLE (looked up, not scanned: it is
        asked once per session found, which at 800 Deployments made a scan quadratic)."""
        if self._by_role is None:
            self._by_role = {}
            for i, dep in enumerate(self.deps):
                self._by_role.setdefault(dep["source_role"], []).append(i)
        return self._by_role.get(role, [])

    # --- phases --------------------------------------------------------------------------
    def lock(self):
        databases = sorted(set(d["database"] for d in self.deps))
        timeout_ms = int(self.params["lock_timeout"] * 1000)
        self.session.rows("SELECT pg_catalog.set_config('lock_timeout', %s, false)", (str(timeout_ms),))
        try:
            self.session.rows(
                "SELECT pg_catalog.pg_advisory_lock(%s, k)::text FROM"
                " (SELECT DISTINCT pg_catalog.hashtext(d) AS k FROM pg_catalog.unnest(%s::text[]) AS d ORDER BY 1) AS keys",
                (ADVISORY_LOCK_CLASS, databases))
        except Exception as exc:
            if getattr(exc, "pgcode", None) != LOCK_NOT_AVAILABLE:
                raise
            holders = self.session.rows(
                "SELECT DISTINCT l.pid, a.application_name, a.usename FROM pg_catalog.pg_locks l"
                " LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid"
                " WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted AND l.classid OPERATOR(pg_catalog.=) %s::oid"
                " AND l.objid OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.hashtext(d)::oid FROM pg_catalog.unnest(%s::text[]) AS d)"
                " ORDER BY l.pid", (ADVISORY_LOCK_CLASS, databases))
            self.fail("another fence of the same database is still running (%s); waited %s s "
                      "(lock_timeout). Nothing was changed." % (
                          ", ".join("pid %s, role %s, application %r" % (h["pid"], h["usename"],
                                                                         h["application_name"])
                                    for h in holders) or "it ended just now",
                          self.params["lock_timeout"]),
                      lock_holders=holders)
        self.session.rows("SELECT pg_catalog.set_config('lock_timeout', '0', false)")

    def preflight(self, login):
        databases = [d["database"] for d in self.deps]
        rows = self.session.rows(PREFLIGHT_SQL, (databases, [d["source_role"] for d in self.deps],
                                                 [d["destination_role"] for d in self.deps], databases))
        routes = sess.termination_routes(self.session, [(d["source_role"], d.get("killer_role")) for d in self.deps],
                                         schema=self.params["helper_schema"])
        report = []
        parity_facts = None
        if self.params["parity_policy"] != "ignore":
            # imported only when asked for: the parity code is large, and a fence without it
            # should not pay for loading it
            from ..server import parity as _parity
            from ..base.database import connect_database
            records = [_parity.fence_record(d) for d in self.deps]
            parity_facts = _parity.read_facts(self.session, records, self.version)
            # Only where objects look out of place: connect to that database to leave out the
            # temporary objects of live sessions (the fence ends them).
            parity_facts, names = _parity.resolve(parity_facts, records,
                                                  lambda db: connect_database(self.module, db, fail=False))
        for dep, row, route, res in zip(self.deps, rows, routes, self.results):
            res["route"] = route["route"]
            problems = preflight_verdict(dep, row, route, login)
            if parity_facts is not None:
                found = _parity.preflight_problems(_parity.fence_record(dep), parity_facts,
                                                   dep["source_role"], dep["destination_role"], names)
                res["parity"] = found
                if self.params["parity_policy"] == "refuse":
                    problems.extend("parity: " + p for p in found)
                for problem in found if self.params["parity_policy"] == "warn" else ():
                    self.module.warn("Deployment %s: parity: %s" % (dep["name"], problem))
            if problems:
                report.append({"name": dep["name"], "problems": problems})
        return rows, routes, report

    def list_or_signal(self, indexes, routes, signal, session=None):
        """Sessions of the source roles of INDEXES, signalled when SIGNAL. One statement per route.
        SESSION: another server's (a hot standby), default the fence's."""
        session = session or self.session
        direct = sorted(set(self.deps[i]["source_role"] for i in indexes if routes[i]["route"] == "direct"))
        pairs = sorted(set((self.deps[i]["killer_role"], self.deps[i]["source_role"])
                           for i in indexes if routes[i]["route"] == "helper"))
        rows = sess.signal_direct(session, direct, signal=signal)
        seen = set(r["pid"] for r in rows)
        one_call = sess.helper_one_call([routes[i] for i in indexes])
        for row in sess.signal_via_helper(session, pairs, signal=signal, schema=self.params["helper_schema"],
                                          one_call=one_call):
            if row["pid"] not in seen:
                rows.append(row)
                seen.add(row["pid"])
        return rows

    def record(self, rows, key):
        for row in rows:
            for i in self.by_role(row["usename"]):
                self.results[i][key].append(sess.session_record(row))

    def run(self):
        """The fence, in order: connect and check the server, read the state (lock, preflight), plan
        the writes; then (check mode: only report) REVOKE, terminate, wait for the standbys, GRANT."""
        me = self.start()
        rows, routes, records = self.read_state(me)
        work = self.plan(me, rows, records)
        signal_all = self.signaller(routes)
        if self.check:
            self.replication.look(signal_all, work["roles"])
            self.mark("standbys")
            return self.report_check(work, rows, routes)
        self.revoke(work)
        self.terminate(work, routes)
        self.admit(me, rows, work, signal_all)

    def start(self):
        """The first query (who we are, the server's state, what we may read) and the refusals
        that need nothing else: a standby, a server older than 16."""
        me = self.session.rows(
            "SELECT CURRENT_USER AS u, SESSION_USER AS s, pg_catalog.current_setting('application_name') AS app,"
            " pg_catalog.pg_is_in_recovery() AS in_recovery, pg_catalog.pg_backend_pid() AS pid,"
            " pg_catalog.pg_has_role(CURRENT_USER, 'pg_read_all_stats', 'USAGE') AS read_stats,"
            " (SELECT pg_catalog.has_function_privilege(p.oid, 'EXECUTE') AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')"
            "    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace"
            "   WHERE n.nspname OPERATOR(pg_catalog.=) %s AND p.proname OPERATOR(pg_catalog.=) %s"
            "     AND p.pronargs OPERATOR(pg_catalog.=) 0) AS positions",
            (self.params["helper_schema"], POSITIONS_NAME))[0]
        self.backend_pid = me["pid"]
        version = self.session.version_num()
        self.version = version
        self.mark("connect")
        if me["in_recovery"]:
            self.fail_standby(version)
        if version < MIN_SERVER_VERSION_NUM:
            self.fail("PostgreSQL %s is not supported by the fence: it needs PostgreSQL 16 or newer, because the "
                      "reference setup's memberships (GRANT <login role> TO <killer role> WITH INHERIT FALSE, "
                      "SET FALSE), which mark the roles a killer role may terminate without giving it their "
                      "privileges, need the INHERIT/SET options of PostgreSQL 16. Nothing was changed."
                      % version_label(version), server_version=version_label(version))
        self.replication.configure(me)
        return me

    def read_state(self, me):
        """Take the lock, preflight every Deployment, read its record; fail (nothing changed) on any
        problem or, with on_state_change=fail, on a record that changed under this run."""
        session = self.session
        # The recorded states as this run found them, before it waits for another fence's lock.
        seen = fence_record.read_comments(session, [d["database"] for d in self.deps])
        self.lock()
        self.mark("lock")
        rows, routes, report = self.preflight(me["u"])
        self.mark("preflight")
        records = []
        for dep, row, res in zip(self.deps, rows, self.results):
            problem = record_problem(dep, row["comment"]) if row["db_exists"] else None
            record = None
            if problem:
                entry = [r for r in report if r["name"] == dep["name"]]
                if entry:
                    entry[0]["problems"].append(problem)
                else:
                    report.append({"name": dep["name"], "problems": [problem]})
            elif row["db_exists"]:
                record = fence_record.parse_record(row["comment"])
            records.append(record)
            res["state_before"] = res["state_after"] = record
        for dep, row in zip(self.deps, rows):
            if not row["db_exists"]:
                continue
            if dep["database"] in self.expected:
                want = self.expected[dep["database"]]
                if expected_key(want) != state_key(row["comment"]):
                    self.state_changes.append(state_change_message(
                        dep, None, row["comment"],
                        before_text="generation %s, as the caller read it (expected_generations)" % want
                        if want is not None else "no fence recorded, as the caller read it (expected_generations)"))
            elif dep["database"] in seen and state_key(seen[dep["database"]]) != state_key(row["comment"]):
                self.state_changes.append(state_change_message(dep, seen[dep["database"]], row["comment"]))
        if self.state_changes and self.params["on_state_change"] == "fail":
            self.fail("the fence state changed while this fence waited for another fence of the same database; "
                      "nothing was changed (set on_state_change=proceed to fence from the new state):\n"
                      + "\n".join(self.state_changes),
                      state_changes=self.state_changes, server_version=version_label(self.version))
        if report:
            self.fail("fence preflight failed, nothing was changed:\n" + "\n".join(
                "Deployment %s: %s" % (r["name"], "; ".join(r["problems"])) for r in report),
                preflight=report, server_version=version_label(self.version))
        return rows, routes, records

    def plan(self, me, rows, records):
        """What this run changes: the REVOKEs, the GRANTs, the records (two per Deployment written)."""
        all_idx = list(range(len(self.deps)))
        revoke_idx = [i for i in all_idx if rows[i]["src_owner_entry"]]
        grant_idx = [i for i in all_idx if not rows[i]["dst_connect"]]
        # The records to write: every Deployment whose catalog or record is not already the
        # complete fence in this direction. A Deployment that is gets no write at all.
        write_idx = [i for i in all_idx if i in set(revoke_idx) or i in set(grant_idx)
                     or not is_complete_for(records[i], self.deps[i])]
        still = self.still_fenced([i for i in write_idx if records[i]], records)
        plans = {}
        for i in write_idx:
            dep = self.deps[i]
            plans[i] = planned_records(records[i], dep, fenced_roles(records[i], dep, still.get(dep["database"], ())),
                                       self.params["run_id"], me["s"], rows[i]["now_utc"], me["app"])
        revokes = [sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
            sql.Identifier(self.deps[i]["database"]), sql.Identifier(self.deps[i]["source_role"]))
            for i in revoke_idx]
        fencing = [fence_record.comment_statement(self.deps[i]["database"], rows[i]["comment"], plans[i][0])
                   for i in write_idx]
        return {"all": all_idx, "revoke": revoke_idx, "grant": grant_idx, "write": write_idx, "plans": plans,
                "statements": revokes + fencing, "roles": sorted(set(d["source_role"] for d in self.deps))}

    def report_check(self, work, rows, routes):
        """Check mode: what would be revoked, signalled, granted and written; nothing is."""
        session = self.session
        for i in work["revoke"]:
            self.results[i]["revoked"] = True  # would be revoked
        self.record(self.list_or_signal(work["all"], routes, signal=False), "sessions_terminated")
        self.mark("list")
        for i in work["grant"]:
            self.results[i]["granted"] = True
        grants = [sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(self.deps[i]["database"]), sql.Identifier(self.deps[i]["destination_role"]))
            for i in work["grant"]]
        completes = [fence_record.comment_statement(self.deps[i]["database"], rows[i]["comment"],
                                                    work["plans"][i][1]) for i in work["write"]]
        for st in work["statements"] + grants + completes:
            session.queries.append(session.render(st))
        for i in work["write"]:
            self.results[i]["state_after"] = work["plans"][i][1]
            self.results[i]["state_written"] = True
        for i, res in enumerate(self.results):
            res["changed"] = (res["revoked"] or res["granted"] or res["state_written"]
                              or bool(res["sessions_terminated"]))
            res["verified"] = None
            res["destination_admitted"] = bool(rows[i]["dst_connect"])  # now, before any change

    def revoke(self, work):
        """1. All REVOKEs and the "fencing" records, one implicit transaction, committed (durably)
        before anything is signalled; then the position it reached, and the standbys' view."""
        self.t0 = time.monotonic()
        self.shield.arm()
        if work["statements"]:
            what = "the REVOKE and the 'fencing' records"
            self.replication.commit(sql.SQL("; ").join(work["statements"]), what,
                                    lambda wait: self.fail_commit_wait(wait, work["write"], what))
        for i in work["revoke"]:
            self.results[i]["revoked"] = True  # set once the statement ran
        for i in work["write"]:
            self.results[i]["state_after"] = work["plans"][i][0]
            self.results[i]["state_written"] = True
        self.mark("revoke")
        self.replication.after_revoke()

    def terminate(self, work, routes):
        """2. controlled: let the source sessions end on their own first; 3. signal everything at
        once, then poll until no source session remains (newcomers are signalled too)."""
        params = self.params
        session = self.session
        roles = work["roles"]
        gone_at = {}

        def on_poll(current, now):
            present = set(r["usename"] for r in current)
            for role in roles:
                if role not in present and role not in gone_at:
                    gone_at[role] = now

        if params["mode"] == "controlled":
            before = sess.current_sessions(session, roles)
            left = sess.wait_until_gone(session, roles, timeout=params["drain_timeout"], on_poll=on_poll,
                                        stop=self.shield.hit)
            left_pids = set(r["pid"] for r in left)
            self.record([r for r in before if r["pid"] not in left_pids], "sessions_drained")
            self.mark("drain")

        signalled = self.list_or_signal(work["all"], routes, signal=True)
        self.record(signalled, "sessions_terminated")
        self.mark("signal")

        def on_new(fresh):  # a session that appeared since (e.g. a reconnect to another database)
            more = self.list_or_signal(sorted(set(i for r in fresh for i in self.by_role(r["usename"]))),
                                       routes, signal=True)
            known = set(s["pid"] for res in self.results for s in res["sessions_terminated"])
            self.record([r for r in more if r["pid"] not in known], "sessions_terminated")

        remaining = sess.wait_until_gone(session, roles, timeout=params["wait_timeout"], on_new=on_new,
                                         seen_pids=[r["pid"] for r in signalled], on_poll=on_poll)
        self.record(remaining, "remaining_sessions")
        self.mark("wait")
        for i, dep in enumerate(self.deps):
            if dep["source_role"] in gone_at:
                self.results[i]["time_to_fence_ms"] = max(0, ms(gone_at[dep["source_role"]] - self.t0))

    def admit(self, me, rows, work, signal_all):
        """4. the standby gate; verify the sources cannot connect (one query); 5. admit the
        destinations that are fenced, with the "complete" records in the same transaction (unless
        the gate holds them back), and re-read the privileges."""
        params = self.params
        problems = self.replication.gate(signal_all, work["roles"])
        self.mark("standbys")
        verify = self.verify()
        fenced = set(i for i in work["all"]
                     if not verify[i]["src_connect"] and not self.results[i]["remaining_sessions"])
        for i in work["all"]:
            self.results[i]["connect_still_via"] = list(verify[i]["connect_via"] or []) if verify[i]["src_connect"] else []
        held = bool(problems) and self.replication.policy == "require"
        for problem in problems if self.replication.policy == "warn" else ():
            self.module.warn("standby_policy=warn: admitted although %s" % problem)
        to_grant = [i for i in work["grant"] if i in fenced and not held]
        to_complete = [i for i in work["write"] if i in fenced and not held]
        for i in work["grant"] + work["write"] if held else ():
            if i in fenced:
                self.results[i]["held_for_standbys"] = True
        completes = {}
        for i in to_complete:
            plan = work["plans"][i][0]
            completes[i] = fence_record.new_record(plan, plan["fenced"], [self.deps[i]["destination_role"]],
                                                   "complete", params["run_id"], me["s"], verify[i]["now_utc"],
                                                   me["app"])
        if to_grant or to_complete:
            what = "the destination's GRANT and the 'complete' records"
            self.replication.commit(sql.SQL("; ").join(
                [sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(self.deps[i]["database"]), sql.Identifier(self.deps[i]["destination_role"]))
                 for i in to_grant]
                + [fence_record.comment_statement(self.deps[i]["database"], rows[i]["comment"], completes[i])
                   for i in to_complete]), what, lambda wait: self.fail_commit_wait(wait, to_complete, what))
            for i in to_grant:
                self.results[i]["granted"] = True
            for i in to_complete:
                self.results[i]["state_after"] = completes[i]
            verify = self.verify()
        self.replication.wal["final_lsn"] = verify[0]["wal_lsn"] if verify else None
        if to_grant or to_complete:
            self.replication.settle()
        for i in work["all"]:
            res = self.results[i]
            res["destination_connect"] = res["destination_admitted"] = bool(verify[i]["dst_connect"])
            res["verified"] = (i in fenced) and bool(verify[i]["dst_connect"])
            res["changed"] = (res["revoked"] or res["granted"] or res["state_written"]
                              or bool(res["sessions_terminated"]))
        self.mark("verify_and_grant")

    def signaller(self, routes):
        """signal(session, really): the source sessions of every Deployment in SESSION (a standby's),
        signalled when REALLY, by the routes found on the primary (the same catalog)."""
        indexes = list(range(len(self.deps)))
        return lambda session, really: self.list_or_signal(indexes, routes, really, session=session)

    def fail_commit_wait(self, wait, indexes, what):
        """A commit has waited standby_timeout for a synchronous standby: fail the module now,
        without touching the fence's session (it is still in the commit, which is not cancelled)."""
        names = [self.deps[i]["name"] for i in indexes]
        seen = ", ".join("%s (%s, flushed %s)" % (s["name"], s["sync_state"], s["flush_lsn"])
                         for s in wait["synchronous_standbys"]) or "none connected"
        msg = ("fence: the commit of %s%s has waited %.1f s (standby_timeout) for a synchronous standby (wait event "
               "SyncRep; synchronous_standby_names = %r; synchronous standbys: %s). It was not cancelled: a "
               "cancelled wait leaves the transaction committed locally although no synchronous standby has it. "
               "Until a synchronous standby confirms it, no other session sees it%s. The destination was not "
               "admitted by this run. Bring a synchronous standby back (or change synchronous_standby_names): the "
               "commit then completes on its own; then rerun the failover to finish the fence (until then this "
               "run's session holds the fence's lock)." % (
                   what, " (Deployment%s %s)" % ("s" if len(names) > 1 else "", ", ".join(names)) if names else "",
                   wait["waited_ms"] / 1000.0, wait["synchronous_standby_names"], seen,
                   ": the source plane can still connect" if "REVOKE" in what else ""))
        timings = self.timings.as_dict()
        self.module.fail_json(msg=msg, deployments=self.results, run_id=self.params["run_id"], timings=timings,
                              time_total_ms=timings["total_ms"], queries=list(self.session.queries),
                              wal=self.replication.wal, standbys=self.replication.standbys(),
                              commit_waits=self.replication.commit_waits, server_version=version_label(self.version))

    def fail_standby(self, version):
        """Refuse a server in recovery before any change: a standby takes no REVOKE, and a fence
        must be made on the primary (streaming carries it to the standbys)."""
        rows = self.session.rows("SELECT r.sender_host, r.sender_port, r.status FROM pg_catalog.pg_stat_wal_receiver r")
        primary = rows[0] if rows and rows[0]["sender_host"] else None
        if primary:
            where = "its primary is %s:%s (WAL receiver %s)" % (
                primary["sender_host"], primary["sender_port"], primary["status"])
        else:
            where = "where its primary is could not be read (pg_stat_wal_receiver needs pg_read_all_stats)"
        self.fail("this server is a standby (in recovery), so it takes no REVOKE: %s. Run the failover against "
                  "the primary; nothing was changed." % where, standby=True, primary=primary,
                  server_version=version_label(version))

    def still_fenced(self, indexes, records):
        """{database: roles a previous record listed as fenced (besides this fence's two roles) that
        still cannot connect}. One query, only when such roles exist."""
        pairs = sorted(set((self.deps[i]["database"], role) for i in indexes for role in records[i]["fenced"]
                           if role not in (self.deps[i]["source_role"], self.deps[i]["destination_role"])))
        if not pairs:
            return {}
        out = {}
        for row in self.session.rows(STILL_FENCED_SQL, ([p[0] for p in pairs], [p[1] for p in pairs])):
            out.setdefault(row["database"], []).append(row["role"])
        return out

    def mark(self, phase):
        self.timings.mark(phase)

    def verify(self):
        statement = sql.SQL(VERIFY_SQL).format(
            dbs=sql.Literal([d["database"] for d in self.deps]),
            srcs=sql.Literal([d["source_role"] for d in self.deps]),
            dsts=sql.Literal([d["destination_role"] for d in self.deps]))
        return self.session.rows(statement)


def run_fence(module):
    """The fence module's main(): check the options, fence, exit (or fail) the module."""
    fence = Fence(module)
    params = module.params
    if params["run_id"] is None:
        params["run_id"] = uuid.uuid4().hex
    problems, expected = option_problems(params)
    if problems:
        _results.refuse(module, "fence request", problems, timings=fence.timings.as_dict())
    fence.expected = expected
    fence.session = Session(module, connect(module, autocommit=True))
    try:
        fence.run()
    except Exception as exc:  # the database's own words; whatever committed is in queries
        half = [r["name"] for r in fence.results if r["state_written"] and not r["granted"]
                and (r["state_after"] or {}).get("phase") == "fencing"]
        fence.fail("fence: %s%s" % (exc, (
            "\nThe REVOKE and the 'fencing' record of Deployment(s) %s were committed before this error and "
            "their destination was not admitted by this run: neither plane may be admitted now. Rerun the "
            "fence to finish." % ", ".join(half)) if half and not module.check_mode else ""))
    try:
        fence.session.rows("SELECT pg_catalog.pg_advisory_unlock_all()")
    except Exception:
        pass
    fence.session.close()
    results = fence.results
    failures = [] if module.check_mode else failure_summary(results)
    for res in results:
        res.pop("destination_connect", None)
    timings = fence.timings.as_dict()
    replication = fence.replication
    out = dict(changed=any(r["changed"] for r in results), deployments=results, timings=timings,
               time_total_ms=timings["total_ms"], server_version=version_label(fence.version),
               queries=fence.session.queries, run_id=params["run_id"], state_changes=fence.state_changes,
               signals_received=fence.shield.received, wal=replication.wal, standbys=replication.standbys(),
               standby_policy=replication.policy, standby_problems=replication.problems,
               commit_waits=replication.commit_waits)
    gate = [] if module.check_mode or replication.policy != "require" else replication.problems
    if gate:
        module.fail_json(msg=standby_gate_message(gate, replication.target, replication.waited, params["standby_timeout"],
                                                  failures),
                         **out)
    if failures:
        module.fail_json(msg="the fence did not hold:\n" + "\n".join(failures), **out)
    module.exit_json(**out)
