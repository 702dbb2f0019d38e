# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection and statement helpers shared by the dataplane.postgresql modules.

Connection options and connection handling come from community.postgresql; this file
adds what every module here needs on top: a server version gate, SQL composition with the
``sql`` module of whichever driver community.postgresql connected with, rows as dicts,
and a log of the statements run (the ``queries`` return value).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from contextlib import contextmanager

from ansible.module_utils.common.text.converters import to_native
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    connect_to_db,
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)

try:
    from ansible_collections.community.postgresql.plugins.module_utils import postgres as _cp
    if _cp.psycopg is not None and _cp.psycopg.__name__ == "psycopg":
        # psycopg 3, same composition API
        from psycopg import sql  # noqa: F401  pylint: disable=unused-import
    else:
        from psycopg2 import sql  # noqa: F401
except ImportError:  # reported by ensure_required_libs()
    sql = None

MIN_SERVER_VERSION_NUM = 160000


def connection_argument_spec():
    """community.postgresql's connection options plus login_db (default postgres)."""
    spec = postgres_common_argument_spec()
    spec["login_db"] = dict(type="str", default="postgres")
    return spec


# Every session of this collection resolves names in PostgreSQL's own catalog only.
# A metadata database is ground that others control: its login roles (through the schema
# role) and commander_user (through the owner role) can create functions and operators in
# its schemas, and PostgreSQL prefers, for ``oid_column = 'x'::regclass``, an operator
# ``public.=(oid, regclass)`` with an exact argument match over pg_catalog's ``=(oid, oid)``
# that needs a coercion, even though pg_catalog is searched first. Such a function would run
# with the privileges of whoever runs the query: the admin, a managed admin, commander_user.
# So the path is pinned in the connection's start-up packet (libpq ``options``: the server
# applies it before any statement can run, and over any ALTER ROLE/DATABASE ... SET), and
# docs/maintaining.md gives the rule for the SQL itself (operators written
# OPERATOR(pg_catalog.=), functions and catalogs qualified; tests/unit keeps it).
# Two more settings are pinned the same way, because the owner role (commander_user) can set
# them for everyone who enters its database (ALTER DATABASE ... SET): ``role`` (an admin's
# session would otherwise start as whatever role the tenant chose) and
# ``default_transaction_read_only`` (it would block provisioning).
PINNED_SEARCH_PATH = "pg_catalog, pg_temp"
PINNED_OPTIONS = "-c search_path=pg_catalog,pg_temp -c role=none -c default_transaction_read_only=off"


def pinned_conn_params(module, params):
    """community.postgresql's connection keywords for PARAMS, with the search_path pinned at
    connect time. A user's own ``connect_params.options`` are kept, ours come last (the
    server applies start-up options in order, so the pin wins)."""
    kw = get_conn_params(module, params, warn_db_default=False)
    given = kw.get("options")
    kw["options"] = "%s %s" % (given, PINNED_OPTIONS) if given else PINNED_OPTIONS
    return kw


# synchronous_commit values that let a COMMIT return before its WAL is flushed to the
# server's own disk: a crash right after such a commit can lose it although the module
# reported success. Every session of this collection raises them to "on".
NOT_DURABLE_COMMIT = ("off", "local")

# The first statement of every session, one round trip:
# - raise synchronous_commit to "on" for this session when the server (or the role's or
#   database's settings) say "off" or "local"; keep "on", "remote_write" and "remote_apply"
#   as they are (those already flush locally, and follow the server's policy for synchronous
#   standbys);
# - pin search_path again, in case something between the module and the server (a pooler
#   set to ignore start-up options) dropped the pin; set_config is qualified and no operator
#   is used, so this statement is safe before the pin holds; default_transaction_read_only
#   likewise (``role`` is not set here: a module's session_role is already in force by now).
# Returns the synchronous_commit value in effect (then the search_path and read-only setting).
DURABLE_COMMIT_SQL = (
    "SELECT CASE WHEN pg_catalog.current_setting('synchronous_commit')"
    " OPERATOR(pg_catalog.=) ANY (ARRAY['off', 'local']::pg_catalog.text[])"
    " THEN pg_catalog.set_config('synchronous_commit', 'on', false)"
    " ELSE pg_catalog.current_setting('synchronous_commit') END,"
    " pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),"
    " pg_catalog.set_config('default_transaction_read_only', 'off', false)")


def make_durable(conn):
    """Make every later COMMIT of CONN durable before it returns (see DURABLE_COMMIT_SQL),
    and hold the session's search_path at PINNED_SEARCH_PATH.

    ``local`` is raised too: with synchronous standbys configured, "on" also waits for them,
    as the server's synchronous_standby_names says. Returns the session's setting now.
    """
    # Run outside a transaction (one round trip, no BEGIN and COMMIT): a session setting
    # made in a transaction would be undone by a rollback.
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(DURABLE_COMMIT_SQL)
        value = first_value(cur.fetchone())
        cur.close()
    finally:
        conn.autocommit = autocommit
    return value


def connect(module, autocommit=False):
    """Connect with the module's connection options; fail the module on error.

    The search_path is pinned (pinned_conn_params) and the session's commits are made
    durable (make_durable): a module never reports a change that a server crash a moment
    later could still undo.
    """
    ensure_required_libs(module)
    conn, dummy = connect_to_db(module, pinned_conn_params(module, module.params), autocommit=autocommit)
    if conn is not None:
        make_durable(conn)
    return conn


def connect_database(module, database, fail=True):
    """A new connection to DATABASE with the module's connection options (not autocommit),
    for work that must happen inside another database than ``login_db``: a metadata
    database, where others can create objects. The search_path is pinned as in ``connect``.
    FAIL False: raise RuntimeError instead of failing the module when it cannot connect."""
    params = dict(module.params)
    params["login_db"] = database
    conn, error = connect_to_db(module, pinned_conn_params(module, params), autocommit=False, fail_on_conn=fail)
    if conn is None:
        raise RuntimeError("cannot connect to database %s: %s" % (database, error))
    make_durable(conn)
    return conn


class ThreadModule(object):
    """Stands in for the module in a worker thread (workers.run_jobs): it has the module's
    ``params``; ``fail_json`` raises RuntimeError with the message instead of printing a
    result and exiting (which would end only the thread), ``warn`` keeps the message in
    ``warnings`` for the module's thread to pass on."""

    def __init__(self, module):
        self.params = module.params
        self.check_mode = getattr(module, "check_mode", False)
        self.warnings = []

    def fail_json(self, msg="", **kwargs):
        raise RuntimeError(msg)

    def warn(self, msg):
        self.warnings.append(msg)


def thread_database_session(module, database):
    """A ``Session`` over a new connection to DATABASE (see connect_database), for a worker
    thread: a connection failure raises RuntimeError
    (community.postgresql's message: "unable to connect to database: ...") and never fails
    the module; the Session's own ``fail`` raises too."""
    stand_in = module if isinstance(module, ThreadModule) else ThreadModule(module)
    return Session(stand_in, connect_database(stand_in, database))


def thread_server_session(module, host, port, connect_timeout=None):
    """A ``Session`` in autocommit over a new connection to another server (HOST, PORT; a
    standby), with the module's other connection options, its search_path pinned; for a worker
    thread as thread_database_session. CONNECT_TIMEOUT: seconds (libpq's, at least 2)."""
    stand_in = module if isinstance(module, ThreadModule) else ThreadModule(module)
    params = dict(stand_in.params)
    params.update(login_host=host, login_port=port, login_unix_socket="")  # TCP to HOST, never a local socket
    kw = pinned_conn_params(stand_in, params)
    if connect_timeout is not None:
        kw["connect_timeout"] = max(2, int(connect_timeout))
    conn, error = connect_to_db(stand_in, kw, autocommit=True, fail_on_conn=False)
    if conn is None:
        raise RuntimeError("cannot connect to %s:%s: %s" % (host, port, error))
    make_durable(conn)
    return Session(stand_in, conn)


def as_session(connection_or_session, module=None):
    """A ``Session`` for a DB-API connection (a ``Session`` is returned as it is)."""
    if isinstance(connection_or_session, Session):
        return connection_or_session
    return Session(module, connection_or_session)


def server_version_num(conn):
    cur = conn.cursor()
    cur.execute("SELECT pg_catalog.current_setting('server_version_num')::int")
    value = first_value(cur.fetchone())
    cur.close()
    return value


def version_label(version_num):
    return "%d.%d" % (version_num // 10000, version_num % 10000)


def first_value(row):
    if row is None:
        return None
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]


class Session(object):
    """One connection, a cursor, and the log of statements that changed something."""

    def __init__(self, module, conn):
        self.module = module
        self.conn = conn
        self.cursor = conn.cursor()
        self.queries = []

    def render(self, statement, params=None):
        """The statement as text, for the queries log and check mode."""
        if hasattr(statement, "as_string"):
            statement = statement.as_string(self.conn)
        if params:
            statement = self.cursor.mogrify(statement, params)
            if isinstance(statement, bytes):
                statement = statement.decode("utf-8")
        return statement

    def rows(self, statement, params=None):
        """Run a read-only query and return its rows as dicts."""
        self.cursor.execute(statement, params)
        if self.cursor.description is None:
            return []
        names = [col[0] for col in self.cursor.description]
        out = []
        for row in self.cursor.fetchall():
            out.append(dict(row) if isinstance(row, dict) else dict(zip(names, row)))
        return out

    def execute(self, statement, params=None, log=True):
        """Run a statement that changes something, and log it."""
        text = self.render(statement, params)
        self.cursor.execute(statement, params)
        if log:
            self.queries.append(text)
        return text

    def execute_many(self, statements, log=True):
        """Run STATEMENTS (composed or text) in one round trip; log them (each as text) once
        they all ran. Returns their texts."""
        texts = [self.render(statement) for statement in statements]
        if texts:
            # The texts are the statements as the driver composed them (identifiers quoted by
            # sql.Identifier); sent without parameters, nothing in them is interpreted again.
            self.cursor.execute("; ".join(texts))
            if log:
                self.queries.extend(texts)
        return texts

    def set_role(self, role):
        """``SET ROLE`` to ROLE (quoted as an identifier; not logged). Raises the driver's
        error when the server refuses it."""
        self.cursor.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))

    def commit(self):
        """Commit what the connection did since its last commit (nothing in autocommit)."""
        if not self.conn.autocommit:
            self.conn.commit()

    def rollback(self):
        if not self.conn.autocommit:
            self.conn.rollback()

    def end_transaction(self, check_mode):
        """Roll back in check mode, else commit."""
        if check_mode:
            self.rollback()
        else:
            self.commit()

    @contextmanager
    def transaction(self, check_mode, failure):
        """Run the block in one transaction (autocommit off), ended by ``end_transaction``.
        An error in it rolls back and fails the module with FAILURE, a message with one
        ``%s`` for the error."""
        self.conn.autocommit = False
        try:
            yield self
            self.end_transaction(check_mode)
        except Exception as exc:  # psycopg error: the server's reason
            self.fail(failure % to_native(exc))

    def run(self, statement, params=None):
        """Run a statement (or several, joined with ';') without logging or rendering it:
        for statements the caller logs itself, and for session settings."""
        self.cursor.execute(statement, params)

    def sibling(self, autocommit=True):
        """Another Session with the same connection options (its own connection): for work
        spread over several connections, such as CREATE DATABASE."""
        return Session(self.module, connect(self.module, autocommit=autocommit))

    def execute_rows(self, statement, params=None, log=True):
        """Run a statement that returns rows and may act (signal sessions, ...); its rows as dicts.

        Logged in ``queries`` when LOG and it returned at least one row (it acted on something).
        """
        text = self.render(statement, params)
        rows = self.rows(statement, params)
        if log and rows:
            self.queries.append(text)
        return rows

    def version_num(self):
        return server_version_num(self.conn)

    def require_version(self, minimum, why):
        """Fail before any change when the server is older than MINIMUM."""
        found = self.version_num()
        if found < minimum:
            self.module.fail_json(
                msg="PostgreSQL %s is too old: %s needs PostgreSQL %s or newer"
                    % (version_label(found), why, version_label(minimum)),
                server_version=version_label(found), queries=[])
        return found

    def fail(self, msg, **extra):
        """Roll back and fail the module."""
        try:
            self.conn.rollback()
        except Exception:  # connection may be gone; the message matters more
            pass
        extra.setdefault("queries", self.queries)
        self.module.fail_json(msg=to_native(msg), **extra)

    def close(self):
        try:
            self.cursor.close()
            self.conn.close()
        except Exception:
            pass
