"""The shared schema role and plane parity on real PostgreSQL 16, 17 and 18.

A user's sequence: provision (check mode, then for real, then again: no change), use the
database as dp1, audit, let the planes drift (a table owned by a login role, a missing role
setting), see the audit name it and the failover preflight refuse with nothing changed,
repair by provisioning with the documented hand-over, fail over, decommission.
"""

import json

import psycopg2
import pytest
from psycopg2 import sql

from test_failover import PROVISION, FAILOVER, recap, write_inventory
from test_provision import record

AUDIT = PROVISION.parent / "audit.yml"


class Deployments(object):
    def __init__(self, server, names, ansible_playbook, tmp_path, count=2):
        self.server = server
        self.run = ansible_playbook
        self.commander = names("commander")
        self.ids = [names("s%d" % i) for i in range(count)]
        self.deployments = [{"id": i, "passwords": {"dp1": "secret-one-" + i, "dp2": "secret-two-" + i}}
                            for i in self.ids]
        self.inventory = write_inventory(tmp_path / "inventory.yml", server)
        server.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.commander)))

    def playbook(self, playbook, user="postgres", check=False, diff=False, deployments=None, **extra):
        extra_vars = {"dataplane_pg_user": user, "dataplane_commander_user": self.commander,
                      "dataplane_deployments": deployments or self.deployments}
        extra_vars.update(extra)
        return self.run(playbook, inventory=self.inventory, extra_vars=extra_vars, check=check, diff=diff)

    @staticmethod
    def db(i):
        return "airflow_db_%s" % i

    @staticmethod
    def schema(i):
        return "airflow_db_%s_schema" % i

    @staticmethod
    def login(plane, i):
        return "%s_user_%s" % (plane, i)


def schema_state(server, d, i):
    """What the model promises for Deployment I, read from the catalogs."""
    role = server.sql("SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
                      "FROM pg_roles WHERE rolname = %s", (d.schema(i),))
    members = server.sql("SELECT m.rolname, am.inherit_option, am.set_option, am.admin_option FROM pg_auth_members am "
                         "JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member "
                         "WHERE g.rolname = %s OR m.rolname = %s ORDER BY 1", (d.schema(i), d.schema(i)))
    settings = server.sql("SELECT r.rolname, s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                          "JOIN pg_database db ON db.oid = s.setdatabase WHERE db.datname = %s ORDER BY 1", (d.db(i),))
    privileges = server.sql("SELECT has_schema_privilege(%s, 'public', 'USAGE'), "
                            "has_schema_privilege(%s, 'public', 'CREATE')", (d.schema(i), d.schema(i)),
                            dbname=d.db(i)) if role else None
    # commander_user is a MEMBER through killer -> login role -> schema role, but that chain
    # carries neither privileges (USAGE) nor SET ROLE: the killer's memberships are INHERIT
    # FALSE, SET FALSE.
    commander = server.sql("SELECT pg_has_role(%s, oid, 'USAGE'), pg_has_role(%s, oid, 'SET') "
                           "FROM pg_roles WHERE rolname = %s", (d.commander, d.commander, d.schema(i)))
    return {"role": role, "members": members, "settings": settings, "privileges": privileges,
            "commander_member": commander}


def expected_state(d, i):
    return {"role": [(False,) * 6],
            "members": sorted([(d.login("dp1", i), False, True, False), (d.login("dp2", i), False, True, False)]),
            "settings": [(d.login("dp1", i), ["role=" + d.schema(i)]), (d.login("dp2", i), ["role=" + d.schema(i)])],
            "privileges": [(True, True)], "commander_member": [(False, False)]}


def connect_as(server, user, dbname):
    conn = psycopg2.connect(host=server.host, port=server.port, user=user, dbname=dbname, connect_timeout=5)
    conn.autocommit = True
    return conn


def can_connect(server, user, dbname):
    try:
        connect_as(server, user, dbname).close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture
def deployments(pg, names, ansible_playbook, tmp_path):
    return Deployments(pg, names, ansible_playbook, tmp_path)


def test_schema_role_converges_parity_drift_stops_the_failover(pg, deployments):
    d = deployments
    first, second = d.ids

    # Check mode plans the schema role and creates nothing; diff mode shows it.
    proc = d.playbook(PROVISION, check=True, diff=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap(proc.stdout)["pg"]["changed"] >= 1
    assert d.schema(first) in proc.stdout
    assert pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", ([d.schema(i) for i in d.ids],)) == [(0,)]

    proc = d.playbook(PROVISION)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i in d.ids:
        assert schema_state(pg, d, i) == expected_state(d, i)
    rerun = d.playbook(PROVISION)
    assert rerun.returncode == 0 and recap(rerun.stdout)["pg"]["changed"] == 0, rerun.stdout

    # dp1 works as the schema role; commander_user cannot read what it created.
    conn = connect_as(pg, d.login("dp1", first), d.db(first))
    cur = conn.cursor()
    cur.execute("SELECT current_user, session_user")
    assert cur.fetchone() == (d.schema(first), d.login("dp1", first))
    cur.execute("CREATE TABLE variable (key text PRIMARY KEY, val text); INSERT INTO variable VALUES ('k', 'v')")
    cur.execute("RESET ROLE; SELECT current_user")   # poolers' resets go back to the schema role
    assert cur.fetchone() == (d.schema(first),)
    cur.execute("SET ROLE NONE")                     # leaving it leaves every privilege behind
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("CREATE TABLE escaped (x int)")
    conn.close()
    with pytest.raises(psycopg2.errors.InsufficientPrivilege) as denied:
        pg.sql("SELECT * FROM variable", user=d.commander, dbname=d.db(first))
    assert "permission denied for table variable" in str(denied.value)
    with connect_as(pg, d.login("dp2", first), d.db(first)) as other:
        cur = other.cursor()
        cur.execute("SELECT val FROM variable")
        assert cur.fetchall() == [("v",)]

    audit = d.playbook(AUDIT, user=d.commander)
    assert audit.returncode == 0, audit.stdout + audit.stderr

    # Drift: a table owned by dp1 in the first, no role setting for dp2 in the second.
    pg.sql(sql.SQL("CREATE TABLE drift_t (x int); ALTER TABLE drift_t OWNER TO {}").format(
        sql.Identifier(d.login("dp1", first))), dbname=d.db(first))
    pg.sql(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET role").format(
        sql.Identifier(d.login("dp2", second)), sql.Identifier(d.db(second))))
    audit = d.playbook(AUDIT, user=d.commander)
    assert audit.returncode != 0
    assert "object_owners: objects in %s owned by a role other than %s: %s owns 1 in pg_class (table public.drift_t)" % (
        d.db(first), d.schema(first), d.login("dp1", first)) in audit.stdout, audit.stdout
    assert "role_settings: %s starts as itself in %s" % (d.login("dp2", second), d.db(second)) in audit.stdout
    assert "DRIFT" in audit.stdout

    # The failover preflight refuses, and nothing changes: dp1's live session survives, CONNECT stays.
    live = connect_as(pg, d.login("dp1", first), d.db(first))
    before = pg.sql("SELECT datname, datacl::text FROM pg_database WHERE datname = ANY(%s) ORDER BY 1",
                    ([d.db(i) for i in d.ids],))
    proc = d.playbook(FAILOVER, user=d.commander, dataplane_failover_from="dp1", dataplane_failover_to="dp2")
    assert proc.returncode != 0
    assert "owns objects in %s that %s could neither use nor migrate: 1 in pg_class (table public.drift_t)" % (
        d.db(first), d.login("dp2", first)) in proc.stdout, proc.stdout
    assert "%s would not start as the schema role %s" % (d.login("dp2", second), d.schema(second)) in proc.stdout
    assert "dataplane_failover_parity_policy=warn" in proc.stdout
    assert pg.sql("SELECT datname, datacl::text FROM pg_database WHERE datname = ANY(%s) ORDER BY 1",
                  ([d.db(i) for i in d.ids],)) == before
    live.cursor().execute("SELECT 1")
    live.close()

    # Repair with the explicit hand-over; the failover then passes.
    proc = d.playbook(PROVISION, dataplane_schema_reassign_owned=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pg.sql("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'drift_t'",
                  dbname=d.db(first)) == [(d.schema(first),)]
    assert schema_state(pg, d, second) == expected_state(d, second)
    proc = d.playbook(FAILOVER, user=d.commander, dataplane_failover_from="dp1", dataplane_failover_to="dp2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not can_connect(pg, d.login("dp1", first), d.db(first))
    with connect_as(pg, d.login("dp2", first), d.db(first)) as conn:
        conn.cursor().execute("INSERT INTO drift_t VALUES (1)")


def test_parity_policy_warn_and_decommission(pg, deployments):
    d = deployments
    first = d.ids[0]
    assert d.playbook(PROVISION).returncode == 0
    pg.sql(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET role").format(
        sql.Identifier(d.login("dp2", first)), sql.Identifier(d.db(first))))
    proc = d.playbook(FAILOVER, user=d.commander, dataplane_failover_from="dp1", dataplane_failover_to="dp2",
                      dataplane_failover_parity_policy="warn")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "parity: %s would not start as the schema role" % d.login("dp2", first) in proc.stdout + proc.stderr

    # Decommission keeps the database: Airflow's objects go to the admin, the setting is reset.
    pg.sql(sql.SQL("CREATE TABLE kept (x int); ALTER TABLE kept OWNER TO {}").format(
        sql.Identifier(d.schema(first))), dbname=d.db(first))
    gone = [dict(d.deployments[0], state="absent")]
    check = d.playbook(PROVISION, deployments=gone, check=True)
    assert check.returncode == 0 and recap(check.stdout)["pg"]["changed"] >= 1, check.stdout + check.stderr
    assert pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (d.schema(first),)) == [(1,)]
    proc = d.playbook(PROVISION, deployments=gone)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (d.schema(first),)) == [(0,)]
    assert pg.sql("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'kept'",
                  dbname=d.db(first)) == [("postgres",)]
    assert pg.sql("SELECT count(*) FROM pg_db_role_setting s JOIN pg_database db ON db.oid = s.setdatabase "
                  "WHERE db.datname = %s", (d.db(first),)) == [(0,)]
    again = d.playbook(PROVISION, deployments=gone)
    assert again.returncode == 0 and recap(again.stdout)["pg"]["changed"] == 0, again.stdout


def test_object_privileges_false_leaves_objects_to_the_platform(pg16, names, ansible_playbook, tmp_path):
    d = Deployments(pg16, names, ansible_playbook, tmp_path, count=1)
    proc = d.playbook(PROVISION, dataplane_object_privileges=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pg16.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (d.schema(d.ids[0]),)) == [(0,)]
    audit = d.playbook(AUDIT, user=d.commander, dataplane_object_privileges=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "%s: OK, fence capable" % d.ids[0] in audit.stdout
    # Without the schema role, a login role owning objects is still parity drift.
    pg16.sql(sql.SQL("CREATE TABLE mine (x int); ALTER TABLE mine OWNER TO {}").format(
        sql.Identifier(d.login("dp1", d.ids[0]))), dbname=d.db(d.ids[0]))
    audit = d.playbook(AUDIT, user=d.commander, dataplane_object_privileges=False)
    assert audit.returncode != 0
    assert "owned by a login role: %s owns 1 in pg_class (table public.mine)" % d.login("dp1", d.ids[0]) in audit.stdout


def test_one_unreachable_database_is_reported_and_the_others_converge(pg16, names, ansible_playbook, tmp_path):
    """The step inside the metadata databases runs on several threads: a database it cannot
    connect to is reported for its Deployment, the other databases are still converged, and
    the rerun after the cause is gone converges and changes nothing more."""
    d = Deployments(pg16, names, ansible_playbook, tmp_path, count=5)
    assert d.playbook(PROVISION).returncode == 0
    blocked = d.ids[2]
    for i in d.ids:
        pg16.sql(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(sql.Identifier(d.schema(i))), dbname=d.db(i))
    pg16.sql(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(d.db(blocked))))
    proc = d.playbook(PROVISION)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Deployment %r: cannot connect to %s: unable to connect to database" % (blocked, d.db(blocked)) in out
    assert "schema role set-up failed" in out, out
    assert not any("Deployment %r:" % i in out for i in d.ids if i != blocked), out
    for i in d.ids:
        if i != blocked:
            assert pg16.sql("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (d.schema(i),),
                            dbname=d.db(i)) == [(True,)], i
    pg16.sql(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(d.db(blocked))))
    assert pg16.sql("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (d.schema(blocked),),
                    dbname=d.db(blocked)) == [(False,)]
    proc = d.playbook(PROVISION)
    assert proc.returncode == 0 and recap(proc.stdout)["pg"]["changed"] >= 1, proc.stdout + proc.stderr
    for i in d.ids:
        assert schema_state(pg16, d, i) == expected_state(d, i), i
    again = d.playbook(PROVISION)
    assert again.returncode == 0 and recap(again.stdout)["pg"]["changed"] == 0, again.stdout


def schema_record(names, tag):
    """test_provision's record with the schema role of the model's naming."""
    return record(names, tag, schema_role=names("airflow_db_%s_schema" % tag), airflow_schema="public")


def owner_of(server, table, dbname):
    return server.sql("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = %s", (table,),
                      dbname=dbname)[0][0]


def test_objects_of_login_roles_are_found_per_database_from_the_shared_catalog(pg16, names, run_module):
    """Where the login roles own objects is read once from pg_shdepend for every database;
    only a database where a Deployment's own login roles own objects is described object by
    object. Another Deployment's login role owning objects there, or a login role owning only a
    database, is none of the Deployment's business; a login role that owns a database too cannot
    be handed over with REASSIGN OWNED. A rerun converges what it can and names the rest."""
    a, b, c = (schema_record(names, tag) for tag in ("own_a", "own_b", "own_c"))
    args = dict(pg16.login_args(), deployments=[a, b, c], fence_helper=False, commander_password="cmd-secret-42")
    ident = sql.Identifier
    # First without the schema role; check mode then plans its privileges in the existing
    # databases (its oid is unknown: it does not exist yet) and changes nothing.
    plain = dict(args, deployments=[dict(r, schema_role=None) for r in (a, b, c)])
    assert run_module("deployment_setup", plain)["changed"]
    check = run_module("deployment_setup", args, check=True)
    assert not check["failed"] and check["changed"], check
    grant = 'GRANT USAGE, CREATE ON SCHEMA "public" TO "%s"' % a["schema_role"]
    assert grant in check["deployments"][0]["actions"], check["deployments"][0]["actions"]
    assert pg16.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (a["schema_role"],)) == [(0,)]
    first = run_module("deployment_setup", args)
    assert not first["failed"] and first["changed"] and grant in first["deployments"][0]["actions"], first
    pg16.sql(sql.SQL("CREATE TABLE t_a (x int); ALTER TABLE t_a OWNER TO {}").format(ident(a["login_roles"]["dp1"])),
             dbname=a["database"])
    pg16.sql(sql.SQL("CREATE TABLE t_c (x int); ALTER TABLE t_c OWNER TO {}").format(ident(c["login_roles"]["dp1"])),
             dbname=a["database"])
    pg16.sql(sql.SQL("CREATE TABLE t_b (x int); ALTER TABLE t_b OWNER TO {}").format(ident(b["login_roles"]["dp2"])),
             dbname=b["database"])
    shared_b, shared_c = names("own_b_shared"), names("own_c_shared")
    pg16.sql(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(shared_b), ident(b["login_roles"]["dp2"])))
    pg16.sql(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(shared_c), ident(c["login_roles"]["dp1"])))
    try:
        warned = run_module("deployment_setup", args)
        assert not warned["failed"] and warned["changed"] is False, warned
        text = json.dumps(warned.get("warnings"))
        assert "%r: objects in %s are owned by a login role" % (a["id"], a["database"]) in text, text
        assert "%r: objects in %s are owned by a login role" % (b["id"], b["database"]) in text, text
        assert "table public.t_a" in text and "table public.t_b" in text, text
        assert "t_c" not in text and c["id"] not in text, text

        handed = run_module("deployment_setup", dict(args, reassign_owned=True))
        assert handed["failed"], handed
        assert "cannot hand the objects of %s to %s with REASSIGN OWNED" % (b["login_roles"]["dp2"], b["schema_role"]) \
            in handed["msg"] and "database %s" % shared_b in handed["msg"], handed["msg"]
        assert "Deployment %r" % a["id"] not in handed["msg"] and "Deployment %r" % c["id"] not in handed["msg"]
        assert owner_of(pg16, "t_a", a["database"]) == a["schema_role"]
        assert owner_of(pg16, "t_c", a["database"]) == c["login_roles"]["dp1"]
        assert owner_of(pg16, "t_b", b["database"]) == b["login_roles"]["dp2"]
    finally:
        for database in (shared_b, shared_c):
            pg16.sql(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident(database)))
    # With the shared object gone, the rerun hands B's table over; then nothing is left to do.
    handed = run_module("deployment_setup", dict(args, reassign_owned=True))
    assert not handed["failed"] and handed["changed"], handed
    assert owner_of(pg16, "t_b", b["database"]) == b["schema_role"]
    again = run_module("deployment_setup", dict(args, reassign_owned=True))
    assert not again["failed"] and again["changed"] is False and not again.get("warnings"), again


def test_unchanged_states_false_leaves_out_the_states_of_unchanged_deployments(pg16, names, run_module):
    """``unchanged_states=false`` (what the deployments role passes) drops before/after of a
    Deployment that did not change and keeps them for one that did, and for diff mode."""
    a, b = schema_record(names, "slim_a"), schema_record(names, "slim_b")
    args = dict(pg16.login_args(), deployments=[a, b], fence_helper=False, commander_password="cmd-secret-43",
                unchanged_states=False)
    first = run_module("deployment_setup", args)
    assert not first["failed"] and all("before" in d and "after" in d for d in first["deployments"]), first
    pg16.sql(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(sql.Identifier(b["schema_role"])),
             dbname=b["database"])
    second = run_module("deployment_setup", args, diff=True)
    by_id = dict((d["id"], d) for d in second["deployments"])
    assert not second["failed"] and second["changed"], second
    assert "before" not in by_id[a["id"]] and "after" not in by_id[a["id"]], by_id[a["id"]]
    assert by_id[a["id"]]["summary"] == "%s: unchanged | admitted: dp1, dp2" % a["id"], by_id[a["id"]]
    assert by_id[b["id"]]["before"]["schema_role"]["schema_privileges"] == ["USAGE"], by_id[b["id"]]
    assert by_id[b["id"]]["after"]["schema_role"]["schema_privileges"] == ["CREATE", "USAGE"], by_id[b["id"]]
    assert list(second["diff"]["after"]) == [b["id"]], second["diff"]
    full = run_module("deployment_setup", dict(args, unchanged_states=True))
    assert not full["failed"] and full["changed"] is False, full
    assert all(d["before"] == d["after"] for d in full["deployments"]), full["deployments"]
