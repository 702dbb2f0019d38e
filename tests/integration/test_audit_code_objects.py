"""The audit's code_objects and login_passwords findings against real PostgreSQL 16 and 18.

Each test provisions Deployments with the collection's own module (deployment_setup: schema role,
fence helper), then acts as a plane would: connects as its login role (which starts as the
schema role, with CREATE on schema public) and leaves code behind. The attack of the issue is
played for real: a trigger planted by dp1 fires in dp2's session, leaves the schema role with
SET ROLE NONE and changes dp2's password; the audit names the trigger (and its owner) and, given
the passwords as a superuser, reports the changed password.
"""

import json
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.dataplane.postgresql.plugins.module_utils.base.scram import password_matches
from test_audit import audit, by_check, failed_checks
from test_failover import PROVISION, write_inventory
from test_provision import record
from tests.support.server import scratch_server

AUDIT = PROVISION.parent / "audit.yml"
VERSIONS = (16, 18)


@pytest.fixture(params=VERSIONS, ids=["pg%d" % v for v in VERSIONS])
def server(request, pg_server):
    return pg_server(request.param)


class Provisioned(object):
    """COUNT Deployments set up by deployment_setup (fence helper in a schema of this test)."""

    def __init__(self, server, names, run_module, count=1):
        self.server, self.run_module = server, run_module
        self.helper = {"helper_schema": names("fence"), "helper_owner_role": names("signaler")}
        self.records = [record(names, "c%d" % i, schema_role=names("airflow_db_c%d_schema" % i))
                        for i in range(count)]
        self.commander = self.records[0]["commander_user"]
        args = dict(server.login_args(), deployments=self.records, fence_helper=True,
                    commander_password="commander-pw-1", **self.helper)
        result = run_module("deployment_setup", args)
        assert not result["failed"], result.get("msg")

    def audit(self, user=None, passwords=False, **extra):
        records = self.records if passwords else [dict(r, passwords={}) for r in self.records]
        args = dict(self.helper)
        args.update(extra)
        return audit(self.run_module, self.server, records, user=user or self.commander, **args)

    def as_login(self, plane, statements, index=0):
        """Run STATEMENTS as the login role of PLANE in its database (autocommit each)."""
        rec = self.records[index]
        conn = self.server.connect(rec["login_roles"][plane], rec["database"])
        try:
            cur = conn.cursor()
            for statement in statements:
                cur.execute(statement)
        finally:
            conn.close()


# The attack: dp1 leaves a table with a trigger; the trigger, firing in whoever writes the
# table, leaves the schema role and sets the password of the session's login role.
PLANT_TRIGGER = [
    "CREATE TABLE public.planted (id integer)",
    """CREATE FUNCTION public.keep_access() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         SET LOCAL ROLE NONE;
         EXECUTE pg_catalog.format('ALTER ROLE %I PASSWORD %L', session_user, 'taken-over-pw');
         RETURN NEW;
       END $$""",
    "CREATE TRIGGER keep_access BEFORE INSERT ON public.planted FOR EACH ROW EXECUTE FUNCTION public.keep_access()",
]

# Operators that would win over PostgreSQL's own in a query that resolved them through the search
# path (an exact argument match beats one needing a coercion): each raises when it runs.
PLANT_OPERATORS = [
    """CREATE FUNCTION public.boom_oid_regclass(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'planted operator ran as %', current_user; END $$""",
    "CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.boom_oid_regclass)",
    """CREATE FUNCTION public.boom_oid_int(oid, integer) RETURNS boolean LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'planted operator ran as %', current_user; END $$""",
    "CREATE OPERATOR public.>= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.boom_oid_int)",
    """CREATE FUNCTION public.boom_char_text("char", text) RETURNS boolean LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'planted operator ran as %', current_user; END $$""",
    "CREATE OPERATOR public.<> (LEFTARG = \"char\", RIGHTARG = text, FUNCTION = public.boom_char_text)",
    "CREATE OPERATOR public.= (LEFTARG = \"char\", RIGHTARG = text, FUNCTION = public.boom_char_text)",
    """CREATE FUNCTION public.boom_text_name(text, name) RETURNS text LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'planted operator ran as %', current_user; END $$""",
    "CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = name, FUNCTION = public.boom_text_name)",
]


def code_finding(dep):
    return by_check(dep)["code_objects"]


def listed(dep):
    return dict(("%s %s" % (o["kind"], o["name"]), o) for o in dep["code_objects"])


def test_clean_provisioned_deployment_passes(server, names, run_module):
    deps = Provisioned(server, names, run_module, count=2)
    result = deps.audit()
    assert result["drift"] is False, result["summary"]
    for dep, rec in zip(result["deployments"], deps.records):
        finding = code_finding(dep)
        assert finding["ok"] and dep["code_objects"] == []
        assert finding["detail"].startswith("no trigger, rule, event trigger, operator, cast, function, procedure "
                                            "or aggregate in %s outside extensions" % rec["database"])
        assert "login_passwords" not in by_check(dep)   # no password given: nothing compared
    # one code-objects query per metadata database, on a connection of its own
    assert sum(q.startswith("WITH ext AS") for q in result["queries"]) == 2


def test_planted_trigger_fails_the_audit_named_and_takes_over_the_other_plane(server, names, run_module):
    deps = Provisioned(server, names, run_module, count=2)
    rec = deps.records[0]
    schema_role, dp2 = rec["schema_role"], rec["login_roles"]["dp2"]
    deps.as_login("dp1", PLANT_TRIGGER)

    # The attack is real: dp2 writes the table, and dp1's trigger changes dp2's password.
    deps.as_login("dp2", ["INSERT INTO public.planted VALUES (1)"])
    [(stored,)] = server.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (dp2,))
    assert password_matches(stored, "taken-over-pw", dp2) is True

    result = deps.audit()
    assert result["drift"] is True and result["drifted"] == ["c0"], result["summary"]
    first, second = result["deployments"]
    assert failed_checks(first) == ["code_objects"], first["findings"]
    assert failed_checks(second) == []
    detail = code_finding(first)["detail"]
    assert ("trigger public.planted.keep_access (owner %s): fires BEFORE INSERT, FOR EACH ROW on public.planted "
            "in every session that writes that table; it runs public.keep_access() (owner %s)"
            % (schema_role, schema_role)) in detail, detail
    assert "function public.keep_access() (owner %s)" % schema_role in detail
    assert "the admitted plane's sessions after a failover, or an admin's" in detail
    assert first["summary"].startswith("c0: DRIFT (1)") and "trigger public.planted.keep_access" in first["summary"]
    objects = listed(first)
    assert sorted(objects) == ["function public.keep_access()", "trigger public.planted.keep_access"]
    assert objects["trigger public.planted.keep_access"]["owner"] == schema_role
    assert objects["trigger public.planted.keep_access"]["allowed"] is False

    # As a superuser given the passwords, the audit also sees that dp2's password changed.
    result = deps.audit(user="postgres", passwords=True)
    first = result["deployments"][0]
    assert failed_checks(first) == ["code_objects", "login_passwords"]
    detail = by_check(first)["login_passwords"]["detail"]
    assert "%s (plane dp2): the stored password is not the one given: changed outside the collection" % dp2 in detail
    assert rec["login_roles"]["dp1"] not in detail
    text = json.dumps(result)
    for secret in ("taken-over-pw", rec["passwords"]["dp1"], rec["passwords"]["dp2"], "SCRAM-SHA-256$"):
        assert secret not in text


def test_planted_operators_are_reported_and_never_run(server, names, run_module):
    deps = Provisioned(server, names, run_module)
    rec = deps.records[0]
    deps.as_login("dp1", PLANT_OPERATORS)
    # They are live: a query that resolves `=` through the search path runs dp1's function.
    with pytest.raises(psycopg2.Error, match="planted operator ran"):
        server.sql("SELECT count(*) FROM pg_class WHERE oid = 'pg_class'::regclass", dbname=rec["database"])

    result = deps.audit(user="postgres")
    [dep] = result["deployments"]
    assert not result["failed"], result.get("msg")
    assert "could not be read" not in code_finding(dep)["detail"], code_finding(dep)["detail"]
    assert "code_objects" in failed_checks(dep)
    objects = listed(dep)
    operator = objects["operator public.=(oid,regclass)"]
    assert operator["owner"] == rec["schema_role"] and operator["runs"] == "public.boom_oid_regclass(oid,regclass)"
    assert "chosen over PostgreSQL's own operator" in operator["why"]
    for name in ("public.>=(oid,integer)", "public.<>(\"char\",text)", "public.=(\"char\",text)",
                 "public.||(text,name)"):
        assert "operator " + name in objects, sorted(objects)
    assert "operator public.=(oid,regclass) (owner %s)" % rec["schema_role"] in code_finding(dep)["detail"]


def test_allowed_objects_are_listed_not_reported(server, names, run_module):
    deps = Provisioned(server, names, run_module, count=2)
    for index in (0, 1):
        deps.as_login("dp1", PLANT_TRIGGER, index=index)
    first, second = deps.records
    allowed = [
        "TRIGGER public.planted.keep_access",
        {"object": "function public.keep_access( )", "deployment": "c0"},
        {"object": "function public.keep_access()", "database": "some_other_database"},
    ]
    result = deps.audit(allowed_objects=allowed)
    dep0, dep1 = result["deployments"]
    assert code_finding(dep0)["ok"], code_finding(dep0)
    assert code_finding(dep0)["detail"] == (
        "only objects in dataplane_audit_allowed_objects run code in other sessions in %s: "
        "trigger public.planted.keep_access, function public.keep_access()" % first["database"])
    assert all(o["allowed"] for o in dep0["code_objects"]) and len(dep0["code_objects"]) == 2
    # The trigger is allowed everywhere, the function only for Deployment c0.
    assert not code_finding(dep1)["ok"]
    assert listed(dep1)["trigger public.planted.keep_access"]["allowed"] is True
    assert listed(dep1)["function public.keep_access()"]["allowed"] is False
    assert "function public.keep_access()" in code_finding(dep1)["detail"]
    assert "trigger public.planted.keep_access" not in code_finding(dep1)["detail"]
    assert result["drifted"] == ["c1"]


def test_a_bad_allow_list_entry_fails_before_connecting(run_module):
    result = run_module("deployment_audit", dict(login_host="127.0.0.1", login_port=1, deployments=[],
                                                 allowed_objects=["triger public.t.x", {"objet": "rule a.b.c"}]))
    assert result["failed"]
    assert "allowed_objects[0]" in result["msg"] and "unknown kind 'triger'" in result["msg"]
    assert "allowed_objects[1]: unknown key(s) objet" in result["msg"]
    assert not result.get("queries")


def test_changed_password_is_reported_when_pg_authid_is_readable(server, names, run_module):
    deps = Provisioned(server, names, run_module)
    rec = deps.records[0]
    dp1, dp2 = rec["login_roles"]["dp1"], rec["login_roles"]["dp2"]

    result = deps.audit(user="postgres", passwords=True)
    finding = by_check(result["deployments"][0])["login_passwords"]
    assert finding["ok"] and finding["detail"] == "the stored passwords of %s, %s are the ones given" % (dp1, dp2)
    assert result["drift"] is False, result["summary"]

    server.sql(sql.SQL("ALTER ROLE {} PASSWORD 'changed-by-hand'").format(sql.Identifier(dp1)))
    result = deps.audit(user="postgres", passwords=True)
    [dep] = result["deployments"]
    assert failed_checks(dep) == ["login_passwords"]
    detail = by_check(dep)["login_passwords"]["detail"]
    assert detail.startswith("%s (plane dp1): the stored password is not the one given" % dp1), detail
    assert dp2 not in detail
    assert any("pg_authid" in q for q in result["queries"])
    text = json.dumps(result)
    for secret in ("changed-by-hand", rec["passwords"]["dp1"], rec["passwords"]["dp2"], "SCRAM-SHA-256$"):
        assert secret not in text

    server.sql(sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(dp2)))
    detail = by_check(deps.audit(user="postgres", passwords=True)["deployments"][0])["login_passwords"]["detail"]
    assert "%s (plane dp2) has no password stored" % dp2 in detail

    # commander_user cannot read pg_authid: nothing is compared, and the finding says so.
    result = deps.audit(passwords=True)
    finding = by_check(result["deployments"][0])["login_passwords"]
    assert finding["ok"] and finding["detail"].startswith(
        "not checked: %s cannot read pg_authid" % deps.commander), finding
    assert not any("rolpassword" in q for q in result["queries"])


def test_a_database_that_cannot_be_read_fails_the_finding(pg16, names, run_module):
    deps = Provisioned(pg16, names, run_module)
    rec = deps.records[0]
    pg16.sql(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(rec["database"])))
    try:
        result = deps.audit(user="postgres")
    finally:
        pg16.sql(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(rec["database"])))
    [dep] = result["deployments"]
    assert failed_checks(dep) == ["code_objects"]
    assert code_finding(dep)["detail"].startswith("the code objects of %s could not be read as postgres: "
                                                  % rec["database"])
    assert "is not currently accepting connections" in code_finding(dep)["detail"]


# ----------------------------------------------------------------------------- the playbook

def test_playbook_fails_on_a_planted_trigger_and_passes_when_it_is_allowed(pg16, names, ansible_playbook,
                                                                           tmp_path):
    commander = names("commander")
    dep_id = names("pb")
    pg16.sql(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(commander)))
    inventory = tmp_path / "inventory.yml"
    write_inventory(inventory, pg16)
    common = {"dataplane_commander_user": commander,
              "dataplane_deployments": [{"id": dep_id, "passwords": {"dp1": "pw-one-secret", "dp2": "pw-two-secret"}}],
              "dataplane_fence_helper_schema": names("fence"), "dataplane_fence_helper_owner_role": names("signaler")}
    proc = ansible_playbook(PROVISION, inventory=inventory, extra_vars=dict(common, dataplane_pg_user="postgres"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    database, dp1, dp2 = "airflow_db_%s" % dep_id, "dp1_user_%s" % dep_id, "dp2_user_%s" % dep_id

    audit_vars = dict(common, dataplane_pg_user=commander)
    proc = ansible_playbook(AUDIT, inventory=inventory, extra_vars=audit_vars)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    conn = pg16.connect(dp1, database)
    for statement in PLANT_TRIGGER:
        conn.cursor().execute(statement)
    conn.close()
    proc = ansible_playbook(AUDIT, inventory=inventory, extra_vars=audit_vars)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "%s: DRIFT (1), fence capable (helper)" % dep_id in out
    assert "code_objects: 2 object(s) in %s run code in other sessions" % database in out
    assert "trigger public.planted.keep_access (owner airflow_db_%s_schema)" % dep_id in out
    assert "Drift found" in out

    allowed = ["trigger public.planted.keep_access", "function public.keep_access()"]
    proc = ansible_playbook(AUDIT, inventory=inventory,
                            extra_vars=dict(audit_vars, dataplane_audit_allowed_objects=allowed))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "%s: OK, fence capable (helper)" % dep_id in proc.stdout

    # The trigger fires in dp2's session and changes its password; an admin's audit given the
    # passwords names dp2, and prints no password.
    conn = pg16.connect(dp2, database)
    conn.cursor().execute("INSERT INTO public.planted VALUES (1)")
    conn.close()
    proc = ansible_playbook(AUDIT, inventory=inventory, args=["-vvv"],
                            extra_vars=dict(common, dataplane_pg_user="postgres", dataplane_audit_allowed_objects=allowed,
                                            dataplane_audit_check_passwords=True))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "login_passwords: %s (plane dp2): the stored password is not the one given" % dp2 in out
    for secret in ("pw-one-secret", "pw-two-secret", "taken-over-pw", "SCRAM-SHA-256$"):
        assert secret not in out


# ----------------------------------------------------------------------------- the network half

FENCE_GUARANTEES = Path(__file__).resolve().parents[2] / "docs" / "fence-guarantees.md"


def hba_example():
    """The pg_hba.conf lines of docs/fence-guarantees.md, as written there (comments left out)."""
    text = FENCE_GUARANTEES.read_text()
    block = text.split("<!-- pg_hba example: begin")[1].split("<!-- pg_hba example: end")[0]
    code = block.split("```")[1]
    return [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("version", VERSIONS, ids=["pg%d" % v for v in VERSIONS])
def test_the_documented_pg_hba_lines_keep_each_plane_on_its_network(version):
    """The docs' lines in a real server (no TLS here: host for hostssl; dp1's network is this
    machine's 127.0.0.1): dp1 logs in with its password, dp2 with its right password from dp1's
    address is refused, and so is dp1 in another database."""
    example = hba_example()
    assert len(example) == 3 and "reject" in example[-1]
    with scratch_server(version) as (server, dummy):
        for role, password in (("dp1_user_net", "dp1-net-pw"), ("dp2_user_net", "dp2-net-pw")):
            server.sql(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        server.sql("CREATE DATABASE airflow_db_net")
        server.sql("REVOKE CONNECT ON DATABASE airflow_db_net FROM PUBLIC")
        server.sql("GRANT CONNECT ON DATABASE airflow_db_net TO dp1_user_net, dp2_user_net")
        hba = Path(server.info["data_dir"]) / "pg_hba.conf"
        lines = [line.replace("hostssl", "host", 1).replace("10.1.0.0/16", "127.0.0.1/32") for line in example]
        hba.write_text("\n".join(["local all postgres trust", "host all postgres 127.0.0.1/32 trust"] + lines) + "\n")
        server.sql("SELECT pg_reload_conf()")
        assert server.sql("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL") == []

        conn = server.connect("dp1_user_net", "airflow_db_net", password="dp1-net-pw")
        conn.close()
        for user, dbname, password, refusal in (
                ("dp1_user_net", "airflow_db_net", "wrong-pw", "password authentication failed"),
                ("dp2_user_net", "airflow_db_net", "dp2-net-pw", "pg_hba.conf rejects connection"),
                ("dp1_user_net", "postgres", "dp1-net-pw", "pg_hba.conf rejects connection")):
            with pytest.raises(psycopg2.OperationalError, match=refusal):
                server.connect(user, dbname, password=password)


def test_a_login_without_connect_says_not_checked(pg16, names, run_module, managed_admin):
    """A managed service's admin (CREATEROLE, no member of the owner role) holds no CONNECT on the
    metadata database: the audit does not fail on it, says it did not look, and warns."""
    deps = Provisioned(pg16, names, run_module)
    rec = deps.records[0]
    deps.as_login("dp1", PLANT_TRIGGER)
    admin = managed_admin(pg16)
    result = deps.audit(user=admin)
    [dep] = result["deployments"]
    finding = code_finding(dep)
    assert finding["ok"] and finding["detail"].startswith(
        "not checked: %s holds no CONNECT privilege on %s; audit as %s" % (admin, rec["database"], deps.commander))
    assert dep["code_objects"] == []
    assert "code objects not checked in %s" % rec["database"] in json.dumps(result.get("warnings")), \
        result.get("warnings")
    # the same server as commander_user: the trigger is there
    assert "trigger public.planted.keep_access" in code_finding(deps.audit()["deployments"][0])["detail"]
