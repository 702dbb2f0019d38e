"""Pure logic of the fence module and the helper's input checks (no server)."""

from ansible_collections.dataplane.postgresql.plugins.module_utils.fence.plan import (
    fence_request_problems,
    option_problems,
    deployment_result,
    failure_summary,
    preflight_verdict,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.server.helper import (
    FUNCTION_BODY,
    HELPER_VERSION,
    helper_problems,
    takes_null_killer,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.server.sessions import helper_one_call


def dep(name="a", **kw):
    base = dict(name=name, database="airflow_db_" + name, source_role="dp1_user_" + name,
                destination_role="dp2_user_" + name, killer_role="airflow_conn_killer_" + name)
    base.update(kw)
    return base


def row(**kw):
    base = dict(db_exists=True, src_exists=True, dst_exists=True, src_super=False, src_owner_member=False,
                can_acl=True, other_connect=[], owner="airflow_db_a_owner")
    base.update(kw)
    return base


def test_valid_deployments_have_no_problems():
    assert fence_request_problems([dep("a"), dep("b"), dep("c", killer_role=None)]) == []


def test_every_problem_names_its_deployment():
    problems = fence_request_problems([dep("a", database="x" * 64), dep("b", source_role="pg_evil"),
                                       dep("a"), dep("d", destination_role="dp1_user_d"), dep("e", killer_role="public")])
    assert any(p.startswith("Deployment a: database") and "truncate" in p for p in problems)
    assert any(p.startswith("Deployment b:") and "pg_" in p for p in problems)
    assert any(p.startswith("Deployment a:") and "more than one" in p for p in problems)
    assert any(p.startswith("Deployment d:") and "same role" in p for p in problems)
    assert any(p.startswith("Deployment e:") and "reserved" in p for p in problems)
    assert fence_request_problems([]) == ["deployments must not be empty"]
    assert fence_request_problems([dep("a", source_role="nul\x00")])[0].startswith("Deployment a: source_role")


def test_preflight_verdicts():
    ok_route = {"route": "helper", "problem": None}
    assert preflight_verdict(dep(), row(), ok_route, "commander_user") == []
    missing = preflight_verdict(dep(), row(db_exists=False, dst_exists=False), ok_route, "c")
    assert missing == ["database airflow_db_a does not exist", "destination role dp2_user_a does not exist"]
    found = preflight_verdict(dep(), row(can_acl=False, src_super=True, src_owner_member=True,
                                         other_connect=["PUBLIC (CONNECT granted to PUBLIC by o)"]),
                              {"route": None, "problem": "killer role k does not exist"}, "commander_user")
    text = " | ".join(found)
    assert "GRANT airflow_db_a_owner TO commander_user" in text
    assert "superuser" in text and "member of the owner role" in text
    assert "through: PUBLIC" in text and "killer role k does not exist" in text


def test_failure_summary_says_why():
    good = dict(deployment_result(dep("a")), verified=True)
    bad = dict(deployment_result(dep("b")), connect_still_via=["PUBLIC (CONNECT granted to PUBLIC by o)"],
               remaining_sessions=[{"pid": 42}])
    lines = failure_summary([good, bad])
    assert lines == ["Deployment b: dp1_user_b can still connect to airflow_db_b through: PUBLIC (CONNECT granted "
                     "to PUBLIC by o); 1 session(s) of dp1_user_b remain (pids 42)"]
    dest = dict(deployment_result(dep("c")), destination_connect=False)
    assert "destination role dp2_user_c does not hold CONNECT" in failure_summary([dest])[0]


def test_helper_inputs_and_body_invariants():
    assert helper_problems("dataplane_fence", "dataplane_fence_signaler", ["k1"]) == []
    problems = helper_problems("pg_fence", "pg_signal_backend", ["k" * 64, "owner"])
    assert len(problems) == 3
    assert helper_problems("s", "o", ["o"]) == ["the helper owner role 'o' must not be one of the killer roles"]
    # every relation and function the body names is schema-qualified; no filter on columns
    # that read NULL for rows the owner cannot see
    for name in ("pg_stat_activity", "pg_auth_members", "pg_roles", "pg_terminate_backend", "pg_has_role",
                 "pg_backend_pid"):
        assert FUNCTION_BODY.count(name) == FUNCTION_BODY.count("pg_catalog." + name), name
    assert "backend_type" not in FUNCTION_BODY and "state" not in FUNCTION_BODY.replace("pg_stat", "")
    assert "SESSION_USER" in FUNCTION_BODY and "rolsuper" in FUNCTION_BODY
    assert HELPER_VERSION


def test_one_helper_call_from_version_4_on():
    """The fence and terminate_sessions call a helper of version 5 or later once for every killer
    role (p_killer NULL), an older or unreadable one once per killer role."""
    assert takes_null_killer(HELPER_VERSION)
    assert [takes_null_killer(v) for v in ("5", "6", 5, "4", "3", "2", "1", "0", None, "", "x")] == \
        [True, True, True, False, False, False, False, False, False, False, False]
    helper = dict(route="helper", helper_version="5")
    assert helper_one_call([helper, dict(route="direct"), helper])
    assert not helper_one_call([helper, dict(route="helper", helper_version="4")])
    assert not helper_one_call([dict(route="direct")]) and not helper_one_call([])


# --- fence state planning (issue 16) -------------------------------------------------------------

from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record as _fs  # noqa: E402
from ansible_collections.dataplane.postgresql.plugins.module_utils.fence.plan import (  # noqa: E402
    fenced_roles,
    is_complete_for,
    planned_records,
    record_problem,
    run_id_problem,
    state_change_message,
    state_key,
)


def _rec(fenced, admitted, phase="complete", generation=2, run="r1"):
    rec = _fs.new_record(None, fenced, admitted, phase, run, "commander_user", "2026-11-27T17:00:00.000Z", "x")
    rec["generation"] = generation
    return rec


def _comment(rec):
    return _fs.render_comment("a note", rec)


def test_one_database_per_deployment():
    problems = fence_request_problems([dep("a"), dep("b", database="airflow_db_a")])
    assert any(p.startswith("Deployment b:") and "more than one Deployment" in p for p in problems)


def test_run_id_checks():
    assert run_id_problem("awx-41") is None
    assert "empty" in run_id_problem(" ")
    assert "control" in run_id_problem("a\nb")
    assert "at most" in run_id_problem("x" * 201)


def test_planned_records_fence_first_then_admit():
    d = dep("a")
    before = _rec(["dp2_user_a"], ["dp1_user_a"], generation=4)
    fencing, complete = planned_records(before, d, fenced_roles(before, d), "r2", "commander_user", "t", "app")
    assert fencing["fenced"] == ["dp1_user_a"] and fencing["admitted"] == [] and fencing["phase"] == "fencing"
    assert complete["admitted"] == ["dp2_user_a"] and complete["phase"] == "complete"
    assert (fencing["generation"], complete["generation"]) == (5, 6)
    assert is_complete_for(complete, d) and not is_complete_for(fencing, d) and not is_complete_for(before, d)
    assert not is_complete_for(None, d)


def test_fenced_list_keeps_only_other_roles_that_are_still_fenced():
    d = dep("a")
    before = _rec(["dp1_user_a", "dp3_user_a", "dp4_user_a"], ["dp2_user_a"])
    assert fenced_roles(before, d, still_fenced=["dp3_user_a"]) == ["dp1_user_a", "dp3_user_a"]
    back = dep("a", source_role="dp2_user_a", destination_role="dp1_user_a")
    assert fenced_roles(before, back, still_fenced=["dp1_user_a"]) == ["dp2_user_a"]  # the destination never


def test_state_key_and_change_message_name_the_other_run():
    d = dep("a")
    old = _comment(_rec(["dp1_user_a"], ["dp2_user_a"], generation=2, run="first"))
    new = _comment(_rec(["dp2_user_a"], ["dp1_user_a"], generation=4, run="other-run"))
    assert state_key(None) is None and state_key("plain") is None
    assert state_key(old) == ("generation", 2) and state_key(old) != state_key(new)
    assert state_key(_fs.RECORD_PREFIX + "{bad")[0] == "damaged"
    msg = state_change_message(d, old, new)
    assert "other-run" in msg and "commander_user" in msg and "2026-11-27T17:00:00.000Z" in msg
    assert "fenced: dp2_user_a; admitted: dp1_user_a" in msg and "dp1_user_a -> dp2_user_a" in msg
    assert "Deployment a" in msg and "no fence recorded" in state_change_message(d, None, new)


def test_a_damaged_record_is_a_problem():
    assert record_problem(dep("a"), None) is None
    assert record_problem(dep("a"), _comment(_rec(["x"], ["y"]))) is None
    problem = record_problem(dep("a"), _fs.RECORD_PREFIX + "{bad")
    assert "not valid JSON" in problem and "airflow_db_a" in problem


def test_expected_generations_are_checked():
    from ansible_collections.dataplane.postgresql.plugins.module_utils.fence.plan import (
        expected_generation_problems,
        expected_key,
    )
    deps = [dep("a"), dep("b")]
    problems, out = expected_generation_problems({"airflow_db_a": 4, "airflow_db_b": None}, deps)
    assert problems == [] and out == {"airflow_db_a": 4, "airflow_db_b": None}
    assert expected_generation_problems({"airflow_db_a": "4"}, deps)[1] == {"airflow_db_a": 4}
    for bad in (0, -1, "x", True, 2.5):
        assert "positive integer" in expected_generation_problems({"airflow_db_a": bad}, deps)[0][0]
    assert "not the database" in expected_generation_problems({"other": 1}, deps)[0][0]
    assert expected_key(None) is None and expected_key(3) == ("generation", 3)


def fence_params(**kw):
    base = dict(deployments=[dep("a"), dep("b")], run_id="run-1", expected_generations=None,
                helper_schema="dataplane_fence", drain_timeout=60.0, wait_timeout=10.0, lock_timeout=120.0)
    base.update(kw)
    return base


def test_option_problems_accepts_a_plain_request():
    assert option_problems(fence_params()) == ([], {})


def test_option_problems_names_every_problem_in_order():
    problems, expected = option_problems(fence_params(
        deployments=[dep("a", schema_role="pg_bad"), dep("b")], run_id="x\ny", helper_schema="s" * 64,
        wait_timeout=-1.0, expected_generations={"airflow_db_a": 3, "nowhere": 1}))
    assert problems[0].startswith("run_id must not contain control characters")
    assert problems[1].startswith("expected_generations: nowhere is not the database")
    assert problems[2].startswith("Deployment a: schema_role")
    assert problems[3].startswith("helper_schema")
    assert problems[4] == "wait_timeout must not be negative"
    assert len(problems) == 5
    assert expected == {"airflow_db_a": 3}


def test_fence_requests_need_no_airflow_naming():
    """Any database and role names make a valid fence request."""
    request = dict(name="billing", database="ledger", source_role="app_blue", destination_role="app_green",
                   killer_role="ops_terminator")
    assert fence_request_problems([request]) == []
