"""The publish_report action (plugins/action/publish_report.py): set_stats data and the JSON file."""

import json
import os
import stat
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.dataplane.postgresql.plugins.action import publish_report

DATA = {"host": "pg", "summary": ["a: ok"], "deployments": [{"name": "a", "verified": True}], "ü": "ü"}


def run(args, check_mode=False, host="pg"):
    task = mock.MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = check_mode
    task.action = "dataplane.postgresql.publish_report"
    action = publish_report.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None,
                                         shared_loader_obj=None)
    return action.run(task_vars={"inventory_hostname": host})


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def test_publishes_under_the_key_per_host_and_writes_nothing_without_dir():
    result = run({"data": DATA, "stats_key": "dataplane_failover"})
    assert result["ansible_stats"] == {"data": {"dataplane_failover": {"pg": DATA}}, "per_host": False,
                                       "aggregate": True}
    assert result["changed"] is False and result["path"] is None


def test_explicit_stats_and_no_stats():
    assert run({"data": DATA, "stats": {"k": {"pg": 1}}})["ansible_stats"]["data"] == {"k": {"pg": 1}}
    assert "ansible_stats" not in run({"data": DATA})
    assert "ansible_stats" not in run({"stats_key": "x"})  # nothing to publish


def test_writes_the_report_file(tmp_path):
    target = tmp_path / "reports" / "deeper"
    result = run({"data": DATA, "stats_key": "x", "dir": str(target), "name": "failover-pg"})
    path = target / "failover-pg.json"
    assert result["path"] == str(path) and result["changed"] is False
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text) == DATA
    assert text.startswith('{\n  "deployments": [')  # to_nice_json(indent=2): sorted keys, 2 spaces
    assert mode(path) == 0o640 and mode(target) == 0o750
    assert sorted(os.listdir(str(target))) == ["failover-pg.json"]  # no temporary file left behind
    # an existing report is never replaced: the next one gets its own name ...
    second = run({"data": {"second": True}, "dir": str(target), "name": "failover-pg"})
    assert json.loads(path.read_text()) == DATA
    assert second["path"] == str(target / "failover-pg.2.json")
    assert json.loads((target / "failover-pg.2.json").read_text()) == {"second": True}
    assert mode(target / "failover-pg.2.json") == 0o640
    assert sorted(os.listdir(str(target))) == ["failover-pg.2.json", "failover-pg.json"]
    # ... unless the task says overwrite
    run({"data": {"third": True}, "dir": str(target), "name": "failover-pg", "overwrite": True})
    assert json.loads(path.read_text()) == {"third": True}


def test_existing_directory_gets_mode_0750(tmp_path):
    target = tmp_path / "r"
    target.mkdir(mode=0o777)
    os.chmod(str(target), 0o777)
    run({"data": DATA, "dir": str(target), "name": "audit-pg"})
    assert mode(target) == 0o750


def test_check_mode_writes_nothing_but_publishes(tmp_path):
    result = run({"data": DATA, "stats_key": "x", "dir": str(tmp_path / "r"), "name": "n"}, check_mode=True)
    assert not (tmp_path / "r").exists() and result["path"] is None and "ansible_stats" in result


def test_errors(tmp_path):
    with pytest.raises(AnsibleActionFail, match="data and name are required with dir"):
        run({"data": DATA, "dir": str(tmp_path)})
    with pytest.raises(AnsibleActionFail, match="data and name are required with dir"):
        run({"stats": {"k": 1}, "dir": str(tmp_path), "name": "n"})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AnsibleActionFail, match="could not write the report"):
        run({"data": DATA, "dir": str(blocker / "sub"), "name": "n"})
    with pytest.raises(AnsibleActionFail, match="Unsupported parameters"):
        run({"data": DATA, "path": str(tmp_path)})
