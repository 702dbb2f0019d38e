import pytest

from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import (
    DeploymentModelError,
    expand_deployments,
)


def test_defaults_reproduce_reference_names():
    [rec] = expand_deployments([{"id": "a", "passwords": {"dp1": "p1"}}])
    assert rec["database"] == "airflow_db_a"
    assert rec["owner_role"] == "airflow_db_a_owner"
    assert rec["killer_role"] == "airflow_conn_killer_a"
    assert rec["login_roles"] == {"dp1": "dp1_user_a", "dp2": "dp2_user_a"}
    assert rec["passwords"] == {"dp1": "p1"}
    assert rec["commander_user"] == "commander_user"
    assert rec["state"] == "present"


def test_overrides_per_item_and_templates():
    recs = expand_deployments(
        [{"id": "Blue-1", "database_name": "meta_{id}", "login_role_names": {"dp2": "custom"}},
         {"id": 7}],
        templates={"killer_role_name": "kill_{id}"})
    assert recs[0]["database"] == "meta_Blue-1"
    assert recs[0]["killer_role"] == "kill_Blue-1"
    assert recs[0]["login_roles"] == {"dp1": "dp1_user_Blue-1", "dp2": "custom"}
    assert recs[1]["id"] == "7" and recs[1]["database"] == "airflow_db_7"


@pytest.mark.parametrize("items, fragment", [
    ([{"id": "a"}, {"id": "a"}], "duplicate id"),
    ([{"id": "a", "passwords": {"dp3": "x"}}], "unknown plane 'dp3'"),
    ([{"id": "x" * 60}], "PostgreSQL would truncate"),
    ([{"id": "a", "killer_role_name": "pg_kill"}], "starts with 'pg_'"),
    ([{"id": "a", "owner_role_name": "public"}], "reserved"),
    ([{}], "id is required"),
    ([{"id": "a\x00b"}], "NUL"),
    ([{"id": "a", "colour": "red"}], "unknown keys colour"),
    ([{"id": "a", "database_name": "same"}, {"id": "b", "database_name": "same"}], "also used by id 'a'"),
])
def test_bad_input_names_the_item(items, fragment):
    with pytest.raises(DeploymentModelError) as err:
        expand_deployments(items)
    assert fragment in str(err.value)
    assert "dataplane_deployments[" in str(err.value) or "unknown" in str(err.value)


def test_all_problems_reported_together():
    with pytest.raises(DeploymentModelError) as err:
        expand_deployments([{"id": "a", "passwords": {"dp9": "x"}}, {"id": "y" * 70}])
    assert len(err.value.problems) >= 2


def test_selected_ids():
    recs = expand_deployments([{"id": "a"}, {"id": "b"}], selected_ids=["b"])
    assert [r["id"] for r in recs] == ["b"]
    with pytest.raises(DeploymentModelError, match="unknown Deployment ids selected: 'zz'"):
        expand_deployments([{"id": "a"}], selected_ids=["zz"])


def test_hostile_id_is_kept_verbatim_for_quoting():
    [rec] = expand_deployments([{"id": "x\"; DROP ROLE y; --"}])
    assert rec["killer_role"] == "airflow_conn_killer_x\"; DROP ROLE y; --"


@pytest.mark.parametrize("item, fragment", [
    ({"id": ["x"]}, "dataplane_deployments[0]: id must be a string (or a whole number), got list ['x']"),
    ({"id": {"a": 1}}, "id must be a string (or a whole number), got dict"),
    ({"id": True}, "id must be a string (or a whole number), got bool True"),
    ({"id": 1.5}, "id must be a string (or a whole number), got float 1.5"),
    ({"id": "a", "database_name": ["db"]}, "dataplane_deployments[0] (id 'a'): database_name must be a string, got list"),
    ({"id": "a", "schema_role_name": 5}, "schema_role_name must be a string, got int 5"),
    ({"id": "a", "commander_user": {"x": 1}}, "commander_user must be a string, got dict"),
    ({"id": "a", "login_role_names": {"dp1": ["x"]}}, "login_role_names.dp1 must be a string, got list"),
])
def test_names_that_are_not_text_are_refused(item, fragment):
    """A name of another type would reach the SQL as Python's text for it (dp1_user_['x'])."""
    with pytest.raises(DeploymentModelError) as err:
        expand_deployments([item, {"id": "fine"}])
    assert fragment in str(err.value)


def test_templates_and_commander_that_are_not_text_are_refused():
    with pytest.raises(DeploymentModelError) as err:
        expand_deployments([{"id": "a"}], templates={"database_name": ["x"]}, commander_user=["c"])
    assert "dataplane_database_name must be a string, got list" in str(err.value)
    assert "dataplane_commander_user must be a string, got list" in str(err.value)


@pytest.mark.parametrize("database", ["postgres", "rdsadmin", "cloudsqladmin", "azure_maintenance", "azure_sys",
                                      "template0"])
def test_system_and_maintenance_databases_are_refused(database):
    with pytest.raises(DeploymentModelError) as err:
        expand_deployments([{"id": "a", "database_name": database}])
    assert "database %r is a system database" % database in str(err.value)
