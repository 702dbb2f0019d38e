# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit role's report, built in Python from the deployment_audit module's result.

It keeps the keys the role's Jinja template produced before (tests and AWX users read them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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


class FilterModule(object):
    def filters(self):
        return {"audit_report": audit_report}
