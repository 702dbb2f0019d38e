"""The pure half of the shared schema role: model names, plans, statements (no server)."""

import pytest
from psycopg2 import sql

from ansible_collections.dataplane.postgresql.plugins.module_utils.provision import schema_role as sr
from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import (
    DeploymentModelError,
    expand_deployments,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.server.memberships import statement_text

[REC] = expand_deployments([{"id": "a"}])


def text(action):
    return statement_text(sr.action_sql(sql, action))


def test_model_names_the_schema_role_and_schema():
    assert REC["schema_role"] == "airflow_db_a_schema"
    assert REC["airflow_schema"] == "public"
    [rec] = expand_deployments([{"id": "b", "airflow_schema": "airflow"}], object_privileges=False,
                               templates={"schema_role_name": "s_{id}"})
    assert rec["schema_role"] is None and rec["airflow_schema"] == "airflow"
    [rec] = expand_deployments([{"id": "b", "schema_role_name": "own_{id}"}])
    assert rec["schema_role"] == "own_b"


@pytest.mark.parametrize("item, fragment", [
    ({"id": "a", "schema_role_name": "pg_{id}"}, "schema role name 'pg_a' starts with 'pg_'"),
    ({"id": "a", "schema_role_name": "x" * 64}, "PostgreSQL would truncate"),
    ({"id": "a", "airflow_schema": "pg_temp"}, "reserves for system schemas"),
    ({"id": "a", "schema_role_name": "dp1_user_{id}"}, "used twice"),
    ({"id": "a", "schema_role_name": "commander_user"}, "collides"),
])
def test_model_rejects_bad_schema_names(item, fragment):
    with pytest.raises(DeploymentModelError) as err:
        expand_deployments([item])
    assert fragment in str(err.value)


def test_plan_shared_creates_role_and_role_settings():
    catalog = {"roles": {}, "settings": [], "databases": set(["airflow_db_a"])}
    actions = sr.plan_shared([REC], catalog, False)
    assert [a for dummy, a in actions] == [
        ("create_role", "airflow_db_a_schema"),
        ("set_role_setting", "dp1_user_a", "airflow_db_a", "airflow_db_a_schema"),
        ("set_role_setting", "dp2_user_a", "airflow_db_a", "airflow_db_a_schema")]
    assert text(actions[1][1]) == ('ALTER ROLE "dp1_user_a" IN DATABASE "airflow_db_a" '
                                   "SET role = 'airflow_db_a_schema'")


def test_plan_shared_converged_is_empty_and_attributes_are_cleared():
    settings = [{"rolname": l, "datname": "airflow_db_a", "setconfig": ["role=airflow_db_a_schema"]}
                for l in ("dp1_user_a", "dp2_user_a")]
    catalog = {"roles": {"airflow_db_a_schema": {"rolcanlogin": False}}, "settings": settings,
               "databases": set(["airflow_db_a"])}
    assert sr.plan_shared([REC], catalog, False) == []
    catalog["roles"]["airflow_db_a_schema"] = {"rolcanlogin": True, "rolcreatedb": True}
    [(dummy, action)] = sr.plan_shared([REC], catalog, False)
    assert text(action) == 'ALTER ROLE "airflow_db_a_schema" NOLOGIN NOCREATEDB'


def test_global_setting_alone_is_replaced_by_a_database_one():
    """A login's global role setting is not enough: the per-database one is what the model owns."""
    settings = [{"rolname": "dp1_user_a", "datname": None, "setconfig": ["role=airflow_db_a_schema"]},
                {"rolname": "dp2_user_a", "datname": "airflow_db_a", "setconfig": ["search_path=x", "role=other"]}]
    assert sr.effective_role_setting(settings, "dp1_user_a", "airflow_db_a") == "airflow_db_a_schema"
    assert sr.effective_role_setting(settings, "dp2_user_a", "airflow_db_a") == "other"
    actions = sr.plan_shared([REC], {"roles": {"airflow_db_a_schema": {}}, "settings": settings,
                                     "databases": set()}, False)
    assert [a[1][1] for a in actions] == ["dp1_user_a", "dp2_user_a"]


def test_grants_membership_options_and_forbidden_pairs():
    grants = sr.grants_for(REC)
    assert [(g["group"], g["target_role"], g["inherit_option"], g["set_option"], g["admin_option"])
            for g in grants] == [("airflow_db_a_schema", "dp1_user_a", False, True, False),
                                 ("airflow_db_a_schema", "dp2_user_a", False, True, False)]
    assert ("airflow_db_a_schema", "commander_user") in sr.forbidden_pairs(REC)
    assert ("airflow_db_a_owner", "airflow_db_a_schema") in sr.forbidden_pairs(REC)
    assert ("airflow_conn_killer_a", "airflow_db_a_schema") in sr.forbidden_pairs(REC)


def test_plan_database_grants_missing_privileges_only():
    facts = {"schema_exists": True, "privileges": set(["USAGE"]), "owned": {}, "shared_owned": {}}
    actions, problems, warnings = sr.plan_database(REC, facts, False)
    assert actions == [("grant_schema", "public", "airflow_db_a_schema", ["CREATE"])]
    assert text(actions[0]) == 'GRANT CREATE ON SCHEMA "public" TO "airflow_db_a_schema"'
    facts["privileges"] = set(["USAGE", "CREATE"])
    assert sr.plan_database(REC, facts, False) == ([], [], [])
    # A database still to be created (check mode) has schema public already.
    assert sr.plan_database(REC, None, False)[0] == [
        ("grant_schema", "public", "airflow_db_a_schema", ["USAGE", "CREATE"])]


def test_objects_of_a_login_role_are_reassigned_only_when_asked():
    facts = {"schema_exists": True, "privileges": set(["USAGE", "CREATE"]),
             "owned": {"dp1_user_a": ["table public.t"]}, "shared_owned": {}}
    actions, problems, warnings = sr.plan_database(REC, facts, False)
    assert actions == [] and problems == []
    assert "dp1_user_a owns 1: table public.t" in warnings[0] and "reassign_owned" in warnings[0]
    actions, problems, warnings = sr.plan_database(REC, facts, True)
    assert actions == [("reassign_owned", ["dp1_user_a"], "airflow_db_a_schema")]
    assert text(actions[0]) == 'REASSIGN OWNED BY "dp1_user_a" TO "airflow_db_a_schema"'
    facts["shared_owned"] = {"dp1_user_a": ["database other"]}
    actions, problems, warnings = sr.plan_database(REC, facts, True)
    assert actions == [] and "database other" in problems[0]


def test_hostile_names_are_quoted_never_interpolated():
    evil = 'x"; DROP ROLE postgres; --'
    assert text(("create_role", evil)) == 'CREATE ROLE "x""; DROP ROLE postgres; --" NOLOGIN'
    composed = sr.action_sql(sql, ("set_role_setting", "dp1", "db", "it's"))
    literals = [part for part in composed.seq if isinstance(part, sql.Literal)]
    assert [lit.wrapped for lit in literals] == ["it's"]  # a bound literal, quoted by the driver


def test_schema_role_keys_are_checked_by_the_one_record_validator():
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model import deployment
    bad = dict(REC, schema_role="pg_x", airflow_schema="")
    problems = deployment.record_problems([bad])
    assert len(problems) == 2 and "pg_x" in problems[0] and "must not be empty" in problems[1]
    assert deployment.record_problems([dict(REC, schema_role=None)]) == []


def test_only_a_records_own_login_roles_make_its_database_described():
    rec = {"database": "airflow_db_a", "login_roles": {"dp1": "dp1_user_a", "dp2": "dp2_user_a"}}
    assert sr.owns_objects_in(rec, {}) is False
    assert sr.owns_objects_in(rec, {"airflow_db_a": {"dp1_user_b"}}) is False   # another Deployment's
    assert sr.owns_objects_in(rec, {"airflow_db_b": {"dp1_user_a"}}) is False   # elsewhere
    assert sr.owns_objects_in(rec, {"airflow_db_a": {"dp1_user_b", "dp2_user_a"}}) is True
