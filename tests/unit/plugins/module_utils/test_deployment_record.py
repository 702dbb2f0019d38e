"""The one Deployment record: argument spec, validator, field checks, refusal and result exit."""

import yaml

from ansible_collections.dataplane.postgresql.plugins.doc_fragments.deployment_record import ModuleDocFragment
from ansible_collections.dataplane.postgresql.plugins.module_utils.model import deployment as dep
from ansible_collections.dataplane.postgresql.plugins.module_utils.provision import plan as prov
from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import sql


def record(dep_id="a", **extra):
    [out] = dep.expand_deployments([{"id": dep_id, "passwords": {"dp1": "s1"}}])
    out.update(extra)
    return out


def test_the_doc_fragment_documents_exactly_the_spec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]["deployments"]["suboptions"]
    spec = dep.records_argument_spec()["options"]
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
        assert bool(documented[name].get("required")) == bool(option.get("required")), name
    assert spec["passwords"]["no_log"] is True


def test_filter_records_pass_the_module_validator():
    records = dep.expand_deployments([{"id": "a"}, {"id": "b", "state": "absent"}])
    assert dep.record_problems(records) == []


def test_missing_names_are_reported_with_every_other_problem():
    problems = dep.record_problems([record("a", owner_role="pg_owner"), {"id": "b"}])
    assert problems[0].startswith("deployments[0] (id 'a'): owner role name 'pg_owner' starts with 'pg_'")
    assert problems[1] == ("deployments[1]: missing database, owner_role, killer_role, login_roles "
                           "(pass the records of the deployment_model filter)")


def test_model_rules_apply_to_module_input_too():
    text = "\n".join(dep.record_problems([
        record("c", schema_role="dp1_user_c"),
        record("d", airflow_schema="pg_catalog"),
        record("e", state="gone")]))
    assert "deployments[0] (id 'c'): role name 'dp1_user_c' is used twice in this Deployment" in text
    assert "deployments[1] (id 'd'): airflow schema name 'pg_catalog' starts with 'pg_'" in text
    assert "deployments[2] (id 'e'): state must be present or absent, got 'gone'" in text


def test_system_database_and_commander_role_are_left_to_the_server_checks_of_the_modules():
    records = [record("a", database="postgres"), record("b", commander_user="airflow_db_b_owner")]
    assert dep.record_problems(records) == []  # role_checks names them against the server
    text = "\n".join(dep.model_problems(records, lambda i, rec: "item %d" % i))
    assert "item 0: database 'postgres' is a system database" in text
    assert "item 1: commander_user 'airflow_db_b_owner' collides with a Deployment role" in text


def test_name_problems_for_other_request_shapes():
    assert dep.name_problems([("database", "db", "database"), ("role", "r", "source_role"),
                              ("role", None, "killer_role")]) == []
    problems = dep.name_problems([("database", "x" * 64, "database"), ("role", "pg_signal_backend", "killer_role"),
                                  ("schema", "pg_x", "helper schema"), ("identifier", "", "helper_schema")])
    assert len(problems) == 4
    assert "truncate" in problems[0] and "killer_role 'pg_signal_backend'" in problems[1]
    assert "system schemas" in problems[2] and "helper_schema must not be empty" == problems[3]


class FakeModule(object):
    def __init__(self, secrets, inject=False):
        self.no_log_values = set(secrets)
        self._inject_invocation = inject
        self.exited = None
        self.failed = None

    def exit_json(self, **result):
        self.exited = (set(self.no_log_values), result)

    def fail_json(self, **result):
        self.failed = result


def test_exit_keeps_masking_every_secret_that_occurs_in_the_result():
    module = FakeModule(["pw-one", "pw-two", "7"])
    dep.exit_json(module, summary=["a: unchanged", "x pw-two y"], count=17, nested={"k": [b"z"]})
    secrets, result = module.exited
    assert secrets == set(["pw-two", "7"])  # 17 contains 7: Ansible masks it, so it stays
    assert result["summary"][1] == "x pw-two y"  # masking itself is Ansible's, in exit_json


def test_exit_with_the_arguments_in_the_result_keeps_every_secret():
    module = FakeModule(["pw-one", "pw-two"], inject=True)
    dep.exit_json(module, summary=[])
    assert module.exited[0] == set(["pw-one", "pw-two"])


def test_refusal_uses_the_shared_format():
    module = FakeModule([])
    dep.refuse_records(module, ["deployments[0] (id 'a'): duplicate id"])
    assert module.failed["msg"] == ("Deployment records refused, nothing was changed: "
                                    "deployments[0] (id 'a'): duplicate id.")
    assert module.failed["queries"] == [] and module.failed["changed"] is False


def test_typed_actions_name_their_fields_and_quote_every_name():
    evil = 'x"; DROP ROLE postgres; --'
    action = prov.GrantConnect("db", evil)
    assert action.kind == "grant_connect" and action.database == "db" and action.grantee == evil
    assert tuple(action) == ("grant_connect", "db", evil)  # read by position in role_checks
    composed, secret = action.statement()
    assert secret is None
    assert [part.strings for part in composed.seq if isinstance(part, sql.Identifier)] == [("db",), (evil,)]
    create = prov.CreateRole("r", {"login": True, "inherit": True}, "SCRAM-SHA-256$x")
    composed, secret = create.statement()
    assert secret == "SCRAM-SHA-256$x"
    assert prov.RevokeConnect("db", prov.PUBLIC).subject == "PUBLIC"
    assert prov.AlterDatabaseOwner("db", "o").subject == "o"
    assert prov.change_phrases([prov.DropRole("k"), prov.DropRole("o"), prov.GrantConnect("db", "l")], 2) == [
        "roles k, o dropped", "CONNECT granted to l", "2 membership statements"]


def test_change_phrases_name_the_schema_role_apart_from_the_memberships():
    assert prov.change_phrases([prov.GrantConnect("db", "l")], 4, "airflow_db_a_schema", 5) == [
        "CONNECT granted to l", "4 membership statements", "schema role airflow_db_a_schema: 5 statements"]
    assert prov.change_phrases([], 0, "s", 1) == ["schema role s: 1 statement"]


def test_statement_head_never_cuts_a_quoted_string():
    from ansible_collections.dataplane.postgresql.plugins.module_utils.provision.run import statement_head
    assert statement_head("GRANT x TO y\nmore") == "GRANT x TO y"
    long = "COMMENT ON FUNCTION dataplane_fence.terminate_member_sessions(name) IS '" + "word " * 60 + "'"
    head = statement_head(long)
    assert head == "COMMENT ON FUNCTION dataplane_fence.terminate_member_sessions(name) IS ... (%d characters in all)" \
        % len(long), head
    assert head.count("'") % 2 == 0
