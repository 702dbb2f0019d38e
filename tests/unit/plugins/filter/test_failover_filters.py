"""The failover role's filters (plugins/filter/failover_report.py): request check, plan, report."""

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dataplane.postgresql.plugins.filter import failover_report as f

OPTIONS = dict(planes=["dp1", "dp2"], commander_user="commander_user", object_privileges=True,
               airflow_schema="public")


def fence_dep(name, **extra):
    """A fence module result entry for Deployment NAME (dp1 -> dp2, 3 sessions terminated)."""
    dep = {"name": name, "database": "airflow_db_" + name, "source_role": "dp1_user_" + name,
           "destination_role": "dp2_user_" + name, "changed": True, "revoked": True, "granted": True,
           "sessions_terminated": [{"pid": n, "role": "dp1_user_" + name} for n in range(3)],
           "sessions_drained": [], "remaining_sessions": [], "time_to_fence_ms": 12, "verified": True,
           "connect_still_via": [],
           "state_before": None,
           "state_after": {"fenced": ["dp1_user_" + name], "admitted": ["dp2_user_" + name], "phase": "complete",
                           "generation": 1, "run": "r1", "by": "commander_user", "at": "2026-11-27T00:00:00Z"}}
    dep.update(extra)
    return dep


def model(*ids):
    return f.failover_plan([{"id": i} for i in ids], OPTIONS, "dp1", "dp2")["model"]


def report(result, ids=("a",), check_mode=False, **kw):
    return f.failover_report(result, model(*ids), "pg", "dp1", "dp2", "forced", 60, check_mode=check_mode,
                             run_id="r-first-host", server={"host": "db", "port": "5432", "user": "commander_user"},
                             **kw)


# ---------------------------------------------------------------- the request

def test_request_problems_none_for_a_valid_request():
    assert f.failover_request_problems(["dp1", "dp2"], "dp1", "dp2", "forced", 60) == []
    assert f.failover_request_problems(["dp1", "dp2"], "dp2", "dp1", "controlled", "0") == []


def test_request_problems_one_sentence_per_failed_condition():
    problems = f.failover_request_problems(["dp1", "dp2"], "dp3", "dp2", "fast", "-5")
    assert problems == [
        "dataplane_failover_from is dp3, which is not one of dataplane_planes (dp1, dp2).",
        "dataplane_failover_mode is fast: use forced or controlled.",
        "dataplane_failover_drain_timeout is -5: a whole number of seconds, 0 or more.",
    ]
    assert f.failover_request_problems(["dp1", "dp2"], "dp1", "dp1", "forced", 1) == [
        "dataplane_failover_from and dataplane_failover_to are both dp1: a failover goes from one plane to another."]
    assert f.failover_request_problems(["dp1", "dp2"], "dp1", "dp9", "forced", 1) == [
        "dataplane_failover_to is dp9, which is not one of dataplane_planes (dp1, dp2)."]


def test_selection_accepts_lists_and_comma_separated_strings():
    assert f.failover_selection(None) is None
    assert f.failover_selection("a, b,,c ") == ["a", "b", "c"]
    assert f.failover_selection(["x", 7, " "]) == ["x", "7"]
    with pytest.raises(AnsibleFilterError, match="list of ids"):
        f.failover_selection({"a": 1})


class NoPasswords(dict):
    """A Deployment item whose passwords must never be read."""

    def __getitem__(self, key):
        assert key != "passwords", "the passwords were read"
        return dict.__getitem__(self, key)

    def items(self):
        raise AssertionError("items() reads every value, passwords included")

    def values(self):
        raise AssertionError("values() reads every value, passwords included")


def test_without_passwords_never_reads_them():
    item = NoPasswords(id="a", database_name="db_a", passwords="{{ undefined_vault_var }}")
    assert f.without_passwords([item, "not a mapping"]) == [{"id": "a", "database_name": "db_a"}, "not a mapping"]
    assert f.without_passwords("a string") == "a string"  # for the model to refuse


def test_plan_builds_one_request_per_present_deployment():
    plan = f.failover_plan([{"id": "a", "passwords": {"dp1": "x"}}, {"id": "b", "state": "absent"},
                            {"id": "c", "killer_role_name": "killer_c"}], OPTIONS, "dp1", "dp2")
    assert plan["selected"] is None
    assert plan["requests"] == [
        {"name": "a", "database": "airflow_db_a", "source_role": "dp1_user_a", "destination_role": "dp2_user_a",
         "killer_role": "airflow_conn_killer_a", "schema_role": "airflow_db_a_schema"},
        {"name": "c", "database": "airflow_db_c", "source_role": "dp1_user_c", "destination_role": "dp2_user_c",
         "killer_role": "killer_c", "schema_role": "airflow_db_c_schema"},
    ]
    assert [d["id"] for d in plan["model"]] == ["a", "b", "c"]
    assert all("passwords" not in d or not d["passwords"] for d in plan["model"])
    back = f.failover_plan([{"id": "a"}], dict(OPTIONS, object_privileges=False), "dp2", "dp1")
    assert back["requests"][0]["source_role"] == "dp2_user_a" and back["requests"][0]["schema_role"] is None


def test_plan_selection_and_its_errors():
    deps = [{"id": "a"}, {"id": "b"}, {"id": "c", "state": "absent"}]
    assert [r["name"] for r in f.failover_plan(deps, OPTIONS, "dp1", "dp2", "b")["requests"]] == ["b"]
    with pytest.raises(AnsibleFilterError, match="unknown Deployment ids selected"):
        f.failover_plan(deps, OPTIONS, "dp1", "dp2", ["zz"])
    with pytest.raises(AnsibleFilterError, match=re.escape(
            "Nothing to fail over: dataplane_deployments has no present Deployment among the selected ids a, c "
            "(selected ids must name present Deployments; absent ones: c).")):
        f.failover_plan(deps, OPTIONS, "dp1", "dp2", ["a", "c"])
    with pytest.raises(AnsibleFilterError, match=re.escape(
            "Nothing to fail over: dataplane_deployments has no present Deployment (selected ids must name "
            "present Deployments; absent ones: none).")):
        f.failover_plan([], OPTIONS, "dp1", "dp2")
    with pytest.raises(AnsibleFilterError, match="duplicate id"):
        f.failover_plan([{"id": "a"}, {"id": "a"}], OPTIONS, "dp1", "dp2")


# ---------------------------------------------------------------- the fence calls

def test_expected_generations_from_a_check_mode_result():
    preflight = {"deployments": [fence_dep("a", state_before={"generation": 4}), fence_dep("b")]}
    assert f.failover_expected_generations(preflight) == {"airflow_db_a": 4, "airflow_db_b": None}
    assert f.failover_expected_generations({"skipped": True}) == {}
    assert f.failover_expected_generations(None) == {}


def test_failure_message_for_a_refused_preflight():
    result = {"failed": True, "msg": "fence preflight failed", "preflight": [
        {"name": "a", "problems": ["PUBLIC holds CONNECT", "parity: dp2 cannot use table t"]},
        {"name": "b", "problems": []}]}
    message = f.failover_failure_message(result, "pg", "dp1", "dp2")
    lines = message.split("\n")
    assert lines[0] == ("Failover dp1 -> dp2 refused on pg: the preflight found problems and nothing was changed "
                        "(a failed preflight stops every server before its fence).")
    assert lines[1:5] == ["- a:", "    - PUBLIC holds CONNECT", "    - parity: dp2 cannot use table t", "- b:"]
    assert "dataplane_failover_ignore_parity=true" in lines[5] and len(lines) == 6
    result["preflight"][0]["problems"].pop()
    assert "dataplane_failover_ignore_parity" not in f.failover_failure_message(result, "pg", "dp1", "dp2")


def test_failure_message_for_a_failed_fence():
    result = {"failed": True, "msg": "lost the connection",
              "deployments": [fence_dep("a", verified=False, remaining_sessions=[{"pid": 1}])]}
    assert f.failover_failure_message(result, "pg", "dp1", "dp2") == (
        "Failover dp1 -> dp2 failed on pg: lost the connection\n"
        "- a: revoked=True granted=True verified=False remaining sessions=1")
    assert f.failover_failure_message({"failed": True}, "pg", "dp1", "dp2") == (
        "Failover dp1 -> dp2 failed on pg: the fence module failed")


# ---------------------------------------------------------------- the report

REPORT_KEYS = {"playbook", "host", "server", "from", "to", "mode", "drain_timeout", "check_mode", "changed", "run_id",
               "time_total_ms", "finished_at", "verified", "deployments", "summary", "queries"}
DEPLOYMENT_KEYS = {"name", "database", "source_role", "destination_role", "changed", "revoked", "granted",
                   "sessions_terminated", "sessions", "sessions_drained", "remaining_sessions", "time_to_fence_ms",
                   "verified", "connect_still_via", "fence_before", "fence_after", "state_before", "state_after"}


def test_report_of_a_fence():
    result = {"changed": True, "run_id": "r1", "time_total_ms": 40, "queries": ["REVOKE ..."],
              "deployments": [fence_dep("a")]}
    out = report(result)
    assert set(out) == REPORT_KEYS and set(out["deployments"][0]) == DEPLOYMENT_KEYS
    assert out["server"] == {"host": "db", "port": 5432, "user": "commander_user"}
    assert (out["playbook"], out["host"], out["from"], out["to"], out["mode"], out["drain_timeout"]) == (
        "failover", "pg", "dp1", "dp2", "forced", 60)
    assert out["changed"] is True and out["verified"] is True and out["check_mode"] is False
    assert out["run_id"] == "r1" and out["time_total_ms"] == 40 and out["queries"] == ["REVOKE ..."]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", out["finished_at"])
    dep = out["deployments"][0]
    assert dep["sessions_terminated"] == 3 and len(dep["sessions"]) == 3 and dep["sessions_drained"] == 0
    assert dep["fence_before"] is None
    assert dep["fence_after"] == {"fenced": ["dp1"], "admitted": ["dp2"], "phase": "complete", "generation": 1,
                                  "run": "r1", "by": "commander_user", "at": "2026-11-27T00:00:00Z"}
    assert dep["state_after"]["fenced"] == ["dp1_user_a"]
    assert out["summary"] == [
        "dp1 -> dp2 on pg (forced mode, 1 Deployment, 40 ms in total)",
        "a: dp1_user_a fenced, dp2_user_a admitted on airflow_db_a: 3 sessions terminated, fenced in 12 ms; "
        "verified | state no fence recorded -> fenced: dp1, admitted: dp2"]


def test_report_lines_for_each_outcome():
    after_fencing = {"fenced": ["dp1_user_b", "stranger"], "admitted": [], "phase": "fencing", "generation": 2}
    result = {"changed": True, "deployments": [
        fence_dep("a", sessions_terminated=[{"pid": 1}], sessions_drained=[{"pid": 2}]),
        fence_dep("b", verified=False, remaining_sessions=[{"pid": 3}], connect_still_via=["PUBLIC"],
                  state_before={"fenced": ["dp2_user_b"], "admitted": ["dp1_user_b"], "phase": "complete"},
                  state_after=after_fencing),
        fence_dep("c", changed=False, sessions_terminated=[], time_to_fence_ms=None)]}
    out = report(result, ids=("a", "b", "c"))
    assert out["summary"][0] == "dp1 -> dp2 on pg (forced mode, 3 Deployments, ? ms in total)"
    assert out["run_id"] == "r-first-host" and out["verified"] is False
    assert out["summary"][1].startswith(
        "a: dp1_user_a fenced, dp2_user_a admitted on airflow_db_a: 1 session ended on their own, "
        "1 session terminated, fenced in 12 ms; verified | ")
    assert out["summary"][2] == (
        "b: dp1_user_b fenced, dp2_user_b admitted on airflow_db_b: 3 sessions terminated, fenced in 12 ms; "
        "NOT VERIFIED (remaining sessions: 1; source can still connect via: PUBLIC) | state fenced: dp2, "
        "admitted: dp1 -> fenced: dp1, stranger, admitted: none (fencing)")
    assert out["summary"][3].startswith("c: dp1_user_c fenced, dp2_user_c admitted on airflow_db_c: "
                                        "already failed over, nothing to do; verified | ")
    assert out["deployments"][1]["fence_after"]["fenced"] == ["dp1", "stranger"]


def test_report_in_check_mode():
    result = {"changed": True, "time_total_ms": 5, "deployments": [fence_dep("a"), fence_dep("b", changed=False)]}
    out = report(result, ids=("a", "b"), check_mode=True)
    assert out["check_mode"] is True
    assert out["summary"][1].split(" | ")[0].endswith(
        "would revoke CONNECT from dp1_user_a, terminate 3 sessions and admit dp2_user_a; check mode, nothing changed")
    assert "already failed over, nothing to do; check mode, nothing changed" in out["summary"][2]


def test_report_of_an_empty_result():
    out = f.failover_report({}, [], "pg", "dp1", "dp2", "controlled", "30")
    assert out["deployments"] == [] and out["verified"] is True and out["drain_timeout"] == 30
    assert out["summary"] == ["dp1 -> dp2 on pg (controlled mode, 0 Deployments, ? ms in total)"]
    assert out["server"] == {"host": None, "port": None, "user": None} and out["run_id"] is None
