"""The transaction bookkeeping of database.Session (what it commits, rolls back and logs).

No PostgreSQL decision is imitated here: the fake connection only records what the Session
asks of it. What the server does with the statements is covered by the integration tests
(test_membership.py, test_schema_role.py)."""

import pytest

from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import Session, as_session


class Failed(Exception):
    pass


class FakeModule(object):
    def fail_json(self, **kw):
        raise Failed(kw)


class FakeCursor(object):
    def __init__(self, conn):
        self.conn = conn

    def execute(self, statement, params=None):
        if self.conn.refuse:
            raise RuntimeError(self.conn.refuse)
        self.conn.sent.append(statement)

    def close(self):
        pass


class FakeConn(object):
    def __init__(self, autocommit=False, refuse=None):
        self.autocommit, self.refuse = autocommit, refuse
        self.sent, self.ended = [], []

    def cursor(self):
        return FakeCursor(self)

    def commit(self):
        self.ended.append("commit")

    def rollback(self):
        self.ended.append("rollback")

    def close(self):
        self.ended.append("close")


def test_end_transaction_rolls_back_in_check_mode_else_commits():
    conn = FakeConn()
    session = Session(FakeModule(), conn)
    session.end_transaction(True)
    session.end_transaction(False)
    assert conn.ended == ["rollback", "commit"]
    conn.autocommit = True
    session.end_transaction(False)
    session.end_transaction(True)
    assert conn.ended == ["rollback", "commit"]  # nothing to end in autocommit


def test_transaction_turns_autocommit_off_and_ends_the_block():
    conn = FakeConn(autocommit=True)
    session = Session(FakeModule(), conn)
    with session.transaction(False, "failed: %s"):
        assert conn.autocommit is False
        session.execute("SELECT 1", log=False)
    assert conn.sent == ["SELECT 1"] and conn.ended == ["commit"] and session.queries == []


def test_transaction_error_rolls_back_and_fails_with_the_message():
    conn = FakeConn(refuse="permission denied")
    session = Session(FakeModule(), conn)
    with pytest.raises(Failed) as failed:
        with session.transaction(False, "step failed, rolled back: %s"):
            session.execute("GRANT x TO y")
    assert conn.ended == ["rollback"]
    assert failed.value.args[0]["msg"] == "step failed, rolled back: permission denied"
    assert session.queries == []


def test_as_session_wraps_a_connection_once():
    conn = FakeConn()
    session = as_session(conn)
    assert isinstance(session, Session) and session.conn is conn
    assert as_session(session) is session
    session.close()
    assert conn.ended == ["close"]


class _Warner(object):
    def warn(self, msg):
        raise AssertionError(msg)


def _params(**over):
    params = {"login_host": "127.0.0.1", "login_port": 5432, "login_user": "postgres", "login_password": None,
              "login_db": "airflow_db_a", "login_unix_socket": "", "ssl_mode": "prefer", "ca_cert": None,
              "ssl_cert": None, "ssl_key": None, "connect_params": {}}
    params.update(over)
    return params


def test_search_path_is_pinned_in_the_startup_options():
    from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import pinned_conn_params
    kw = pinned_conn_params(_Warner(), _params())
    assert kw["options"] == "-c search_path=pg_catalog,pg_temp -c role=none -c default_transaction_read_only=off"
    assert kw["dbname"] == "airflow_db_a"


def test_a_users_own_options_are_kept_and_the_pin_comes_last():
    """The server applies start-up options in order: the pin must come after the user's, so a
    search_path in connect_params cannot undo it."""
    from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import pinned_conn_params
    given = {"options": "-c search_path=public -c work_mem=8MB", "application_name": "ops"}
    kw = pinned_conn_params(_Warner(), _params(connect_params=given))
    assert kw["options"] == ("-c search_path=public -c work_mem=8MB -c search_path=pg_catalog,pg_temp -c role=none"
                             " -c default_transaction_read_only=off")
    assert kw["application_name"] == "ops"
