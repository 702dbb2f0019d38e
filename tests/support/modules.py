"""Running this collection's modules (and community.postgresql's) as Ansible runs them: the
arguments as JSON in a file, a fresh Python process, the JSON result read back.

The ``run_module`` fixture (tests/support/fixtures.py) is ``run_module`` below."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import REPO


def module_path(name):
    """plugins/modules/NAME.py of this collection, or for "namespace.collection.module" that
    module from the venv's ansible_collections (e.g. community.postgresql.postgresql_membership)."""
    if "." not in name:
        return REPO / "plugins" / "modules" / (name + ".py")
    namespace, collection, module = name.split(".")
    import ansible_collections
    for root in ansible_collections.__path__:
        path = Path(root) / namespace / collection / "plugins" / "modules" / (module + ".py")
        if path.is_file():
            return path
    raise AssertionError("module %s is not installed in this venv" % name)


def run_module(name, args, check=False, diff=False, timeout=120):
    """Run module NAME with ARGS (``check``/``diff`` as Ansible passes them) with the collection
    importable through the venv's ansible_collections link; return its JSON result, with
    ``failed`` set from the exit status when the module did not say."""
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    try:
        proc = subprocess.run([sys.executable, str(module_path(name)), handle.name], capture_output=True,
                              text=True, timeout=timeout, check=False)
    finally:
        os.unlink(handle.name)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module %s printed no JSON (rc=%s):\n%s\n%s"
                             % (name, proc.returncode, proc.stdout, proc.stderr))
    result.setdefault("failed", proc.returncode != 0 and not result.get("failed") is False)
    return result
