"""The fence over a Deployment's lifecycle (issue 16): two fences at once, a crash right after a
fence, and the guards that keep the destination out while the source is not fenced.

Every test runs the fence module as commander_user set up exactly as the seed says, against
real servers; login attempts are real connections.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from conftest import PgServer, scratch_dir
from fence_support import Sessions, fence_args, make_deployment, setup_deployments
from fence_support import can_connect as _can_connect
from fence_support import install_helper as _install_helper
# a fixture (pytest finds it by name in this module)
from fence_support import two_deployments  # noqa: F401  pylint: disable=unused-import
from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record
from ansible_collections.dataplane.postgresql.plugins.module_utils.model.fence_record import (
    ADVISORY_LOCK_CLASS,
)


def _has_connect(server, role, db):
    return server.sql("SELECT has_database_privilege(%s, %s, 'CONNECT')", (role, db))[0][0]


def _record(server, db):
    return fence_record.parse_record(server.sql(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (db,))[0][0])


def _swap(args):
    return dict(args, deployments=[dict(d, source_role=d["destination_role"], destination_role=d["source_role"])
                                   for d in args["deployments"]])


# --- two failovers at once (issue 16 item 5) --------------------------------------------------------

def _hold_fence_locks(server, databases):
    holder = server.connect()
    holder.cursor().execute("SELECT pg_advisory_lock(%s, hashtext(d)) FROM unnest(%s::text[]) AS d",
                            (ADVISORY_LOCK_CLASS, list(databases)))
    return holder


def _wait_for_lock_waiters(server, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = server.sql("SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory'"
                             " AND classid = %s::oid AND NOT granted", (ADVISORY_LOCK_CLASS,))[0][0]
        if waiting >= count:
            return waiting
        time.sleep(0.02)
    return waiting


def _start(run_module, args, out, key):
    thread = threading.Thread(target=lambda: out.__setitem__(key, run_module("fence", args)), daemon=True)
    thread.start()
    return thread


def test_two_opposite_fences_at_once_end_in_one_state(pg, two_deployments, run_module):
    """dp1 -> dp2 and dp2 -> dp1 wait together for a third holder of the lock; exactly one wins, the
    other fails naming it and changes nothing; the server shows the winner's state."""
    commander, deps = two_deployments
    forward = fence_args(pg, deps, commander, run_id="run-forward")
    backward = dict(_swap(fence_args(pg, deps, commander)), run_id="run-backward")
    live = Sessions(pg, deps[0]["dp1"], deps[0]["database"]).open(("idle",))
    holder = _hold_fence_locks(pg, [d["database"] for d in deps])
    out = {}
    try:
        threads = [_start(run_module, forward, out, "forward"), _start(run_module, backward, out, "backward")]
        assert _wait_for_lock_waiters(pg, 2) == 2  # both read the records and wait for the lock
        assert out == {}
    finally:
        holder.close()
    for thread in threads:
        thread.join(120)
    live.close()
    ok = [k for k in ("forward", "backward") if not out[k]["failed"]]
    assert len(ok) == 1, out
    winner, loser = ok[0], ("backward" if ok[0] == "forward" else "forward")
    won, lost = out[winner], out[loser]
    assert all(d["verified"] for d in won["deployments"])
    assert "changed while this fence" in lost["msg"] and "nothing was changed" in lost["msg"], lost["msg"]
    assert "run-" + winner in lost["msg"] and commander in lost["msg"]  # names the other run and its login
    assert len(lost["state_changes"]) == 2 and lost["queries"] == []
    assert not any(d["verified"] or d["revoked"] or d["granted"] for d in lost["deployments"])
    fenced_key, admitted_key = ("dp1", "dp2") if winner == "forward" else ("dp2", "dp1")
    for dep in deps:
        rec = _record(pg, dep["database"])
        assert rec["run"] == "run-" + winner and rec["phase"] == "complete" and rec["generation"] == 2
        assert rec["fenced"] == [dep[fenced_key]] and rec["admitted"] == [dep[admitted_key]]
        assert not _can_connect(pg, dep[fenced_key], dep["database"])
        assert _can_connect(pg, dep[admitted_key], dep["database"])


def test_on_state_change_proceed_fences_from_the_new_state(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    holder = _hold_fence_locks(pg, [a["database"]])
    out = {}
    try:
        first = _start(run_module, fence_args(pg, [a], commander, run_id="first"), out, "first")
        assert _wait_for_lock_waiters(pg, 1) == 1
        second = _start(run_module, dict(_swap(fence_args(pg, [a], commander)), run_id="second",
                                         on_state_change="proceed"), out, "second")
        assert _wait_for_lock_waiters(pg, 2) == 2
    finally:
        holder.close()
    first.join(120)
    second.join(120)
    assert not out["first"]["failed"] and not out["second"]["failed"], out
    # the one that ran second saw the other's record appear and said so, then fenced anyway
    later = max(out.values(), key=lambda r: (r["deployments"][0]["state_before"] or {}).get("generation", 0))
    assert len(later["state_changes"]) == 1 and later["deployments"][0]["state_before"]["phase"] == "complete"
    rec = _record(pg, a["database"])
    assert rec["generation"] == 4 and rec["run"] == later["run_id"]


# --- the guards (issue 16 item 8) ---------------------------------------------------------------------

def _after_failback(pg, run_module, commander, dep):
    """The state a failover dp2 -> dp1 left: dp2 fenced, dp1 admitted."""
    res = run_module("fence", _swap(fence_args(pg, [dep], commander)))
    assert not res["failed"] and not _has_connect(pg, dep["dp2"], dep["database"]), res


def _module_is_polling(server, commander):
    """The fence's session was seen running its pg_stat_activity poll (so it signalled already)."""
    return server.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
                      " AND query LIKE '%%FROM pg_catalog.pg_stat_activity WHERE usename OPERATOR(pg_catalog.=) ANY%%'"
                      " AND query NOT LIKE '%%terminate%%'", (commander,))[0][0] > 0


def _resume(pid):
    """SIGCONT a stopped backend (it may have exited already, as it should)."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _wait_gone(server, pid, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))[0][0]:
            return True
        time.sleep(0.02)
    return False


def _fence_while_stopped(pg, run_module, commander, dep, pid, meanwhile, state=None):
    """Stop the source session PID (it takes the termination signal but cannot act on it), run the
    fence for DEP with a 15 s drain and, once the module is seen polling, MEANWHILE(state, deadline)
    in a thread; PID is resumed in any case. Returns (the module's result, state) where
    state["saw_poll"] says whether the module was seen polling."""
    state = {} if state is None else state

    def side():
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not _module_is_polling(pg, commander):
                time.sleep(0.005)
            state["saw_poll"] = _module_is_polling(pg, commander)
            meanwhile(state, deadline)
        finally:
            _resume(pid)

    os.kill(pid, signal.SIGSTOP)
    thread = threading.Thread(target=side, daemon=True)
    try:
        thread.start()
        res = run_module("fence", fence_args(pg, [dep], commander, wait_timeout=15))
        thread.join(30)
    finally:
        _resume(pid)
    return res, state


def test_a_session_that_will_not_die_keeps_the_destination_out(pg, two_deployments, run_module):
    """Guard (a): the destination is admitted only when no source session remains."""
    commander, (a, b) = two_deployments
    _after_failback(pg, run_module, commander, a)
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    [pid] = live.pids()
    os.kill(pid, signal.SIGSTOP)  # it takes the termination signal but cannot act on it
    try:
        res = run_module("fence", fence_args(pg, [a], commander, wait_timeout=1, run_id="stuck"))
        assert res["failed"], res
        assert "1 session(s) of %s remain (pids %d)" % (a["dp1"], pid) in res["msg"]
        assert "%s was not admitted" % a["dp2"] in res["msg"] and "phase 'fencing'" in res["msg"]
        [dep] = res["deployments"]
        assert dep["revoked"] and not dep["granted"] and dep["verified"] is False
        assert [s["pid"] for s in dep["remaining_sessions"]] == [pid]
        rec = _record(pg, a["database"])
        assert rec == dep["state_after"] and rec["phase"] == "fencing" and rec["run"] == "stuck"
        assert rec["fenced"] == [a["dp1"]] and rec["admitted"] == []
        assert not _can_connect(pg, a["dp2"], a["database"]) and not _can_connect(pg, a["dp1"], a["database"])
    finally:
        _resume(pid)
        live.close()
    assert _wait_gone(pg, pid)
    again = run_module("fence", fence_args(pg, [a], commander))  # a rerun converges
    assert not again["failed"] and again["deployments"][0]["verified"], again
    assert again["deployments"][0]["state_before"]["phase"] == "fencing"
    assert _record(pg, a["database"])["phase"] == "complete" and _can_connect(pg, a["dp2"], a["database"])


def test_connect_regained_while_waiting_keeps_the_destination_out(pg, names, two_deployments, run_module):
    """Guard (a): CONNECT given back to the source (through a group role) after the preflight, while
    the fence waits for a stopped session, is caught by the verification."""
    commander, (a, b) = two_deployments
    _after_failback(pg, run_module, commander, a)
    group = names("readers")
    i = sql.Identifier
    pg.sql(sql.SQL("CREATE ROLE {} NOLOGIN").format(i(group)))
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    [pid] = live.pids()

    def regain(state, deadline):
        pg.sql(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}; GRANT {} TO {}").format(
            i(a["database"]), i(group), i(group), i(a["dp1"])))
        state["granted"] = True

    try:
        res, state = _fence_while_stopped(pg, run_module, commander, a, pid, regain)
    finally:
        live.close()
    assert state == {"saw_poll": True, "granted": True}
    assert res["failed"], res
    assert "can still connect" in res["msg"] and "group role %s" % group in res["msg"], res["msg"]
    [dep] = res["deployments"]
    assert dep["remaining_sessions"] == [] and not dep["granted"] and dep["verified"] is False
    assert any(group in via for via in dep["connect_still_via"])
    assert _record(pg, a["database"])["phase"] == "fencing"
    assert not _has_connect(pg, a["dp2"], a["database"]) and not _can_connect(pg, a["dp2"], a["database"])


def test_a_source_session_that_appears_while_waiting_is_signalled(pg, two_deployments, run_module):
    """Guard (b): a client of the source plane that connects (here to database postgres, which
    PUBLIC may connect to) while the fence waits is terminated and listed."""
    commander, (a, b) = two_deployments
    first = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    [stopped] = first.pids()

    def newcomer(state, deadline):
        try:
            state["conn"] = pg.connect(a["dp1"], "postgres", application_name="fence-test-newcomer")
        except psycopg2.OperationalError:  # terminated while it was still starting up
            pass
        while time.monotonic() < deadline and pg.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fence-test-newcomer'")[0][0]:
            time.sleep(0.01)

    state = {}
    try:
        res, state = _fence_while_stopped(pg, run_module, commander, a, stopped, newcomer, state)
    finally:
        first.close()
        if "conn" in state:
            state["conn"].close()
    assert state.get("saw_poll") is True
    assert not res["failed"], res
    [dep] = res["deployments"]
    listed = dict((s["application"], s) for s in dep["sessions_terminated"])
    assert sorted(listed) == ["fence-test-idle", "fence-test-newcomer"]
    assert listed["fence-test-newcomer"]["database"] == "postgres"
    assert listed["fence-test-idle"]["pid"] == stopped
    assert sum(q.count("terminate_member_sessions") for q in res["queries"]) == 2, res["queries"]
    assert dep["verified"] and dep["remaining_sessions"] == [] and pg.pids_of(a["dp1"]) == []


# --- durable success (issue 16 item 6) ----------------------------------------------------------------

@pytest.fixture(params=(16, 17, 18), ids=["pg16", "pg17", "pg18"])
def crashable(request):
    """A dedicated server (not the shared ones: it is crashed) with synchronous_commit=off and a
    WAL writer that flushes only every 10 s, so an asynchronous commit is lost in a crash."""
    base = scratch_dir("dataplane-crash-")
    server = PgServer(request.param, base, ["synchronous_commit=off", "wal_writer_delay=10000",
                                            "max_connections=100"]).start()
    yield server
    server.stop()
    subprocess.run(["rm", "-rf", str(base)], check=False)


def _pg_ctl(server, *args):
    server.pg_ctl(*args)


def test_a_crash_right_after_the_fence_keeps_it(crashable, run_module):
    server = crashable
    commander = "commander_user"
    deps = [make_deployment(lambda base: base, x) for x in ("a", "b", "c")]
    setup_deployments(server, deps, commander)
    _install_helper(server, run_module, [d["killer"] for d in deps])
    assert server.sql("SHOW synchronous_commit")[0][0] == "off"
    for dep in deps:  # the state a failover dp2 -> dp1 left: the fence below must GRANT to dp2
        server.sql(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
            sql.Identifier(dep["database"]), sql.Identifier(dep["dp2"])))
    server.sql("CHECKPOINT")  # everything before the fence is on disk
    live = Sessions(server, deps[0]["dp1"], deps[0]["database"]).open(("idle", "idle_in_tx"))
    res = run_module("fence", fence_args(server, deps, commander, run_id="before-crash"))
    _pg_ctl(server, "--mode", "immediate", "stop")  # crash: no shutdown checkpoint, WAL buffers lost
    live.close()
    assert not res["failed"] and all(d["verified"] and d["granted"] for d in res["deployments"]), res
    _pg_ctl(server, "--log", str(server.base / "server.log"), "--wait", "start")
    for dep in deps:
        assert not _has_connect(server, dep["dp1"], dep["database"]), dep
        assert _has_connect(server, dep["dp2"], dep["database"]), dep
        rec = _record(server, dep["database"])
        assert rec is not None and rec["phase"] == "complete" and rec["run"] == "before-crash", rec
        assert not _can_connect(server, dep["dp1"], dep["database"])
        assert _can_connect(server, dep["dp2"], dep["database"])


# --- a controller that goes away (issue 16 item 7) ----------------------------------------------------

def test_a_signal_after_the_revoke_finishes_the_fence_instead_of_stopping_it(pg, two_deployments):
    """SIGTERM (ansible-playbook stopping) or SIGINT (Ctrl-C) during a controlled drain: the module
    cuts the drain short, terminates, admits the destination and reports the signal, rather than
    dying with neither plane admitted."""
    commander, (a, b) = two_deployments
    stay = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    args = fence_args(pg, [a], commander, mode="controlled", drain_timeout=60, run_id="signalled")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    module = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "fence.py"
    proc = subprocess.Popen([sys.executable, str(module), handle.name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _module_is_polling(pg, commander):
            time.sleep(0.01)
        assert _module_is_polling(pg, commander)  # the REVOKE is committed, the drain is running
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        os.unlink(handle.name)
        stay.close()
    res = json.loads(stdout)
    assert not res.get("failed"), (res, stderr)
    assert sorted(res["signals_received"]) == ["SIGINT", "SIGTERM"]
    assert elapsed < 30  # the 60 s drain was cut short
    [dep] = res["deployments"]
    assert dep["verified"] and [s["pid"] for s in dep["sessions_terminated"]] == stay.pids()
    assert _record(pg, a["database"])["phase"] == "complete"
    assert not _can_connect(pg, a["dp1"], a["database"]) and _can_connect(pg, a["dp2"], a["database"])


def test_expected_generations_catch_a_fence_that_ran_since_the_callers_read(pg, two_deployments, run_module):
    """The failover role's pattern: a check-mode preflight, then the fence. Another fence that runs
    in between (not while this one waits for the lock) is caught through expected_generations."""
    commander, (a, b) = two_deployments
    args = fence_args(pg, [a, b], commander)
    planned = run_module("fence", args, check=True)
    assert not planned["failed"], planned
    expected = dict((d["database"], (d["state_before"] or {}).get("generation")) for d in planned["deployments"])
    assert expected == {a["database"]: None, b["database"]: None}
    other = run_module("fence", dict(_swap(args), run_id="the-other-one"))
    assert not other["failed"], other
    acl = _datacl_all(pg, [a, b])
    res = run_module("fence", dict(args, expected_generations=expected))
    assert res["failed"] and "the-other-one" in res["msg"] and "expected_generations" in res["msg"], res
    assert res["queries"] == [] and _datacl_all(pg, [a, b]) == acl
    assert _can_connect(pg, a["dp1"], a["database"]) and not _can_connect(pg, a["dp2"], a["database"])
    # with the generations the caller sees now, the fence goes ahead
    now = dict((d["database"], _record(pg, d["database"])["generation"]) for d in (a, b))
    ok = run_module("fence", dict(args, expected_generations=now))
    assert not ok["failed"] and all(d["verified"] for d in ok["deployments"]), ok
    bad = run_module("fence", dict(args, expected_generations={"not_a_database": 1}))
    assert bad["failed"] and "not the database of any Deployment" in bad["msg"]


def _datacl_all(server, deps):
    return [server.sql("SELECT datacl::text FROM pg_database WHERE datname = %s", (d["database"],))[0][0]
            for d in deps]
