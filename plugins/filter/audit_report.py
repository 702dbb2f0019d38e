# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit role's report, built in Python from the deployment_audit module's result.

It keeps the keys the role's Jinja template produced before (tests and AWX users read them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def audit_report(result, host):
    """The audit report of one server: the same data for the summary, set_stats and the JSON file."""
    result = result or {}
    elapsed = result.get("elapsed_ms")
    if elapsed is None:
        elapsed = (result.get("timings") or {}).get("total_ms")
    return {
        "host": host,
        "server_version": result.get("server_version"),
        "connected_as": result.get("connected_as"),
        "drift": result.get("drift"),
        "drifted": result.get("drifted"),
        "fence_capable": result.get("fence_capable"),
        "fence_incapable": result.get("fence_incapable"),
        "helper": result.get("helper"),
        "summary": result.get("summary"),
        "deployments": result.get("deployments"),
        "elapsed_ms": elapsed,
    }


class FilterModule(object):
    def filters(self):
        return {"audit_report": audit_report}
