# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fence across replication: its WAL position, the standby gate, hot standbys, and commits
that wait for a synchronous standby.

A fence made on the primary reaches its standbys by streaming. A standby that has not flushed
the REVOKE's WAL loses the fence if it is promoted (both planes admitted, no record); one that
has not replayed it still admits the source plane; and sessions on a hot standby survive the
primary's terminations and a promotion. So, before the destination is admitted (fence/run.py):

- right after the REVOKE's commit one query reads its WAL position, the timeline, the system
  identifier, the WAL senders (through the helper's ``standby_positions()``, so that
  ``commander_user`` needs no ``pg_monitor``) and the physical replication slots. With no
  standby this is all the fence pays for replication;
- the gate polls that view until every standby has flushed the position, up to
  ``standby_timeout``;
- each listed standby (option ``standbys``) has a thread of its own, in parallel: it waits until
  its standby has replayed the REVOKE, then terminates the source plane's sessions there (the
  same route as on the primary: directly, or through the fence helper, which works on a hot
  standby) and waits until none remains;
- a commit that takes longer than WATCH_AFTER is watched from a second connection; one that
  waits for a synchronous standby (wait event ``SyncRep``) longer than ``standby_timeout`` fails
  the module, and is never cancelled (a cancelled wait leaves the transaction committed locally
  although no synchronous standby has it).

The decisions (states, gaps, messages) are the pure functions of fence/plan.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

from ..base.database import Session, connect, sql, thread_server_session
from ..server import sessions as sess
from ..server.helper import REPLICATION_SQL, positions_signature
from .plan import lsn_bytes, primary_standbys, standby_entry, standby_label, standby_problems, timeline_of

WATCH_AFTER = 0.5  # seconds a commit may take before a second connection looks at it
POLL_MAX = 0.1

_REPLICATION_JSON = (
    "(SELECT pg_catalog.json_agg(pg_catalog.json_build_object('pid', r.pid, 'name', r.application_name,"
    " 'state', r.state, 'sync_state', r.sync_state, 'flush_lsn', r.flush_lsn, 'replay_lsn', r.replay_lsn,"
    " 'slot', r.slot_name) ORDER BY r.pid) FROM {source} AS r)")

# The primary: the fence's position (pg_current_wal_lsn(), read after a commit returned), the
# timeline (of the WAL file at that position: pg_control_checkpoint()'s timeline_id stays on the
# old timeline after a promotion until the next checkpoint, measured on 16), the system identifier,
# the WAL senders and the physical slots. None of it needs a grant, but the senders' positions.
WAL_SQL = (
    "SELECT pg_catalog.pg_current_wal_lsn()::pg_catalog.text AS lsn,"
    " pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()) AS walfile,"
    " (SELECT c.system_identifier FROM pg_catalog.pg_control_system() AS c)::pg_catalog.text AS system_identifier,"
    " " + _REPLICATION_JSON + " AS replication,"
    " (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', s.slot_name, 'active_pid', s.active_pid,"
    "   'restart_lsn', s.restart_lsn, 'wal_status', s.wal_status) ORDER BY s.slot_name)"
    "  FROM pg_catalog.pg_replication_slots AS s WHERE s.slot_type OPERATOR(pg_catalog.=) 'physical') AS slots")

# The fence's own session, as a second connection of the same login sees it while it commits.
WAIT_SQL = (
    "SELECT a.wait_event_type, a.wait_event, pg_catalog.current_setting('synchronous_standby_names') AS names,"
    " " + _REPLICATION_JSON + " AS replication"
    " FROM pg_catalog.pg_stat_activity AS a WHERE a.pid OPERATOR(pg_catalog.=) {pid}")

# A listed standby, as it sees itself.
STANDBY_SQL = (
    "SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,"
    " pg_catalog.pg_last_wal_receive_lsn()::pg_catalog.text AS flush_lsn,"
    " pg_catalog.pg_last_wal_replay_lsn()::pg_catalog.text AS replay_lsn,"
    " (SELECT c.system_identifier FROM pg_catalog.pg_control_system() AS c)::pg_catalog.text AS system_identifier")


def _reached(lsn, target):
    return lsn is not None and target is not None and lsn_bytes(lsn) >= lsn_bytes(target)


def _sleep(delay, deadline):
    time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
    return min(delay * 2, POLL_MAX)


class Replication(object):
    """The fence's replication side, for one run (see the module docstring)."""

    def __init__(self, fence):
        self.fence = fence
        self.module = fence.module
        params = fence.params
        self.policy = params.get("standby_policy") or "require"
        self.timeout = float(params.get("standby_timeout") if params.get("standby_timeout") is not None else 30)
        self.wal = {"revoke_lsn": None, "final_lsn": None, "timeline": None, "system_identifier": None}
        self.target = None  # the position the standbys must reach (the REVOKE's; in check mode: now)
        self.entries = []  # the standbys the primary knows
        self.hot = []  # one HotStandby per listed standby
        self.commit_waits = []
        self.problems = []
        self.source = sql.SQL("(" + REPLICATION_SQL + ")")
        self.blind = None
        self.deadline = None
        self.waited = 0.0

    def configure(self, me):
        """Where the WAL senders' positions come from: the view itself for a login with the
        privileges of pg_read_all_stats, else the helper's standby_positions() (ME: the fence's
        first query, with read_stats and positions)."""
        if me["read_stats"]:
            return
        schema = self.fence.params["helper_schema"]
        if me["positions"]:
            self.source = positions_signature(schema)
        else:
            self.blind = ("%s reads no position in pg_stat_replication (that needs pg_read_all_stats) and may not "
                          "call %s.standby_positions() (fence helper version 4: install or upgrade the helper "
                          "with the provision playbook or the fence_helper module)" % (me["u"], schema))

    def standbys(self):
        return self.entries + [t.entry for t in self.hot]

    def read(self):
        row = self.fence.session.rows(sql.SQL(WAL_SQL).format(source=self.source))[0]
        self.wal["timeline"] = timeline_of(row["walfile"])
        self.wal["system_identifier"] = row["system_identifier"]
        return row

    def view(self):
        """The position now, and the standbys as the primary sees them against the target."""
        row = self.read()
        self.entries = primary_standbys(row["replication"], row["slots"], self.target or row["lsn"], self.blind)
        return row["lsn"]

    def after_revoke(self):
        """Right after the REVOKE's commit: its position, and the standbys as the primary sees them."""
        self.target = self.wal["revoke_lsn"] = self.view()

    def start_hot(self, signal, roles, check=False):
        deadline = time.monotonic() + self.timeout
        for spec in self.fence.params.get("standbys") or ():
            thread = HotStandby(self, spec, signal, roles, deadline, check)
            thread.start()
            self.hot.append(thread)

    def gate(self, signal, roles):
        """Wait up to standby_timeout until every standby has the REVOKE (listed ones: replayed,
        and no source session left). Returns the problems: one line per standby that does not
        (empty when all do, or with standby_policy=ignore, which neither waits nor looks again)."""
        if self.policy == "ignore":
            return []
        self.start_hot(signal, roles)
        self.deadline = deadline = time.monotonic() + self.timeout
        delay = 0.005
        while time.monotonic() < deadline and [
                e for e in self.entries if e["state"] == "lagging" or (e["state"] == "unknown" and e["problem"] != self.blind)]:
            delay = _sleep(delay, deadline)
            self.view()
        for thread in self.hot:
            thread.join()
        self.waited = time.monotonic() - (deadline - self.timeout)
        self.problems = standby_problems(self.standbys(), self.target)
        return self.problems

    def settle(self):
        """After the destination's GRANT: wait, for what is left of standby_timeout, until the
        standbys have flushed the final position too, so that one promoted right after the fence
        admits the destination. One that has not gets a warning, no failure: it has the REVOKE,
        so promoted it would admit neither plane until a rerun."""
        final = self.wal["final_lsn"]
        if self.policy == "ignore" or not self.entries or final is None or self.problems:
            return  # (with problems, standby_policy=warn has warned about those standbys already)
        delay = 0.005
        while True:
            row = self.read()
            behind = [e for e in primary_standbys(row["replication"], row["slots"], final, self.blind)
                      if e["state"] != "caught_up" and e["problem"] != self.blind]
            if not behind or time.monotonic() >= self.deadline:
                break
            delay = _sleep(delay, self.deadline)
        for entry in behind:
            self.module.warn("%s has not flushed the destination's GRANT (WAL position %s) yet: promoted before it "
                             "does, it admits neither plane until the failover is run again there"
                             % (standby_label(entry), final))

    def look(self, signal, roles):
        """Check mode: the standbys once, against the position now; nothing waits or is signalled."""
        self.target = self.view()
        self.start_hot(signal, roles, check=True)
        for thread in self.hot:
            thread.join()
        self.problems = standby_problems(self.standbys(), self.target)

    # --- commits that wait for a synchronous standby --------------------------------------------
    def commit(self, statement, what, on_timeout):
        """Run STATEMENT (autocommit: it commits) in the fence's session. When it takes longer than
        WATCH_AFTER, a second connection watches it; if it still waits for a synchronous standby
        after standby_timeout, ON_TIMEOUT(wait) is called (it fails the module without touching
        the busy session; the commit is never cancelled)."""
        outcome = {}

        def work():
            try:
                self.fence.session.execute(statement)
            except Exception as exc:  # raised again in the module's thread
                outcome["error"] = exc

        worker = threading.Thread(target=work)
        worker.daemon = True  # a module that fails while this commit waits must be able to exit
        started = time.monotonic()
        worker.start()
        worker.join(WATCH_AFTER)
        if worker.is_alive():
            self.watch(worker, what, started, on_timeout)
        if "error" in outcome:
            raise outcome["error"]

    def watch(self, worker, what, started, on_timeout):
        wait = {"what": what, "waited_ms": None, "wait_event": None, "synchronous_standby_names": None,
                "synchronous_standbys": []}
        watcher = Session(self.module, connect(self.module, autocommit=True))
        statement = sql.SQL(WAIT_SQL).format(source=self.source, pid=sql.Literal(self.fence.backend_pid))
        logged = False
        try:
            while worker.is_alive():
                rows = watcher.rows(statement)
                if rows:
                    wait["wait_event"] = rows[0]["wait_event"]
                    wait["synchronous_standby_names"] = rows[0]["names"]
                    wait["synchronous_standbys"] = [
                        {"name": r["name"], "sync_state": r["sync_state"], "flush_lsn": r["flush_lsn"]}
                        for r in rows[0]["replication"] or () if r["sync_state"] in ("sync", "quorum")]
                waited = time.monotonic() - started
                wait["waited_ms"] = int(waited * 1000)
                if wait["wait_event"] == "SyncRep" and not logged:
                    logged = True
                    self.module.log("dataplane.postgresql fence: the commit of %s waits for a synchronous standby "
                                    "(synchronous_standby_names = %r); waiting up to %s s"
                                    % (what, wait["synchronous_standby_names"], self.timeout))
                if wait["wait_event"] == "SyncRep" and waited >= self.timeout:
                    self.commit_waits.append(wait)
                    on_timeout(wait)
                worker.join(0.1)
        finally:
            watcher.close()
        wait["waited_ms"] = int((time.monotonic() - started) * 1000)
        if logged:
            self.commit_waits.append(wait)
            self.module.warn("the commit of %s waited %.1f s for a synchronous standby (synchronous_standby_names = "
                             "%r)" % (what, wait["waited_ms"] / 1000.0, wait["synchronous_standby_names"]))


class HotStandby(threading.Thread):
    """One listed standby: follow it until it has replayed the REVOKE (before that it still
    admits the source plane), then terminate the source plane's sessions there and wait until
    none remains. Everything it finds goes into ``entry``; it never fails the module."""

    def __init__(self, replication, spec, signal, roles, deadline, check):
        threading.Thread.__init__(self)
        self.daemon = True
        self.replication = replication
        self.spec = spec
        self.signal = signal  # signal(session, really) -> the source sessions there (signalled when really)
        self.roles = roles
        self.deadline = deadline
        self.check = check
        self.target = replication.target
        self.entry = self.make_entry(None, None)

    def make_entry(self, flush_lsn, replay_lsn, **extra):
        base = {"host": self.spec["host"], "port": self.spec["port"], "replayed": False, "sessions": [],
                "remaining_sessions": [], "queries": [], "time_ms": None}
        if getattr(self, "entry", None):
            base.update((k, self.entry[k]) for k in base)
        base.update(extra)
        return standby_entry(self.spec["name"], "listed", flush_lsn, replay_lsn, self.target, **base)

    def run(self):
        session = None
        started = time.monotonic()
        try:
            session = thread_server_session(self.replication.module, self.spec["host"], self.spec["port"],
                                            connect_timeout=max(2, self.deadline - time.monotonic()))
            if self.follow(session):
                self.fence_sessions(session)
        except Exception as exc:  # reported with the standby; the gate decides what it means
            self.entry["problem"] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        finally:
            if session is not None:
                self.entry["queries"] = session.queries
                session.close()
            self.entry["time_ms"] = int((time.monotonic() - started) * 1000)

    def follow(self, session):
        """Read the standby's positions until it has replayed the REVOKE (True) or the deadline passed."""
        delay = 0.005
        primary = self.replication.wal["system_identifier"]
        while True:
            row = session.rows(STANDBY_SQL)[0]
            self.entry = self.make_entry(row["flush_lsn"], row["replay_lsn"],
                                         replayed=_reached(row["replay_lsn"], self.target))
            if not row["in_recovery"]:
                self.entry["problem"] = "it is not in recovery: not a standby (promoted, or a primary)"
                return False
            if row["system_identifier"] != primary:
                self.entry["problem"] = ("it is not a standby of this server (system identifier %s, this server's is "
                                         "%s)" % (row["system_identifier"], primary))
                return False
            if self.entry["replayed"] or self.check:
                return True
            if time.monotonic() >= self.deadline:
                return False
            delay = _sleep(delay, self.deadline)

    def fence_sessions(self, session):
        # one look at pg_stat_activity first (any login sees who is connected): the usual hot
        # standby has no source session, and then no termination statement runs there
        found = sess.current_sessions(session, self.roles)
        if found and not self.check:
            found = self.signal(session, True)
        self.entry["sessions"] = [sess.session_record(r) for r in found]
        self.entry["sessions_terminated"] = len(found)
        if self.check:
            return
        if not found:
            self.entry["sessions_left"] = 0
            return
        seen = set(r["pid"] for r in found)

        def on_new(dummy_fresh):  # a newcomer (a reconnect before the REVOKE was replayed)
            for row in self.signal(session, True):
                if row["pid"] not in seen:
                    seen.add(row["pid"])
                    self.entry["sessions"].append(sess.session_record(row))
            self.entry["sessions_terminated"] = len(self.entry["sessions"])

        left = sess.wait_until_gone(session, self.roles, timeout=self.replication.fence.params["wait_timeout"],
                                    on_new=on_new, seen_pids=seen)
        self.entry["remaining_sessions"] = [sess.session_record(r) for r in left]
        self.entry["sessions_left"] = len(left)
