"""terminate_sessions: direct when the login may, else the fence helper; check mode signals nothing."""

import os
import signal
import threading
import time

import psycopg2
import pytest
from psycopg2 import sql

from tests.support.fence import Sessions, make_deployment, setup_deployments


@pytest.fixture
def deployment_pair(pg, names):
    commander = names("commander_user")
    deps = [make_deployment(names, "a"), make_deployment(names, "b")]
    setup_deployments(pg, deps, commander)
    return commander, deps


def _alive(server, pids):
    return sorted(r[0] for r in server.sql("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)))


def _install(server, run_module, killers, schema, owner):
    res = run_module("fence_helper", dict(server.login_args(), schema=schema, owner_role=owner, killer_roles=killers))
    assert not res["failed"], res


def test_reference_grants_alone_are_not_enough(pg, deployment_pair, run_module):
    """The design's anchor: with the seed's grants and no helper, commander cannot terminate dp1."""
    commander, (a, b) = deployment_pair
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    try:
        [pid] = live.pids()
        for set_role in (False, True):
            conn = pg.connect(commander)
            cur = conn.cursor()
            if set_role:
                cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(a["killer"])))
            with pytest.raises(psycopg2.Error) as err:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert "permission denied to terminate process" in str(err.value)
            conn.close()
        res = run_module("terminate_sessions", dict(pg.login_args(commander), roles=[a["dp1"]]))
        assert res["failed"] and "nothing was signalled" in res["msg"] and "pg_signal_backend" in res["msg"]
        res = run_module("terminate_sessions", dict(pg.login_args(commander), roles=[a["dp1"]],
                                                    killer_role=a["killer"], helper_schema="no_helper_here"))
        assert res["failed"] and "not installed" in res["msg"]
        assert _alive(pg, [pid]) == [pid]
    finally:
        live.close()


def test_through_the_helper_as_commander(pg, names, deployment_pair, run_module):
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _install(pg, run_module, [a["killer"]], schema, owner)
    live = Sessions(pg, a["dp1"], a["database"]).open()
    in_pg = Sessions(pg, a["dp1"], "postgres").open(("idle",))
    other = Sessions(pg, b["dp1"], b["database"]).open(("idle",))
    try:
        args = dict(pg.login_args(commander), roles=[a["dp1"]], killer_role=a["killer"], helper_schema=schema,
                    databases=[a["database"]], wait_timeout=10)
        checked = run_module("terminate_sessions", args, check=True)
        assert checked["changed"] and checked["queries"] == []
        assert not any(s["terminated"] for s in checked["sessions"])
        assert sorted(s["pid"] for s in checked["sessions"]) == sorted(live.pids())
        assert _alive(pg, live.pids()) == sorted(live.pids())

        res = run_module("terminate_sessions", args)
        assert not res["failed"], res
        assert res["routes"] == {a["dp1"]: "helper"}
        assert sorted(s["pid"] for s in res["sessions"]) == sorted(live.pids())
        assert all(s["role"] == a["dp1"] and s["database"] == a["database"] and s["client_addr"] == "127.0.0.1"
                   and s["application"].startswith("fence-test-") and s["backend_start"] for s in res["sessions"])
        assert res["remaining"] == [] and all(s["terminated"] for s in res["sessions"])
        assert _alive(pg, live.pids()) == []
        # the databases filter spared the session in postgres; another Deployment is untouched
        assert _alive(pg, in_pg.pids()) == in_pg.pids()
        assert _alive(pg, other.pids()) == other.pids()
        # a killer role's helper route does not reach roles not granted to it
        res = run_module("terminate_sessions", dict(args, roles=[b["dp1"]], databases=None))
        assert res["failed"] and "not granted to killer role" in res["msg"]
        assert _alive(pg, other.pids()) == other.pids()
        again = run_module("terminate_sessions", args)
        assert again["changed"] is False and again["sessions"] == []
    finally:
        live.close()
        in_pg.close()
        other.close()


def test_direct_as_superuser(pg, deployment_pair, run_module):
    commander, (a, b) = deployment_pair
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle", "idle_in_tx"))
    try:
        res = run_module("terminate_sessions", dict(pg.login_args(), roles=[a["dp1"]]))
        assert not res["failed"] and res["routes"] == {a["dp1"]: "direct"}
        assert sorted(s["pid"] for s in res["sessions"]) == sorted(live.pids()) and res["remaining"] == []
        assert _alive(pg, live.pids()) == []
        assert "pg_terminate_backend" in res["queries"][0]
    finally:
        live.close()


def test_helper_route_on_15(pg15, names, run_module):
    """On 15 the helper works when the killer holds a plain membership (the reference INHERIT/SET
    grant does not parse there)."""
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(pg15, [dep], commander)
    schema, owner = names("fence"), names("signaler")
    _install(pg15, run_module, [dep["killer"]], schema, owner)
    pg15.sql(sql.SQL("GRANT {} TO {}").format(sql.Identifier(dep["dp1"]), sql.Identifier(dep["killer"])))
    live = Sessions(pg15, dep["dp1"], dep["database"]).open(("idle",))
    try:
        res = run_module("terminate_sessions", dict(pg15.login_args(commander), roles=[dep["dp1"]],
                                                    killer_role=dep["killer"], helper_schema=schema))
        assert not res["failed"] and res["routes"] == {dep["dp1"]: "helper"}, res
        assert [s["pid"] for s in res["sessions"]] == live.pids() and res["remaining"] == []
    finally:
        live.close()


def test_sessions_that_appear_while_waiting_are_signalled(pg, names, deployment_pair, run_module):
    """The module waits until no session of the role remains and signals newcomers as it polls.

    The first session's backend is stopped (SIGSTOP): it takes the termination signal but cannot
    act on it, so it stays in pg_stat_activity and the module keeps polling. Once the module is
    seen polling (so the first signal has gone out), a newcomer (a client reconnecting) opens a
    session; only when that one is gone does the first backend continue (SIGCONT) and exit. The
    module's log must show a second helper call: the one that signalled the newcomer."""
    commander, (a, b) = deployment_pair
    schema, owner = names("fence"), names("signaler")
    _install(pg, run_module, [a["killer"]], schema, owner)
    first = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    [stopped] = first.pids()
    state = {}

    def module_is_polling():
        return pg.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
                      " AND query LIKE '%%FROM pg_catalog.pg_stat_activity WHERE usename OPERATOR(pg_catalog.=) ANY%%'"
                      " AND query NOT LIKE '%%terminate%%'", (commander,))[0][0] > 0

    def newcomer():
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not module_is_polling():
                time.sleep(0.005)
            state["saw_poll"] = module_is_polling()
            try:
                conn = pg.connect(a["dp1"], a["database"], application_name="fence-test-reconnect")
                state["conn"] = conn
            except psycopg2.OperationalError:  # terminated while it was still starting up
                pass
            while time.monotonic() < deadline and pg.sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fence-test-reconnect'")[0][0]:
                time.sleep(0.01)
        finally:
            os.kill(stopped, signal.SIGCONT)

    os.kill(stopped, signal.SIGSTOP)
    thread = threading.Thread(target=newcomer, daemon=True)
    try:
        thread.start()
        res = run_module("terminate_sessions", dict(pg.login_args(commander), roles=[a["dp1"]],
                                                    killer_role=a["killer"], helper_schema=schema, wait_timeout=15))
        thread.join(30)
        assert not res["failed"], res
        assert state.get("saw_poll") is True, state
        assert sum("terminate_member_sessions" in q for q in res["queries"]) == 2, res["queries"]
        assert sorted(s["application"] for s in res["sessions"]) == ["fence-test-idle", "fence-test-reconnect"]
        assert stopped in [s["pid"] for s in res["sessions"]]
        assert all(s["terminated"] for s in res["sessions"]) and res["changed"] is True
        assert res["remaining"] == [] and pg.pids_of(a["dp1"]) == []
    finally:
        try:
            os.kill(stopped, signal.SIGCONT)
        except ProcessLookupError:  # it has exited, as it should
            pass
        first.close()
        if "conn" in state:
            state["conn"].close()
