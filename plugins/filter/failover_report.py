# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the failover role: its request check, the fence requests, the failure message and the report.

They are plain Python over plain data, so the role runs few tasks and templates no loop: at
200 Deployments the Jinja they replace took most of a second per task (issue 13).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.dataplane.postgresql.plugins.module_utils.deployment import (
    DeploymentModelError,
    expand_deployments,
)

MODES = ("forced", "controlled")


def _plural(count):
    return "" if count == 1 else "s"


def failover_request_problems(planes, source, destination, mode, drain_timeout):
    """One sentence per condition of the failover request that fails, and only for those."""
    planes = [str(p) for p in (planes or [])]
    source, destination = str(source), str(destination)
    problems = []
    for var, plane in (("dataplane_failover_from", source), ("dataplane_failover_to", destination)):
        if plane not in planes:
            problems.append("%s is %s, which is not one of dataplane_planes (%s)." % (var, plane, ", ".join(planes)))
    if source == destination:
        problems.append("dataplane_failover_from and dataplane_failover_to are both %s: "
                        "a failover goes from one plane to another." % source)
    if mode not in MODES:
        problems.append("dataplane_failover_mode is %s: use forced or controlled." % mode)
    if not re.match(r"^[0-9]+$", str(drain_timeout)):
        problems.append("dataplane_failover_drain_timeout is %s: a whole number of seconds, 0 or more." % drain_timeout)
    return problems


def failover_selection(value):
    """dataplane_failover_deployments as a list of ids, or None for "every present Deployment".

    ``-e dataplane_failover_deployments=a,b`` arrives as a string: it is split on commas.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise AnsibleFilterError("dataplane_failover_deployments must be a list of ids or a comma-separated "
                                 "string, got %s" % type(value).__name__)
    return [text for text in (str(item).strip() for item in items) if text]


def without_passwords(deployments):
    """The Deployment items without their ``passwords`` key, which is never read.

    So the resolved records can be shown without no_log, and a vault reference to an Airflow
    password that is not defined where the failover or audit runs breaks nothing. Anything
    that is not a list of mappings is returned as it is, for the model to refuse.
    """
    if isinstance(deployments, (str, bytes)) or not isinstance(deployments, Sequence):
        return deployments
    # Read each kept key by name: the passwords are never read (nor templated) at all.
    return [dict((key, item[key]) for key in item if key != "passwords") if isinstance(item, Mapping) else item
            for item in deployments]


def failover_plan(deployments, model_options, source, destination, selected=None):
    """Resolve the Deployments to fail over: ``{model, requests, selected}``.

    ``model_options`` are the keyword arguments of the deployment_model filter (planes,
    commander_user, templates, object_privileges, airflow_schema). Raises a filter error when
    the model is invalid, an unknown id is selected, or there is nothing to fail over.
    """
    selected = failover_selection(selected)
    options = dict(model_options or {})
    try:
        model = expand_deployments(without_passwords(deployments), selected_ids=selected, **options)
    except DeploymentModelError as exc:
        raise AnsibleFilterError(str(exc))
    absent = [d["id"] for d in model if d["state"] != "present"]
    present = [d for d in model if d["state"] == "present"]
    if (absent and selected is not None) or not present:
        raise AnsibleFilterError(
            "Nothing to fail over: dataplane_deployments has no present Deployment%s (selected ids must name "
            "present Deployments; absent ones: %s)."
            % (" among the selected ids " + ", ".join(selected) if selected is not None else "",
               ", ".join(absent) or "none"))
    source, destination = str(source), str(destination)
    requests = [{"name": d["id"], "database": d["database"],
                 "source_role": d["login_roles"][source], "destination_role": d["login_roles"][destination],
                 "killer_role": d["killer_role"], "schema_role": d.get("schema_role")}
                for d in present]
    return {"model": model, "requests": requests, "selected": selected}


def failover_expected_generations(preflight):
    """The fence state generation per database that a check-mode fence result saw (None: no record)."""
    out = {}
    for dep in (preflight or {}).get("deployments") or []:
        before = dep.get("state_before")
        out[dep["database"]] = before.get("generation") if before else None
    return out


def failover_failure_message(result, host, source, destination):
    """The one message for a failed preflight or fence of this server."""
    result = result or {}
    preflight = result.get("preflight")
    if preflight:
        lines = ["Failover %s -> %s refused on %s: the preflight found problems and nothing was changed "
                 "(a failed preflight stops every server before its fence)." % (source, destination, host)]
        parity = False
        for entry in preflight:
            lines.append("- %s:" % entry.get("name"))
            for problem in entry.get("problems") or []:
                lines.append("    - %s" % problem)
                parity = parity or str(problem).startswith("parity: ")
        if parity:
            lines.append("Parity problems mean the destination plane could not use or migrate Airflow's objects as "
                         "the source could: fix them (provision with dataplane_schema_reassign_owned, see "
                         "docs/airflow-objects.md) or set dataplane_failover_ignore_parity=true to fail over anyway.")
        return "\n".join(lines)
    lines = ["Failover %s -> %s failed on %s: %s" % (source, destination, host,
                                                     result.get("msg", "the fence module failed"))]
    for dep in result.get("deployments") or []:
        lines.append("- %s: revoked=%s granted=%s verified=%s remaining sessions=%d" % (
            dep.get("name"), dep.get("revoked", "?"), dep.get("granted", "?"), dep.get("verified", "?"),
            len(dep.get("remaining_sessions") or [])))
    return "\n".join(lines)


def _state_by_plane(record, login_roles):
    """A fence state record with its login roles shown by plane (the model's names)."""
    if not record:
        return None
    plane_of = dict((role, plane) for plane, role in (login_roles or {}).items())
    return {"fenced": sorted(plane_of.get(r, r) for r in record.get("fenced") or []),
            "admitted": sorted(plane_of.get(r, r) for r in record.get("admitted") or []),
            "phase": record.get("phase"), "generation": record.get("generation"), "run": record.get("run"),
            "by": record.get("by"), "at": record.get("at")}


def _state_text(state):
    if not state:
        return "no fence recorded"
    text = "fenced: %s, admitted: %s" % (", ".join(state["fenced"]) or "none", ", ".join(state["admitted"]) or "none")
    if state["phase"] != "complete":
        text += " (%s)" % state["phase"]
    return text


def failover_report(result, model, host, source, destination, mode, drain_timeout, check_mode=False,
                    run_id=None, server=None, finished_at=None):
    """The failover report of one server: summary lines and per-Deployment data (set_stats, JSON file)."""
    result = result or {}
    source, destination = str(source), str(destination)
    roles_of = dict((d["id"], d.get("login_roles") or {}) for d in model or [])
    deployments = []
    lines = []
    for d in result.get("deployments") or []:
        login_roles = roles_of.get(d["name"], {})
        before = _state_by_plane(d.get("state_before"), login_roles)
        after = _state_by_plane(d.get("state_after"), login_roles)
        terminated = d.get("sessions_terminated") or []
        drained = d.get("sessions_drained") or []
        changed = bool(d.get("changed", False))
        verified = bool(d.get("verified", False))
        deployments.append({
            "name": d["name"], "database": d["database"],
            "source_role": d["source_role"], "destination_role": d["destination_role"],
            "changed": changed, "revoked": d.get("revoked", False), "granted": d.get("granted", False),
            "sessions_terminated": len(terminated), "sessions": terminated,
            "sessions_drained": len(drained), "remaining_sessions": d.get("remaining_sessions", []),
            "time_to_fence_ms": d.get("time_to_fence_ms"), "verified": verified,
            "connect_still_via": d.get("connect_still_via", []),
            "fence_before": before, "fence_after": after,
            "state_before": d.get("state_before"), "state_after": d.get("state_after")})
        if check_mode and changed:
            what = "would revoke CONNECT from %s, terminate %d session%s and admit %s" % (
                d["source_role"], len(terminated), _plural(len(terminated)), d["destination_role"])
        elif changed:
            what = "%s%d session%s terminated, fenced in %s ms" % (
                "%d session%s ended on their own, " % (len(drained), _plural(len(drained))) if drained else "",
                len(terminated), _plural(len(terminated)), d.get("time_to_fence_ms", "?"))
        else:
            what = "already failed over, nothing to do"
        if check_mode:
            check = "check mode, nothing changed"
        elif verified:
            check = "verified"
        else:
            check = "NOT VERIFIED (remaining sessions: %d; source can still connect via: %s)" % (
                len(d.get("remaining_sessions") or []), ", ".join(d.get("connect_still_via") or []) or "nothing")
        lines.append("%s: %s fenced, %s admitted on %s: %s; %s | state %s -> %s" % (
            d["name"], d["source_role"], d["destination_role"], d["database"], what, check,
            _state_text(before), _state_text(after)))
    summary = ["%s -> %s on %s (%s mode, %d Deployment%s, %s ms in total)" % (
        source, destination, host, mode, len(deployments), _plural(len(deployments)),
        result.get("time_total_ms", "?"))] + lines
    server = server or {}
    if finished_at is None:
        finished_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "playbook": "failover", "host": host,
        "server": {"host": server.get("host"), "port": int(server["port"]) if server.get("port") is not None else None,
                   "user": server.get("user")},
        "from": source, "to": destination, "mode": mode, "drain_timeout": int(drain_timeout),
        "check_mode": bool(check_mode), "changed": bool(result.get("changed", False)),
        "run_id": result.get("run_id", run_id), "time_total_ms": result.get("time_total_ms"),
        "finished_at": finished_at,
        "verified": all(d["verified"] for d in deployments),
        "deployments": deployments, "summary": summary, "queries": result.get("queries") or [],
    }


class FilterModule(object):
    def filters(self):
        return {
            "failover_request_problems": failover_request_problems,
            "failover_plan": failover_plan,
            "failover_expected_generations": failover_expected_generations,
            "failover_failure_message": failover_failure_message,
            "failover_report": failover_report,
            "without_passwords": without_passwords,
        }
