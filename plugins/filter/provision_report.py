# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provision role's summary lines, set_stats data and report file, built in Python from the
deployment_setup module's result (the same keys the role's Jinja produced before).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from collections.abc import Mapping

from ansible_collections.dataplane.postgresql.plugins.filter.failover_report import connection_advice

# A provisioned Deployment's keys that the JSON file leaves out (they are in the module result).
PROVISION_FILE_OMITS = ("before", "after", "fence_warnings")


def provision_failed(result):
    """Whether the deployment_setup result is a failure (registered with failed_when: false):
    a success always has ``deployments``."""
    return not isinstance(result, Mapping) or "deployments" not in result


def provision_failure_message(result, host):
    """What happened, whether anything changed, and what to do, for a failed provision run."""
    result = result or {}
    msg = str(result.get("msg") or "the deployment_setup module failed")
    lines = ["Provision failed on %s: %s" % (host, msg)]
    advice = connection_advice(msg, login="an admin for provision")
    if advice:
        lines.append("Nothing was changed: provision never reached the server. " + advice)
    elif result.get("created_databases") or result.get("dropped_databases"):
        lines.append("Fix the problem above and run provision again: it converges from what is there now.")
    elif "nothing was changed" not in msg.lower():
        lines.append("Fix the problem above and run provision again (it converges; check mode shows what it would do).")
    return "\n".join(lines)


def provision_summary(result, fence_helper_managed=True, check_mode=False, host=None):
    """One line per Deployment (what changed, or would in check mode, then its fence state) and the helper;
    for a failed run, the failure message's lines."""
    result = result or {}
    if provision_failed(result):
        return provision_failure_message(result, host or "this host").split("\n")
    helper_changed = bool((result.get("fence_helper") or {}).get("changed", False))
    helper = (("would change" if check_mode else "changed") if helper_changed
              else ("unchanged" if fence_helper_managed else "not managed"))
    lines = [d.get("summary") for d in result.get("deployments") or []]
    if result.get("commander_created"):
        lines.append("%s: %s (LOGIN, for every Deployment)" % (
            result["commander_created"], "would be created" if check_mode else "created"))
    return lines + ["fence helper: " + helper]


def provision_stats(result):
    """What the provision role publishes with set_stats for this server: changed, per id changed and fence."""
    result = result or {}
    deployments = result.get("deployments") or []
    return {
        "changed": result.get("changed"),
        "deployments": dict((d["id"], d.get("changed")) for d in deployments),
        "fence": dict((d["id"], d["fence"]) for d in deployments if "fence" in d),
    }


def provision_report(result, host, run_id=None, started_at=None, check_mode=False, finished_at=None):
    """The provision report file of one server (a failed run's too: ``failed`` and ``problems``)."""
    result = result or {}
    if finished_at is None:
        finished_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    failure = provision_failure_message(result, host).split("\n") if provision_failed(result) else []
    return {
        "failed": bool(failure), "problems": failure,
        "playbook": "provision", "host": host, "run_id": None if run_id is None else str(run_id),
        "started_at": started_at, "finished_at": finished_at, "check_mode": bool(check_mode),
        "changed": result.get("changed"),
        "deployments": [dict((k, v) for k, v in d.items() if k not in PROVISION_FILE_OMITS)
                        for d in result.get("deployments") or []],
        "created_databases": result.get("created_databases"),
        "dropped_databases": result.get("dropped_databases"),
        "fence_helper_changed": bool((result.get("fence_helper") or {}).get("changed", False)),
        "commander_created": result.get("commander_created"),
    }


class FilterModule(object):
    def filters(self):
        return {
            "provision_summary": provision_summary,
            "provision_stats": provision_stats,
            "provision_report": provision_report,
            "provision_failure_message": provision_failure_message,
        }
