"""The check_variables action (plugins/action/check_variables.py): unknown dataplane_* names,
one-line option problems, the run id, and the refused run's report file."""

import glob
import json
import os
import re
from pathlib import Path
from unittest import mock

import pytest

from ansible_collections.dataplane.postgresql.plugins.action import check_variables

REPO = Path(__file__).resolve().parents[4]

# dataplane_* words in roles/ and playbooks/ that are not variables: set_stats keys, the
# inventory group, and default values (the fence helper's schema and owner role).
NOT_VARIABLES = {"dataplane_provision", "dataplane_failover", "dataplane_audit", "dataplane_postgresql",
                 "dataplane_fence", "dataplane_fence_signaler"}


def words(paths):
    found = set()
    for path in paths:
        found.update(n for n in re.findall(r"(?<![\w.])dataplane_\w+", Path(path).read_text(encoding="utf-8"))
                     if not n.endswith("_"))  # dataplane_pg_* in prose
    return found - NOT_VARIABLES


def readme_variables():
    """The dataplane_* names in the first cell of the README's variable tables."""
    names = set()
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `dataplane_"):
            names.update(re.findall(r"`(dataplane_\w+)`", line.split("|")[1]))
    return names


def test_every_name_the_collection_uses_is_known():
    known = check_variables.known_names(str(REPO))
    used = words(glob.glob(str(REPO / "roles" / "**" / "*.yml"), recursive=True)
                 + glob.glob(str(REPO / "playbooks" / "*.yml")))
    assert used and used <= known, sorted(used - known)
    table = readme_variables()
    assert len(table) > 30 and table <= known, sorted(table - known)


def test_the_contract_names_and_the_playbooks_names_are_known():
    known = check_variables.known_names(str(REPO))
    for name in ("dataplane_standbys", "dataplane_failover_standby_policy", "dataplane_failover_standby_timeout",
                 "dataplane_audit_last_report", "dataplane_audit_allowed_objects", "dataplane_allowed_extra_vars",
                 "dataplane_hosts", "dataplane_failover_deployments", "dataplane_commander_password",
                 "dataplane_pg_password", "dataplane_report_dir"):
        assert name in known, name
    assert not [n for n in known if not n.startswith("dataplane_")]


def test_the_known_names_are_computed_from_the_roles(tmp_path):
    """A name added to a role's argument spec or defaults is known, with no list to edit."""
    (tmp_path / "roles" / "r" / "meta").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "defaults").mkdir(parents=True)
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "roles" / "r" / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n      dataplane_new_option: {type: str}\n"
        "  other:\n    options:\n      dataplane_other_entry: {type: str}\n")
    (tmp_path / "roles" / "r" / "defaults" / "main.yml").write_text("dataplane_new_default: 1\n_dataplane_x: 2\n")
    (tmp_path / "playbooks" / "p.yml").write_text("- hosts: \"{{ dataplane_targets | default('all') }}\"\n")
    known = check_variables.known_names(str(tmp_path))
    assert {"dataplane_new_option", "dataplane_other_entry", "dataplane_new_default", "dataplane_targets"} <= known
    assert "_dataplane_x" not in known
    assert set(check_variables.RESERVED) <= known


@pytest.mark.parametrize("typo, closest", [
    ("dataplane_failover_deployment", "dataplane_failover_deployments"),
    ("dataplane_failover_form", "dataplane_failover_from"),
    ("dataplane_report_directory", "dataplane_report_dir"),
    ("dataplane_pg_pasword", "dataplane_pg_password"),
])
def test_a_typo_is_named_with_the_closest_known_name(typo, closest):
    known = check_variables.known_names(str(REPO))
    problems = check_variables.unknown_problems([typo, "dataplane_pg_host", "_dataplane_internal", "other"],
                                                known, [])
    assert problems == ["%s is not a variable of dataplane.postgresql (did you mean %s?)." % (typo, closest)]


def test_a_name_far_from_every_known_name_gets_no_guess_and_allowed_names_pass():
    known = check_variables.known_names(str(REPO))
    assert check_variables.unknown_problems(["dataplane_zzz"], known, []) == [
        "dataplane_zzz is not a variable of dataplane.postgresql."]
    assert check_variables.unknown_problems(["dataplane_zzz"], known, ["dataplane_zzz"]) == []
    assert check_variables.allowed_names("dataplane_a, dataplane_b") == ["dataplane_a", "dataplane_b"]
    assert check_variables.allowed_names(None) == []
    with pytest.raises(Exception, match="list of variable names"):
        check_variables.allowed_names({"a": 1})


def test_option_problems_are_one_line_each():
    options = check_variables.role_specs(str(REPO))["failover"]["main"]
    problems = check_variables.option_problems(
        "failover", options, {"dataplane_failover_to": "dp2", "dataplane_failover_mode": "fast"})
    assert len(problems) == 2, problems
    assert problems[0].startswith("dataplane_failover_from is required by dataplane.postgresql.failover (The "
                                  "source plane"), problems
    assert "-e dataplane_failover_from=<value>" in problems[0]
    assert "dataplane_failover_mode must be one of: forced, controlled, got: fast" in problems[1]
    assert all("\n" not in p and len(p) < 300 for p in problems)
    assert check_variables.option_problems("failover", options, {"dataplane_failover_from": "dp1",
                                                                 "dataplane_failover_to": "dp2"}) == []


def run(task_vars, roles=("failover",), check_mode=False):
    task = mock.MagicMock()
    task.args = {"roles": list(roles)}
    task.async_val = 0
    task.check_mode = check_mode
    task.action = "dataplane.postgresql.check_variables"
    templar = mock.MagicMock()
    templar.template.side_effect = lambda value: value
    action = check_variables.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=templar,
                                          shared_loader_obj=None)
    return action.run(task_vars=dict(task_vars, inventory_hostname="pg"))


def test_the_action_refuses_and_writes_the_refused_runs_report(tmp_path):
    report_dir = tmp_path / "reports"
    variables = {"dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2",
                 "dataplane_failover_deployment": "finance", "dataplane_report_dir": str(report_dir),
                 "dataplane_run_id": "job 7"}
    first = run(variables)
    assert first["failed"] and first["changed"] is False
    assert first["msg"].splitlines() == [
        "Refused before any connection to the server, nothing was changed:",
        "- dataplane_failover_deployment is not a variable of dataplane.postgresql "
        "(did you mean dataplane_failover_deployments?).",
        "Correct the name, or list your own variables in dataplane_allowed_extra_vars."]
    second = run(variables, check_mode=True)
    files = sorted(os.listdir(str(report_dir)))
    assert files == ["failover-pg-job_7.2.json", "failover-pg-job_7.json"], files  # never overwritten
    assert second["path"] == str(report_dir / "failover-pg-job_7.2.json")
    report = json.loads((report_dir / "failover-pg-job_7.json").read_text())
    assert report["refused"] is True and report["safe_to_start_destination"] is False
    assert report["run_id"] == "job 7" and report["started_at"] <= report["finished_at"]
    assert report["problems"] == first["msg"].splitlines()[1:2] or "did you mean" in report["problems"][0]
    assert json.loads((report_dir / "failover-pg-job_7.2.json").read_text())["check_mode"] is True


def test_the_action_passes_known_and_allowed_names_and_sets_the_run_facts():
    ok = run({"dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2", "dataplane_mine": 1,
              "dataplane_allowed_extra_vars": ["dataplane_mine"], "_dataplane_x": 1, "awx_job_id": 41})
    assert not ok.get("failed"), ok
    assert ok["ansible_facts"]["_dataplane_run_id"] == "41"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", ok["ansible_facts"]["_dataplane_started_at"])
    fresh = run({"dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2"})
    assert re.match(r"^\d{8}T\d{6}Z-\d+$", fresh["ansible_facts"]["_dataplane_run_id"])
    # the same ansible-playbook process gives every host the same id
    assert run({"dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2"})["ansible_facts"] \
        == fresh["ansible_facts"]


# --- deprecated variable names: known, still accepted, and warned about ----------------------------

def test_the_deprecated_names_are_known_and_their_replacements_too():
    known = check_variables.known_names(str(REPO))
    deprecated = check_variables.deprecated_names(str(REPO))
    assert set(deprecated) == {"dataplane_failover_helper_schema", "dataplane_audit_helper_schema",
                               "dataplane_audit_helper_owner_role", "dataplane_failover_ignore_parity"}
    assert set(deprecated) <= known
    assert set(e["replacement"] for e in deprecated.values()) <= known
    # an old name is not refused, and not taken for a typo of its replacement
    assert check_variables.unknown_problems(list(deprecated), known, []) == []


def test_the_deprecation_message_names_the_replacement_and_the_role():
    deprecated = check_variables.deprecated_names(str(REPO))
    assert check_variables.deprecation_message("dataplane_audit_helper_schema",
                                               deprecated["dataplane_audit_helper_schema"]) == (
        "dataplane_audit_helper_schema is deprecated: set dataplane_fence_helper_schema instead. Until then "
        "the audit role still reads dataplane_audit_helper_schema, and it wins over dataplane_fence_helper_schema "
        "there.")
    assert check_variables.deprecation_message("dataplane_failover_ignore_parity",
                                               deprecated["dataplane_failover_ignore_parity"]).startswith(
        "dataplane_failover_ignore_parity is deprecated: set dataplane_failover_parity_policy instead "
        "(true is warn, false is refuse).")


def test_the_action_accepts_an_old_name_and_prints_a_deprecation(monkeypatch):
    shown = []
    monkeypatch.setattr(check_variables.display, "deprecated",
                        lambda msg, version=None, collection_name=None, **kw: shown.append(
                            (msg.split(":")[0], version, collection_name)))
    ok = run({"dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2",
              "dataplane_failover_ignore_parity": True, "dataplane_failover_helper_schema": "ops_fence"})
    assert not ok.get("failed"), ok
    assert sorted(shown) == [
        ("dataplane_failover_helper_schema is deprecated", "1.0.0", "dataplane.postgresql"),
        ("dataplane_failover_ignore_parity is deprecated", "1.0.0", "dataplane.postgresql")]
    shown[:] = []
    assert not run({"dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2",
                    "dataplane_failover_parity_policy": "warn"}).get("failed")
    assert shown == []  # the one name: no warning


def test_an_old_name_with_a_bad_value_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(check_variables.display, "deprecated", lambda *a, **kw: None)
    refused = run({"dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2",
                   "dataplane_failover_ignore_parity": "sometimes"})
    assert refused["failed"]
    [problem] = refused["msg"].splitlines()[1:]
    assert "dataplane_failover_ignore_parity" in problem and "bool" in problem, problem
