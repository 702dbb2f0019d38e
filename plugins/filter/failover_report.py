# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the failover role: its request check, the fence requests, the failure message and the report.

They are plain Python over plain data, so the role runs few tasks and templates no loop: at
200 Deployments the Jinja they replace took most of a second per task (issue 13).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import difflib
import re

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

from ansible_collections.dataplane.postgresql.plugins.module_utils.fence.plan import standby_label
from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import (
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


def failover_plan(deployments, model_options, source, destination, selected=None, planes=None, mode=None,
                  drain_timeout=None):
    """Resolve the Deployments to fail over: ``{model, requests, selected, problems}``.

    ``model_options`` are the keyword arguments of the deployment_model filter (planes,
    commander_user, templates, object_privileges, airflow_schema). Never raises: every problem
    of the request (with ``planes``, ``mode`` and ``drain_timeout`` given, the request check of
    failover_request_problems too), of the model, of the selection (an unknown id is named with
    the ids that exist), or nothing to fail over, is one sentence of ``problems``; the role
    then changes nothing and reports them.
    """
    problems = []
    if planes is not None:
        problems.extend(failover_request_problems(planes, source, destination, mode, drain_timeout))
    try:
        selected = failover_selection(selected)
    except AnsibleFilterError as exc:
        problems.append(str(exc) + ".")
        selected = None
    options = dict(model_options or {})
    try:
        model = expand_deployments(without_passwords(deployments), **options)
    except DeploymentModelError as exc:
        problems.append("dataplane_deployments is not valid: %s" % exc)
        return {"model": [], "requests": [], "selected": selected, "problems": problems}
    ids = [d["id"] for d in model]
    if selected is not None:
        unknown = [i for i in selected if i not in ids]
        if unknown:
            problems.append(
                "unknown Deployment ids selected in dataplane_failover_deployments: %s. The ids of "
                "dataplane_deployments%s are: %s%s." % (
                    ", ".join(unknown), " for this host" if ids else "", ", ".join(ids) or "none",
                    "".join(" (did you mean %s for %s?)" % (close[0], i) for i, close in
                            ((i, difflib.get_close_matches(i, ids, n=1, cutoff=0.6)) for i in unknown) if close)))
        model = [d for d in model if d["id"] in selected]
    absent = [d["id"] for d in model if d["state"] != "present"]
    present = [d for d in model if d["state"] == "present"]
    if not problems and ((absent and selected is not None) or not present):
        problems.append(
            "Nothing to fail over: dataplane_deployments has no present Deployment%s (selected ids must name "
            "present Deployments; absent ones: %s)."
            % (" among the selected ids " + ", ".join(selected) if selected is not None else "",
               ", ".join(absent) or "none"))
    source, destination = str(source), str(destination)
    requests = []
    if not problems:
        requests = [{"name": d["id"], "database": d["database"],
                     "source_role": d["login_roles"][source], "destination_role": d["login_roles"][destination],
                     "killer_role": d["killer_role"], "schema_role": d.get("schema_role")}
                    for d in present]
    return {"model": model, "requests": requests, "selected": selected, "problems": problems}


def failover_blockers(hostvars, hosts):
    """Why no server of the play may fence: ``["<host>: <reason>", ...]`` (empty: none).

    A server whose request was refused, or (several hosts) whose check-mode preflight failed,
    stops every server before its fence, so that nothing changes anywhere.
    """
    blockers = []
    for host in hosts or []:
        facts = hostvars[host]
        plan = facts.get("_dataplane_failover") or {}
        if plan.get("problems"):
            blockers.append("%s: the request was refused (%s)" % (host, " ".join(plan["problems"])))
            continue
        preflight = facts.get("_dataplane_failover_plan")
        if _failed(preflight):
            blockers.append("%s: its preflight found problems" % host)
    return blockers


def _failed(result):
    """A fence result that failed: it carries ``msg`` (a failure always has one) or lacks ``deployments``."""
    if not isinstance(result, Mapping) or result.get("skipped"):
        return False
    return "msg" in result or "deployments" not in result


def failover_expected_generations(preflight):
    """The fence state generation per database that a check-mode fence result saw (None: no record)."""
    out = {}
    for dep in (preflight or {}).get("deployments") or []:
        before = dep.get("state_before")
        out[dep["database"]] = before.get("generation") if before else None
    return out


# A connection that failed (the message of community.postgresql's connect_to_db and libpq's).
AUTH_FAILED = re.compile(r"password authentication failed|no password supplied|fe_sendauth", re.I)
NOT_REACHED = re.compile(r"unable to connect to database|could not connect|connection refused|"
                         r"could not translate host name|timeout expired|Connection timed out", re.I)


def connection_advice(msg, login="for the failover usually commander_user"):
    """What to fix when MSG says the connection failed (None when it does not)."""
    msg = str(msg or "")
    if AUTH_FAILED.search(msg):
        return ("The server refused the login: check dataplane_pg_password (the password of dataplane_pg_user, %s; "
                "from your vault or an AWX credential), then run the same command again." % login)
    if NOT_REACHED.search(msg):
        return ("The server could not be reached: check dataplane_pg_host and dataplane_pg_port (or "
                "dataplane_pg_unix_socket) and that the server accepts connections, then run the same command again.")
    return None


MISSING_ON_SERVER = re.compile(r"^(database \S+|source role \S+|destination role \S+) does not exist$")


def failover_failure_message(result, host, source, destination, several_hosts=False, names=None):
    """The one message for a failed preflight or fence of this server: what happened, whether
    anything changed, and what to do. SEVERAL_HOSTS: the play has several servers (a failed
    preflight then stops every one of them). NAMES: every Deployment of the request (the
    preflight lists only those with problems), for the advice to leave the missing ones out."""
    result = result or {}
    preflight = result.get("preflight")
    if preflight:
        lines = ["Failover %s -> %s refused on %s: the preflight found problems and nothing was changed%s." % (
            source, destination, host,
            " (a failed preflight stops every server before its fence)" if several_hosts else "")]
        parity, missing = [], []
        troubled = set(str(entry.get("name")) for entry in preflight if entry.get("problems"))
        healthy = [str(n) for n in names or [] if str(n) not in troubled]
        healthy += [str(e.get("name")) for e in preflight if not e.get("problems") and str(e.get("name")) not in healthy]
        for entry in preflight:
            problems = entry.get("problems") or []
            if not problems:
                continue
            lines.append("- %s:" % entry.get("name"))
            for problem in problems:
                lines.append("    - %s" % problem)
            if any(MISSING_ON_SERVER.match(str(p)) for p in problems):
                missing.append(str(entry.get("name")))
            elif any(str(p).startswith("parity: ") for p in problems):
                parity.append(str(entry.get("name")))
        if missing:
            lines.append("Missing on the server: %s. Run dataplane.postgresql.provision to create %s, or leave %s "
                         "out with dataplane_failover_deployments%s." % (
                             ", ".join(missing), "it" if len(missing) == 1 else "them",
                             "it" if len(missing) == 1 else "them",
                             " (for example -e dataplane_failover_deployments=%s)" % ",".join(healthy)
                             if healthy else ""))
        if parity:
            lines.append("Parity problems (%s) mean the destination plane could not use or migrate Airflow's objects "
                         "as the source could: fix them (provision with dataplane_schema_reassign_owned, see "
                         "docs/airflow-objects.md) or set dataplane_failover_parity_policy=warn to fail over anyway."
                         % ", ".join(parity))
        return "\n".join(lines)
    deployments = result.get("deployments") or []
    msg = str(result.get("msg", "the fence module failed"))
    lines = ["Failover %s -> %s failed on %s: %s" % (source, destination, host, msg)]
    revoked = [d.get("name") for d in deployments if d.get("revoked")]
    advice = connection_advice(msg)
    if advice:
        lines.append("Nothing was changed: the fence never reached the server. " + advice)
    elif not deployments or (not revoked and not any(d.get("granted") or d.get("sessions_terminated")
                                                     for d in deployments)):
        if "nothing was changed" not in msg.lower():
            lines.append("Nothing was changed by this run as far as the fence module reported.")
    for dep in deployments:
        lines.append("- %s: revoked=%s granted=%s verified=%s remaining sessions=%d" % (
            dep.get("name"), dep.get("revoked", "?"), dep.get("granted", "?"), dep.get("verified", "?"),
            len(dep.get("remaining_sessions") or [])))
    if revoked:
        lines.append("CONNECT was revoked from the source plane of %s: rerun the same failover to finish it "
                     "(a rerun completes an interrupted failover); do not start %s before a run says SAFE."
                     % (", ".join(str(r) for r in revoked), destination))
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


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _session_text(session):
    return "pid %s, application %s, client %s" % (
        session.get("pid"), repr(session.get("application") or ""), session.get("client_addr") or "local socket")


# The verdict's word for a run after which the destination plane must not start.
NOT_SAFE = "NOT SAFE"

# At most this many sessions per Deployment in the summary (the JSON report has them all).
SESSIONS_SHOWN = 10


def _deployment_entry(d, login_roles, check_mode):
    terminated = d.get("sessions_terminated") or []
    drained = d.get("sessions_drained") or []
    verified = d.get("verified")
    admitted = d.get("destination_admitted")
    if admitted is None:
        # a fence module older than destination_admitted: what its other keys imply
        admitted = (not d.get("granted", False)) if check_mode else (True if verified else None)
    return {
        "name": d["name"], "database": d["database"],
        "source_role": d["source_role"], "destination_role": d["destination_role"],
        "changed": bool(d.get("changed", False)), "revoked": d.get("revoked", False),
        "granted": d.get("granted", False), "destination_admitted": admitted,
        "sessions_terminated": len(terminated), "sessions": terminated,
        "sessions_drained": len(drained), "remaining_sessions": d.get("remaining_sessions", []),
        "time_to_fence_ms": d.get("time_to_fence_ms"), "verified": bool(verified),
        "connect_still_via": d.get("connect_still_via", []),
        "fence_before": _state_by_plane(d.get("state_before"), login_roles),
        "fence_after": _state_by_plane(d.get("state_after"), login_roles),
        "state_before": d.get("state_before"), "state_after": d.get("state_after")}


def _deployment_lines(dep, source, destination, mode, drain_timeout, check_mode):
    """The summary lines of one Deployment (short; its problems go to the end of the summary)."""
    n = dep["sessions_terminated"]
    if check_mode:
        if not dep["changed"]:
            return ["%s: already failed over (%s fenced, %s admitted), nothing to do"
                    % (dep["name"], source, destination)]
        lines = ["%s: would fence %s (revoke CONNECT from %s, terminate %d session%s) and %s %s" % (
            dep["name"], source, dep["source_role"], n, _plural(n),
            "admit" if not dep["destination_admitted"] else "keep admitted", dep["destination_role"])]
        lines.extend("    would terminate %s" % _session_text(s) for s in dep["sessions"][:SESSIONS_SHOWN])
        if n > SESSIONS_SHOWN:
            lines.append("    ... and %d more (all of them in the JSON report)" % (n - SESSIONS_SHOWN))
        return lines
    if not dep["verified"]:
        return ["%s: NOT VERIFIED (see the problems below)" % dep["name"]]
    if not dep["changed"]:
        return ["%s: already failed over (%s fenced, %s admitted), nothing to do; verified" % (
            dep["name"], source, destination)]
    drained = dep["sessions_drained"]
    if mode == "controlled":
        if n:
            sessions = "%s the %s s drain ran out: %d session%s terminated" % (
                "%d session%s ended on %s own;" % (drained, _plural(drained), "its" if drained == 1 else "their")
                if drained else "no session ended on its own;", drain_timeout, n, _plural(n))
        else:
            sessions = "%d session%s ended on %s own within the %s s drain, none terminated" % (
                drained, _plural(drained), "its" if drained == 1 else "their", drain_timeout)
    else:
        sessions = "%d session%s terminated" % (n, _plural(n))
    return ["%s: %s fenced (%s; %s ms), %s admitted%s; verified" % (
        dep["name"], source, sessions, dep["time_to_fence_ms"] if dep["time_to_fence_ms"] is not None else "?",
        destination, "" if dep["granted"] else " (it already was)")]


def _not_verified_problem(dep):
    why = []
    if dep["remaining_sessions"]:
        why.append("%d session%s of %s remain%s" % (len(dep["remaining_sessions"]), _plural(len(dep["remaining_sessions"])),
                                                    dep["source_role"], "s" if len(dep["remaining_sessions"]) == 1 else ""))
    if dep["connect_still_via"]:
        why.append("%s can still connect via %s" % (dep["source_role"], ", ".join(dep["connect_still_via"])))
    if not dep["destination_admitted"]:
        why.append("%s is not admitted" % dep["destination_role"])
    return "%s: NOT VERIFIED: %s." % (dep["name"], "; ".join(why) or "the fence did not hold")


def failover_report(result, model, host, source, destination, mode, drain_timeout, check_mode=False,
                    run_id=None, server=None, finished_at=None, started_at=None, plan=None, blockers=None,
                    preflight=None, plan_problems=None):
    """The failover report of one server: the verdict, summary lines and per-Deployment data
    (set_stats and the JSON file), for a fence, a check-mode run, a refused or a failed run.

    RESULT is the fence module's result (or the skipped task's, when the run was refused);
    MODEL the failover_plan's ``model`` (the selected Deployments); PLAN_PROBLEMS its
    ``problems`` (or PLAN, the whole failover_plan), which refuse the run; BLOCKERS the
    failover_blockers of the play (another server refused); PREFLIGHT this server's check-mode
    preflight (several hosts).
    """
    result = result or {}
    run = {"host": host, "source": str(source), "destination": str(destination), "mode": mode,
           "drain_timeout": drain_timeout, "check_mode": check_mode,
           "run_text": "run %s" % (result.get("run_id") or run_id)}
    if plan_problems is None:
        plan_problems = (plan or {}).get("problems") or []
    roles_of = dict((d["id"], d.get("login_roles") or {}) for d in model or [])
    names = [d["id"] for d in model or [] if d.get("state", "present") == "present"]
    refused, failed, problems = _run_outcome(run, result, names, plan_problems, preflight, blockers)
    deployments = [_deployment_entry(d, roles_of.get(d["name"], {}), check_mode)
                   for d in (result.get("deployments") or [] if not refused else [])]
    for dep in deployments:
        if not check_mode and not dep["verified"] and not failed:
            problems.append(_not_verified_problem(dep))
    safe = _safe_to_start(deployments, problems, failed, check_mode)
    untouched = failed and not any(d.get("revoked") or d.get("granted") or d.get("sessions_terminated")
                                   for d in result.get("deployments") or [])
    verdict = _verdict(run, deployments, problems, len(deployments) if deployments else len(names),
                       refused, untouched, safe)
    summary = _summary(run, result, verdict, deployments, problems, refused, failed)
    standbys = _standbys(result)
    return {
        "playbook": "failover", "host": host, "server": _server_entry(server),
        "from": run["source"], "to": run["destination"], "mode": mode, "drain_timeout": _timeout(drain_timeout),
        "check_mode": bool(check_mode), "changed": bool(result.get("changed", False)),
        "run_id": result.get("run_id", run_id), "time_total_ms": result.get("time_total_ms"),
        "started_at": started_at, "finished_at": _now() if finished_at is None else finished_at,
        "verdict": verdict, "safe_to_start_destination": safe,
        "refused": refused, "failed": failed or refused or (not check_mode and not safe),
        "problems": problems,
        "verified": bool(deployments) and all(d["verified"] for d in deployments),
        "deployments": deployments, "summary": summary, "queries": result.get("queries") or [],
        "wal": result.get("wal"), "standbys": standbys, "standby_policy": result.get("standby_policy"),
        "standby_problems": result.get("standby_problems") or [], "commit_waits": result.get("commit_waits") or [],
    }


def _run_outcome(run, result, names, plan_problems, preflight, blockers):
    """(refused, failed, problems) of the run: refused by the plan, by this server's preflight or
    another server's blockers (nothing changed), or failed in the fence module."""
    host, source, destination = run["host"], run["source"], run["destination"]
    if plan_problems:
        return True, False, list(plan_problems)
    if _failed(preflight):
        return True, False, failover_failure_message(preflight, host, source, destination, several_hosts=True,
                                                     names=names).split("\n")
    if blockers and not result.get("deployments"):
        return True, False, ["Refused on %s, nothing was changed: no server fences when another cannot (%s)."
                             % (host, "; ".join(blockers))]
    if _failed(result):
        refused = bool(result.get("preflight")) or "nothing was changed" in str(result.get("msg", ""))
        return refused, True, failover_failure_message(result, host, source, destination, names=names).split("\n")
    return False, False, []


def _safe_to_start(deployments, problems, failed, check_mode):
    """Whether the destination plane may start: every Deployment fenced, verified and admitted
    (in check mode: nothing left to change), and no problem."""
    # The standbys: with standby_policy=require (the default) the fence module fails when one
    # does not have the REVOKE, so the run is not safe; with warn the destination is admitted by
    # the operator's choice and the lagging standbys are warnings of the summary.
    if check_mode:
        return bool(deployments) and not problems and not [d for d in deployments if d["changed"]]
    done = [d for d in deployments if d["verified"] and d["destination_admitted"]]
    return bool(deployments) and not problems and not failed and len(done) == len(deployments)


def _verdict(run, deployments, problems, selected, refused, untouched, safe):
    """The verdict line: SAFE or NOT SAFE to start the destination plane, and why."""
    host, source, destination, run_text = run["host"], run["source"], run["destination"], run["run_text"]
    if refused:
        return ("%s to start %s on %s: the failover was refused, nothing was changed (see the problems "
                "below); %s" % (NOT_SAFE, destination, host, run_text))
    if untouched:
        return ("%s to start %s on %s: the failover failed before changing anything (see the problems "
                "below); %s" % (NOT_SAFE, destination, host, run_text))
    if run["check_mode"]:
        return _check_mode_verdict(run, deployments, problems, selected, safe)
    done = [d for d in deployments if d["verified"] and d["destination_admitted"]]
    if safe:
        return ("SAFE to start %s on %s: %d of %d Deployment%s fenced and verified (%s refused, 0 %s sessions, "
                "%s admitted); %s" % (destination, host, len(done), selected, _plural(selected), source, source,
                                      destination, run_text))
    sessions_left = sum(len(d["remaining_sessions"] or []) for d in deployments)
    return ("%s to start %s on %s: %d of %d Deployment%s fenced and verified, %d %s session%s left "
            "(%d problem%s below); %s" % (
                NOT_SAFE, destination, host, len(done), selected, _plural(selected), sessions_left, source,
                _plural(sessions_left), len(problems), _plural(len(problems)), run_text))


def _check_mode_verdict(run, deployments, problems, selected, safe):
    host, source, destination, run_text = run["host"], run["source"], run["destination"], run["run_text"]
    if safe:
        return ("CHECK MODE, nothing changed. SAFE to start %s on %s: %d of %d Deployment%s already fenced "
                "(%s refused, 0 %s sessions, %s admitted); %s" % (
                    destination, host, selected, selected, _plural(selected), source, source, destination,
                    run_text))
    would_change = [d for d in deployments if d["changed"]]
    sessions = sum(d["sessions_terminated"] for d in would_change)
    return ("CHECK MODE, nothing changed. NOT SAFE yet to start %s on %s: the failover would fence %d of %d "
            "Deployment%s (%d %s session%s to terminate) and admit %s%s; %s" % (
                destination, host, len(would_change), selected, _plural(selected), sessions, source,
                _plural(sessions), destination,
                " (%d problem%s below)" % (len(problems), _plural(len(problems))) if problems else "",
                run_text))


def _summary(run, result, verdict, deployments, problems, refused, failed):
    """The summary lines: the verdict, the run, one or more lines per Deployment, the problems."""
    host, source, destination = run["host"], run["source"], run["destination"]
    summary = [verdict]
    if not refused:
        summary.append("%s -> %s on %s: %s mode, %d Deployment%s, %s ms in the fence%s" % (
            source, destination, host, run["mode"], len(deployments), _plural(len(deployments)),
            result.get("time_total_ms", "?"), " (check mode, nothing changed)" if run["check_mode"] else ""))
        for dep in deployments:
            summary.extend(_deployment_lines(dep, source, destination, run["mode"], run["drain_timeout"],
                                             run["check_mode"]))
        summary.extend(_replication_lines(result, source, failed or run["check_mode"]))
    if problems:
        summary.append("PROBLEMS on %s: do not start %s before a run says SAFE" % (host, destination))
        summary.extend(problems if refused or failed else ["- " + p for p in problems])
    return summary


def _standbys(result):
    """The fence's standbys for the report (without the statements run on them)."""
    return [dict((k, v) for k, v in entry.items() if k != "queries") for entry in result.get("standbys") or []]


def _standby_line(entry, source):
    state = {"caught_up": "has the REVOKE", "lagging": "%s bytes behind the REVOKE" % entry.get("gap_bytes"),
             "unknown": "position unknown"}.get(entry.get("state"), entry.get("state"))
    line = "%s: %s (flushed %s)" % (standby_label(entry), state, entry.get("flush_lsn") or "?")
    if entry.get("source") == "listed":
        line += "%s; %s %s session%s terminated, %s left" % (
            ", replayed" if entry.get("replayed") else ", not replayed", entry.get("sessions_terminated") or 0, source,
            _plural(entry.get("sessions_terminated") or 0), "?" if entry.get("sessions_left") is None
            else entry["sessions_left"])
    return line


def _replication_lines(result, source, quiet):
    """The summary lines about replication: the fence's WAL position, each standby, and with
    standby_policy=warn the standbys that lack the fence (QUIET: the module's failure says it)."""
    wal, standbys, policy = result.get("wal"), _standbys(result), result.get("standby_policy")
    lines = []
    if wal and wal.get("revoke_lsn"):
        lines.append("WAL: REVOKE at %s, final %s, timeline %s, system identifier %s; %d standby%s%s" % (
            wal["revoke_lsn"], wal.get("final_lsn"), wal.get("timeline"), wal.get("system_identifier"),
            len(standbys), "" if len(standbys) == 1 else "s", " (not looked at: standby_policy=ignore)"
            if policy == "ignore" else ""))
    lines.extend("    " + _standby_line(entry, source) for entry in standbys)
    if policy == "warn" and not quiet:
        lines.extend("WARNING (standby_policy=warn, the destination was admitted anyway): %s" % p
                     for p in result.get("standby_problems") or [])
    return lines


def _server_entry(server):
    server = server or {}
    return {"host": server.get("host"), "port": int(server["port"]) if server.get("port") is not None else None,
            "user": server.get("user")}


def _timeout(drain_timeout):
    try:
        return int(drain_timeout)
    except (TypeError, ValueError):
        return None


class FilterModule(object):
    def filters(self):
        return {
            "failover_request_problems": failover_request_problems,
            "failover_plan": failover_plan,
            "failover_blockers": failover_blockers,
            "failover_expected_generations": failover_expected_generations,
            "failover_failure_message": failover_failure_message,
            "failover_report": failover_report,
            "without_passwords": without_passwords,
        }
