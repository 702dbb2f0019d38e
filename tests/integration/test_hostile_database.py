"""Every playbook over metadata databases that their tenants (and commander_user, acting as
the owner role) have filled with hostile code (tests/support/hostile.py), on PostgreSQL 16
and 18.

The planted functions log every call to the server log (``HOSTILE-PLANT fired``), also in a
session that rolls back, and try to escalate from any session that is not a plane's own. The
test runs provision (plain; with dataplane_schema_reassign_owned; as a managed admin), audit
(as the admin and as commander_user), failover dp1 -> dp2, failback, and decommission (as the
admin and as the managed admin), and asserts that

- no planted function ran in a session of the admin, the managed admin or commander_user (a
  plane's own sessions may run their code: that is their own business), and
- no role gained an attribute (SUPERUSER, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS), a
  membership or a new password (the set-up's own grants happen before the baseline).

Two controls show first that the plants have teeth: an unpinned superuser session in a planted
database runs them (and becomes the planter's tool, inside a transaction that is rolled
back), and dp1's trigger runs in dp2's session.
"""

import json

import psycopg2
import pytest
from psycopg2 import sql

from conftest import create_managed_admin
from tests.support import hostile
from tests.support.playbooks import inventory as _inventory

PROVISION = "dataplane.postgresql.provision"
FAILOVER = "dataplane.postgresql.failover"
AUDIT = "dataplane.postgresql.audit"
ADMIN = "postgres"

# What the collection's schema-role step asks in a metadata database where a login role owns
# something (module_utils/provision/schema_role.py DATABASE_QUERY), cut down: an oid column against a
# ::regclass and an integer, as an unpinned session would run it.
CONTROL_QUERY = ("SELECT pg_catalog.count(*) FROM pg_catalog.pg_shdepend sd"
                 " WHERE sd.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND sd.dbid IN (0, 1)")


@pytest.fixture(params=[16, 18], ids=["pg16", "pg18"])
def server(request, pg_server):
    return pg_server(request.param)


def _deployments(ids, per_id=None):
    """dataplane_deployments for IDS; PER_ID: {id: extra item keys (state, drop_database)}."""
    out = []
    for dep_id in ids:
        item = {"id": dep_id, "passwords": {"dp1": "pw-1-%s-secret" % dep_id, "dp2": "pw-2-%s-secret" % dep_id}}
        item.update((per_id or {}).get(dep_id, {}))
        out.append(item)
    return out


DROPPED = {"state": "absent", "drop_database": True}
KEPT = {"state": "absent"}


def _records(dep_id):
    return {"database": "airflow_db_%s" % dep_id, "owner_role": "airflow_db_%s_owner" % dep_id,
            "killer_role": "airflow_conn_killer_%s" % dep_id, "schema_role": "airflow_db_%s_schema" % dep_id,
            "logins": {"dp1": "dp1_user_%s" % dep_id, "dp2": "dp2_user_%s" % dep_id}}


def _plant(server, dep_id, commander, admin_names, actors=hostile.ACTORS):
    rec = _records(dep_id)
    return hostile.plant_database(server, rec["database"], rec["logins"], rec["schema_role"], rec["owner_role"],
                                  commander, admin_names, killer_role=rec["killer_role"], actors=actors)


def _create_login(server, name):
    conn = server.connect()
    try:
        conn.cursor().execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    finally:
        conn.close()


def _tail(proc, lines=25):
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-lines:])


def _describe_fires(found):
    """One line per (session user, planter, object, statement), with how often it was logged."""
    counts = {}
    for f in found:
        key = (f.get("session_user"), f.get("database"), f.get("planter"), f.get("object"),
               " ".join((f.get("query") or "").split())[:300])
        counts[key] = counts.get(key, 0) + 1
    return ["%dx session_user=%s db=%s ran %s's %s in: %s" % ((n, k[0], k[1], k[2], k[3], k[4]))
            for k, n in sorted(counts.items(), key=lambda item: [str(x) for x in item[0]])]


def _control_unpinned_admin_session(server, dep_id, suspects):
    """In DEP_ID's database, an admin session with the default search_path runs the plants,
    and the escalation reaches one of SUSPECTS (seen inside the transaction, then rolled back)."""
    offset = hostile.log_offset(server)
    conn = server.connect(dbname=_records(dep_id)["database"], autocommit=False)
    try:
        cur = conn.cursor()
        cur.execute(CONTROL_QUERY)
        cur.execute("SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE r.rolsuper"
                    " AND r.rolname OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.name[])", (list(suspects),))
        escalated = [r[0] for r in cur.fetchall()]
    finally:
        conn.rollback()
        conn.close()
    found = [f for f in hostile.fires(server, offset) if f["session_user"] == ADMIN]
    assert found, "the control statement ran no planted code in %s" % dep_id
    assert escalated, "the planted code in %s escalated nobody inside the control transaction" % dep_id
    return found


def test_no_planted_code_runs_in_the_collection_sessions(server, names, ansible_playbook, tmp_path):
    commander = names("commander")
    _create_login(server, commander)
    s1, s2, m1, m2 = names("h1"), names("h2"), names("hm1"), names("hm2")
    admin = create_managed_admin(server, names("rds_admin"), "rds")

    as_admin = _inventory(tmp_path, server, ADMIN)
    as_managed = _inventory(tmp_path, server, admin)
    as_commander = _inventory(tmp_path, server, commander)
    plain = {"dataplane_deployments": _deployments([s1, s2]), "dataplane_commander_user": commander}
    # The managed admin's Deployments go without the fence helper: its failover is not run here,
    # and a managed admin's decommission of a Deployment registered with the helper fails on its
    # own (permission denied for the helper's schema), clean database or not.
    managed = {"dataplane_deployments": _deployments([m1, m2]), "dataplane_commander_user": commander,
               "dataplane_fence_helper": False}

    # Set-up on clean databases (not under test): the Deployments, by the admin and the managed admin.
    for inventory, extra in ((as_admin, plain), (as_managed, managed)):
        proc = ansible_playbook(PROVISION, inventory=inventory, extra_vars=extra)
        assert proc.returncode == 0, _tail(proc, 60)

    # The plants: s1 and m1 by every actor (commander_user included), s2 and m2 by the tenant
    # only, so that their decommission, which keeps the database, is not refused for the owner
    # role's objects there (DROP ROLE fails while the owner role owns anything in a kept database).
    admins = [ADMIN, admin]
    plants = []
    for dep_id in (s1, m1):
        plants += _plant(server, dep_id, commander, admins)
    for dep_id in (s2, m2):
        plants += _plant(server, dep_id, commander, admins, actors=("schema_role", "bare_login"))
    for dep_id in (s1, s2, m1, m2):
        db = _records(dep_id)["database"]
        mine = [p for p in plants if p.database == db]
        ok = set((p.actor, p.label) for p in mine if p.ok)
        assert ("schema_role", "operator public.=(oid, regclass)") in ok, mine
        assert ("schema_role", "function public.unnest(text[])") in ok, mine
        assert ("schema_role", "trigger public.hostile_trigger_target") in ok, mine
        assert ("bare_login", "large object") in ok, mine
        if dep_id in (s1, m1):
            for schema in (ADMIN, admin, commander):
                assert ("owner_role", "schema %s" % schema) in ok, mine
                assert ("owner_role", "operator %s.=(oid, oid)" % schema) in ok, mine
            assert ("owner_role", "database search_path %s" % hostile.DATABASE_SEARCH_PATH) in ok, mine

    # The controls: the plants run in an unpinned admin session (the tenant's alone, in s2;
    # commander's too, in s1), and dp1's trigger runs in dp2's session.
    _control_unpinned_admin_session(server, s2, [_records(s2)["logins"]["dp1"]])
    _control_unpinned_admin_session(server, s1, [_records(s1)["logins"]["dp1"], commander])
    offset = hostile.log_offset(server)
    rec = _records(s1)
    conn = server.connect(user=rec["logins"]["dp2"], dbname=rec["database"])
    conn.cursor().execute("INSERT INTO public.hostile_trigger_target VALUES (1, 'from dp2')")
    conn.close()
    assert [(f["session_user"], f["object"]) for f in hostile.fires(server, offset)] == \
        [(rec["logins"]["dp2"], "trigger public.hostile_trigger_target")]

    tenants = set()
    for dep_id in (s1, s2, m1, m2):
        tenants.update(_records(dep_id)["logins"].values())
    reports = tmp_path / "reports"
    audit = dict(plain, dataplane_audit_fail_on_drift=False)
    steps = [
        ("provision as %s" % ADMIN, as_admin, PROVISION, plain),
        ("provision as %s, dataplane_schema_reassign_owned" % ADMIN, as_admin, PROVISION,
         dict(plain, dataplane_schema_reassign_owned=True)),
        ("provision as managed admin %s" % admin, as_managed, PROVISION, managed),
        ("audit as %s" % ADMIN, as_admin, AUDIT, dict(audit, dataplane_report_dir=str(reports / "admin"))),
        ("audit as %s" % commander, as_commander, AUDIT, dict(audit, dataplane_report_dir=str(reports / "commander"))),
        ("failover dp1 -> dp2 as %s" % commander, as_commander, FAILOVER,
         dict(plain, dataplane_failover_from="dp1", dataplane_failover_to="dp2")),
        ("failback dp2 -> dp1 as %s" % commander, as_commander, FAILOVER,
         dict(plain, dataplane_failover_from="dp2", dataplane_failover_to="dp1")),
        ("decommission as %s (%s dropped, %s kept)" % (ADMIN, s1, s2), as_admin, PROVISION,
         dict(plain, dataplane_deployments=_deployments([s1, s2], {s1: DROPPED, s2: KEPT}))),
        ("decommission as managed admin %s (%s dropped, %s kept)" % (admin, m1, m2), as_managed, PROVISION,
         dict(managed, dataplane_deployments=_deployments([m1, m2], {m1: DROPPED, m2: KEPT}))),
    ]

    baseline = hostile.catalog_snapshot(server)
    problems = []
    previous = baseline
    for label, inventory, playbook, extra in steps:
        offset = hostile.log_offset(server)
        proc = ansible_playbook(playbook, inventory=inventory, extra_vars=extra)
        found = [f for f in hostile.fires(server, offset) if f.get("session_user") not in tenants]
        now = hostile.catalog_snapshot(server)
        if proc.returncode != 0:
            problems.append("%s: the playbook failed:\n%s" % (label, _tail(proc)))
        if found:
            problems.append("%s: planted code ran in the collection's sessions:\n  %s"
                            % (label, "\n  ".join(_describe_fires(found))))
        gained = hostile.gains(previous, now)
        if gained:
            problems.append("%s: %s" % (label, "; ".join(gained)))
        previous = now
        if playbook == AUDIT and proc.returncode == 0:
            [report] = list((reports / ("admin" if inventory == as_admin else "commander")).glob("audit-*.json"))
            data = json.loads(report.read_text())
            drifted = set(data["drifted"])
            if s1 not in drifted:  # the owner role's plants in s1 are objects the audit must name
                problems.append("%s: the audit saw no drift in %s: %s" % (label, s1, data["summary"]))
    problems.extend("in all: %s" % g for g in hostile.gains(baseline, hostile.catalog_snapshot(server))
                    if not any(g in p for p in problems))
    assert not problems, "\n\n".join(problems)


def test_decommission_hands_no_tenant_code_to_the_admin(pg16, names, ansible_playbook, tmp_path):
    """A Deployment decommissioned with its database kept: the functions and views its tenant
    wrote must not start running as the admin for that tenant (the schema role's objects go to
    the admin; its SECURITY DEFINER routines become SECURITY INVOKER and its views
    security_invoker first)."""
    commander = names("commander")
    _create_login(pg16, commander)
    dep_id = names("hd")
    rec = _records(dep_id)
    inventory = _inventory(tmp_path, pg16, ADMIN)
    extra = {"dataplane_deployments": _deployments([dep_id]), "dataplane_commander_user": commander}
    proc = ansible_playbook(PROVISION, inventory=inventory, extra_vars=extra)
    assert proc.returncode == 0, _tail(proc, 60)
    plants = _plant(pg16, dep_id, commander, [ADMIN], actors=("schema_role",))
    assert "security definer public.hostile_definer()" in hostile.planted(plants)
    conn = pg16.connect(user=rec["logins"]["dp1"], dbname=rec["database"])
    try:  # a view reads with its owner's privileges: harmless while the tenant owns it
        conn.cursor().execute("CREATE VIEW public.peek AS SELECT a.rolname, a.rolpassword FROM pg_catalog.pg_authid a;"
                              " GRANT SELECT ON public.peek TO PUBLIC;"
                              # a rule's actions are checked with the table owner's privileges
                              " CREATE TABLE public.loot (rolname text, rolpassword text);"
                              " CREATE TABLE public.bait (x int);"
                              " CREATE RULE steal AS ON INSERT TO public.bait DO ALSO INSERT INTO public.loot"
                              " SELECT a.rolname, a.rolpassword FROM pg_catalog.pg_authid a;"
                              " GRANT INSERT ON public.bait TO PUBLIC; GRANT SELECT ON public.loot TO PUBLIC")
    finally:
        conn.close()
    proc = ansible_playbook(PROVISION, inventory=inventory,
                            extra_vars=dict(extra, dataplane_deployments=_deployments([dep_id], {dep_id: KEPT})))
    assert proc.returncode == 0, _tail(proc, 60)
    before = hostile.catalog_snapshot(pg16)
    try:
        conn = pg16.connect(user=rec["logins"]["dp1"], dbname=rec["database"])
    except psycopg2.OperationalError:
        return  # the tenant cannot reach its old database: nothing to call
    try:
        cur = conn.cursor()
        cur.execute("SELECT public.hostile_definer()")
        ran_as = cur.fetchone()[0]
        conn.commit()
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT * FROM public.peek")
        conn.rollback()
        cur.execute("INSERT INTO public.bait VALUES (1)")
        cur.execute("SELECT count(*) FROM public.loot")
        looted = cur.fetchone()[0]
        conn.rollback()
        assert looted == 0, "the tenant's rule copied %d rows of pg_authid as the admin" % looted
    finally:
        conn.close()
    gained = hostile.gains(before, hostile.catalog_snapshot(pg16))
    assert ran_as != ADMIN and not gained, "the tenant's function ran as %s: %s" % (ran_as, "; ".join(gained))
    owners = pg16.sql("SELECT p.proname::text, pg_get_userbyid(p.proowner)::text, p.prosecdef FROM pg_proc p"
                      " WHERE p.proname = 'hostile_definer'", dbname=rec["database"])
    assert owners == [("hostile_definer", ADMIN, False)], owners
