"""Shared set-up for the fence tests and benchmark: the vendor's reference setup, verbatim,
plus real sessions opened as a login role."""

import threading
import time

import psycopg2
from psycopg2 import sql


def reference_setup_statements(dep, commander, version_num=160000):
    """The seed's SQL for one Deployment (names from DEP), as composed statements."""
    i = sql.Identifier
    stmts = [
        sql.SQL("CREATE ROLE {} NOLOGIN").format(i(dep["owner"])),
        sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(i(dep["killer"])),
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(i(dep["database"]), i(dep["owner"])),
        sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(i(dep["database"])),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(i(dep["database"]), i(dep["dp1"])),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(i(dep["database"]), i(dep["dp2"])),
    ]
    if version_num >= 160000:
        stmts += [
            sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET FALSE").format(i(dep["dp1"]), i(dep["killer"])),
            sql.SQL("GRANT {} TO {} WITH INHERIT FALSE, SET FALSE").format(i(dep["dp2"]), i(dep["killer"])),
        ]
    stmts += [
        sql.SQL("GRANT {} TO {}").format(i(dep["owner"]), i(commander)),
        sql.SQL("GRANT {} TO {}").format(i(dep["killer"]), i(commander)),
    ]
    return stmts


def make_deployment(names, ident):
    return {
        "id": ident,
        "database": names("airflow_db_%s" % ident),
        "owner": names("airflow_db_%s_owner" % ident),
        "killer": names("airflow_conn_killer_%s" % ident),
        "dp1": names("dp1_user_%s" % ident),
        "dp2": names("dp2_user_%s" % ident),
    }


def setup_deployments(server, deps, commander, with_helper=True, helper_schema="dataplane_fence",
                      helper_owner="dataplane_fence_signaler", create_commander=True):
    """Create databases and login roles, then run the seed SQL for each Deployment as postgres."""
    conn = server.connect()
    cur = conn.cursor()
    version = server.sql("SELECT current_setting('server_version_num')::int")[0][0]
    if create_commander:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(commander)))
    for dep in deps:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dep["database"])))
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(dep["dp1"])))
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(dep["dp2"])))
        for stmt in reference_setup_statements(dep, commander, version):
            cur.execute(stmt)
    conn.close()
    for dep in deps:  # a table the sessions can write to, owned by the owner role
        db = server.connect(dbname=dep["database"])
        c = db.cursor()
        for table in ("t", "lockme"):
            c.execute(sql.SQL("CREATE TABLE {} (src text)").format(sql.Identifier(table)))
            c.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(table), sql.Identifier(dep["owner"])))
            c.execute(sql.SQL("GRANT ALL ON {} TO {}, {}").format(
                sql.Identifier(table), sql.Identifier(dep["dp1"]), sql.Identifier(dep["dp2"])))
        db.close()


def fence_args(server, deps, commander, **extra):
    args = server.login_args(commander)
    args["deployments"] = [dict(name=d["id"], database=d["database"], source_role=d["dp1"],
                                destination_role=d["dp2"], killer_role=d["killer"]) for d in deps]
    args.update(extra)
    return args


class Sessions(object):
    """Live sessions of one role: idle, idle in transaction with an uncommitted INSERT,
    active pg_sleep, holding a lock."""

    def __init__(self, server, user, dbname):
        self.server = server
        self.user = user
        self.dbname = dbname
        self.conns = {}
        self.threads = []
        self._pids = {}

    def open(self, kinds=("idle", "idle_in_tx", "active", "lock")):
        for kind in kinds:
            conn = self.server.connect(self.user, self.dbname, autocommit=False,
                                       application_name="fence-test-%s" % kind)
            cur = conn.cursor()
            if kind == "idle":
                conn.autocommit = True
                cur.execute("SELECT 1")
            elif kind == "idle_in_tx":
                cur.execute("INSERT INTO t VALUES ('uncommitted')")
            elif kind == "lock":
                cur.execute("LOCK TABLE lockme IN ACCESS EXCLUSIVE MODE")
                cur.execute("INSERT INTO lockme VALUES ('locked')")
            self._pids[kind] = conn.get_backend_pid()
            if kind == "active":
                thread = threading.Thread(target=self._sleep, args=(conn,), daemon=True)
                thread.start()
                self.threads.append(thread)
            self.conns[kind] = conn
        if "active" in kinds:  # wait until pg_sleep is really running
            deadline = time.time() + 10
            while time.time() < deadline:
                rows = self.server.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                                       "AND state = 'active' AND query LIKE '%%pg_sleep%%'", (self.user,))
                if rows[0][0]:
                    break
                time.sleep(0.02)
        return self

    @staticmethod
    def _sleep(conn):
        try:
            conn.cursor().execute("SELECT pg_sleep(600)")
        except psycopg2.Error:
            pass

    def pids(self):
        return list(self._pids.values())

    def close(self):
        for conn in self.conns.values():
            try:
                conn.close()
            except Exception:
                pass


def install_helper(server, run_module, killers):
    """Install the fence helper as postgres for KILLERS; fail the test if that fails."""
    res = run_module("fence_helper", dict(server.login_args(), killer_roles=killers))
    assert not res["failed"], res
    return res


def can_connect(server, user, dbname):
    """A real login attempt: True when admitted, False when CONNECT is refused."""
    try:
        server.connect(user, dbname).close()
        return True
    except psycopg2.OperationalError as exc:
        assert "permission denied for database" in str(exc)
        return False
