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
    """Never raises: every problem is a sentence of `problems`, and no request is built."""
    deps = [{"id": "a"}, {"id": "b"}, {"id": "c", "state": "absent"}]
    plan = f.failover_plan(deps, OPTIONS, "dp1", "dp2", "b")
    assert [r["name"] for r in plan["requests"]] == ["b"] and plan["problems"] == []
    unknown = f.failover_plan(deps, OPTIONS, "dp1", "dp2", ["bb", "zz"])
    assert unknown["requests"] == [] and unknown["problems"] == [
        "unknown Deployment ids selected in dataplane_failover_deployments: bb, zz. The ids of dataplane_deployments "
        "for this host are: a, b, c (did you mean b for bb?)."]
    assert f.failover_plan(deps, OPTIONS, "dp1", "dp2", ["a", "c"])["problems"] == [
        "Nothing to fail over: dataplane_deployments has no present Deployment among the selected ids a, c "
        "(selected ids must name present Deployments; absent ones: c)."]
    assert f.failover_plan([], OPTIONS, "dp1", "dp2")["problems"] == [
        "Nothing to fail over: dataplane_deployments has no present Deployment (selected ids must name "
        "present Deployments; absent ones: none)."]
    duplicate = f.failover_plan([{"id": "a"}, {"id": "a"}], OPTIONS, "dp1", "dp2")
    assert "duplicate id" in duplicate["problems"][0] and duplicate["requests"] == []
    assert "comma-separated" in f.failover_plan(deps, OPTIONS, "dp1", "dp2", {"a": 1})["problems"][0]


def test_plan_checks_the_request_with_planes_given():
    plan = f.failover_plan([{"id": "a"}], OPTIONS, "dp3", "dp2", planes=["dp1", "dp2"], mode="fast", drain_timeout=-5)
    assert plan["requests"] == [] and plan["problems"] == [
        "dataplane_failover_from is dp3, which is not one of dataplane_planes (dp1, dp2).",
        "dataplane_failover_mode is fast: use forced or controlled.",
        "dataplane_failover_drain_timeout is -5: a whole number of seconds, 0 or more."]
    ok = f.failover_plan([{"id": "a"}], OPTIONS, "dp1", "dp2", planes=["dp1", "dp2"], mode="forced", drain_timeout=60)
    assert ok["problems"] == [] and len(ok["requests"]) == 1


class HostVars(dict):
    def __getitem__(self, host):
        return dict.__getitem__(self, host)


def test_blockers_name_every_host_that_stops_the_fence():
    ok_plan = {"problems": [], "requests": [{"name": "a"}]}
    hostvars = HostVars(
        a={"_dataplane_failover": ok_plan, "_dataplane_failover_plan": {"changed": False, "deployments": []}},
        b={"_dataplane_failover": ok_plan, "_dataplane_failover_plan": {"failed": False, "msg": "preflight failed"}},
        c={"_dataplane_failover": {"problems": ["unknown Deployment ids selected"]}},
        d={"_dataplane_failover": ok_plan, "_dataplane_failover_plan": {"skipped": True}},
        e={"_dataplane_failover": ok_plan})
    assert f.failover_blockers(hostvars, ["a", "d", "e"]) == []
    assert f.failover_blockers(hostvars, ["a", "b", "c"]) == [
        "b: its preflight found problems", "c: the request was refused (unknown Deployment ids selected)"]


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
    message = f.failover_failure_message(result, "pg", "dp1", "dp2", several_hosts=True)
    lines = message.split("\n")
    assert lines[0] == ("Failover dp1 -> dp2 refused on pg: the preflight found problems and nothing was changed "
                        "(a failed preflight stops every server before its fence).")
    # one server: no word about the others
    assert f.failover_failure_message(result, "pg", "dp1", "dp2").split("\n", maxsplit=1)[0] == (
        "Failover dp1 -> dp2 refused on pg: the preflight found problems and nothing was changed.")
    assert lines[1:4] == ["- a:", "    - PUBLIC holds CONNECT", "    - parity: dp2 cannot use table t"]
    assert "Parity problems (a)" in lines[4] and "dataplane_failover_parity_policy=warn" in lines[4]
    assert len(lines) == 5
    result["preflight"][0]["problems"].pop()
    assert "dataplane_failover_parity_policy" not in f.failover_failure_message(result, "pg", "dp1", "dp2")


def test_failure_message_for_a_deployment_missing_on_the_server():
    """Provision it or leave it out, never the parity override."""
    result = {"failed": True, "msg": "fence preflight failed", "preflight": [
        {"name": "gone", "problems": ["database airflow_db_gone does not exist",
                                      "parity: the schema role airflow_db_gone_schema does not exist"]},
        {"name": "a", "problems": []}, {"name": "b", "problems": []}]}
    message = f.failover_failure_message(result, "pg", "dp1", "dp2")
    assert "dataplane_failover_parity_policy" not in message, message
    assert message.rsplit("\n", maxsplit=1)[-1] == (
        "Missing on the server: gone. Run dataplane.postgresql.provision to create it, or leave it out with "
        "dataplane_failover_deployments (for example -e dataplane_failover_deployments=a,b).")


def test_failure_message_for_a_failed_fence():
    result = {"failed": True, "msg": "lost the connection",
              "deployments": [fence_dep("a", verified=False, remaining_sessions=[{"pid": 1}])]}
    assert f.failover_failure_message(result, "pg", "dp1", "dp2").split("\n") == [
        "Failover dp1 -> dp2 failed on pg: lost the connection",
        "- a: revoked=True granted=True verified=False remaining sessions=1",
        "CONNECT was revoked from the source plane of a: rerun the same failover to finish it (a rerun completes "
        "an interrupted failover); do not start dp2 before a run says SAFE."]
    assert f.failover_failure_message({"failed": True}, "pg", "dp1", "dp2") == (
        "Failover dp1 -> dp2 failed on pg: the fence module failed\n"
        "Nothing was changed by this run as far as the fence module reported.")


# ---------------------------------------------------------------- the report

REPORT_KEYS = {"playbook", "host", "server", "from", "to", "mode", "drain_timeout", "check_mode", "changed", "run_id",
               "time_total_ms", "started_at", "finished_at", "verdict", "safe_to_start_destination", "refused",
               "failed", "problems", "verified", "deployments", "summary", "queries", "wal", "standbys",
               "standby_policy", "standby_problems", "commit_waits"}
DEPLOYMENT_KEYS = {"name", "database", "source_role", "destination_role", "changed", "revoked", "granted",
                   "destination_admitted", "sessions_terminated", "sessions", "sessions_drained",
                   "remaining_sessions", "time_to_fence_ms", "verified", "connect_still_via", "fence_before",
                   "fence_after", "state_before", "state_after"}


def test_report_of_a_fence():
    result = {"changed": True, "run_id": "r1", "time_total_ms": 40, "queries": ["REVOKE ..."],
              "deployments": [fence_dep("a", destination_admitted=True)]}
    out = report(result, started_at="2026-11-27T00:00:00Z")
    assert set(out) == REPORT_KEYS and set(out["deployments"][0]) == DEPLOYMENT_KEYS
    assert out["server"] == {"host": "db", "port": 5432, "user": "commander_user"}
    assert (out["playbook"], out["host"], out["from"], out["to"], out["mode"], out["drain_timeout"]) == (
        "failover", "pg", "dp1", "dp2", "forced", 60)
    assert out["changed"] is True and out["verified"] is True and out["check_mode"] is False
    assert out["safe_to_start_destination"] is True and not out["failed"] and not out["refused"]
    assert out["run_id"] == "r1" and out["time_total_ms"] == 40 and out["queries"] == ["REVOKE ..."]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", out["finished_at"])
    assert out["started_at"] == "2026-11-27T00:00:00Z"
    dep = out["deployments"][0]
    assert dep["sessions_terminated"] == 3 and len(dep["sessions"]) == 3 and dep["sessions_drained"] == 0
    assert dep["destination_admitted"] is True and dep["granted"] is True
    assert dep["fence_before"] is None
    assert dep["fence_after"] == {"fenced": ["dp1"], "admitted": ["dp2"], "phase": "complete", "generation": 1,
                                  "run": "r1", "by": "commander_user", "at": "2026-11-27T00:00:00Z"}
    assert dep["state_after"]["fenced"] == ["dp1_user_a"]
    assert out["summary"] == [
        "SAFE to start dp2 on pg: 1 of 1 Deployment fenced and verified (dp1 refused, 0 dp1 sessions, dp2 admitted); "
        "run r1",
        "dp1 -> dp2 on pg: forced mode, 1 Deployment, 40 ms in the fence",
        "a: dp1 fenced (3 sessions terminated; 12 ms), dp2 admitted; verified"]
    assert out["verdict"] == out["summary"][0]


WAL = {"revoke_lsn": "0/3000148", "final_lsn": "0/3000220", "timeline": 1, "system_identifier": "7312"}


def standby(name, source, state, gap, **extra):
    entry = {"name": name, "source": source, "flush_lsn": "0/3000000", "replay_lsn": "0/3000000", "gap_bytes": gap,
             "state": state, "sessions_terminated": None, "sessions_left": None, "problem": None, "queries": ["x"]}
    entry.update(extra)
    return entry


def test_report_carries_the_wal_position_and_each_standby():
    standbys = [standby("s1", "replication", "caught_up", 0, sync_state="async", slot="s1"),
                standby("s2", "listed", "caught_up", 0, host="10.0.0.2", port=5432, replayed=True,
                        sessions_terminated=3, sessions_left=0)]
    result = {"changed": True, "run_id": "r1", "time_total_ms": 40, "deployments": [fence_dep("a")], "wal": WAL,
              "standbys": standbys, "standby_policy": "require", "standby_problems": []}
    out = report(result)
    assert out["wal"] == WAL and out["safe_to_start_destination"] is True
    assert [s["name"] for s in out["standbys"]] == ["s1", "s2"] and "queries" not in out["standbys"][0]
    assert out["summary"][3:] == [
        "WAL: REVOKE at 0/3000148, final 0/3000220, timeline 1, system identifier 7312; 2 standbys",
        "    standby s1 (connected, async, slot s1): has the REVOKE (flushed 0/3000000)",
        "    standby s2 (listed, 10.0.0.2:5432): has the REVOKE (flushed 0/3000000), replayed; 3 dp1 sessions "
        "terminated, 0 left"]


def test_report_with_standby_policy_warn_is_safe_and_warns():
    lagging = standby("s1", "slot", "lagging", 328, slot="s1", active=False)
    problem = "standby s1 (replication slot, no standby connected): 328 bytes behind the REVOKE"
    result = {"changed": True, "run_id": "r1", "deployments": [fence_dep("a")], "wal": WAL, "standbys": [lagging],
              "standby_policy": "warn", "standby_problems": [problem]}
    out = report(result)
    assert out["safe_to_start_destination"] is True and out["standby_problems"] == [problem]
    assert out["summary"][-2:] == [
        "    standby s1 (replication slot, no standby connected): 328 bytes behind the REVOKE (flushed 0/3000000)",
        "WARNING (standby_policy=warn, the destination was admitted anyway): " + problem]


def test_report_lines_for_each_outcome():
    after_fencing = {"fenced": ["dp1_user_b", "stranger"], "admitted": [], "phase": "fencing", "generation": 2}
    result = {"changed": True, "deployments": [
        fence_dep("a", sessions_terminated=[{"pid": 1}], sessions_drained=[{"pid": 2}]),
        fence_dep("b", verified=False, remaining_sessions=[{"pid": 3}], connect_still_via=["PUBLIC"],
                  destination_admitted=False, granted=False,
                  state_before={"fenced": ["dp2_user_b"], "admitted": ["dp1_user_b"], "phase": "complete"},
                  state_after=after_fencing),
        fence_dep("c", changed=False, granted=False, sessions_terminated=[], time_to_fence_ms=None)]}
    out = report(result, ids=("a", "b", "c"))
    assert out["run_id"] == "r-first-host" and out["verified"] is False
    assert out["safe_to_start_destination"] is False and out["failed"] is True and not out["refused"]
    assert out["summary"] == [
        "NOT SAFE to start dp2 on pg: 2 of 3 Deployments fenced and verified, 1 dp1 session left (1 problem below); "
        "run r-first-host",
        "dp1 -> dp2 on pg: forced mode, 3 Deployments, ? ms in the fence",
        "a: dp1 fenced (1 session terminated; 12 ms), dp2 admitted; verified",
        "b: NOT VERIFIED (see the problems below)",
        "c: already failed over (dp1 fenced, dp2 admitted), nothing to do; verified",
        "PROBLEMS on pg: do not start dp2 before a run says SAFE",
        "- b: NOT VERIFIED: 1 session of dp1_user_b remains; dp1_user_b can still connect via PUBLIC; "
        "dp2_user_b is not admitted."]
    assert out["deployments"][1]["fence_after"]["fenced"] == ["dp1", "stranger"]


def test_report_in_controlled_mode_says_whether_the_drain_ran_out():
    result = {"changed": True, "deployments": [
        fence_dep("a", sessions_terminated=[{"pid": 1}], sessions_drained=[{"pid": 2}], time_to_fence_ms=3008),
        fence_dep("b", sessions_terminated=[], sessions_drained=[{"pid": 3}, {"pid": 4}], time_to_fence_ms=200)]}
    out = f.failover_report(result, model("a", "b"), "pg", "dp1", "dp2", "controlled", 3)
    assert out["summary"][2:] == [
        "a: dp1 fenced (1 session ended on its own; the 3 s drain ran out: 1 session terminated; 3008 ms), dp2 "
        "admitted; verified",
        "b: dp1 fenced (2 sessions ended on their own within the 3 s drain, none terminated; 200 ms), dp2 admitted; "
        "verified"]


def test_report_in_check_mode():
    sessions = [{"pid": 11, "role": "dp1_user_a", "application": "airflow scheduler", "client_addr": "10.0.0.7"},
                {"pid": 12, "role": "dp1_user_a", "application": None, "client_addr": None}]
    result = {"changed": True, "time_total_ms": 5, "deployments": [
        fence_dep("a", sessions_terminated=sessions, granted=True, verified=None, destination_admitted=False),
        fence_dep("b", changed=False, granted=False, verified=None, sessions_terminated=[],
                  destination_admitted=True)]}
    out = report(result, ids=("a", "b"), check_mode=True)
    assert out["check_mode"] is True and out["safe_to_start_destination"] is False and not out["failed"]
    assert out["summary"] == [
        "CHECK MODE, nothing changed. NOT SAFE yet to start dp2 on pg: the failover would fence 1 of 2 Deployments "
        "(2 dp1 sessions to terminate) and admit dp2; run r-first-host",
        "dp1 -> dp2 on pg: forced mode, 2 Deployments, 5 ms in the fence (check mode, nothing changed)",
        "a: would fence dp1 (revoke CONNECT from dp1_user_a, terminate 2 sessions) and admit dp2_user_a",
        "    would terminate pid 11, application 'airflow scheduler', client 10.0.0.7",
        "    would terminate pid 12, application '', client local socket",
        "b: already failed over (dp1 fenced, dp2 admitted), nothing to do"]
    assert [d["destination_admitted"] for d in out["deployments"]] == [False, True]
    assert out["deployments"][0]["sessions"] == sessions
    # nothing to do anywhere: it is safe now
    done = report({"deployments": [fence_dep("b", changed=False, granted=False, verified=None,
                                             sessions_terminated=[])]}, ids=("b",), check_mode=True)
    assert done["safe_to_start_destination"] is True
    assert done["verdict"].startswith("CHECK MODE, nothing changed. SAFE to start dp2 on pg: 1 of 1 Deployment "
                                      "already fenced")


def test_report_of_a_refused_run():
    plan = {"problems": ["dataplane_failover_from and dataplane_failover_to are both dp1: a failover goes from "
                         "one plane to another."], "requests": []}
    out = f.failover_report({"skipped": True, "changed": False}, [], "pg", "dp1", "dp1", "forced", 60, plan=plan,
                            run_id="r9")
    assert out["refused"] and out["failed"] and out["safe_to_start_destination"] is False
    assert out["summary"] == [
        "NOT SAFE to start dp1 on pg: the failover was refused, nothing was changed (see the problems below); run r9",
        "PROBLEMS on pg: do not start dp1 before a run says SAFE",
        plan["problems"][0]]
    assert out["problems"] == plan["problems"] and out["deployments"] == []
    other = f.failover_report({"skipped": True}, model("a"), "a", "dp1", "dp2", "forced", 60,
                              plan={"problems": [], "requests": [{"name": "a"}]},
                              blockers=["b: its preflight found problems"])
    assert other["refused"] and other["problems"] == [
        "Refused on a, nothing was changed: no server fences when another cannot (b: its preflight found problems)."]
    preflight = {"failed": True, "msg": "fence preflight failed", "preflight": [{"name": "a", "problems": ["x"]}]}
    own = f.failover_report({"skipped": True}, model("a"), "a", "dp1", "dp2", "forced", 60,
                            plan={"problems": [], "requests": [{"name": "a"}]}, blockers=["a: its preflight found problems"],
                            preflight=preflight)
    assert own["refused"] and own["problems"][0].startswith("Failover dp1 -> dp2 refused on a: the preflight")


def test_report_of_a_failed_fence():
    result = {"failed": True, "msg": "fence preflight failed, nothing was changed:\nDeployment a: x",
              "preflight": [{"name": "a", "problems": ["x"]}], "deployments": [fence_dep("a", changed=False)]}
    out = report(result)
    assert out["refused"] and out["failed"] and out["deployments"] == []
    assert out["verdict"].startswith("NOT SAFE to start dp2 on pg: the failover was refused, nothing was changed")


def test_report_of_an_empty_result():
    out = f.failover_report({}, [], "pg", "dp1", "dp2", "controlled", "30")
    assert out["deployments"] == [] and out["verified"] is False and out["drain_timeout"] == 30
    assert out["safe_to_start_destination"] is False
    assert out["server"] == {"host": None, "port": None, "user": None} and out["run_id"] is None
