"""Provisioning (module deployment_setup, role deployments, playbook provision) on real servers.

The headline test sets the same Deployment ids up on two fresh PostgreSQL 16 servers, one
by running the vendor's SQL by hand, one with the provision playbook, and compares the
catalogs: roles (LOGIN/INHERIT), memberships (admin/inherit/set, grantor), database owners,
database ACLs as sets.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from psycopg2 import sql

from conftest import PgServer
from tests.support.reference import deployment_names, reference_script
from tests.support.reports import latest_report

PLAYBOOK = "dataplane.postgresql.provision"
SEED_IDS = ["a", "Prod-EU-1", "MiXeD", "x-y_z"]
HELPER_OWNER = "dataplane_fence_signaler"


def seed_sql(dep_id):
    """The vendor's "PostgreSQL example" (tests/support/reference.py) with <deployment> replaced."""
    return reference_script(deployment_names(dep_id), "commander_user")


def schema_role_sql(dep_id):
    """The shared schema role that dataplane_object_privileges (default true) adds to the
    reference setup, as docs/airflow-objects.md gives it by hand (without the schema grant,
    which runs in the Deployment's database)."""
    def q(name):
        return '"%s"' % name.replace('"', '""')
    schema, db = q("airflow_db_%s_schema" % dep_id), q("airflow_db_%s" % dep_id)
    dp1, dp2 = q("dp1_user_%s" % dep_id), q("dp2_user_%s" % dep_id)
    return """
CREATE ROLE {schema} NOLOGIN;
GRANT {schema} TO {dp1}, {dp2} WITH INHERIT FALSE, SET TRUE;
ALTER ROLE {dp1} IN DATABASE {db} SET role = {lit};
ALTER ROLE {dp2} IN DATABASE {db} SET role = {lit};
""".format(schema=schema, db=db, dp1=dp1, dp2=dp2, lit="'%s'" % ("airflow_db_%s_schema" % dep_id).replace("'", "''"))


def snapshot(server):
    """The catalog facts the acceptance compares (fence helper objects left out)."""
    conn = server.connect()
    cur = conn.cursor()
    cur.execute("SELECT rolname, rolcanlogin, rolinherit, rolsuper FROM pg_roles "
                "WHERE rolname !~ '^pg_' AND oid <> 10 AND rolname <> %s", (HELPER_OWNER,))
    roles = set(cur.fetchall())
    cur.execute("""SELECT g.rolname, m.rolname, gr.rolname, am.admin_option, am.inherit_option, am.set_option
                     FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid
                     JOIN pg_roles m ON m.oid = am.member JOIN pg_roles gr ON gr.oid = am.grantor
                    WHERE m.rolname <> %s""", (HELPER_OWNER,))
    members = set(cur.fetchall())
    cur.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE NOT datistemplate")
    owners = set(cur.fetchall())
    cur.execute("""SELECT d.datname, COALESCE(ge.rolname, 'PUBLIC'), gr.rolname, a.privilege_type, a.is_grantable
                     FROM pg_database d, aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a
                     LEFT JOIN pg_roles ge ON ge.oid = a.grantee JOIN pg_roles gr ON gr.oid = a.grantor
                    WHERE NOT d.datistemplate""")
    acls = set(cur.fetchall())
    conn.close()
    return {"roles": roles, "memberships": members, "owners": owners, "acl": acls}


@pytest.fixture(scope="module")
def fresh_pair():
    root = Path(tempfile.mkdtemp(prefix="dataplane-prov-"))
    root.chmod(0o755)
    servers = [PgServer(16, root / "by_hand").start(), PgServer(16, root / "by_playbook").start()]
    yield servers
    for server in servers:
        server.stop()
    subprocess.run(["rm", "-rf", str(root)], check=False)


def inventory(tmp_path, server, **hostvars):
    host = dict(ansible_connection="local", ansible_python_interpreter=sys.executable,
                dataplane_pg_host=server.host, dataplane_pg_port=server.port)
    host.update(hostvars)
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"dataplane_postgresql": {"hosts": {"pg": host}}}))
    return path


def deployments(ids, **extra):
    out = []
    for dep_id in ids:
        item = {"id": dep_id, "passwords": {"dp1": "pw-dp1-%s-secret" % dep_id, "dp2": "pw-dp2-%s-secret" % dep_id}}
        item.update(extra)
        out.append(item)
    return out


def recap(proc):
    """{'ok': n, 'changed': n, 'failed': n} of the single host."""
    for line in proc.stdout.splitlines():
        if line.startswith("pg ") and "ok=" in line:
            return dict((k, int(v)) for k, v in (part.split("=") for part in line.split()[2:]))
    raise AssertionError("no recap:\n%s\n%s" % (proc.stdout, proc.stderr))


def test_playbook_matches_seed_sql_exactly(fresh_pair, ansible_playbook, tmp_path):
    by_hand, by_playbook = fresh_pair
    # The seed assumes the login roles, the database and commander_user exist.
    script = ["CREATE ROLE commander_user LOGIN PASSWORD 'commander-secret'"]
    for dep_id in SEED_IDS:
        for plane in ("dp1", "dp2"):
            script.append('CREATE ROLE "%s_user_%s" LOGIN PASSWORD \'pw\'' % (plane, dep_id))
    conn = by_hand.connect()
    cur = conn.cursor()
    for statement in script:
        cur.execute(statement)
    for dep_id in SEED_IDS:
        cur.execute('CREATE DATABASE "airflow_db_%s"' % dep_id)
    for dep_id in SEED_IDS:
        cur.execute(seed_sql(dep_id))
        cur.execute(schema_role_sql(dep_id))
    conn.close()
    for dep_id in SEED_IDS:
        by_hand.sql('GRANT USAGE, CREATE ON SCHEMA public TO "airflow_db_%s_schema"' % dep_id,
                    dbname="airflow_db_%s" % dep_id)

    inv = inventory(tmp_path, by_playbook)
    extra = {"dataplane_deployments": deployments(SEED_IDS), "dataplane_commander_password": "commander-secret"}
    empty = snapshot(by_playbook)

    # Check mode on the empty server: reports every change, makes none.
    check = ansible_playbook(PLAYBOOK, extra_vars=extra, inventory=inv, check=True, diff=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert recap(check)["changed"] >= 1
    for dep_id in SEED_IDS:  # --diff in check mode shows every Deployment's planned state
        assert re.search(r'\+\s+"owner": "airflow_db_%s_owner"' % re.escape(dep_id), check.stdout), dep_id
    assert snapshot(by_playbook) == empty

    first = ansible_playbook(PLAYBOOK, extra_vars=extra, inventory=inv, diff=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first)["changed"] >= 1
    assert re.search(r'\+\s+"owner": "airflow_db_Prod-EU-1_owner"', first.stdout)  # --diff shows it
    for secret in ("commander-secret", "pw-dp1-a-secret"):
        assert secret not in first.stdout + first.stderr

    mine, theirs = snapshot(by_playbook), snapshot(by_hand)
    assert mine["roles"] == theirs["roles"]
    assert mine["memberships"] == theirs["memberships"]
    assert mine["owners"] == theirs["owners"]
    assert mine["acl"] == theirs["acl"]
    # And the comparison is not vacuous.
    assert ("airflow_conn_killer_Prod-EU-1", False, False, False) in theirs["roles"]
    assert ("dp1_user_MiXeD", "airflow_conn_killer_MiXeD", "postgres", False, False, False) in theirs["memberships"]
    assert ("airflow_db_x-y_z", "dp2_user_x-y_z", "airflow_db_x-y_z_owner", "CONNECT", False) in theirs["acl"]

    rerun = ansible_playbook(PLAYBOOK, extra_vars=extra, inventory=inv, diff=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert recap(rerun)["changed"] == 0

    # The fence helper is installed and usable by every killer role.
    rows = by_playbook.sql("""SELECT r.rolname, has_function_privilege(r.rolname,
                                'dataplane_fence.terminate_member_sessions(name, name[], name[], boolean)', 'EXECUTE')
                                FROM pg_roles r WHERE r.rolname LIKE 'airflow_conn_killer_%'""")
    assert sorted(rows) == sorted(("airflow_conn_killer_%s" % i, True) for i in SEED_IDS)

    # End to end: commander_user, through the helper and killer role, ends a dp1 session.
    victim = by_playbook.connect(user="dp1_user_Prod-EU-1", dbname="airflow_db_Prod-EU-1")
    victim_pid = victim.get_backend_pid()
    killed = by_playbook.sql("SELECT pid, terminated FROM dataplane_fence.terminate_member_sessions("
                             "'airflow_conn_killer_Prod-EU-1')", user="commander_user")
    assert killed == [(victim_pid, True)]
    victim.close()

    # The seed applied on top of the provisioned server changes nothing: same state.
    check_seed = ansible_playbook(PLAYBOOK, extra_vars=extra, inventory=inventory(tmp_path, by_hand,
                                  dataplane_fence_helper=False), check=True)
    assert check_seed.returncode == 0, check_seed.stdout + check_seed.stderr
    assert recap(check_seed)["changed"] == 0


def setup_args(server, records, **extra):
    args = server.login_args()
    args.update(deployments=records, fence_helper=False)
    args.update(extra)
    return args


def record(names, tag, **extra):
    rec = {"id": tag, "state": "present", "database": names("airflow_db_%s" % tag),
           "owner_role": names("airflow_db_%s_owner" % tag), "killer_role": names("airflow_conn_killer_%s" % tag),
           "login_roles": {"dp1": names("dp1_user_%s" % tag), "dp2": names("dp2_user_%s" % tag)},
           "passwords": {"dp1": "first-secret-1", "dp2": "second-secret-2"},
           "commander_user": names("commander")}
    rec.update(extra)
    return rec


def role_exists(server, name):
    return bool(server.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)))


def db_exists(server, name):
    return bool(server.sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def test_check_mode_reports_every_change_and_makes_none(pg16, names, run_module):
    recs = [record(names, "c1"), record(names, "c2")]
    res = run_module("deployment_setup", setup_args(pg16, recs, commander_password="cmd-secret-77"),
                     check=True, diff=True)
    assert not res["failed"], res
    assert res["changed"] is True
    text = "\n".join(res["queries"])
    for rec in recs:
        assert 'CREATE DATABASE "%s"' % rec["database"] in text
        assert 'CREATE ROLE "%s" NOLOGIN NOINHERIT' % rec["killer_role"] in text
        assert 'GRANT "%s" TO "%s" WITH INHERIT FALSE, SET FALSE' % (rec["login_roles"]["dp1"], rec["killer_role"]) in text
        assert 'GRANT CONNECT ON DATABASE "%s" TO "%s"' % (rec["database"], rec["login_roles"]["dp2"]) in text
        assert not db_exists(pg16, rec["database"])
        assert not role_exists(pg16, rec["owner_role"])
    assert "cmd-secret-77" not in json.dumps(res) and "first-secret-1" not in json.dumps(res)
    assert not role_exists(pg16, recs[0]["commander_user"])
    assert res["diff"]["after"]["c1"]["database"]["owner"] == recs[0]["owner_role"]


def test_module_idempotent_and_password_rules(pg16, names, run_module):
    rec = record(names, "p")
    res = run_module("deployment_setup", setup_args(pg16, [rec], commander_password="cmd-secret-77"))
    assert not res["failed"] and res["changed"], res
    again = run_module("deployment_setup", setup_args(pg16, [rec]))
    assert not again["failed"] and again["changed"] is False and again["queries"] == [], again

    # Passwords are stored as SCRAM secrets of what was given.
    from ansible_collections.dataplane.postgresql.plugins.module_utils.base.scram import password_matches
    stored = pg16.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (rec["login_roles"]["dp1"],))[0][0]
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert password_matches(stored, "first-secret-1", rec["login_roles"]["dp1"]) is True
    assert password_matches(stored, "other", rec["login_roles"]["dp1"]) is False

    # Another password: left alone unless update_password.
    changed_pw = dict(rec, passwords={"dp1": "rotated-secret-3", "dp2": "second-secret-2"})
    res = run_module("deployment_setup", setup_args(pg16, [changed_pw]))
    assert res["changed"] is False
    assert pg16.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (rec["login_roles"]["dp1"],))[0][0] == stored
    res = run_module("deployment_setup", setup_args(pg16, [dict(changed_pw, update_password=True)]), diff=True)
    assert not res["failed"], res
    assert res["changed"] is True and res["diff"]["after"]["p"]["passwords_set"] == [rec["login_roles"]["dp1"]]
    assert [q for q in res["queries"] if "PASSWORD" in q] == [
        'ALTER ROLE "%s" PASSWORD \'********\'' % rec["login_roles"]["dp1"]]
    stored2 = pg16.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (rec["login_roles"]["dp1"],))[0][0]
    assert password_matches(stored2, "rotated-secret-3", rec["login_roles"]["dp1"]) is True
    res = run_module("deployment_setup", setup_args(pg16, [dict(changed_pw, update_password=True)]))
    assert res["queries"] == []


def test_scram_secret_matches_server_hashing(pg16, names):
    from ansible_collections.dataplane.postgresql.plugins.module_utils.base.scram import password_matches
    role = names("scram_probe")
    for password in ("plain-ascii", "caf\u00e9 \u00fcber", "\u2168 roman", "with'quote\"s"):
        pg16.sql(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
                 .as_string(pg16.connect()))
        stored = pg16.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0][0]
        assert password_matches(stored, password, role) is True, password
        pg16.sql('DROP ROLE "%s"' % role)


@pytest.mark.parametrize("case", ["no_commander", "no_password", "no_database", "too_long", "duplicate"])
def test_bad_input_fails_before_any_change(pg16, names, run_module, case):
    good = record(names, "ok")
    bad = record(names, "bad")
    kwargs = {"commander_password": "cmd-secret-77"}
    if case == "no_commander":
        kwargs = {}
    elif case == "no_password":
        bad["passwords"] = {"dp1": "only-one-1"}
    elif case == "no_database":
        kwargs["create_databases"] = False
    elif case == "too_long":
        bad["killer_role"] = "k" * 64
    elif case == "duplicate":
        bad["id"] = "ok"
    res = run_module("deployment_setup", setup_args(pg16, [good, bad], **kwargs))
    assert res["failed"], res
    expected = {"no_commander": "commander_user %r does not exist" % good["commander_user"],
                "no_password": "%r (plane dp2) does not exist and no password" % bad["login_roles"]["dp2"],
                "no_database": "database %r does not exist and creating databases is disabled" % good["database"],
                "too_long": "64 bytes long",
                "duplicate": "duplicate id"}[case]
    assert expected in res["msg"], res["msg"]
    assert res["queries"] == []
    for rec in (good, bad):
        assert not db_exists(pg16, rec["database"])
        assert not role_exists(pg16, rec["owner_role"])
        assert not role_exists(pg16, rec["login_roles"]["dp1"])


def test_playbook_bad_input_names_the_item(pg16, ansible_playbook, tmp_path, names):
    tag = names("x")
    cases = {
        "long": ([{"id": "a" * 60 + tag, "passwords": {"dp1": "p", "dp2": "p"}}], "PostgreSQL would truncate"),
        "override": ([{"id": tag, "killer_role_name": "k" * 60 + "_{id}", "passwords": {"dp1": "p", "dp2": "p"}}],
                     "PostgreSQL would truncate"),
        "dup": ([{"id": tag, "passwords": {"dp1": "p"}}, {"id": tag}], "duplicate id"),
        "plane": ([{"id": tag, "passwords": {"dp3": "p"}}], "unknown plane 'dp3'"),
        "nopw": ([{"id": tag, "passwords": {"dp1": "pw-one-secret"}}], "no password is given"),
        "listid": ([{"id": [tag], "passwords": {"dp1": "p", "dp2": "p"}}],
                   "id must be a string (or a whole number), got list"),
        "listname": ([{"id": tag, "database_name": [tag], "passwords": {"dp1": "p", "dp2": "p"}}],
                     "database_name must be a string, got list"),
    }
    for label, (items, message) in cases.items():
        proc = ansible_playbook(PLAYBOOK, extra_vars={"dataplane_deployments": items,
                                                      "dataplane_commander_user": names("cmd"),
                                                      "dataplane_commander_password": "cmd-secret-77"},
                                inventory=inventory(tmp_path, pg16))
        assert proc.returncode != 0, label
        out = proc.stdout + proc.stderr
        assert message in out, (label, out)
        assert tag in out, (label, out)
        assert not pg16.sql("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", ("%" + tag + "%",)), label
        assert not pg16.sql("SELECT datname FROM pg_database WHERE datname LIKE %s", ("%" + tag + "%",)), label


def test_hostile_ids_are_quoted(pg16, names, run_module):
    hostile = names("x'; DROP ROLE postgres; --")
    hostile2 = names('q"uote;')
    recs = [record(names, "h1"), record(names, "h2")]
    recs[0].update(id=hostile, database="db_" + hostile, owner_role="own_" + hostile, killer_role="kil_" + hostile)
    recs[1].update(id=hostile2, login_roles={"dp1": "l1_" + hostile2, "dp2": "l2_" + hostile2})
    res = run_module("deployment_setup", setup_args(pg16, recs, commander_password="cmd-secret-77"))
    assert not res["failed"], res
    for name in ("own_" + hostile, "kil_" + hostile, "l1_" + hostile2):
        assert role_exists(pg16, name), name
    assert db_exists(pg16, "db_" + hostile)
    assert role_exists(pg16, "postgres")
    assert run_module("deployment_setup", setup_args(pg16, recs))["changed"] is False


def test_decommission(pg16, names, run_module):
    keep, gone = record(names, "keep"), record(names, "gone")
    res = run_module("deployment_setup", setup_args(pg16, [keep, gone], commander_password="cmd-secret-77",
                                                    fence_helper=True))
    assert not res["failed"], res

    res = run_module("deployment_setup", setup_args(pg16, [keep, dict(gone, state="absent")],
                                                    fence_helper=True), diff=True)
    assert not res["failed"], res
    assert res["changed"] is True
    assert [d["changed"] for d in res["deployments"]] == [False, True]
    assert not role_exists(pg16, gone["killer_role"]) and not role_exists(pg16, gone["owner_role"])
    assert role_exists(pg16, gone["login_roles"]["dp1"]) and db_exists(pg16, gone["database"])
    # The database went to the connecting admin; the login roles keep CONNECT.
    owner = pg16.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (gone["database"],))[0][0]
    assert owner == "postgres"
    assert pg16.sql("SELECT has_database_privilege(%s, %s, 'CONNECT')",
                    (gone["login_roles"]["dp1"], gone["database"]))[0][0] is True
    assert pg16.sql("SELECT count(*) FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.member "
                    "WHERE r.rolname = %s", (gone["login_roles"]["dp1"],))[0][0] == 0
    assert role_exists(pg16, keep["killer_role"])
    assert run_module("deployment_setup", setup_args(pg16, [dict(gone, state="absent")]))["changed"] is False

    # Check mode of the full decommission changes nothing, then the real one drops it all.
    full = dict(gone, state="absent", drop_database=True, drop_login_roles=True)
    res = run_module("deployment_setup", setup_args(pg16, [full]), check=True)
    assert res["changed"] is True and db_exists(pg16, gone["database"])
    res = run_module("deployment_setup", setup_args(pg16, [full]))
    assert not res["failed"], res
    assert res["dropped_databases"] == [gone["database"]]
    assert not db_exists(pg16, gone["database"])
    assert not role_exists(pg16, gone["login_roles"]["dp1"]) and not role_exists(pg16, gone["login_roles"]["dp2"])
    assert run_module("deployment_setup", setup_args(pg16, [full]))["changed"] is False


def test_existing_roles_are_brought_to_reference_attributes(pg16, names, run_module):
    rec = record(names, "fix")
    pg16.sql(sql.SQL("CREATE ROLE {} LOGIN NOINHERIT; CREATE ROLE {} INHERIT; CREATE ROLE {} LOGIN")
             .format(sql.Identifier(rec["owner_role"]), sql.Identifier(rec["killer_role"]),
                     sql.Identifier(rec["commander_user"])).as_string(pg16.connect()))
    res = run_module("deployment_setup", setup_args(pg16, [rec]))
    assert not res["failed"], res
    rows = dict((r[0], r[1:]) for r in pg16.sql(
        "SELECT rolname, rolcanlogin, rolinherit FROM pg_roles WHERE rolname = ANY(%s)",
        ([rec["owner_role"], rec["killer_role"]],)))
    assert rows == {rec["owner_role"]: (False, True), rec["killer_role"]: (False, False)}


def test_too_old_server_is_refused(pg15, names, run_module):
    rec = record(names, "old")
    res = run_module("deployment_setup", setup_args(pg15, [rec], commander_password="cmd-secret-77"))
    assert res["failed"]
    assert "PostgreSQL 15" in res["msg"] and "16" in res["msg"]
    assert not role_exists(pg15, rec["owner_role"])


def test_every_supported_version(pg, names, run_module):
    rec = record(names, "v")
    res = run_module("deployment_setup", setup_args(pg, [rec], commander_password="cmd-secret-77", fence_helper=True))
    assert not res["failed"], res
    acl = pg.sql("SELECT datacl::text[] FROM pg_database WHERE datname = %s", (rec["database"],))[0][0]
    owner = rec["owner_role"]
    assert sorted(acl) == sorted(["=T/%s" % owner, "%s=CTc/%s" % (owner, owner),
                                  "%s=c/%s" % (rec["login_roles"]["dp1"], owner),
                                  "%s=c/%s" % (rec["login_roles"]["dp2"], owner)])
    rows = pg.sql("""SELECT m.rolname, am.admin_option, am.inherit_option, am.set_option
                       FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid
                       JOIN pg_roles m ON m.oid = am.member WHERE g.rolname = %s""", (rec["login_roles"]["dp2"],))
    assert rows == [(rec["killer_role"], False, False, False)]
    again = run_module("deployment_setup", setup_args(pg, [rec], fence_helper=True))
    assert again["changed"] is False and again["queries"] == [], again


def test_many_deployments_in_one_call(pg16, names, run_module):
    """Enough databases for CREATE DATABASE to be spread over several connections."""
    recs = [record(names, "m%d" % i) for i in range(9)]
    res = run_module("deployment_setup", setup_args(pg16, recs, commander_password="cmd-secret-77"))
    assert not res["failed"], res
    assert sorted(res["created_databases"]) == sorted(r["database"] for r in recs)
    assert all(db_exists(pg16, r["database"]) for r in recs)
    owners = dict(pg16.sql("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s)",
                           ([r["database"] for r in recs],)))
    assert owners == dict((r["database"], r["owner_role"]) for r in recs)
    again = run_module("deployment_setup", setup_args(pg16, recs))
    assert again["changed"] is False and again["queries"] == []
    gone = [dict(r, state="absent", drop_database=True, drop_login_roles=True) for r in recs]
    res = run_module("deployment_setup", setup_args(pg16, gone))
    assert not res["failed"], res
    assert not any(db_exists(pg16, r["database"]) for r in recs)


def test_playbook_decommission_and_report(pg16, ansible_playbook, tmp_path, names):
    tag = names("r")
    commander = names("cmd")
    items = [{"id": tag, "passwords": {"dp1": "pw-one-secret", "dp2": "pw-two-secret"}}]
    extra = {"dataplane_deployments": items, "dataplane_commander_user": commander,
             "dataplane_commander_password": "cmd-secret-77", "dataplane_fence_helper": False,
             "dataplane_report_dir": str(tmp_path / "reports")}
    inv = inventory(tmp_path, pg16)
    proc = ansible_playbook(PLAYBOOK, extra_vars=extra, inventory=inv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "%s: changed: database airflow_db_%s created; roles " % (tag, tag) in proc.stdout, proc.stdout
    assert "CONNECT granted to dp1_user_%s, dp2_user_%s" % (tag, tag) in proc.stdout
    assert "| admitted: dp1, dp2" in proc.stdout
    report = latest_report(tmp_path / "reports", "provision")
    assert report["created_databases"] == ["airflow_db_%s" % tag] and report["deployments"][0]["changed"]
    assert "pw-one-secret" not in json.dumps(report)

    extra["dataplane_deployments"] = [dict(items[0], state="absent", drop_database=True, drop_login_roles=True)]
    proc = ansible_playbook(PLAYBOOK, extra_vars=extra, inventory=inv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap(proc)["changed"] == 1
    assert "%s (absent): changed: database airflow_db_%s dropped" % (tag, tag) in proc.stdout, proc.stdout
    assert pg16.sql("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", ("%" + tag + "%",)) == []
    assert not db_exists(pg16, "airflow_db_%s" % tag)
    assert role_exists(pg16, commander)
    proc = ansible_playbook(PLAYBOOK, extra_vars=extra, inventory=inv)
    assert proc.returncode == 0 and recap(proc)["changed"] == 0, proc.stdout


def _write_record(server, database, fenced, admitted, phase="complete", run="test-run"):
    """A fence state record as the fence module writes it (the format of module_utils/fence_state)."""
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record
    record = fence_record.new_record(None, fenced, admitted, phase, run, "commander_user", "2026-11-27T00:00:00Z")
    server.sql(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(database), sql.Literal(fence_record.render_comment(None, record))))
    return record


def test_module_keeps_a_recorded_fence_and_readmits_only_when_asked(pg16, names, run_module):
    rec = record(names, "fk")
    dp1, dp2 = rec["login_roles"]["dp1"], rec["login_roles"]["dp2"]
    assert not run_module("deployment_setup", setup_args(pg16, [rec], commander_password="cmd-secret-77"))["failed"]
    pg16.sql(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(sql.Identifier(rec["database"]),
                                                                     sql.Identifier(dp1)))
    _write_record(pg16, rec["database"], [dp1], [dp2])

    res = run_module("deployment_setup", setup_args(pg16, [rec]), diff=True)
    assert not res["failed"], res
    assert res["changed"] is False and res["queries"] == [], res
    [dep] = res["deployments"]
    assert dep["connect_withheld"] == [dp1] and dep["readmitted"] is False
    assert dep["fence"]["state"] == "fenced" and dep["fence"]["fenced"] == ["dp1"] and dep["fence"]["admitted"] == ["dp2"]
    assert dep["summary"].startswith("fk: unchanged | fenced: dp1, admitted: dp2 (recorded by commander_user")
    assert pg16.sql("SELECT has_database_privilege(%s, %s, 'CONNECT')", (dp1, rec["database"]))[0][0] is False

    # check mode + diff of the explicit re-admission: planned, shown, not done
    res = run_module("deployment_setup", setup_args(pg16, [rec], readmit_fenced_planes=True, run_id="r-1"),
                     check=True, diff=True)
    assert not res["failed"] and res["changed"] is True, res
    assert 'GRANT CONNECT ON DATABASE "%s" TO "%s"' % (rec["database"], dp1) in res["queries"]
    assert any(q.startswith('COMMENT ON DATABASE "%s" IS ' % rec["database"]) for q in res["queries"])
    assert res["diff"]["before"]["fk"]["fence"]["fenced"] == ["dp1"]
    assert res["diff"]["after"]["fk"]["fence"]["state"] == "open"
    assert pg16.sql("SELECT has_database_privilege(%s, %s, 'CONNECT')", (dp1, rec["database"]))[0][0] is False

    res = run_module("deployment_setup", setup_args(pg16, [rec], readmit_fenced_planes=True, run_id="r-1"))
    assert not res["failed"] and res["changed"] is True and res["deployments"][0]["readmitted"] is True, res
    assert pg16.sql("SELECT has_database_privilege(%s, %s, 'CONNECT')", (dp1, rec["database"]))[0][0] is True
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record
    comment = pg16.sql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                       (rec["database"],))[0][0]
    written = fence_record.parse_record(comment)
    assert written["fenced"] == [] and written["admitted"] == sorted([dp1, dp2]) and written["phase"] == "complete"
    assert written["generation"] == 2 and written["run"] == "r-1" and written["by"] == "postgres"
    again = run_module("deployment_setup", setup_args(pg16, [rec], readmit_fenced_planes=True))
    assert again["changed"] is False and again["queries"] == [], again


def test_module_refuses_a_damaged_record_and_changes_nothing(pg16, names, run_module):
    rec, newcomer = record(names, "dm"), record(names, "nw")
    assert not run_module("deployment_setup", setup_args(pg16, [rec], commander_password="cmd-secret-77"))["failed"]
    pg16.sql(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(rec["database"]), sql.Literal("ops note\ndataplane.postgresql fence state: {\"v\": 1")))
    res = run_module("deployment_setup", setup_args(pg16, [rec, newcomer]))
    assert res["failed"] and res["queries"] == [], res
    assert ("Deployment 'dm': the fence state record in the comment of database %r cannot be read"
            % rec["database"]) in res["msg"]
    assert not db_exists(pg16, newcomer["database"]) and not role_exists(pg16, newcomer["owner_role"])
    # the explicit re-admission replaces it (keeping the operators' line)
    res = run_module("deployment_setup", setup_args(pg16, [rec], readmit_fenced_planes=True))
    assert not res["failed"] and res["changed"], res
    comment = pg16.sql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                       (rec["database"],))[0][0]
    assert comment.startswith("ops note\ndataplane.postgresql fence state: {") and '"fenced":[]' in comment


def test_readmission_waits_for_a_running_fence_and_refuses_a_state_that_moved(pg16, names, run_module):
    """A fence holds its advisory lock while provision wants to re-admit: provision waits for it,
    sees that the fence state changed meanwhile, and re-admits nothing."""
    import threading
    import time
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model.fence_record import (
        ADVISORY_LOCK_CLASS,
    )
    rec = record(names, "rl")
    dp1, dp2 = rec["login_roles"]["dp1"], rec["login_roles"]["dp2"]
    assert not run_module("deployment_setup", setup_args(pg16, [rec], commander_password="cmd-secret-77"))["failed"]
    pg16.sql(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(sql.Identifier(rec["database"]),
                                                                     sql.Identifier(dp1)))
    _write_record(pg16, rec["database"], [dp1], [dp2])

    holder = pg16.connect()       # plays the running fence: its session advisory lock
    holder.cursor().execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (ADVISORY_LOCK_CLASS, rec["database"]))
    out = {}
    worker = threading.Thread(target=lambda: out.update(res=run_module(
        "deployment_setup", setup_args(pg16, [rec], readmit_fenced_planes=True))))
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:   # provision is waiting for the lock
        if pg16.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND classid = %s::oid", (ADVISORY_LOCK_CLASS,))[0][0]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("provision never waited for the fence's lock")
    _write_record(pg16, rec["database"], [dp1], [dp2], run="the-other-run")   # the "fence" writes meanwhile
    holder.cursor().execute("SELECT pg_advisory_unlock_all()")
    worker.join(90)
    holder.close()
    res = out["res"]
    assert res["failed"], res
    assert "changed while this run was planning" in res["msg"] and rec["database"] in res["msg"], res["msg"]
    assert pg16.sql("SELECT has_database_privilege(%s, %s, 'CONNECT')", (dp1, rec["database"]))[0][0] is False


def test_old_helper_option_names_still_work(pg16, names, run_module):
    """0.1's ``fence_helper_schema`` / ``fence_helper_owner_role`` are deprecated aliases of
    ``helper_schema`` / ``helper_owner_role``: the helper lands where they say, with a deprecation
    for each."""
    rec = record(names, "alias")
    schema, owner = names("old_name_fence"), names("old_name_owner")
    args = setup_args(pg16, [rec], fence_helper=True, fence_helper_schema=schema, fence_helper_owner_role=owner,
                      commander_password="cmd-secret-77")
    res = run_module("deployment_setup", args)
    assert not res["failed"] and res["changed"], res
    # ansible-core 2.19+ returns each as a DeprecationSummary: event.msg, deprecator.resolved_name
    assert sorted((d["event"]["msg"], d["version"], d["deprecator"]["resolved_name"])
                  for d in res["deprecations"]) == [
        ("Alias '%s' is deprecated. See the module docs for more information" % old, "1.0.0", "dataplane.postgresql")
        for old in ("fence_helper_owner_role", "fence_helper_schema")], res["deprecations"]
    assert pg16.sql("SELECT n.nspname, r.rolname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " JOIN pg_roles r ON r.oid = p.proowner WHERE n.nspname = %s", (schema,)) == [(schema, owner)] * 2
    assert pg16.sql("SELECT has_function_privilege(%s, p.oid, 'EXECUTE') FROM pg_proc p"
                    " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s",
                    (rec["killer_role"], schema)) == [(True,)] * 2
    again = run_module("deployment_setup", args)
    assert not again["failed"] and again["changed"] is False, again
    # leave no second helper on the shared server
    pg16.sql(sql.SQL("DROP SCHEMA {} CASCADE; DROP ROLE {}").format(sql.Identifier(schema), sql.Identifier(owner)))
