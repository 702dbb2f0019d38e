"""The provision and audit report filters (plugins/filter/provision_report.py, audit_report.py)."""

from ansible_collections.dataplane.postgresql.plugins.filter import audit_report as audit
from ansible_collections.dataplane.postgresql.plugins.filter import provision_report as reports

AUDIT_KEYS = {"host", "server_version", "connected_as", "drift", "drifted", "fence_capable", "fence_incapable",
              "helper", "summary", "deployments", "elapsed_ms", "selected", "failed", "replication"}


def audit_result(**extra):
    result = {"changed": False, "server_version": "16.15", "connected_as": "commander_user", "drift": True,
              "drifted": ["b"], "fence_capable": ["a"], "fence_incapable": ["b"], "helper": {"installed": True},
              "summary": ["a: ok", "b: drift"], "deployments": [{"id": "a"}, {"id": "b"}], "elapsed_ms": 53,
              "queries": ["SELECT 1"]}
    result.update(extra)
    return result


def test_audit_report_keeps_its_keys():
    out = audit.audit_report(audit_result(), "pg")
    assert set(out) == AUDIT_KEYS
    assert out["host"] == "pg" and out["elapsed_ms"] == 53 and out["drifted"] == ["b"]
    assert out["deployments"] == [{"id": "a"}, {"id": "b"}] and out["helper"] == {"installed": True}


def test_audit_report_elapsed_from_timings_when_the_alias_is_missing():
    result = audit_result(timings={"total_ms": 61})
    del result["elapsed_ms"]
    assert audit.audit_report(result, "pg")["elapsed_ms"] == 61


PROVISION = {
    "changed": True,
    "deployments": [
        {"id": "a", "changed": True, "summary": "a: created", "before": {}, "after": {}, "fence_warnings": [],
         "fence": {"state": "new"}},
        {"id": "b", "changed": False, "summary": "b: unchanged"},
    ],
    "created_databases": ["airflow_db_a"],
    "dropped_databases": [],
    "fence_helper": {"changed": True},
}


def test_provision_summary():
    assert reports.provision_summary(PROVISION) == ["a: created", "b: unchanged", "fence helper: changed"]
    unchanged = dict(PROVISION, fence_helper={"changed": False})
    assert reports.provision_summary(unchanged)[-1] == "fence helper: unchanged"
    assert reports.provision_summary(dict(PROVISION, fence_helper={}), False)[-1] == "fence helper: not managed"
    # check mode says what would change, as the Deployments' lines do
    assert reports.provision_summary(PROVISION, check_mode=True)[-1] == "fence helper: would change"
    # commander_user is nobody's Deployment: its own line
    created = dict(PROVISION, commander_created="commander_user")
    assert reports.provision_summary(created)[-2:] == ["commander_user: created (LOGIN, for every Deployment)",
                                                       "fence helper: changed"]
    assert reports.provision_summary(created, check_mode=True)[-2] == \
        "commander_user: would be created (LOGIN, for every Deployment)"


def test_provision_failure_says_whether_anything_changed_and_what_to_fix():
    wrong = {"failed": False, "msg": "unable to connect to database: connection to server at \"127.0.0.1\", port "
                                     "5432 failed: FATAL:  password authentication failed for user \"postgres\""}
    lines = reports.provision_summary(wrong, host="pg")
    assert lines[0].startswith("Provision failed on pg: unable to connect to database")
    assert lines[1].startswith("Nothing was changed: provision never reached the server. The server refused the "
                               "login: check dataplane_pg_password (the password of dataplane_pg_user, an admin for "
                               "provision;")
    down = reports.provision_failure_message({"msg": "unable to connect to database: connection refused"}, "pg")
    assert "check dataplane_pg_host and dataplane_pg_port" in down and "Nothing was changed" in down
    report = reports.provision_report(wrong, "pg")
    assert report["failed"] is True and report["problems"] == lines and report["deployments"] == []
    assert reports.provision_report(PROVISION, "pg")["failed"] is False


def test_provision_stats():
    assert reports.provision_stats(PROVISION) == {"changed": True, "deployments": {"a": True, "b": False},
                                                  "fence": {"a": {"state": "new"}}}


def test_provision_report_leaves_out_the_before_and_after_state():
    out = reports.provision_report(PROVISION, "pg", run_id=7, started_at="2026-12-06T10:00:00Z", check_mode=True,
                                   finished_at="2026-12-06T10:00:02Z")
    assert out == {"failed": False, "problems": [], "playbook": "provision", "host": "pg", "run_id": "7",
                   "started_at": "2026-12-06T10:00:00Z",
                   "finished_at": "2026-12-06T10:00:02Z", "check_mode": True, "changed": True,
                   "deployments": [{"id": "a", "changed": True, "summary": "a: created", "fence": {"state": "new"}},
                                   {"id": "b", "changed": False, "summary": "b: unchanged"}],
                   "created_databases": ["airflow_db_a"], "dropped_databases": [], "fence_helper_changed": True,
                   "commander_created": None}
    assert "before" in PROVISION["deployments"][0]  # the module result itself is left alone


def test_audit_report_of_a_subset_keeps_only_the_selected_deployments():
    deployments = [
        {"id": "a", "state": "present", "drift": False, "fence_capable": True, "summary": "a: OK"},
        {"id": "b", "state": "present", "drift": True, "fence_capable": False, "summary": "b: DRIFT (1)"},
        {"id": "c", "state": "present", "drift": False, "fence_capable": True, "summary": "c: OK"}]
    result = {"drift": True, "drifted": ["b"], "fence_capable": False, "fence_incapable": ["b"],
              "summary": [d["summary"] for d in deployments], "deployments": deployments}
    out = audit.audit_report(result, "pg", "a, c")
    assert out["selected"] == ["a", "c"] and [d["id"] for d in out["deployments"]] == ["a", "c"]
    assert (out["drift"], out["drifted"], out["fence_capable"], out["fence_incapable"]) == (False, [], True, [])
    assert out["summary"] == ["a: OK", "c: OK"]
    unknown = audit.audit_report(result, "pg", ["a", "zz"])
    assert unknown["drift"] is True and unknown["drifted"] == ["zz"]
    assert unknown["summary"][-1] == ("zz: DRIFT (1): dataplane_audit_deployments names it, but dataplane_deployments "
                                      "has no such id (its ids: a, b, c)")
    assert audit.audit_report(result, "pg", None)["deployments"] == deployments


def test_audit_report_of_a_failed_audit_says_what_to_fix():
    out = audit.audit_report({"failed": False, "msg": "unable to connect to database: FATAL:  password "
                                                      "authentication failed for user \"commander_user\""}, "pg")
    assert out["failed"] is True and out["deployments"] == [] and out["summary"] == out["problems"]
    assert out["problems"][0].startswith("Audit failed on pg: unable to connect to database")
    assert out["problems"][1].startswith("Nothing was changed (the audit never changes anything). The server refused "
                                         "the login: check dataplane_pg_password (the password of dataplane_pg_user, "
                                         "commander_user or an admin for the audit;")
