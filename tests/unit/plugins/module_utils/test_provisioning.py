"""Pure provisioning plan: catalog snapshot + records -> typed actions and predicted state."""

import base64
import hashlib

from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import record_problems
from ansible_collections.dataplane.postgresql.plugins.module_utils.provision.plan import (
    acl_new_owner,
    acl_text,
    default_acl,
    option_problems,
    plan_deployments,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.base.scram import (
    password_matches,
    saslprep,
    scram_secret,
)


def input_problems(records, params):
    """What deployment_setup refuses before connecting: the records, then its own options."""
    return record_problems(records) + option_problems(params)


PARAMS = {"helper_schema": "dataplane_fence", "helper_owner_role": "dataplane_fence_signaler",
          "decommission_owner": None}


def rec(dep_id="a", **extra):
    out = {"id": dep_id, "state": "present", "database": "airflow_db_%s" % dep_id,
           "owner_role": "airflow_db_%s_owner" % dep_id, "killer_role": "airflow_conn_killer_%s" % dep_id,
           "login_roles": {"dp1": "dp1_user_%s" % dep_id, "dp2": "dp2_user_%s" % dep_id},
           "passwords": {"dp1": "s1", "dp2": "s2"}, "commander_user": "commander_user",
           "update_password": False, "drop_database": False, "drop_login_roles": False}
    out.update(extra)
    return out


def empty_catalog(**roles):
    return {"acting_user": "postgres", "grantor": "postgres", "roles": dict(roles), "databases": {},
            "helper_schema_exists": False}


def fake_secret(password):
    return "SECRET(%s)" % password


def options(**extra):
    out = dict(create_databases=True, create_login_roles=True, commander_password=None,
               decommission_owner=None, helper_schema="dataplane_fence", secret=fake_secret)
    out.update(extra)
    return out


def seeded_catalog(dep_id="a"):
    """What the vendor SQL leaves (after the login roles, database and commander exist)."""
    r = rec(dep_id)
    owner = r["owner_role"]
    acl = set([("", owner, "TEMPORARY", False), (owner, owner, "CREATE", False), (owner, owner, "TEMPORARY", False),
               (owner, owner, "CONNECT", False), (r["login_roles"]["dp1"], owner, "CONNECT", False),
               (r["login_roles"]["dp2"], owner, "CONNECT", False)])
    roles = {"commander_user": {"login": True, "inherit": True, "password": None},
             owner: {"login": False, "inherit": True, "password": None},
             r["killer_role"]: {"login": False, "inherit": False, "password": None},
             r["login_roles"]["dp1"]: {"login": True, "inherit": True, "password": None},
             r["login_roles"]["dp2"]: {"login": True, "inherit": True, "password": None}}
    return {"acting_user": "postgres", "grantor": "postgres", "roles": roles,
            "databases": {r["database"]: {"owner": owner, "acl": acl}}, "helper_schema_exists": True}


def kinds(plan):
    return [a[0] for dummy, a in plan.actions()]


def test_fresh_server_plans_the_reference_setup_in_order():
    plan = plan_deployments([rec()], empty_catalog(), options(commander_password="c"))
    assert plan.problems == []
    assert [a for dummy, a in plan.autocommit] == [("create_database", "airflow_db_a")]
    assert [a for dummy, a in plan.roles] == [
        ("create_role", "commander_user", {"login": True, "inherit": True}, "SECRET(c)"),
        ("create_role", "airflow_db_a_owner", {"login": False, "inherit": True}, None),
        ("create_role", "airflow_conn_killer_a", {"login": False, "inherit": False}, None),
        ("create_role", "dp1_user_a", {"login": True, "inherit": True}, "SECRET(s1)"),
        ("create_role", "dp2_user_a", {"login": True, "inherit": True}, "SECRET(s2)"),
    ]
    assert [a for dummy, a in plan.databases] == [
        ("alter_database_owner", "airflow_db_a", "airflow_db_a_owner"),
        ("revoke_connect", "airflow_db_a", ""),
        ("grant_connect", "airflow_db_a", "dp1_user_a"),
        ("grant_connect", "airflow_db_a", "dp2_user_a"),
    ]
    grants = [g for dummy, g in plan.grants]
    assert grants[0] == {"group": "dp1_user_a", "target_role": "airflow_conn_killer_a", "inherit_option": False,
                         "set_option": False, "admin_option": None, "granted_by": None, "state": "present"}
    assert [(g["group"], g["target_role"], g["inherit_option"]) for g in grants[2:]] == [
        ("airflow_db_a_owner", "commander_user", None), ("airflow_conn_killer_a", "commander_user", None)]
    assert plan.helper_killers == ["airflow_conn_killer_a"]
    # Predicted ACL is exactly the measured reference datacl.
    assert acl_text(plan.predicted_databases["airflow_db_a"]["acl"]) == [
        "=T/airflow_db_a_owner", "airflow_db_a_owner=CTc/airflow_db_a_owner",
        "dp1_user_a=c/airflow_db_a_owner", "dp2_user_a=c/airflow_db_a_owner"]


def test_reference_state_plans_nothing():
    plan = plan_deployments([rec()], seeded_catalog(), options())
    assert plan.problems == [] and plan.actions() == []


def test_existing_database_with_explicit_grants_from_old_owner():
    catalog = seeded_catalog()
    catalog["databases"]["airflow_db_a"] = {"owner": "postgres", "acl": default_acl("postgres") | set(
        [("dp1_user_a", "postgres", "CONNECT", False)])}
    plan = plan_deployments([rec()], catalog, options())
    # The owner change rewrites postgres's grant of dp1 to the owner's: only dp2 is missing.
    assert [a for dummy, a in plan.databases] == [
        ("alter_database_owner", "airflow_db_a", "airflow_db_a_owner"),
        ("revoke_connect", "airflow_db_a", ""),
        ("grant_connect", "airflow_db_a", "dp2_user_a")]


def test_public_connect_from_third_grantor_is_warned_about():
    catalog = seeded_catalog()
    catalog["databases"]["airflow_db_a"]["acl"].add(("", "delegate", "CONNECT", False))
    plan = plan_deployments([rec()], catalog, options())
    assert plan.actions() == []
    assert any("granted by 'delegate'" in w for w in plan.warnings)


def test_wrong_attributes_are_fixed():
    catalog = seeded_catalog()
    catalog["roles"]["airflow_conn_killer_a"]["inherit"] = True
    catalog["roles"]["airflow_db_a_owner"]["login"] = True
    plan = plan_deployments([rec()], catalog, options())
    assert [a for dummy, a in plan.roles] == [
        ("alter_role", "airflow_db_a_owner", {"login": False, "inherit": True}),
        ("alter_role", "airflow_conn_killer_a", {"login": False, "inherit": False})]


def test_problems_name_the_deployment_and_change_nothing():
    records = [rec("a", passwords={"dp1": "s1"}), rec("b")]
    plan = plan_deployments(records, empty_catalog(), options(create_databases=False))
    assert any("commander_user 'commander_user' does not exist" in p for p in plan.problems)
    assert any(p.startswith("Deployment 'a': login role 'dp2_user_a' (plane dp2)") for p in plan.problems)
    assert any(p.startswith("Deployment 'b': database 'airflow_db_b' does not exist") for p in plan.problems)
    plan = plan_deployments([rec()], empty_catalog(commander_user={"login": True, "inherit": True}),
                            options(create_login_roles=False))
    assert any("creating login roles is disabled" in p for p in plan.problems)


def test_password_rules():
    secret = scram_secret("old", salt=b"0123456789abcdef")
    catalog = seeded_catalog()
    catalog["roles"]["dp1_user_a"]["password"] = secret
    plan = plan_deployments([rec(passwords={"dp1": "old", "dp2": "x"})], catalog, options())
    assert plan.actions() == []  # update_password false: left alone
    plan = plan_deployments([rec(passwords={"dp1": "old"}, update_password=True)], catalog, options())
    assert plan.actions() == []  # same password
    plan = plan_deployments([rec(passwords={"dp1": "new"}, update_password=True)], catalog, options())
    assert [a for dummy, a in plan.roles] == [("set_password", "dp1_user_a", "SECRET(new)")]


def test_decommission_keeps_database_and_logins_by_default():
    plan = plan_deployments([rec(state="absent")], seeded_catalog(), options())
    assert [a for dummy, a in plan.actions()] == [
        ("alter_database_owner", "airflow_db_a", "postgres"),
        ("revoke_helper", "dataplane_fence", "airflow_conn_killer_a"),
        ("drop_role", "airflow_conn_killer_a"),
        ("drop_role", "airflow_db_a_owner")]
    assert "dp1_user_a=c/postgres" in acl_text(plan.predicted_databases["airflow_db_a"]["acl"])


def test_decommission_with_drops():
    plan = plan_deployments([rec(state="absent", drop_database=True, drop_login_roles=True)], seeded_catalog(),
                            options(decommission_owner="admin"))
    assert kinds(plan) == ["drop_database", "revoke_helper", "drop_role", "drop_role", "drop_role", "drop_role"]
    plan = plan_deployments([rec(state="absent", drop_login_roles=True)], seeded_catalog(),
                            options(decommission_owner="admin"))
    assert [a for dummy, a in plan.actions()][:1] == [("alter_database_owner", "airflow_db_a", "admin")]
    assert ("revoke_connect", "airflow_db_a", "dp1_user_a") in [a for dummy, a in plan.actions()]
    assert plan_deployments([rec(state="absent", drop_login_roles=True, drop_database=True)],
                            empty_catalog(), options()).actions() == []


def test_acl_owner_change_and_text():
    acl = acl_new_owner(default_acl("postgres"), "postgres", "o")
    assert acl_text(acl) == ["=Tc/o", "o=CTc/o"]
    assert acl_text(set([("x", "o", "CONNECT", True)])) == ["x=c*/o"]


def test_input_problems():
    bad = rec("b", killer_role="k" * 64)
    dup = rec("a", database="other")
    shared = rec("c", owner_role="airflow_db_a_owner")
    problems = input_problems([rec("a"), bad, dup, shared], PARAMS)
    text = "\n".join(problems)
    assert "deployments[1] (id 'b'): killer role name" in text and "64 bytes" in text
    assert "deployments[2] (id 'a'): duplicate id" in text
    assert "deployments[3] (id 'c'): role 'airflow_db_a_owner' is also used by deployments[0]" in text
    assert input_problems([rec("a")], PARAMS) == []
    assert input_problems([rec("a", passwords={"dp9": "x"})], PARAMS) == [
        "deployments[0] (id 'a'): a password is given for unknown plane 'dp9'"]


def test_scram_secret_format_and_rfc7677_vector():
    # RFC 7677 test vector: password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    secret = scram_secret("pencil", salt=salt)
    iterations_salt, keys = secret.split("$")[1:]
    assert iterations_salt == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = keys.split(":")
    # ServerKey -> ServerSignature of the RFC's AuthMessage is 6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=
    import hmac
    auth = (b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    signature = hmac.new(base64.b64decode(server_key), auth, hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert password_matches(secret, "pencil", "user") is True
    assert password_matches(secret, "pencil2", "user") is False
    md5 = "md5" + hashlib.md5(b"pwuser").hexdigest()
    assert password_matches(md5, "pw", "user") is True
    assert password_matches(None, "pw", "user") is False


def test_saslprep():
    assert saslprep("plain") == "plain"
    assert saslprep("I\u00adX") == "IX"          # soft hyphen maps to nothing
    assert saslprep("\u2168") == "IX"            # NFKC
    assert saslprep("a\u0007\u00e9") == "a\u0007\u00e9"  # prohibited: raw password kept


def test_noinherit_commander_is_warned_about_once():
    catalog = seeded_catalog()
    catalog["roles"]["commander_user"]["inherit"] = False
    plan = plan_deployments([rec(), rec("b")], dict(catalog, databases={}), options())
    assert len([w for w in plan.warnings if "is NOINHERIT" in w]) == 1


# ----------------------------------------------------------------------------- the fence is kept

def fenced_catalog():
    """The seeded catalog after a failover dp1 -> dp2 (dp1's CONNECT revoked)."""
    catalog = seeded_catalog()
    acl = catalog["databases"]["airflow_db_a"]["acl"]
    acl.discard(("dp1_user_a", "airflow_db_a_owner", "CONNECT", False))
    return catalog


def test_a_fenced_plane_gets_no_connect_and_nothing_is_planned():
    plan = plan_deployments([rec()], fenced_catalog(), options())
    assert [a for dummy, a in plan.actions() if a[0] == "grant_connect"] == []
    assert plan.withheld == {0: ["dp1_user_a"]}
    assert plan.fence_views[0]["source"] == "inferred" and plan.fence_views[0]["fenced"] == ["dp1"]


def test_readmit_grants_and_writes_the_record_in_the_same_plan():
    writer = {"by": "postgres", "at": "2026-11-27T17:00:00Z", "application": None, "run": "r"}
    plan = plan_deployments([rec()], fenced_catalog(), options(readmit_fenced_planes=True, fence_writer=writer))
    kinds = [a[0] for dummy, a in plan.databases]
    assert kinds == ["grant_connect", "set_fence_record"]
    assert plan.databases[1][1][3]["admitted"] == ["dp1_user_a", "dp2_user_a"]
    assert plan.readmits == [(0, "airflow_db_a", None)]


def test_a_damaged_record_is_a_problem():
    states = {"airflow_db_a": {"comment": "x", "record": None, "error": "not valid JSON"}}
    plan = plan_deployments([rec()], seeded_catalog(), options(fence_states=states))
    assert len(plan.problems) == 1 and "cannot be read" in plan.problems[0]
