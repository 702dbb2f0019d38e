"""The pure half of role_checks: catalog facts in, refusals and missing grants out (no server)."""

from ansible_collections.dataplane.postgresql.plugins.module_utils.server.role_checks import (
    admin_problems,
    commander_warnings,
    name_problems,
    plan_needs,
)

CMD = "commander_user"


def rec(dep_id="a", **over):
    out = {"id": dep_id, "state": "present", "database": "airflow_db_%s" % dep_id,
           "owner_role": "airflow_db_%s_owner" % dep_id, "killer_role": "airflow_conn_killer_%s" % dep_id,
           "login_roles": {"dp1": "dp1_user_%s" % dep_id, "dp2": "dp2_user_%s" % dep_id}, "commander_user": CMD}
    out.update(over)
    return out


def role(**over):
    out = {"rolsuper": False, "rolcreaterole": False, "rolbypassrls": False, "rolreplication": False,
           "rolcanlogin": False, "rolinherit": True, "member_of": [], "predefined": [], "privileged_groups": [],
           "members": [], "owns": [], "acting_admin": True, "acting_usage": False}
    out.update(over)
    return out


def facts(roles=None, databases=None, acting=None):
    base_acting = {"name": "postgres", "superuser": True, "createrole": True, "createdb": True,
                   "database": "postgres", "database_create": True, "admin_signal": True, "admin_stats": True}
    base_acting.update(acting or {})
    return {"roles": roles or {}, "databases": databases or {}, "acting": base_acting}


OPTS = {"helper_owner": "dataplane_fence_signaler"}


def test_fresh_names_pass():
    assert name_problems([rec("a"), rec("b")], facts(), OPTS) == []


def test_superuser_killer_is_refused_naming_deployment_name_and_why():
    [problem] = name_problems([rec("c", killer_role="dba")], facts({"dba": role(rolsuper=True, rolcanlogin=True)}),
                              OPTS)
    assert problem.startswith("Deployment 'c': killer role 'dba' exists and is SUPERUSER")


def test_each_privileged_attribute_and_predefined_membership():
    cases = {"rolcreaterole": "CREATEROLE", "rolbypassrls": "BYPASSRLS", "rolreplication": "REPLICATION"}
    for column, word in cases.items():
        [problem] = name_problems([rec(owner_role="x")], facts({"x": role(**{column: True})}), OPTS)
        assert word in problem
    [problem] = name_problems([rec(killer_role="sig")], facts({"sig": role(predefined=["pg_signal_backend"])}), OPTS)
    assert "predefined role(s) pg_signal_backend" in problem
    [problem] = name_problems([rec(killer_role="k")], facts({"k": role(privileged_groups=["su"])}), OPTS)
    assert "privileged role(s) su" in problem


def test_helper_owner_and_commander_names_refused():
    problems = name_problems([rec(owner_role="dataplane_fence_signaler")], facts(), OPTS)
    assert problems and "fence helper's owner role" in problems[0]
    problems = name_problems([rec(killer_role=CMD)], facts(), OPTS)
    assert problems and "is a commander_user" in problems[0]


def test_roles_of_another_deployment_on_the_server():
    roles = {"airflow_db_x_owner": role(owns=["airflow_db_x"], members=[CMD]),
             "airflow_conn_killer_x": role(member_of=["dp1_user_x", "dp2_user_x"], members=[CMD]),
             "dp1_user_x": role(rolcanlogin=True, members=["airflow_conn_killer_x"])}
    bad = rec("b", owner_role="airflow_db_x_owner", killer_role="airflow_conn_killer_x",
              login_roles={"dp1": "dp1_user_x", "dp2": "dp2_user_b"})
    text = "\n".join(name_problems([bad], facts(roles), OPTS))
    assert "owns other database(s) airflow_db_x" in text
    assert "is a member of dp2_user_x, not login roles of this Deployment" in text
    other = rec("c", login_roles={"dp1": "dp1_user_x", "dp2": "dp2_user_c"})
    text = "\n".join(name_problems([other], facts(roles), OPTS))
    assert "'dp1_user_x' exists and is granted to airflow_conn_killer_x" in text


def test_rerun_of_the_same_deployment_passes():
    roles = {"airflow_db_a_owner": role(owns=["airflow_db_a"], members=[CMD]),
             "airflow_conn_killer_a": role(rolinherit=False, member_of=["dp1_user_a", "dp2_user_a"], members=[CMD]),
             "dp1_user_a": role(rolcanlogin=True, members=["airflow_conn_killer_a"]),
             "dp2_user_a": role(rolcanlogin=True, members=["airflow_conn_killer_a"]),
             CMD: role(rolcanlogin=True, member_of=["airflow_db_a_owner", "airflow_conn_killer_a"])}
    dbs = {"airflow_db_a": {"owner": "airflow_db_a_owner", "datistemplate": False, "acting_owns": True}}
    assert name_problems([rec("a")], facts(roles, dbs), OPTS) == []


def test_databases_refused():
    assert "system or template" in name_problems([rec(database="template1")], facts(), OPTS)[0]
    roles = {CMD: role(rolcanlogin=True, member_of=["airflow_db_z_owner"])}
    dbs = {"airflow_db_a": {"owner": "airflow_db_z_owner", "datistemplate": False, "acting_owns": True}}
    assert "granted to commander_user" in name_problems([rec("a")], facts(roles, dbs), OPTS)[0]
    dbs = {"airflow_db_a": {"owner": "airflow_db_b_owner", "datistemplate": False, "acting_owns": True}}
    problems = name_problems([rec("a"), rec("b", database="airflow_db_b")], facts({}, dbs), OPTS)
    assert any("the owner role of Deployment 'b'" in p for p in problems)


def test_absent_deployment_still_refuses_privileged_roles():
    problems = name_problems([rec(state="absent", killer_role="postgres")],
                             facts({"postgres": role(rolsuper=True, rolcanlogin=True)}), OPTS)
    assert problems and "SUPERUSER" in problems[0]


def test_commander_privileges_only_warned():
    warnings = commander_warnings([rec()], facts({CMD: role(rolcreaterole=True, rolcanlogin=True)}))
    assert warnings and "CREATEROLE" in warnings[0]
    assert commander_warnings([rec()], facts({CMD: role(rolcanlogin=True)})) == []


def test_admin_problems_name_the_missing_grant():
    managed = {"name": "madmin", "superuser": False, "createrole": True, "createdb": False,
               "admin_signal": False, "admin_stats": True, "database_create": False}
    roles = {"dp1_user_a": role(acting_admin=False)}
    needs = {"create_roles": True, "create_databases": ["airflow_db_a"],
             "admin_on": {"dp1_user_a": "grant it to airflow_conn_killer_a"}, "own_databases": {},
             "helper_predefined": True, "helper_schema": True}
    text = "\n".join(admin_problems(facts(roles, acting=managed), needs))
    assert "lacks CREATEDB" in text
    assert "lacks ADMIN OPTION on role 'dp1_user_a'" in text
    assert "lacks ADMIN OPTION on pg_signal_backend" in text and "pg_read_all_stats" not in text
    assert "lacks CREATE on database 'postgres'" in text
    assert admin_problems(facts(roles), needs) == []   # a superuser needs nothing


def test_plan_needs_only_for_changes():
    actions = [(0, ("create_role", "k", {}, None)), (0, ("create_database", "d")),
               (0, ("alter_database_owner", "d", "o")), (1, ("alter_role", "old", {})),
               (1, ("alter_database_owner", "e", "o2"))]
    grants = [{"group": "dp1", "target_role": "k"}, {"group": "o2", "target_role": "cmd"}]
    rows = [{"group": "o2", "member": "cmd", "grantor": "madmin"}]
    needs = plan_needs(actions, grants, rows, "madmin", {"k", "o"}, True, False)
    assert needs["create_roles"] and needs["create_databases"] == ["d"]
    assert sorted(needs["admin_on"]) == ["dp1", "o2", "old"]
    assert list(needs["own_databases"]) == ["e"]
    assert needs["helper_predefined"] is True


def test_schema_role_must_be_the_deployments_own():
    """The schema role is checked like the other names: provisioning clears its attributes and
    every login role acts as it, so an existing role of anyone else is refused."""
    dep = rec("s", schema_role="airflow_db_s_schema")
    # its own, as provisioning leaves it: granted to its login roles only
    own = role(members=["dp1_user_s", "dp2_user_s"])
    assert name_problems([dep], facts({"airflow_db_s_schema": own}), OPTS) == []
    cases = [
        ("postgres", role(rolsuper=True, rolcanlogin=True), "schema role 'postgres' exists and is SUPERUSER"),
        ("postgres", role(), "schema role 'postgres' is the role this run connects as"),
        (CMD, role(rolcanlogin=True), "schema role 'commander_user' is a commander_user"),
        ("dataplane_fence_signaler", role(), "is the fence helper's owner role"),
        ("dp1_user_t", role(members=["airflow_conn_killer_t"]),
         "schema role 'dp1_user_t' exists and is granted to airflow_conn_killer_t"),
        ("airflow_db_t_owner", role(members=[CMD]), "exists and is granted to commander_user"),
        ("app", role(member_of=["reporting"]), "schema role 'app' exists and is a member of reporting"),
        ("app", role(owns=["appdb"]), "schema role 'app' exists and owns database(s) appdb"),
        ("monitor", role(predefined=["pg_monitor"]), "predefined role(s) pg_monitor"),
    ]
    for name, fact, expected in cases:
        problems = name_problems([rec("s", schema_role=name)], facts({name: fact}), OPTS)
        assert any(expected in p for p in problems), (name, expected, problems)
        assert all(p.startswith("Deployment 's': ") for p in problems)


def test_managed_maintenance_databases_are_refused():
    for name in ("rdsadmin", "cloudsqladmin", "azure_maintenance", "azure_sys", "template1"):
        [problem] = name_problems([rec("m", database=name)], facts(), OPTS)
        assert "database %r is a system or template database" % name in problem
