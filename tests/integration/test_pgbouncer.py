"""A real PgBouncer between the planes and PostgreSQL 16, as Airflow platforms run it.

PgBouncer (transaction or session pooling, ``server_reset_query = DISCARD ALL``) keeps server connections
of each login role open after its clients leave, and logs in again on its own. The sequence a
platform goes through:

1. provision one Deployment; through PgBouncer, dp1 works as the schema role, also after a
   ``DISCARD ALL``, and creates a table the schema role owns;
2. dp1 holds a transaction open through PgBouncer (its server connection pinned), more dp1
   server connections sit idle in the pool; fail over dp1 -> dp2 as commander_user: the open
   transaction is lost, no dp1 server connection is left, and PgBouncer cannot log dp1 in again.
   A new dp1 client does not get PostgreSQL's "permission denied for database": PgBouncer keeps
   it waiting while it retries the login, and ends it after ``query_wait_timeout``
   (docs/pgbouncer.md);
3. dp2 through PgBouncer reads dp1's committed row and writes;
4. fail back: PgBouncer logs dp1 in again and dp1 reads dp2's row, as the schema role.
"""

import time

import psycopg2
import pytest
from psycopg2 import sql

from tests.support.pgbouncer import PgBouncer
from tests.support.playbooks import FAILOVER, PROVISION, Deployments, recap


def through(bouncer, user, dbname):
    conn = psycopg2.connect(host="127.0.0.1", port=bouncer.port, user=user, dbname=dbname, connect_timeout=5)
    conn.autocommit = True
    return conn


def one(conn, query, args=None):
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchone()


def run(conn, statement):
    with conn.cursor() as cur:
        cur.execute(statement)


def until(check, timeout=10.0):
    """CHECK() until it returns a true value (then that value) or TIMEOUT seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def fails_through(bouncer, user, dbname):
    """The error text when USER cannot run a statement through PgBouncer, else None."""
    try:
        conn = through(bouncer, user, dbname)
        try:
            one(conn, "SELECT 1")
        finally:
            conn.close()
    except psycopg2.Error as exc:
        return str(exc)
    return None


@pytest.fixture
def deployment(pg16, names, ansible_playbook, tmp_path):
    d = Deployments(pg16, names, ansible_playbook, tmp_path, count=1)
    proc = d.playbook(PROVISION)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return d


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_failover_through_a_real_pgbouncer(pg16, deployment, pool_mode):
    d = deployment
    dep = d.ids[0]
    db, schema = d.db(dep), d.schema(dep)
    dp1, dp2 = d.login("dp1", dep), d.login("dp2", dep)
    bouncer = PgBouncer(pg16, [dp1, dp2, "postgres"], pool_mode=pool_mode, query_wait_timeout=3)
    try:
        bouncer.start()
        print("PgBouncer: %s" % bouncer.version)
        # 1. dp1 through PgBouncer: the schema role, also after DISCARD ALL; objects it owns.
        first = through(bouncer, dp1, db)
        assert one(first, "SELECT current_user, session_user") == (schema, dp1)
        run(first, "CREATE TABLE fenced_rows (plane text)")
        run(first, "INSERT INTO fenced_rows VALUES ('dp1')")
        run(first, "DISCARD ALL")
        assert one(first, "SELECT current_user") == (schema,)
        assert pg16.sql("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'fenced_rows'",
                        dbname=db) == [(schema,)]

        # 2. An open transaction (pinned server connection) and idle pooled ones; fail over.
        holder = through(bouncer, dp1, db)
        holder.autocommit = False
        run(holder, "INSERT INTO fenced_rows VALUES ('uncommitted')")
        extra = [through(bouncer, dp1, db) for dummy in range(3)]
        for conn in extra:
            conn.autocommit = False
            one(conn, "SELECT 1")
        for conn in extra:
            conn.commit()
            conn.close()
        first.close()
        assert len(pg16.pids_of(dp1)) >= 2  # PgBouncer keeps its server connections after the clients leave
        proc = d.playbook(FAILOVER, user=d.commander, dataplane_failover_from="dp1", dataplane_failover_to="dp2")
        assert proc.returncode == 0 and recap(proc.stdout)["pg"]["failed"] == 0, proc.stdout + proc.stderr
        assert pg16.pids_of(dp1) == []
        with pytest.raises(psycopg2.Error):
            run(holder, "INSERT INTO fenced_rows VALUES ('after the fence')")
            holder.commit()
        holder.close()
        started = time.monotonic()
        refused = fails_through(bouncer, dp1, db)
        waited = time.monotonic() - started
        log = bouncer.log()
        assert refused and ("query_wait_timeout" in refused or "server closed the connection" in refused), refused
        assert 2.5 < waited < 30, waited
        assert 'login failed: FATAL: permission denied for database "%s"' % db in log, log[-3000:]
        assert "pooler error: query_wait_timeout" in log, log[-3000:]
        assert pg16.pids_of(dp1) == []

        # 3. dp2 through PgBouncer: dp1's committed row, not its open transaction; it writes.
        second = through(bouncer, dp2, db)
        assert one(second, "SELECT current_user, session_user") == (schema, dp2)
        assert one(second, "SELECT array_agg(plane ORDER BY plane) FROM fenced_rows") == (["dp1"],)
        run(second, "INSERT INTO fenced_rows VALUES ('dp2')")
        second.close()

        # 4. Fail back: PgBouncer logs dp1 in again (its failed login is retried after
        # server_login_retry), dp1 reads dp2's row as the schema role.
        proc = d.playbook(FAILOVER, user=d.commander, dataplane_failover_from="dp2", dataplane_failover_to="dp1")
        assert proc.returncode == 0 and recap(proc.stdout)["pg"]["failed"] == 0, proc.stdout + proc.stderr
        assert pg16.pids_of(dp2) == []
        assert until(lambda: fails_through(bouncer, dp1, db) is None, timeout=10), bouncer.log()[-2000:]
        again = through(bouncer, dp1, db)
        assert one(again, "SELECT current_user, session_user") == (schema, dp1)
        assert one(again, "SELECT array_agg(plane ORDER BY plane) FROM fenced_rows") == (["dp1", "dp2"],)
        again.close()
        assert fails_through(bouncer, dp2, db) and pg16.pids_of(dp2) == []
    finally:
        bouncer.stop()
        pg16.sql(sql.SQL("DROP TABLE IF EXISTS fenced_rows"), dbname=db)
