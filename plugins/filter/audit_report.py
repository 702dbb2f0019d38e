# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit role's report, built in Python from the deployment_audit module's result.

It keeps the keys the role's Jinja template produced before (tests and AWX users read them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.dataplane.postgresql.plugins.filter.failover_report import connection_advice


def _selection(value):
    """dataplane_audit_deployments as a list of ids, or None for every Deployment."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        return [str(items)]
    return [text for text in (str(item).strip() for item in items) if text]


def audit_report(result, host, selected=None):
    """The audit report of one server: the same data for the summary, set_stats and the JSON file.

    SELECTED (``dataplane_audit_deployments``): the ids to report. The module audits every
    Deployment of ``dataplane_deployments`` (so the fence helper's grants to the others' killer
    roles are no drift); the report keeps the selected ones, and its drift is theirs. An id
    that is not a Deployment is drift of its own, named with the ids that exist.
    """
    result = result or {}
    if "deployments" not in result:
        # the module failed (registered with failed_when: false): say what happened and what to do
        lines = ["Audit failed on %s: %s" % (host, result.get("msg", "the deployment_audit module failed"))]
        advice = connection_advice(result.get("msg"), login="commander_user or an admin for the audit")
        lines.append("Nothing was changed (the audit never changes anything)%s" % (
            ". " + advice if advice else "; fix the problem above and run the audit again."))
        return {"host": host, "failed": True, "problems": lines, "summary": lines, "drift": None,
                "drifted": [], "fence_capable": None, "fence_incapable": [], "helper": None,
                "server_version": result.get("server_version"), "connected_as": None, "deployments": [],
                "elapsed_ms": None, "selected": _selection(selected)}
    elapsed = result.get("elapsed_ms")
    if elapsed is None:
        elapsed = (result.get("timings") or {}).get("total_ms")
    deployments = result.get("deployments")
    selected = _selection(selected)
    report = {
        "host": host,
        "server_version": result.get("server_version"),
        "connected_as": result.get("connected_as"),
        "drift": result.get("drift"),
        "drifted": result.get("drifted"),
        "fence_capable": result.get("fence_capable"),
        "fence_incapable": result.get("fence_incapable"),
        "helper": result.get("helper"),
        "summary": result.get("summary"),
        "deployments": deployments,
        "elapsed_ms": elapsed,
        "selected": selected,
        "replication": result.get("replication"),
        "failed": False,
    }
    if selected is None or deployments is None:
        return report
    ids = [d.get("id") for d in deployments]
    unknown = [i for i in selected if i not in ids]
    kept = [d for d in deployments if d.get("id") in selected]
    present = [d for d in kept if d.get("state", "present") == "present"]
    report.update(
        deployments=kept,
        drifted=[d["id"] for d in kept if d.get("drift")] + unknown,
        fence_capable=all(d.get("fence_capable") for d in present),
        fence_incapable=[d["id"] for d in present if not d.get("fence_capable")],
        summary=[d.get("summary") for d in kept] + [
            "%s: DRIFT (1): dataplane_audit_deployments names it, but dataplane_deployments has no such id (its ids: "
            "%s)" % (i, ", ".join(str(x) for x in ids) or "none") for i in unknown],
    )
    report["drift"] = bool(report["drifted"])
    return report


def _record(dep, check_mode):
    """The fence state record a failover report's Deployment entry left on the server: after the
    run, else before it (a check-mode run's state_after is the record it would have written)."""
    for key in (("state_before",) if check_mode else ("state_after", "state_before")):
        if isinstance(dep.get(key), Mapping):
            return dict(dep[key])
    return None


def audit_last_report(path, host):
    """The parts of a failover report file (on the controller) that the audit compares with the
    server: ``{file, host, run_id, finished_at, check_mode, wal, standbys, deployments: [{name,
    database, record}]}``; None when PATH is empty. A file that cannot be read, is not a
    failover report, or is another host's fails the task before anything connects."""
    if path in (None, ""):
        return None
    where = "dataplane_audit_last_report (%s)" % path
    try:
        with open(os.path.expanduser(str(path)), "rb") as handle:
            report = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise AnsibleFilterError("%s cannot be read as JSON: %s. Give a failover report file, as the failover "
                                 "playbook writes it into dataplane_report_dir (failover-<host>-<run id>.json)."
                                 % (where, exc))
    if not isinstance(report, Mapping) or report.get("playbook") != "failover" or not isinstance(
            report.get("deployments"), list):
        raise AnsibleFilterError("%s is not a failover report (its playbook is %r): give a failover-<host>-<run id>.json "
                                 "file" % (where, report.get("playbook") if isinstance(report, Mapping) else None))
    if report.get("host") not in (None, host):
        raise AnsibleFilterError("%s is the report of host %s, not of %s: set dataplane_audit_last_report per host "
                                 "(host_vars), each to its own server's report" % (where, report.get("host"), host))
    deployments = [{"name": d.get("name"), "database": d.get("database"), "record": _record(d, report.get("check_mode"))}
                   for d in report["deployments"] if isinstance(d, Mapping) and d.get("database")]
    return {"file": str(path), "host": report.get("host"), "run_id": report.get("run_id"),
            "finished_at": report.get("finished_at"), "check_mode": bool(report.get("check_mode")),
            "wal": report.get("wal") if isinstance(report.get("wal"), Mapping) else None,
            "standbys": [s for s in report.get("standbys") or [] if isinstance(s, Mapping)],
            "deployments": deployments}


class FilterModule(object):
    def filters(self):
        return {"audit_report": audit_report, "audit_last_report": audit_last_report}
