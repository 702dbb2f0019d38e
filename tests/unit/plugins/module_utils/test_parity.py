"""The pure half of plane parity: shared-catalog facts in, findings and preflight verdicts out."""

import copy

from ansible_collections.dataplane.postgresql.plugins.module_utils.server import parity
from ansible_collections.dataplane.postgresql.plugins.module_utils.audit.checks import overall_summary, summary_line
from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import expand_deployments

[REC] = expand_deployments([{"id": "a"}])
DB, SCHEMA, DP1, DP2 = "airflow_db_a", "airflow_db_a_schema", "dp1_user_a", "dp2_user_a"


def healthy():
    """What read_facts returns after provisioning and one `airflow db migrate`."""
    return {
        "roles": {SCHEMA: dict((a, False) for a in parity.ATTRIBUTES),
                  DP1: dict((a, a == "rolcanlogin") for a in parity.ATTRIBUTES),
                  DP2: dict((a, a == "rolcanlogin") for a in parity.ATTRIBUTES)},
        "memberships": [{"group": SCHEMA, "member": m, "inherit_option": False, "set_option": True,
                         "admin_option": False} for m in (DP1, DP2)],
        "settings": [{"rolname": m, "datname": DB, "setconfig": ["role=" + SCHEMA]} for m in (DP1, DP2)],
        "objects": [{"database": DB, "role": SCHEMA, "deptype": "o", "class": "pg_class", "count": 120,
                     "objects": [str(16400 + i) for i in range(120)]},
                    {"database": DB, "role": SCHEMA, "deptype": "a", "class": "pg_namespace", "count": 1,
                     "objects": ["2200"]}],
    }


def failed(findings):
    return dict((f["check"], f["detail"]) for f in findings if not f["ok"])


def test_healthy_deployment_has_no_parity_finding():
    findings = parity.audit_findings(REC, healthy())
    assert [f["check"] for f in findings] == list(parity.CHECKS)
    assert failed(findings) == {}
    assert parity.preflight_problems(REC, healthy(), DP1, DP2) == []
    assert parity.preflight_problems(REC, healthy(), DP2, DP1) == []


def test_table_owned_by_a_login_role_is_named_and_blocks_only_that_direction():
    facts = healthy()
    facts["objects"].append({"database": DB, "role": DP1, "deptype": "o", "class": "pg_class", "count": 1,
                             "objects": ["16999"]})
    names = {(DB, "pg_class", "16999"): "table public.drift"}
    detail = failed(parity.audit_findings(REC, facts, names))["object_owners"]
    assert "dp1_user_a owns 1 in pg_class (table public.drift)" in detail
    [problem] = parity.preflight_problems(REC, facts, DP1, DP2)
    assert "dp1_user_a owns objects in airflow_db_a that dp2_user_a could neither use nor migrate" in problem
    assert parity.preflight_problems(REC, facts, DP2, DP1) == []


def test_missing_role_setting_is_flagged_and_blocks_a_failover_to_that_plane():
    facts = healthy()
    facts["settings"] = [s for s in facts["settings"] if s["rolname"] != DP2]
    detail = failed(parity.audit_findings(REC, facts))["role_settings"]
    assert "dp2_user_a starts as itself in airflow_db_a" in detail
    assert "SET role = 'airflow_db_a_schema'" in detail
    [problem] = parity.preflight_problems(REC, facts, DP1, DP2)
    assert "dp2_user_a would not start as the schema role" in problem
    assert parity.preflight_problems(REC, facts, DP2, DP1) == []


def test_membership_without_set_and_commander_grant_are_schema_role_drift():
    facts = healthy()
    facts["memberships"][1]["set_option"] = False
    facts["memberships"].append({"group": SCHEMA, "member": "commander_user", "inherit_option": True,
                                 "set_option": True, "admin_option": False})
    facts["memberships"].append({"group": "airflow_db_a_owner", "member": SCHEMA, "inherit_option": True,
                                 "set_option": True, "admin_option": False})
    detail = failed(parity.audit_findings(REC, facts))["schema_role"]
    assert "dp2_user_a is a member of airflow_db_a_schema without SET" in detail
    assert "granted to commander_user" in detail
    assert "is a member of airflow_db_a_owner" in detail
    problems = parity.preflight_problems(REC, facts, DP1, DP2)
    assert any("with (inherit false, set true, admin false), dp2_user_a only with" in p for p in problems)


def test_privileges_only_one_plane_holds():
    facts = healthy()
    facts["objects"].append({"database": DB, "role": DP1, "deptype": "a", "class": "pg_class", "count": 2,
                             "objects": ["16401", "16402"]})
    detail = failed(parity.audit_findings(REC, facts))["plane_privileges"]
    assert "dp1_user_a holds privileges on 2 object(s) in airflow_db_a that dp2_user_a lacks" in detail
    assert parity.preflight_problems(REC, facts, DP1, DP2)
    assert parity.preflight_problems(REC, facts, DP2, DP1) == []


def test_objects_of_the_owner_role_are_drift_but_not_a_parity_block():
    facts = healthy()
    facts["objects"][0]["role"] = "airflow_db_a_owner"
    assert "airflow_db_a_owner owns 120 in pg_class" in failed(parity.audit_findings(REC, facts))["object_owners"]
    assert parity.preflight_problems(REC, facts, DP1, DP2) == []


def test_without_schema_role_only_login_role_objects_and_asymmetry_count():
    rec = dict(REC, schema_role=None)
    facts = healthy()
    facts["settings"] = []
    facts["objects"][0]["role"] = "platform_migrator"
    findings = parity.audit_findings(rec, facts)
    assert [f["check"] for f in findings] == ["object_owners", "plane_privileges"]
    assert failed(findings) == {}
    facts["settings"] = [{"rolname": DP1, "datname": DB, "setconfig": ["role=platform_migrator"]}]
    assert "starts as platform_migrator" in parity.preflight_problems(rec, facts, DP1, DP2)[0]


def test_merge_findings_recomputes_drift_and_summary():
    facts = healthy()
    facts["settings"] = []
    results = [{"id": "a", "state": "present", "database": DB, "findings": [], "drift": False,
                "fence_capable": True, "fence_route": "helper"}]
    results, overall = parity.merge_findings(copy.deepcopy(results), [REC], facts, {}, summary_line,
                                             overall_summary)
    assert overall["drift"] and overall["drifted"] == ["a"] and overall["fence_capable"]
    assert results[0]["summary"].startswith("a: DRIFT (1), fence capable (helper): role_settings:")


def test_flagged_objects_are_only_the_drifted_ones():
    facts = healthy()
    assert parity.flagged_objects(facts, [REC]) == {}
    facts["objects"].append({"database": DB, "role": DP2, "deptype": "o", "class": "pg_type", "count": 1,
                             "objects": ["17000"]})
    assert parity.flagged_objects(facts, [REC]) == {DB: [("pg_type", "17000")]}
