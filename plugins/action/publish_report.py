# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ``dataplane.postgresql.publish_report``: publish a role's report, on the controller.

Used by the deployments, failover and audit roles (an internal helper of theirs, not one of
the collection's PostgreSQL modules: it has no module file and takes no connection option).
In one task, without running a module process:

- publishes ``stats`` (default ``{stats_key: {inventory_hostname: data}}``) as ``set_stats``
  would with ``per_host: false, aggregate: true``, for AWX workflows;
- ``data_var`` names a fact an earlier task of the role set, read as stored instead of
  ``data``; ``data_from`` computes ``data`` with one of the report filters over stored
  variables, as ``filter_fact`` does (its ``filter``, ``input``, ``stored`` and ``args``), and
  ``stats_from`` the same way this host's value under ``stats_key`` (``{stats_key:
  {inventory_hostname: value}}``). Either way nothing large is templated: a copy of a
  200-Deployment report or registered result took a few tenths of a second (issue 23);
- when ``dir`` is set, writes ``data`` (then required, as ``name``) as JSON (``to_nice_json(indent=2)`` and a newline) to
  ``<dir>/<name>.json`` on the controller: the directory is created if needed and kept at mode
  0750, the file appears atomically with mode 0640. An existing file is never replaced (the
  roles put the run id into ``name``; should that file exist, ``<name>.2.json``, ``.3``, ...
  is written instead) unless ``overwrite`` is true. In check mode nothing is written unless
  the task says ``check_mode: false``.

A report is an artifact of the run, not managed state: the task never reports a change.
This replaces a ``set_stats`` task and a ``file`` + ``copy`` pair delegated to localhost,
which took over a second at 200 Deployments (issue 13).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase
from ansible.plugins.filter.core import to_nice_json

try:
    from ansible_collections.dataplane.postgresql.plugins.action.filter_fact import FILTER_SPEC, filter_value
except ImportError:  # pragma: no cover - only when loaded outside the collection
    FILTER_SPEC, filter_value = {}, None

ARGUMENT_SPEC = dict(
    data=dict(type="dict"),
    data_var=dict(type="str"),
    data_from=dict(type="dict", options=FILTER_SPEC),
    name=dict(type="str"),
    dir=dict(type="path"),
    stats_key=dict(type="str"),
    stats=dict(type="dict"),
    stats_from=dict(type="dict", options=FILTER_SPEC),
    overwrite=dict(type="bool", default=False),
)
MUTUALLY_EXCLUSIVE = [("data", "data_var", "data_from"), ("stats", "stats_from")]

DIR_MODE = 0o750
# characters a report file name keeps (a run id or host name may hold others: they become _)
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
FILE_MODE = 0o640


def write_json(directory, name, data, exclusive=False):
    """Write DATA as JSON to DIRECTORY/NAME.json (atomically, mode 0640); return the path.

    EXCLUSIVE: never replace an existing file; NAME.2.json, NAME.3.json, ... are tried instead
    (a hard link of the finished temporary file, which fails when the name is taken).
    """
    if not os.path.isdir(directory):
        os.makedirs(directory, DIR_MODE)
    os.chmod(directory, DIR_MODE)
    name = UNSAFE.sub("_", name)[:200] or "report"
    path = os.path.join(directory, name + ".json")
    content = to_bytes(to_nice_json(data, indent=2) + "\n")
    handle, temp = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.chmod(temp, FILE_MODE)
        if not exclusive:
            os.replace(temp, path)
            return path
        attempt = 1
        while True:
            try:
                os.link(temp, path)
                break
            except FileExistsError:
                attempt += 1
                if attempt > 1000:
                    raise
                path = os.path.join(directory, "%s.%d.json" % (name, attempt))
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC,
                                                  mutually_exclusive=MUTUALLY_EXCLUSIVE)
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname")
        if args["data_var"]:
            args["data"] = task_vars.get(args["data_var"])
        if args["data_from"]:
            args["data"] = filter_value(args["data_from"], task_vars)
        if args["stats_from"]:
            if not args["stats_key"]:
                raise AnsibleActionFail("publish_report: stats_from needs stats_key")
            args["stats"] = {args["stats_key"]: {host: filter_value(args["stats_from"], task_vars)}}
        result["changed"] = False
        result["path"] = None
        stats = args["stats"]
        if stats is None and args["stats_key"] and args["data"] is not None:
            stats = {args["stats_key"]: {host: args["data"]}}
        if stats:
            result["ansible_stats"] = {"data": stats, "per_host": False, "aggregate": True}
        if args["dir"]:
            if not args["name"] or args["data"] is None:
                raise AnsibleActionFail("publish_report: data and name are required with dir")
            if self._task.check_mode:
                result["msg"] = "check mode: %s/%s.json not written" % (args["dir"], args["name"])
                return result
            try:
                result["path"] = write_json(args["dir"], args["name"], args["data"], exclusive=not args["overwrite"])
            except OSError as exc:
                raise AnsibleActionFail("could not write the report %s/%s.json: %s" % (args["dir"], args["name"], exc))
        return result
