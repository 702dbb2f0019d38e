# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit and streaming replication: would a promotion keep the fence?

Three checks per present Deployment, each only when the audit is given what it needs:

``last_failover`` (option ``last_report``, a failover report, for the Deployments it covers)
    The server still shows the fence that the report's run recorded: its fence record is the
    report's or a later one, and the server is the report's (system identifier). Promotion
    replays only the WAL a standby had flushed, so a standby that missed the fence comes up
    with no record, or an older one, and both planes admitted. Such a Deployment fails with
    ``LOST``. A record that is the report's proves the fence is in this server's history (the
    record is written in the transactions of the REVOKE and the GRANT), even on another
    timeline: the finding then only notes the promotion. Without a record in the report, a
    changed timeline is all there is to go by, and it fails.
``standby_positions`` (a report that gives the fence's WAL position, ``wal``)
    Every standby the server knows (``pg_stat_replication``, physical replication slots), every
    listed one (option ``standbys``) and every one the report named has flushed the fence's
    last position. A position the login may not read is reported as unknown, not guessed.
``standby_sessions`` (option ``standbys``)
    Each listed hot standby is reachable, is a standby of this server, and holds no session of
    the Deployment's fenced login roles: the fence's REVOKE reaches a standby through WAL, its
    session terminations do not, and such sessions survive a promotion and write afterwards.

``merge_findings`` adds them to the results and returns the ``replication`` part of the
module's result (the server's position, the fence's, every standby with its state).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ..base.database import ThreadModule
from ..base.workers import run_jobs, thread_count
from ..server import replication_reads as _reads
from ..server.replication_reads import lsn_int, lsn_text

CHECK_LOST = "last_failover"
CHECK_POSITIONS = "standby_positions"
CHECK_SESSIONS = "standby_sessions"
LOST = "the fence was probably lost in a promotion: run the failover again"
POSITIONS_HINT = ("pg_stat_replication shows positions only to members of pg_monitor or pg_read_all_stats: "
                  "list the standby in dataplane_standbys (the audit then reads it there), stream it through "
                  "a replication slot, or audit as an admin")
WORKERS = 4  # listed standbys read at once

# --------------------------------------------------------------------------- input


def input_problems(params):
    """The problems of the options ``standbys`` and ``last_report`` (one sentence each). Pure."""
    problems = []
    names = [s.get("name") for s in params.get("standbys") or []]
    twice = sorted(set(n for n in names if names.count(n) > 1))
    if twice:
        problems.append("standbys: the names %s are listed more than once" % ", ".join(twice))
    report = params.get("last_report")
    if report is None:
        return problems
    if not isinstance(report.get("deployments"), list) or not all(
            isinstance(d, dict) and d.get("database") for d in report["deployments"]):
        problems.append("last_report: its deployments must be a list of {name, database, record} "
                        "(a failover report as the failover playbook writes it)")
    wal = report.get("wal")
    if wal is not None and not isinstance(wal, dict):
        problems.append("last_report: wal must be a dict {revoke_lsn, final_lsn, timeline, system_identifier}")
    elif wal:
        for key in ("revoke_lsn", "final_lsn"):
            if wal.get(key) not in (None, "") and lsn_int(wal[key]) is None:
                problems.append("last_report: wal.%s is %r, not a WAL position such as 0/3000060" % (key, wal[key]))
    return problems


def fence_position(report):
    """The fence's position from the report's ``wal``, or None when it gives none."""
    wal = (report or {}).get("wal") or {}
    revoke, final = lsn_int(wal.get("revoke_lsn")), lsn_int(wal.get("final_lsn"))
    if revoke is None and final is None:
        return None
    return {"run_id": report.get("run_id"), "revoke": revoke if revoke is not None else final,
            "final": final if final is not None else revoke, "timeline": _int(wal.get("timeline")),
            "system_identifier": _text(wal.get("system_identifier"))}


def _int(value):
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value):
    return None if value in (None, "") else str(value)


# --------------------------------------------------------------------------- reading


def read_server_facts(session):
    """The server's replication facts (one query, logged in the session's queries)."""
    facts = _reads.read_server(session)
    session.queries.append(_reads.SERVER_QUERY)
    return facts


def read_listed(module, standbys, roles):
    """Read every listed standby (a few at a time); a standby that cannot be read is reported,
    never raised."""
    jobs = [lambda stand_in, s=s: _reads.read_standby(stand_in, s, roles) for s in standbys]
    contexts = [ThreadModule(module) for dummy in range(thread_count(len(jobs), WORKERS))]
    out = []
    for standby, outcome in zip(standbys, run_jobs(jobs, contexts)):
        if outcome.ok:
            out.append(outcome.result)
        else:
            out.append({"name": standby["name"], "host": standby["host"], "port": standby.get("port") or 5432,
                        "reachable": False, "error": str(outcome.error), "sessions": []})
    return out


# --------------------------------------------------------------------------- standbys


def _entry(name, source, **extra):
    entry = {"name": name, "source": source, "slot": None, "listed": False, "host": None, "port": None,
             "reachable": None, "error": None, "in_recovery": None, "system_identifier": None,
             "flush_lsn": None, "replay_lsn": None, "position_from": None, "gap_bytes": None, "state": None,
             "sessions": []}
    entry.update(extra)
    return entry


def _from_sender(sender):
    flush, replay, where = sender.get("flush_lsn"), sender.get("replay_lsn"), "pg_stat_replication"
    if flush is None and sender.get("slot_restart_lsn"):
        flush, where = sender["slot_restart_lsn"], "slot"
    return _entry(sender.get("application_name") or sender.get("slot"),
                  "replication" if sender.get("pid") is not None else "slot",
                  slot=sender.get("slot"), flush_lsn=flush, replay_lsn=replay, position_from=where if flush else None)


def _add_listed(entries, read):
    """Merge a listed standby's own reading into the entry the server knows it by (its
    application_name or its slot), or add it."""
    match = [e for e in entries if read["name"] in (e["name"], e["slot"])]
    entry = match[0] if match else _entry(read["name"], "listed")
    if not match:
        entries.append(entry)
    entry.update(listed=True, host=read.get("host"), port=read.get("port"), reachable=read.get("reachable"),
                 error=read.get("error"), in_recovery=read.get("in_recovery"),
                 system_identifier=read.get("system_identifier"), sessions=read.get("sessions") or [])
    if read.get("reachable") and read.get("in_recovery"):
        flushed = read.get("receive_lsn") or read.get("replay_lsn")
        if flushed:  # the standby's own word: what it has flushed is what a promotion replays
            entry.update(flush_lsn=flushed, replay_lsn=read.get("replay_lsn"), position_from="standby")


def _add_reported(entries, reported):
    """The report's standbys that the server does not know now (no walsender, no slot)."""
    for standby in reported or []:
        if not isinstance(standby, dict) or not standby.get("name"):
            continue
        if any(standby["name"] in (e["name"], e["slot"]) for e in entries):
            continue
        entries.append(_entry(standby["name"], "report", flush_lsn=standby.get("flush_lsn"),
                              replay_lsn=standby.get("replay_lsn"), position_from="report" if standby.get(
                                  "flush_lsn") else None, gap_bytes=standby.get("gap_bytes")))


def standby_entries(server, listed, report, position):
    """Every standby known (the server's, the listed, the report's), with its state against
    POSITION (fence_position(), or None: no comparison). Pure."""
    entries = [_from_sender(s) for s in server.get("senders") or []]
    for read in listed or []:
        _add_listed(entries, read)
    if position is not None:
        _add_reported(entries, (report or {}).get("standbys"))
    for entry in entries:
        entry["state"], entry["gap_bytes"] = _state(entry, position)
    return entries


def _state(entry, position):
    """(state, gap in bytes behind the fence's last position)."""
    flushed = lsn_int(entry["flush_lsn"])
    if entry["source"] == "report":
        gap = entry["gap_bytes"]
        if gap is None and flushed is not None and position is not None:
            gap = max(0, position["final"] - flushed)
        return ("not_seen_behind" if gap else "not_seen"), gap
    if flushed is None:
        return ("unreachable" if entry["listed"] and not entry["reachable"] else "unknown"), None
    if position is None:
        return "not_compared", None
    gap = max(0, position["final"] - flushed)
    if flushed >= position["final"]:
        return "flushed", 0
    return ("revoke_only" if flushed >= position["revoke"] else "behind"), gap


# --------------------------------------------------------------------------- findings


def _finding(check, ok, detail):
    return {"check": check, "ok": bool(ok), "detail": detail}


_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?")


def _stamp(text):
    """An ISO 8601 UTC time as a comparable tuple (None when it is not one)."""
    match = _STAMP.match(str(text or ""))
    if not match:
        return None
    parts = [int(p) for p in match.groups()[:6]]
    return tuple(parts) + (int((match.group(7) or "0")[:6].ljust(6, "0")),)


def record_order(server_record, report_record):
    """How the server's fence record compares with the report's: "same", "newer", "older", or
    "missing" (no record on the server). Pure."""
    if server_record is None:
        return "missing"
    mine, theirs = server_record.get("generation") or 0, report_record.get("generation") or 0
    if mine != theirs:
        return "newer" if mine > theirs else "older"
    if (server_record.get("run"), server_record.get("at")) == (report_record.get("run"), report_record.get("at")):
        return "same"
    ours, reported = _stamp(server_record.get("at")), _stamp(report_record.get("at"))
    return "older" if ours is not None and reported is not None and ours < reported else "newer"


def _describe(record):
    return "generation %s (fenced: %s; admitted: %s; phase %s; run %s at %s)" % (
        record.get("generation"), ", ".join(record.get("fenced") or []) or "nobody",
        ", ".join(record.get("admitted") or []) or "nobody", record.get("phase"), record.get("run"),
        record.get("at"))


def _server_changes(server, report):
    """(another server?, promoted since? (None: unknown), notes) of SERVER against REPORT's wal."""
    wal = (report or {}).get("wal") or {}
    theirs, ours = _text(wal.get("system_identifier")), _text(server.get("system_identifier"))
    other = theirs is not None and ours is not None and theirs != ours
    then, now = _int(wal.get("timeline")), server.get("timeline")
    notes = []
    if other:
        notes.append("this server's system identifier is %s, the report's %s: it is not the server the failover "
                     "fenced (rebuilt, restored from a dump, or the report is of another server)" % (ours, theirs))
    promoted = None  # unknown
    if then is not None and now is not None:
        promoted = then != now
    if promoted:
        notes.append("the server is on timeline %s, the failover ran on timeline %s (it was promoted since)"
                     % (now, then))
    return other, promoted, notes


def last_failover_finding(dep, entry, server, report):
    """The last_failover finding of one Deployment of the report (DEP: {name, database, record});
    ENTRY: the audit's fence_states entry of its database ({record, error}). Pure."""
    wanted = dep.get("record")
    run = report.get("run_id")
    other, promoted, notes = _server_changes(server, report)
    if entry is not None and entry.get("error"):
        return _finding(CHECK_LOST, False, "the fence record of %s cannot be read (see fence_state), so whether "
                        "the fence of run %s is still there is unknown" % (dep["database"], run))
    if not wanted:
        if promoted or other:
            return _finding(CHECK_LOST, False, "%s: the report of run %s holds no fence record of %s to compare, and %s"
                            % (LOST, run, dep["database"], "; ".join(notes)))
        return _finding(CHECK_LOST, True, "the report of run %s recorded no fence of %s" % (run, dep["database"]))
    order = record_order((entry or {}).get("record"), wanted)
    problems = list(notes) if other else []
    if order == "missing":
        problems.append("%s has no fence record, the failover's run %s wrote %s"
                        % (dep["database"], run, _describe(wanted)))
    elif order == "older":
        problems.append("the fence record of %s is older than the report's: %s on the server, %s in the report"
                        % (dep["database"], _describe(entry["record"]), _describe(wanted)))
    if problems:
        if promoted is False and not other:
            problems.append("the server is on the failover's timeline (%s), so it was not promoted since: the "
                            "database's comment was changed after the failover" % server.get("timeline"))
        elif promoted and not other:
            problems.extend(notes)
        return _finding(CHECK_LOST, False, "%s: %s" % (LOST, "; ".join(problems)))
    detail = "the fence of run %s is on the server: %s" % (run, _describe(wanted))
    if order == "newer":
        detail = "a later fence than the report's (run %s) is on the server: %s" % (run, _describe(entry["record"]))
    if promoted:
        detail += "; %s, and its record shows the fence is in this server's history" % notes[-1]
    return _finding(CHECK_LOST, True, detail)


def _standby_name(entry):
    where = {"replication": "connected", "slot": "not connected, slot %s" % entry["slot"],
             "listed": "listed", "report": "named in the report"}[entry["source"]]
    if entry["source"] == "replication" and entry["slot"]:
        where += ", slot %s" % entry["slot"]
    return "standby %s (%s)" % (entry["name"], where)


def _position_problem(entry, position):
    run = position["run_id"]
    name = _standby_name(entry)
    if entry["state"] == "behind":
        return ("%s has flushed up to %s, %d bytes behind the fence of run %s (REVOKE at %s): promoted, it would "
                "lose the fence%s" % (name, entry["flush_lsn"], entry["gap_bytes"], run, lsn_text(position["revoke"]),
                                      "; drop the slot if that standby is gone" if entry["source"] == "slot" else ""))
    if entry["state"] == "revoke_only":
        return ("%s has the REVOKE of run %s but not its last commit at %s (%d bytes behind): promoted, it would "
                "admit neither plane" % (name, run, lsn_text(position["final"]), entry["gap_bytes"]))
    if entry["state"] == "not_seen_behind":
        return ("%s had not flushed the fence of run %s (%s bytes behind) and the server does not know it now (no "
                "walsender, no slot): promoted, it would lose the fence; rebuild it from this server"
                % (name, run, entry["gap_bytes"]))
    return None


def positions_finding(entries, position, comparable):
    """The standby_positions finding (the same for every Deployment the report fenced). Pure."""
    if comparable is not True:
        return _finding(CHECK_POSITIONS, True, "not compared: %s" % comparable)
    problems = [p for p in (_position_problem(e, position) for e in entries) if p]
    unknown = [e["name"] for e in entries if e["state"] == "unknown"]
    tail = ("; position unknown for %s (%s)" % (", ".join(unknown), POSITIONS_HINT)) if unknown else ""
    tail += "".join("; position unknown for %s: it cannot be read (%s)" % (e["name"], e["error"])
                    for e in entries if e["state"] == "unreachable")
    if problems:
        return _finding(CHECK_POSITIONS, False, "; ".join(problems) + tail)
    flushed = [e["name"] for e in entries if e["state"] in ("flushed", "not_seen")]
    if not entries:
        return _finding(CHECK_POSITIONS, True, "no standby is known to the server, listed or in the report" + tail)
    return _finding(CHECK_POSITIONS, True, "%s flushed the fence of run %s (%s)%s" % (
        ", ".join(flushed) if flushed else "no standby whose position is known", position["run_id"],
        lsn_text(position["final"]), tail))


def comparability(server, report, position):
    """True when the fence's positions can be compared with this server's standbys, else why not."""
    if report is None:
        return "no failover report given (dataplane_audit_last_report)"
    if position is None:
        return "the report gives no WAL position of the fence"
    if server.get("in_recovery"):
        return "this server is a standby (in recovery)"
    other, promoted, notes = _server_changes(server, report)
    if other or promoted:
        return "; ".join(notes)
    return True


def sessions_finding(roles, entries, server, plane_of):
    """The standby_sessions finding of one Deployment: ROLES are its fenced login roles. Pure."""
    problems = []
    for entry in (e for e in entries if e["listed"]):
        where = "standby %s (%s:%s)" % (entry["name"], entry["host"], entry["port"])
        if not entry["reachable"]:
            problems.append("%s cannot be read (%s): its sessions are unknown" % (where, entry["error"]))
            continue
        if not entry["in_recovery"]:
            problems.append("%s is not in recovery: it was promoted, and two servers may accept writes" % where)
        elif entry["system_identifier"] != server.get("system_identifier"):
            problems.append("%s is not a standby of this server (system identifier %s, this server's %s)"
                            % (where, entry["system_identifier"], server.get("system_identifier")))
        mine = [s for s in entry["sessions"] if s["role"] in roles]
        for role in sorted(set(s["role"] for s in mine)):
            held = [s for s in mine if s["role"] == role]
            problems.append("%s (plane %s) is fenced but has %d session(s) on %s (pid %s; database %s): they "
                            "survive a promotion; list the standby for the failover (dataplane_standbys), which "
                            "terminates them" % (role, plane_of.get(role, "?"), len(held), where,
                                                 ", ".join(str(s["pid"]) for s in held),
                                                 ", ".join(sorted(set(str(s["database"]) for s in held)))))
    listed = [e["name"] for e in entries if e["listed"]]
    if problems:
        return _finding(CHECK_SESSIONS, False, "; ".join(problems))
    if not roles:
        return _finding(CHECK_SESSIONS, True, "no plane is fenced; standbys read: %s" % ", ".join(listed))
    return _finding(CHECK_SESSIONS, True, "no session of %s on %s" % (", ".join(sorted(roles)), ", ".join(listed)))


# --------------------------------------------------------------------------- merging


def _fenced_roles(result, record, reported):
    """The Deployment's fenced login roles: those the server's state fences, and those the
    report's record fenced (a fence lost in a promotion fences nobody on the server)."""
    roles = set((result.get("fence") or {}).get("fenced_roles") or [])
    roles |= set(((reported or {}).get("record") or {}).get("fenced") or [])
    return roles & set(record["login_roles"].values())


def _append(result, findings, summary_line):
    result["findings"].extend(findings)
    result["drift"] = any(not f["ok"] for f in result["findings"])
    result["summary"] = summary_line(result)


def merge_findings(module, results, records, facts, summary_line, overall_summary):
    """Read the listed standbys, add the three findings to the RESULTS of the present RECORDS
    and return (results, overall, replication) - the last is the module's ``replication``."""
    server = facts.get("replication") or {}
    report = module.params.get("last_report")
    standbys = module.params.get("standbys") or []
    position = fence_position(report) if report else None
    reported = dict((d["database"], d) for d in (report or {}).get("deployments") or [])
    present = [(res, rec) for res, rec in zip(results, records) if rec.get("state", "present") == "present"]
    roles = dict((rec["database"], _fenced_roles(res, rec, reported.get(rec["database"]))) for res, rec in present)
    listed = read_listed(module, standbys, sorted(set(r for rs in roles.values() for r in rs))) if standbys else []
    comparable = comparability(server, report, position)
    entries = standby_entries(server, listed, report, position if comparable is True else None)
    positions = positions_finding(entries, position, comparable) if report else None
    for result, record in present:
        findings = []
        dep = reported.get(record["database"])
        if dep is not None:
            entry = (facts.get("fence_states") or {}).get(record["database"])
            findings.append(last_failover_finding(dep, entry, server, report))
            if position is not None and dep.get("record"):
                findings.append(dict(positions))
        if standbys:
            plane_of = dict((login, plane) for plane, login in record["login_roles"].items())
            findings.append(sessions_finding(roles[record["database"]], entries, server, plane_of))
        if findings:
            _append(result, findings, summary_line)
    unknown = [e["name"] for e in entries if e["state"] == "unknown"]
    if unknown:
        module.warn("standby position unknown for %s: %s" % (", ".join(unknown), POSITIONS_HINT))
    replication = {
        "server": dict((k, v) for k, v in server.items() if k != "senders"),
        "last_report": None if not report else dict(
            (k, report.get(k)) for k in ("file", "host", "run_id", "finished_at", "check_mode")),
        "fence_position": None if position is None else {
            "run_id": position["run_id"], "revoke_lsn": lsn_text(position["revoke"]),
            "final_lsn": lsn_text(position["final"]), "timeline": position["timeline"],
            "system_identifier": position["system_identifier"]},
        "compared": comparable is True,
        "not_compared": None if comparable is True else comparable,
        "standbys": entries,
    }
    return results, overall_summary(results), replication
