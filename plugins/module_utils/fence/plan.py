# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the fence module: input checks, preflight verdicts, plans and results.

What talks to PostgreSQL lives in module_utils/fence/run.py; what is here takes rows and
returns decisions, so it is unit-tested without a server. Nothing here knows the Airflow
naming: a fence request is any (database, source role, destination role, killer role).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..model import fence_record
from ..base.identifiers import identifier_problem, role_name_problem
from ..model.wal import lsn_int, standby_label

# What a fence does when the recorded state of a database changed while it waited for the
# advisory lock (another fence ran in between).
ON_STATE_CHANGE = ("fail", "proceed")
MAX_RUN_ID_LENGTH = 200
# What a fence does when a standby does not have its REVOKE in time (see standby_problems).
STANDBY_POLICIES = ("require", "warn", "ignore")


def fence_request_problems(deployments):
    """Problems in the fence requests (the ``deployments`` option), each naming its request. Pure.

    Generic: names must be valid and unique, roles valid PostgreSQL role names; no naming
    scheme is assumed.
    """
    problems = []
    names = set()
    databases = set()
    for index, dep in enumerate(deployments or ()):
        label = dep.get("name") or "deployments[%d]" % index
        found = []
        if not dep.get("name"):
            found.append("name must not be empty")
        elif dep["name"] in names:
            found.append("the name is used by more than one Deployment")
        names.add(dep.get("name"))
        if dep.get("database") and dep["database"] in databases:
            found.append("database %s is used by more than one Deployment (its fence state record "
                         "describes one Deployment)" % dep["database"])
        databases.add(dep.get("database"))
        found.append(identifier_problem(dep.get("database"), "database"))
        found.append(role_name_problem(dep.get("source_role"), "source_role"))
        found.append(role_name_problem(dep.get("destination_role"), "destination_role"))
        if dep.get("killer_role") is not None:
            found.append(role_name_problem(dep.get("killer_role"), "killer_role"))
        if dep.get("source_role") and dep.get("source_role") == dep.get("destination_role"):
            found.append("source_role and destination_role are the same role")
        for problem in found:
            if problem:
                problems.append("Deployment %s: %s" % (label, problem))
    if not deployments:
        problems.append("deployments must not be empty")
    return problems


def preflight_verdict(dep, row, route, login):
    """Why the fence cannot work for DEP (list of str, empty when it can). Pure.

    ROW is the preflight query's row for DEP, ROUTE the sessions.termination_routes() item
    for its source role, LOGIN the connecting role's name.
    """
    problems = []
    if not row["db_exists"]:
        problems.append("database %s does not exist" % dep["database"])
    if not row["src_exists"]:
        problems.append("source role %s does not exist" % dep["source_role"])
    if not row["dst_exists"]:
        problems.append("destination role %s does not exist" % dep["destination_role"])
    if problems:
        return problems
    if row["src_super"]:
        problems.append("source role %s is a superuser: CONNECT does not apply to superusers, so no fence "
                        "can hold" % dep["source_role"])
    if row["src_owner_member"]:
        problems.append("source role %s is a member of the owner role %s: owners always connect"
                        % (dep["source_role"], row["owner"]))
    if not row["can_acl"]:
        problems.append("login %s does not have the privileges of the owner role %s of database %s, so it "
                        "cannot revoke or grant CONNECT (missing: GRANT %s TO %s)"
                        % (login, row["owner"], dep["database"], row["owner"], login))
    if row["other_connect"]:
        problems.append("source role %s would keep CONNECT on %s after the REVOKE, through: %s"
                        % (dep["source_role"], dep["database"], "; ".join(row["other_connect"])))
    if route is not None and route.get("route") is None:
        problems.append("cannot terminate the sessions of %s: %s" % (dep["source_role"], route["problem"]))
    return problems


def deployment_result(dep):
    """The per-Deployment result skeleton."""
    return {
        "name": dep["name"], "database": dep["database"], "source_role": dep["source_role"],
        "destination_role": dep["destination_role"], "killer_role": dep.get("killer_role"),
        "changed": False, "revoked": False, "granted": False, "sessions_terminated": [],
        "sessions_drained": [], "remaining_sessions": [], "time_to_fence_ms": None,
        "verified": False, "connect_still_via": [], "route": None,
        "state_before": None, "state_after": None, "state_written": False,
    }


def failure_summary(results):
    """One line per Deployment whose fence did not hold. Pure."""
    lines = []
    for res in results:
        if res["verified"]:
            continue
        why = []
        if res["connect_still_via"]:
            why.append("%s can still connect to %s through: %s"
                       % (res["source_role"], res["database"], "; ".join(res["connect_still_via"])))
        if res["remaining_sessions"]:
            why.append("%d session(s) of %s remain (pids %s)"
                       % (len(res["remaining_sessions"]), res["source_role"],
                          ", ".join(str(s["pid"]) for s in res["remaining_sessions"])))
        if res.get("held_for_standbys"):
            why.append("not every standby has the REVOKE yet (standby_policy=require), so %s (fence state left "
                       "in phase 'fencing')" % ("%s was not admitted" % res["destination_role"]
                                                if res.get("destination_connect") is False else
                                                "the fence was not completed; %s already held CONNECT before this "
                                                "run" % res["destination_role"]))
        if not why and not res["granted"] and res.get("destination_connect") is False:
            why.append("destination role %s does not hold CONNECT on %s"
                       % (res["destination_role"], res["database"]))
        if not why:
            why.append("not verified")
        if ((res["connect_still_via"] or res["remaining_sessions"]) and not res["granted"]
                and res.get("destination_connect") is False):
            why.append("so %s was not admitted%s" % (
                res["destination_role"],
                " (fence state left in phase 'fencing')" if (res.get("state_after") or {}).get("phase") == "fencing"
                else ""))
        lines.append("Deployment %s: %s" % (res["name"], "; ".join(why)))
    return lines


def option_problems(params, deployments=None):
    """Every problem in the fence module's options (PARAMS, a module.params-like dict), and the
    expected generations as {database: int or None}. Pure."""
    deployments = params["deployments"] if deployments is None else deployments
    problems = fence_request_problems(deployments)
    problem = run_id_problem(params["run_id"])
    if problem:
        problems.append(problem)
    found, expected = expected_generation_problems(params.get("expected_generations"), deployments)
    problems.extend(found)
    for dep in deployments or ():
        if dep.get("schema_role") is not None:
            problem = role_name_problem(dep["schema_role"], "schema_role")
            if problem:
                problems.append("Deployment %s: %s" % (dep.get("name"), problem))
    problem = identifier_problem(params["helper_schema"], "helper_schema")
    if problem:
        problems.append(problem)
    for key in ("drain_timeout", "wait_timeout", "lock_timeout", "standby_timeout"):
        if params.get(key) is not None and params[key] < 0:
            problems.append("%s must not be negative" % key)
    problems.extend(standby_option_problems(params.get("standbys")))
    return problems, expected


def standby_option_problems(standbys):
    """Problems in the standbys option (a list of {name, host, port}). Pure."""
    problems, names = [], set()
    for index, item in enumerate(standbys or ()):
        label = item.get("name") or "standbys[%d]" % index
        if not item.get("name"):
            problems.append("standbys[%d]: name must not be empty" % index)
        elif item["name"] in names:
            problems.append("standby %s: the name is used by more than one standby" % label)
        names.add(item.get("name"))
        if not item.get("host"):
            problems.append("standby %s: host must not be empty" % label)
        if not 0 < int(item.get("port") or 0) < 65536:
            problems.append("standby %s: port must be between 1 and 65535" % label)
    return problems


# --- the fence across replication ----------------------------------------------------------------

def lsn_bytes(lsn):
    """A WAL position as PostgreSQL writes it ('16/B374D848') as a byte number; None stays None. Pure."""
    return lsn_int(lsn)


def timeline_of(walfile):
    """The timeline of a WAL file name (its first 8 hex digits). Pure."""
    return int(walfile[:8], 16) if walfile else None


def standby_entry(name, source, flush_lsn, replay_lsn, target, **extra):
    """One standby as the fence reports it: its flushed and replayed positions, how many bytes its
    flushed position is behind TARGET (the REVOKE's position), and its state: caught_up, lagging,
    or unknown (no position known). Keys sessions_terminated and sessions_left are counts for a
    listed hot standby, null for the others. Pure."""
    flushed, goal = lsn_bytes(flush_lsn), lsn_bytes(target)
    gap = None if flushed is None or goal is None else max(0, goal - flushed)
    entry = {"name": name, "source": source, "flush_lsn": flush_lsn, "replay_lsn": replay_lsn, "gap_bytes": gap,
             "state": "unknown" if gap is None else ("caught_up" if gap == 0 else "lagging"),
             "sessions_terminated": None, "sessions_left": None, "problem": None}
    entry.update(extra)
    return entry


def primary_standbys(replication, slots, target, blind=None):
    """The standbys the primary knows, from its WAL senders (REPLICATION rows: pid, name, state,
    sync_state, flush_lsn, replay_lsn, slot) and its physical SLOTS (name, active_pid,
    restart_lsn, wal_status): a slot that a WAL sender uses is that sender's standby; any other
    slot is a standby that is not connected, whose position is the slot's restart_lsn. BLIND: why
    the login reads no position from the senders (None when it does). Pure."""
    out, used = [], set()
    for row in replication or ():
        if row.get("state") == "backup":  # a base backup, not a standby
            continue
        used.add(row.get("slot"))
        entry = standby_entry(row.get("name"), "replication", row.get("flush_lsn"), row.get("replay_lsn"), target,
                              sync_state=row.get("sync_state"), slot=row.get("slot"), pid=row.get("pid"))
        if entry["state"] == "unknown":
            entry["problem"] = blind or "it has not reported a flushed position yet (WAL sender state %s)" % row.get(
                "state")
        out.append(entry)
    for slot in slots or ():
        if slot.get("name") in used:
            continue
        entry = standby_entry(slot.get("name"), "slot", slot.get("restart_lsn"), None, target, slot=slot.get("name"),
                              active=slot.get("active_pid") is not None)
        if slot.get("wal_status") == "lost":
            entry["problem"] = "the slot lost WAL the standby still needs (wal_status lost)"
        elif entry["state"] == "unknown":
            entry["problem"] = "the slot has no position (restart_lsn is null: no standby ever streamed through it)"
        out.append(entry)
    return out


def standby_problems(entries, target):
    """One line per standby that does not have the fence at TARGET (the REVOKE's position): it
    has not flushed it, its position is unknown, it is a listed standby that has not replayed it
    or still has source sessions, or something else went wrong there. Empty when every standby
    has it. Pure."""
    lines = []
    for entry in entries:
        why = [entry["problem"]] if entry.get("problem") else []
        if entry["state"] == "lagging":
            why.append("%d bytes behind the REVOKE (flushed %s, the REVOKE is at %s)"
                       % (entry["gap_bytes"], entry["flush_lsn"], target))
        elif entry["state"] == "unknown" and not why:
            why.append("its position is unknown")
        if entry["source"] == "listed" and entry["state"] == "caught_up":
            if not entry.get("replayed"):
                why.append("it has not replayed the REVOKE (replayed up to %s), so it still admits the source plane"
                           % entry["replay_lsn"])
            if entry.get("sessions_left"):
                why.append("%d session(s) of the source plane remain there (pids %s)" % (
                    entry["sessions_left"], ", ".join(str(s["pid"]) for s in entry.get("remaining_sessions") or [])))
        if why:
            lines.append("%s: %s" % (standby_label(entry), "; ".join(why)))
    return lines


def run_id_problem(run_id):
    """Why RUN_ID cannot be stored in a fence state record (None when it can). Pure."""
    if not run_id or not run_id.strip():
        return "run_id must not be empty"
    if len(run_id) > MAX_RUN_ID_LENGTH:
        return "run_id must be at most %d characters" % MAX_RUN_ID_LENGTH
    if any(ord(ch) < 32 for ch in run_id):
        return "run_id must not contain control characters (newlines, NUL, ...)"
    return None


def state_key(comment):
    """What identifies the recorded state of a database comment, to detect a change. Pure.

    The generation when the record is readable; the raw record line when it is damaged;
    None when there is no record.
    """
    try:
        record = fence_record.parse_record(comment)
    except fence_record.RecordError:
        return ("damaged", fence_record.split_comment(comment)[1])
    return None if record is None else ("generation", record["generation"])


def expected_key(generation):
    """The state_key() of an expected generation (None: no record expected). Pure."""
    return None if generation is None else ("generation", generation)


def expected_generation_problems(expected, deployments):
    """Problems in the expected_generations option; returns (problems, {database: int or None}). Pure."""
    problems, out = [], {}
    databases = set(d.get("database") for d in deployments or ())
    for database, value in (expected or {}).items():
        if database not in databases:
            problems.append("expected_generations: %s is not the database of any Deployment given" % database)
            continue
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            out[database] = None
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if isinstance(value, bool) or number is None or number < 1 or str(number) != str(value).strip():
            problems.append("expected_generations: the value for %s must be a generation (a positive integer) "
                            "or null (no record), got %r" % (database, value))
            continue
        out[database] = number
    return problems, out


def state_change_message(dep, before_comment, after_comment, before_text=None):
    """Why a fence of DEP stops: its record changed while it waited for the lock (or since the
    caller read it, BEFORE_TEXT describing what the caller expected). Pure."""
    def text(comment):
        try:
            return fence_record.describe(fence_record.parse_record(comment))
        except fence_record.RecordError as exc:
            return "a damaged record (%s)" % exc
    after = None
    try:
        after = fence_record.parse_record(after_comment)
    except fence_record.RecordError:
        pass
    if after is not None:
        other = "run %s by %s at %s (fenced: %s; admitted: %s; phase %s)" % (
            after.get("run"), after.get("by"), after.get("at"), ", ".join(after["fenced"]) or "none",
            ", ".join(after["admitted"]) or "none", after["phase"])
    else:
        other = "another run"
    return ("Deployment %s: the fence state of database %s changed while this fence (%s -> %s) waited for the "
            "lock: %s wrote it. Before: %s. Now: %s." % (
                dep["name"], dep["database"], dep["source_role"], dep["destination_role"], other,
                before_text or text(before_comment), text(after_comment)))


def record_problem(dep, comment):
    """The preflight problem of a damaged fence state record (None when it is readable). Pure."""
    try:
        fence_record.parse_record(comment)
    except fence_record.RecordError as exc:
        return ("%s; the fence state of database %s is unknown, so the fence will not act on it: repair or "
                "remove the comment line that starts with %r (COMMENT ON DATABASE)"
                % (exc, dep["database"], fence_record.RECORD_PREFIX.strip()))
    return None


def is_complete_for(record, dep):
    """The record says DEP's source is fenced and its destination admitted, and the fence finished. Pure."""
    return (record is not None and record["phase"] == "complete"
            and dep["source_role"] in record["fenced"] and dep["destination_role"] in record["admitted"])


def fenced_roles(record, dep, still_fenced=()):
    """The fenced list a fence of DEP records: its source, plus roles the previous RECORD listed as
    fenced that are neither this fence's destination nor able to connect again (STILL_FENCED). Pure."""
    keep = set(still_fenced)
    previous = record["fenced"] if record else []
    others = [r for r in previous if r not in (dep["source_role"], dep["destination_role"]) and r in keep]
    return sorted(set([dep["source_role"]] + others))


def planned_records(record, dep, fenced, run, by, at, application=None):
    """(fencing, complete): the two records a fence of DEP writes after RECORD. Pure.

    The first goes with the REVOKE (nobody admitted by this record yet), the second with the
    destination's GRANT.
    """
    fencing = fence_record.new_record(record, fenced, [], "fencing", run, by, at, application)
    complete = fence_record.new_record(fencing, fenced, [dep["destination_role"]], "complete", run, by, at,
                                       application)
    return fencing, complete


def standby_gate_message(problems, target, waited, timeout, failures=()):
    """The failure of a fence whose standbys do not all have its REVOKE (standby_policy=require). Pure."""
    return ("the standby gate did not pass (standby_policy=require): after %.1f s (standby_timeout: %s s), %d "
            "standby(s) do not have the REVOKE (WAL position %s):\n%s\nThe source plane is fenced on this server, "
            "but no destination was admitted by this run and the fence state stays in phase 'fencing': a standby "
            "promoted now could come up without the fence. Rerun the failover once the standbys have caught up "
            "(or remove what is not a standby any more: an abandoned replication slot, a wrong dataplane_standbys "
            "entry) to finish it; standby_policy=warn admits the destination anyway.%s" % (
                waited, timeout, len(problems), target, "\n".join("- " + p for p in problems),
                "".join("\n" + line for line in failures)))
