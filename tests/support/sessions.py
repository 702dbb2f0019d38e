"""Live sessions held open, in the states a fence has to end.

One implementation for the tests, Molecule (as a command line), scripts/demo.py and the
benchmarks. States:

  idle                  connected, autocommit, after one ``SELECT 1``
  idle in transaction   a transaction left open after ``tx_sql`` (an uncommitted write)
  active                a long ``pg_sleep`` running (an asynchronous connection: no thread)
  lock                  a transaction holding ACCESS EXCLUSIVE on table ``lockme`` (and a row in it)

``idle_in_tx`` and ``idle_in_transaction`` are accepted for ``idle in transaction``.

As a command line (Molecule's prepare): hold sessions until killed, and write FILE once they
are open (the active ones running)::

    python -m tests.support.sessions --port P [--host H] --ready FILE USER:DB:STATE [...]
"""

import argparse
import select
import sys
import time

import psycopg2

from tests.support.server import HOST, PgServer, connect

STATES = ("idle", "idle in transaction", "active", "lock")
ALIASES = {"idle_in_tx": "idle in transaction", "idle_in_transaction": "idle in transaction"}
DEFAULT_TX_SQL = "CREATE TEMP TABLE scratch (v int); INSERT INTO scratch VALUES (1)"
SLEEP_SQL = "SELECT pg_catalog.pg_sleep(%d)"


def canonical(state):
    state = ALIASES.get(state, state)
    if state not in STATES:
        raise ValueError("unknown session state %r (one of %s)" % (state, ", ".join(STATES)))
    return state


def _wait_connected(conn):
    """Drive an asynchronous connection until it is established."""
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], 10)
        else:
            select.select([conn.fileno()], [], [], 10)


def _wait_sent(conn):
    """After an asynchronous execute: flush until the query is on its way (its answer comes
    when pg_sleep ends, or an error when the server terminates the backend)."""
    while conn.poll() == psycopg2.extensions.POLL_WRITE:
        select.select([], [conn.fileno()], [], 10)


class Session(object):
    """One held connection: its role, database, state and backend pid."""

    def __init__(self, conn, user, dbname, state, label=None):
        self.conn = conn
        self.user = user
        self.dbname = dbname
        self.state = state
        self.label = label
        self.pid = conn.get_backend_pid()

    def alive(self):
        """Ask the connection itself: a session the server ended cannot answer."""
        conn = self.conn
        if conn.closed:
            return False
        try:
            if conn.async_:
                conn.poll()  # raises once the server has terminated the backend
                return conn.isexecuting()
            if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.rollback()
            conn.cursor().execute("SELECT 1")
            return True
        except psycopg2.Error:
            return False


class Sessions(object):
    """Sessions held open on SERVER (a ``tests.support.server.PgServer``); ``user``/``dbname`` are
    the defaults for ``open``. ``close()`` ends what is left."""

    def __init__(self, server, user=None, dbname=None, application="test", tx_sql=DEFAULT_TX_SQL,
                 sleep_seconds=600):
        self.server = server
        self.user = user
        self.dbname = dbname
        self.application = application
        self.tx_sql = tx_sql
        self.sleep_seconds = sleep_seconds
        self.items = []

    # -- opening ------------------------------------------------------------------------------
    def open_one(self, user, dbname, state, label=None, wait=True):
        """Open one session of USER in DBNAME in STATE; return its ``Session``."""
        app = "%s-%s" % (self.application, state.replace(" ", "-"))
        state = canonical(state)
        host = self.server.host
        if state == "active":
            conn = psycopg2.connect(host=host, port=self.server.port, user=user, dbname=dbname,
                                    application_name=app, async_=1)
            _wait_connected(conn)
            conn.cursor().execute(SLEEP_SQL % self.sleep_seconds)
            _wait_sent(conn)
        else:
            conn = connect(self.server.port, user, dbname, host=host, application_name=app)
            cur = conn.cursor()
            if state == "idle":
                conn.autocommit = True
                cur.execute("SELECT 1")
            elif state == "idle in transaction":
                cur.execute(self.tx_sql)
            else:
                cur.execute("LOCK TABLE lockme IN ACCESS EXCLUSIVE MODE")
                cur.execute("INSERT INTO lockme VALUES ('locked')")
        session = Session(conn, user, dbname, state, label)
        self.items.append(session)
        if wait and state == "active":
            self.wait_active([session])
        return session

    def open(self, states=("idle", "idle in transaction", "active", "lock"), user=None, dbname=None):
        """Open one session per STATE as USER in DBNAME (defaults: the constructor's); wait
        until the active ones really run pg_sleep. Returns self."""
        user, dbname = user or self.user, dbname or self.dbname
        opened = [self.open_one(user, dbname, state, wait=False) for state in states]
        self.wait_active([s for s in opened if s.state == "active"])
        return self

    def open_states(self, user, dbname, states=("idle", "idle in transaction", "active")):
        """Idle, idle in transaction and active as USER in DBNAME; return how many were opened."""
        self.open(states, user, dbname)
        return len(states)

    def wait_active(self, sessions=None, timeout=10):
        """Wait until every active session (of SESSIONS, default all) shows pg_sleep running."""
        pids = [s.pid for s in (self.items if sessions is None else sessions) if s.state == "active"]
        if not pids:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.server.sql("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = ANY(%s) "
                                   "AND state = 'active' AND query LIKE %s", (pids, "%pg_sleep%"))
            if rows[0][0] == len(pids):
                return
            time.sleep(0.02)
        raise AssertionError("the active sessions %s did not start pg_sleep within %s s" % (pids, timeout))

    # -- looking ------------------------------------------------------------------------------
    def pids(self):
        return [s.pid for s in self.items]

    @property
    def conns(self):
        return dict((s.state, s.conn) for s in self.items)

    def alive(self):
        """The sessions that still answer."""
        return [s for s in self.items if s.alive()]

    # -- ending -------------------------------------------------------------------------------
    def close(self):
        """End every held session: terminated server-side first (a backend inside pg_sleep does
        not notice a closed client socket), then closed here."""
        pids = [s.pid for s in self.items if not s.conn.closed]
        if pids:
            try:
                self.server.sql("SELECT pg_catalog.pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
            except psycopg2.Error:
                pass
        for session in self.items:
            try:
                session.conn.close()
            except psycopg2.Error:
                pass


def main(argv=None):
    parser = argparse.ArgumentParser(description="Hold live PostgreSQL sessions open until killed.")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready", required=True, help="file written once every session is open")
    parser.add_argument("--application", default="molecule")
    parser.add_argument("sessions", nargs="+", metavar="USER:DB:STATE")
    args = parser.parse_args(argv)
    held = Sessions(PgServer(None, ".", port=args.port, host=args.host), application=args.application,
                    tx_sql="SELECT pg_catalog.txid_current()", sleep_seconds=3600)
    for spec in args.sessions:
        user, dbname, state = spec.split(":")
        held.open_one(user, dbname, state, wait=False)
    held.wait_active()
    with open(args.ready, "w") as handle:
        handle.write("%d\n" % len(held.items))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
