"""The pure half of the audit: catalog facts in, findings out (no server)."""

import copy

import pytest

from ansible_collections.dataplane.postgresql.plugins.module_utils.audit.checks import (
    CHECKS,
    audit_deployment,
    audit_deployments,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import expand_deployments
from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import record_problems

[REC] = expand_deployments([{"id": "a"}])
OWNER, KILLER, DB = "airflow_db_a_owner", "airflow_conn_killer_a", "airflow_db_a"
DP1, DP2, CMD = "dp1_user_a", "dp2_user_a", "commander_user"


def _priv(member=True, usage=True):
    return {"member": member, "usage": usage}


def vendor_facts(version=160015, helper=False):
    """What read_catalog returns for a server set up by the vendor's SQL (plus the helper)."""
    facts = {
        "server_version_num": version,
        "connected_as": CMD,
        "connected_superuser": False,
        "helper_schema": "dataplane_fence",
        "databases": {DB: {"owner": OWNER, "connect": [
            {"grantee": OWNER, "grantor": OWNER, "grantable": False},
            {"grantee": DP1, "grantor": OWNER, "grantable": False},
            {"grantee": DP2, "grantor": OWNER, "grantable": False}]}},
        "roles": {
            OWNER: {"super": False, "login": False, "inherit": True},
            KILLER: {"super": False, "login": False, "inherit": False},
            DP1: {"super": False, "login": True, "inherit": True},
            DP2: {"super": False, "login": True, "inherit": True},
            CMD: {"super": False, "login": True, "inherit": True},
            "pg_signal_backend": {"super": False, "login": False, "inherit": True},
        },
        "memberships": [
            {"group": DP1, "member": KILLER, "grantor": "postgres", "admin_option": False,
             "inherit_option": False, "set_option": False},
            {"group": DP2, "member": KILLER, "grantor": "postgres", "admin_option": False,
             "inherit_option": False, "set_option": False},
            {"group": OWNER, "member": CMD, "grantor": "postgres", "admin_option": False,
             "inherit_option": True, "set_option": True},
            {"group": KILLER, "member": CMD, "grantor": "postgres", "admin_option": False,
             "inherit_option": True, "set_option": True},
        ],
        "privileges": {
            CMD: {OWNER: _priv(), KILLER: _priv(), DP1: _priv(True, False), DP2: _priv(True, False),
                  "pg_signal_backend": _priv(False, False)},
            DP1: {OWNER: _priv(False, False)},
            DP2: {OWNER: _priv(False, False)},
        },
        "helper": None,
        "fence_states": {DB: {"record": None, "error": None}},
        "login_access": {DB: {DP1: {"can_connect": True, "sessions": 0},
                              DP2: {"can_connect": True, "sessions": 0}}},
    }
    if helper:
        facts["helper"] = {"installed": True, "version": "1", "current": True,
                           "owner_role": "dataplane_fence_signaler", "owner_can_signal": True,
                           "usable_by": {KILLER: True}}
    return facts


def failed(result):
    return sorted(f["check"] for f in result["findings"] if not f["ok"])


def detail(result, check):
    return [f["detail"] for f in result["findings"] if f["check"] == check][0]


def test_vendor_setup_only_the_fence_fails():
    result = audit_deployment(REC, vendor_facts())
    assert failed(result) == ["fence_capability"]
    assert result["drift"] and result["fence_capable"] is False and result["fence_route"] is None
    assert detail(result, "fence_capability") == (
        "a vendor-style fence would fail: commander_user lacks the privileges of dp1_user_a, dp2_user_a; "
        "install the fence helper (provision with dataplane_fence_helper: true)")
    assert result["summary"].startswith("a: DRIFT (1), fence would FAIL; admitted: dp1, dp2: fence_capability: a vendor-style")


def test_vendor_setup_with_helper_is_clean():
    result = audit_deployment(REC, vendor_facts(helper=True))
    assert failed(result) == []
    assert [f["check"] for f in result["findings"]] == [c for c in CHECKS if c != "server_version"]
    assert result["fence_route"] == "helper" and not result["drift"]
    assert result["summary"] == "a: OK, fence capable (helper); admitted: dp1, dp2"
    # It still tells why the helper is needed.
    assert "a vendor-style fence would fail: commander_user lacks the privileges of dp1_user_a" in \
        detail(result, "fence_capability")


@pytest.mark.parametrize("change, reason", [
    ({"current": False, "version": "0"}, "outdated (version 0)"),
    ({"usable_by": {KILLER: False}}, "not granted to airflow_conn_killer_a"),
    ({"owner_can_signal": False}, "lacks pg_signal_backend"),
])
def test_helper_that_cannot_be_used(change, reason):
    facts = vendor_facts(helper=True)
    facts["helper"].update(change)
    result = audit_deployment(REC, facts)
    assert failed(result) == ["fence_capability"]
    assert reason in detail(result, "fence_capability")
    assert "cannot be used" in detail(result, "fence_capability")


def test_members_of_the_helper_owner_are_drift_but_the_fence_works():
    facts = vendor_facts(helper=True)
    facts["helper"]["owner_members"] = ["sneaky"]
    result = audit_deployment(REC, facts)
    assert failed(result) == ["fence_capability"]
    assert result["drift"] and result["fence_capable"] is True and result["fence_route"] == "helper"
    assert ("sneaky can act as its owner role dataplane_fence_signaler" in detail(result, "fence_capability"))
    assert result["summary"].startswith("a: DRIFT (1), fence capable (helper)")


def test_signal_backend_gives_the_direct_route():
    facts = vendor_facts()
    facts["privileges"][CMD]["pg_signal_backend"] = _priv()
    result = audit_deployment(REC, facts)
    assert result["fence_route"] == "direct" and failed(result) == []
    assert "pg_signal_backend: it may terminate any non-superuser session" in detail(result, "fence_capability")


def test_superuser_login_cannot_be_fenced_even_by_the_helper():
    facts = vendor_facts(helper=True)
    facts["roles"][DP1]["super"] = True
    facts["privileges"][DP1][OWNER] = _priv()  # pg_has_role is true for a superuser
    result = audit_deployment(REC, facts)
    assert failed(result) == ["fence_capability", "login_roles"]
    assert "dp1_user_a is a SUPERUSER" in detail(result, "login_roles")
    assert "member of the owner role" not in detail(result, "login_roles")


def test_public_connect_and_other_grantees_with_grantors():
    facts = vendor_facts(helper=True)
    facts["databases"][DB]["connect"] += [
        {"grantee": None, "grantor": OWNER, "grantable": False},
        {"grantee": "reporting", "grantor": "someone", "grantable": False},
    ]
    facts["privileges"][DP1]["reporting"] = _priv(True, True)  # dp1 connects through it
    result = audit_deployment(REC, facts)
    assert failed(result) == ["connect_grantees", "fence_capability", "public_connect"]
    assert "extra CONNECT grantee reporting (granted by someone)" in detail(result, "connect_grantees")
    assert "dp1_user_a can still connect through reporting" in detail(result, "fence_capability")


def test_killer_options_are_or_across_grantors():
    facts = vendor_facts(helper=True)
    facts["memberships"].append({"group": DP1, "member": KILLER, "grantor": "g1", "admin_option": False,
                                 "inherit_option": True, "set_option": False})
    result = audit_deployment(REC, facts)
    assert failed(result) == ["killer_memberships"]
    assert "dp1_user_a (granted by g1; inherit true, set false, admin false)" in detail(result, "killer_memberships")


def test_missing_everything():
    facts = vendor_facts()
    facts.update(databases={}, roles={}, memberships=[], privileges={})
    result = audit_deployment(REC, facts)
    assert set(failed(result)) == {"database_exists", "owner_role", "killer_role", "killer_memberships",
                                   "commander_owner_membership", "commander_killer_membership",
                                   "login_roles", "fence_capability"}
    assert "commander_user commander_user does not exist" in detail(result, "commander_owner_membership")


def test_old_server_is_reported_by_version():
    facts = vendor_facts(version=150019, helper=True)
    for row in facts["memberships"]:
        row["inherit_option"] = row["set_option"] = None
    result = audit_deployment(REC, facts)
    assert "server_version" in failed(result)
    assert "PostgreSQL 15.19 cannot record the INHERIT/SET membership options" in detail(result, "server_version")


def test_admin_connection_is_named():
    facts = vendor_facts(helper=True)
    facts["connected_as"] = "postgres"
    result = audit_deployment(REC, facts)
    assert "commander_user (evaluated while connected as postgres)" in detail(result, "fence_capability")


def test_absent_records_and_overall():
    gone = dict(copy.deepcopy(REC), id="gone", state="absent", drop_database=True,
                owner_role="o_gone", killer_role="k_gone", database="db_gone")
    results, overall = audit_deployments([REC, gone], vendor_facts())
    assert results[1]["drift"] is False and results[1]["fence_capable"] is None
    assert overall == {"drift": True, "drifted": ["a"], "fence_capable": False, "fence_incapable": ["a"]}
    facts = vendor_facts()
    facts["roles"]["k_gone"] = {"super": False, "login": False, "inherit": False}
    results, overall = audit_deployments([gone], facts)
    assert failed(results[0]) == ["roles_absent"] and "k_gone" in detail(results[0], "roles_absent")


def test_record_problems():
    assert record_problems([REC]) == []
    bad = dict(REC, owner_role="pg_x")
    assert "pg_" in record_problems([bad])[0]
    assert "missing killer_role" in record_problems([dict(REC, killer_role="")])[0]
    assert "duplicate id" in record_problems([REC, REC])[0]


def test_blocker_and_vendor_failure_are_both_named():
    facts = vendor_facts()
    facts["databases"][DB]["connect"].append({"grantee": None, "grantor": OWNER, "grantable": False})
    result = audit_deployment(REC, facts)
    text = detail(result, "fence_capability")
    assert text.startswith("the fence would fail for commander_user: PUBLIC holds CONNECT on airflow_db_a")
    assert "; and a vendor-style fence would fail: commander_user lacks the privileges of dp1_user_a" in text


def test_other_members_of_owner_and_killer():
    facts = vendor_facts(helper=True)
    facts["memberships"] += [
        {"group": KILLER, "member": "ops", "grantor": "postgres", "admin_option": False,
         "inherit_option": True, "set_option": False},
        # what createrole_self_grant adds for a CREATEROLE creator: ADMIN only, no privileges
        {"group": OWNER, "member": "creator", "grantor": "postgres", "admin_option": True,
         "inherit_option": False, "set_option": False},
    ]
    result = audit_deployment(REC, facts)
    assert failed(result) == ["other_members"]
    assert detail(result, "other_members") == (
        "ops is a member of airflow_conn_killer_a (granted by postgres; inherit true, set false, admin false)")


# --------------------------------------------------------------------------- fence state

def fenced_facts(record=None, dp1_connect=False, dp1_sessions=0, dp2_connect=True, comment_error=None):
    """After a failover dp1 -> dp2: dp1 without CONNECT (unless granted back), optionally a record."""
    facts = vendor_facts(helper=True)
    connect = facts["databases"][DB]["connect"]
    if not dp1_connect:
        connect[:] = [e for e in connect if e["grantee"] != DP1]
    if not dp2_connect:
        connect[:] = [e for e in connect if e["grantee"] != DP2]
    facts["fence_states"][DB] = {"record": record, "error": comment_error}
    facts["login_access"][DB] = {DP1: {"can_connect": dp1_connect, "sessions": dp1_sessions},
                                 DP2: {"can_connect": dp2_connect, "sessions": 0}}
    return facts


def a_record(fenced=(DP1,), admitted=(DP2,), phase="complete"):
    return {"v": 1, "fenced": list(fenced), "admitted": list(admitted), "phase": phase, "generation": 2,
            "run": "job-9", "by": CMD, "at": "2026-11-27T17:00:00Z", "application": None}


def test_recorded_fence_is_clean_and_named():
    result = audit_deployment(REC, fenced_facts(a_record()))
    assert failed(result) == []
    assert result["summary"].startswith("a: OK, fence capable (helper); fenced: dp1, admitted: dp2 (recorded by "
                                        "commander_user at 2026-11-27T17:00:00Z, run job-9)")
    assert result["fence"]["source"] == "record"


def test_inferred_fence_without_record():
    result = audit_deployment(REC, fenced_facts(None))
    assert failed(result) == []
    assert result["summary"].endswith("fenced: dp1, admitted: dp2 (inferred, no record)")


@pytest.mark.parametrize("case,facts,expected", [
    ("granted back", dict(record=a_record(), dp1_connect=True), "dp1_user_a (plane dp1) is fenced but can connect"),
    ("sessions", dict(record=a_record(), dp1_sessions=2), "has 2 session(s) in airflow_db_a"),
    ("admitted cannot connect", dict(record=a_record(), dp2_connect=False), "says dp2_user_a (plane dp2) is admitted"),
    ("contradicted", dict(record=a_record(), dp1_connect=True, dp2_connect=False),
     "the record contradicts the catalog: the catalog admits plane dp1 (dp1_user_a) and refuses plane dp2 "
     "(dp2_user_a), the record says the opposite. Check which plane's Airflow is running before any failover"),
    ("fencing", dict(record=a_record(admitted=(), phase="fencing"), dp2_connect=False), "phase 'fencing'"),
    ("damaged", dict(record=None, comment_error="not valid JSON"), "cannot be read (not valid JSON)"),
    ("nobody", dict(record=None, dp2_connect=False), "no plane can connect and no fence is recorded"),
])
def test_fence_state_drift(case, facts, expected):
    result = audit_deployment(REC, fenced_facts(**facts))
    assert "fence_state" in failed(result), case
    assert expected in detail(result, "fence_state"), (case, detail(result, "fence_state"))
    assert "fail over again" not in detail(result, "fence_state")
    assert result["summary"].startswith("a: DRIFT")
