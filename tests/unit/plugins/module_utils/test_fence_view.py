"""fence_view: which plane is fenced and which admitted, from the record or the catalog (pure)."""

import pytest

from ansible_collections.dataplane.postgresql.plugins.module_utils.model.fence_view import (
    fence_view,
    provision_policy,
)

LOGINS = {"dp1": "dp1_user_a", "dp2": "dp2_user_a"}
DP1, DP2 = "dp1_user_a", "dp2_user_a"
REC = {"id": "a", "database": "airflow_db_a", "login_roles": LOGINS}
WRITER = {"by": "postgres", "at": "2026-11-27T17:00:00Z", "application": "x", "run": "r-1"}


def record(fenced=(DP1,), admitted=(DP2,), phase="complete", generation=3):
    return {"v": 1, "fenced": list(fenced), "admitted": list(admitted), "phase": phase,
            "generation": generation, "run": "job-7", "by": "commander_user", "at": "2026-11-27T16:00:00Z"}


@pytest.mark.parametrize("label,kwargs,state,source,fenced,admitted,withhold", [
    ("new database", dict(exists=False), "new", None, [], ["dp1", "dp2"], False),
    ("reference set-up", dict(holders=[DP1, DP2]), "open", None, [], ["dp1", "dp2"], False),
    ("pre-created database, PUBLIC connects", dict(holders=[], public_connect=True), "open", None, [],
     ["dp1", "dp2"], False),
    ("recorded fence", dict(record=record(), holders=[DP2]), "fenced", "record", ["dp1"], ["dp2"], True),
    ("0.1-era fence", dict(holders=[DP2]), "fenced", "inferred", ["dp1"], ["dp2"], True),
    ("one plane missing but PUBLIC connects", dict(holders=[DP2], public_connect=True), "open", None, [],
     ["dp1", "dp2"], False),
    ("nobody admitted, no record", dict(holders=[]), "unknown", "inferred", [], [], True),
    ("interrupted", dict(record=record(admitted=(), phase="fencing"), holders=[]), "interrupted", "record",
     ["dp1"], [], True),
    ("damaged", dict(error="not valid JSON", holders=[DP1, DP2]), "damaged", None, [], ["dp1", "dp2"], True),
    ("re-admitted record", dict(record=record(fenced=(), admitted=(DP1, DP2)), holders=[DP1, DP2]), "open",
     "record", [], ["dp1", "dp2"], False),
    ("re-admitted record, one plane revoked since",
     dict(record=record(fenced=(), admitted=(DP1, DP2)), holders=[DP2]), "fenced", "inferred", ["dp1"], ["dp2"], True),
])
def test_states(label, kwargs, state, source, fenced, admitted, withhold):
    args = dict(exists=True, record=None, error=None, holders=(), public_connect=False)
    args.update(kwargs)
    view = fence_view(LOGINS, args["exists"], args["record"], args["error"], args["holders"], args["public_connect"])
    assert (view["state"], view["source"], view["fenced"], view["admitted"], view["withhold"]) == \
        (state, source, fenced, admitted, withhold), label


def test_texts():
    assert fence_view(LOGINS, True, record(), None, [DP2])["text"] == (
        "fenced: dp1, admitted: dp2 (recorded by commander_user at 2026-11-27T16:00:00Z, run job-7)")
    assert fence_view(LOGINS, True, None, None, [DP2])["text"] == "fenced: dp1, admitted: dp2 (inferred, no record)"
    assert fence_view(LOGINS, True, None, None, [DP1, DP2])["text"] == "admitted: dp1, dp2"
    assert "DAMAGED" in fence_view(LOGINS, True, None, "bad", [DP1])["text"]


def test_contradictions_are_noted():
    view = fence_view(LOGINS, True, record(), None, [DP1])       # dp1 granted back, dp2 revoked
    assert view["state"] == "fenced" and view["withhold"]
    assert "dp1_user_a is recorded as fenced but holds CONNECT" in view["notes"]
    assert "dp2_user_a is recorded as admitted but holds no CONNECT" in view["notes"]


def test_provision_policy():
    open_view = fence_view(LOGINS, True, None, None, [DP1, DP2])
    assert provision_policy(REC, open_view, None, False, WRITER) == (False, None, None)
    fenced = fence_view(LOGINS, True, record(), None, [DP2])
    assert provision_policy(REC, fenced, record(), False, WRITER) == (True, None, None)
    withhold, problem, new = provision_policy(REC, fenced, record(), True, WRITER)
    assert not withhold and problem is None
    assert new["fenced"] == [] and new["admitted"] == [DP1, DP2] and new["generation"] == 4
    assert new["run"] == "r-1" and new["by"] == "postgres" and new["phase"] == "complete"
    damaged = fence_view(LOGINS, True, None, "not valid JSON", [DP1, DP2])
    withhold, problem, new = provision_policy(REC, damaged, None, False, WRITER)
    assert withhold and new is None and "cannot be read (not valid JSON)" in problem and "'a'" in problem
    assert provision_policy(REC, damaged, None, True, WRITER)[2]["generation"] == 1
