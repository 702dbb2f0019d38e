# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that build the reports of the provision and audit roles from their module results.

The failover report is in failover.py. Each report keeps the keys the roles' Jinja produced
before (tests and AWX users read them); see docs for their meaning.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# A provisioned Deployment's keys that the JSON file leaves out (they are in the module result).
PROVISION_FILE_OMITS = ("before", "after", "fence_warnings")


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


def provision_summary(result, fence_helper_managed=True):
    """One line per Deployment (what changed, or would in check mode, then its fence state) and the helper."""
    result = result or {}
    helper_changed = bool((result.get("fence_helper") or {}).get("changed", False))
    helper = "changed" if helper_changed else ("unchanged" if fence_helper_managed else "not managed")
    return [d.get("summary") for d in result.get("deployments") or []] + ["fence helper: " + helper]


def provision_stats(result):
    """What the provision role publishes with set_stats for this server: changed, per id changed and fence."""
    result = result or {}
    deployments = result.get("deployments") or []
    return {
        "changed": result.get("changed"),
        "deployments": dict((d["id"], d.get("changed")) for d in deployments),
        "fence": dict((d["id"], d["fence"]) for d in deployments if "fence" in d),
    }


def provision_report(result, host):
    """The provision report file of one server."""
    result = result or {}
    return {
        "host": host,
        "changed": result.get("changed"),
        "deployments": [dict((k, v) for k, v in d.items() if k not in PROVISION_FILE_OMITS)
                        for d in result.get("deployments") or []],
        "created_databases": result.get("created_databases"),
        "dropped_databases": result.get("dropped_databases"),
        "fence_helper_changed": bool((result.get("fence_helper") or {}).get("changed", False)),
    }


class FilterModule(object):
    def filters(self):
        return {
            "audit_report": audit_report,
            "provision_summary": provision_summary,
            "provision_stats": provision_stats,
            "provision_report": provision_report,
        }
