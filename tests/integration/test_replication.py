"""The fence and PostgreSQL replication (a primary with streaming hot standbys, scripts/pg.py).

Real servers, real streaming, real logins: a healthy standby, a lagging one (its WAL receiver
stopped with SIGSTOP, so its WAL sender stays connected; or the standby stopped, so only its slot
is left), a synchronous standby that stops confirming, a crash of the primary followed by a
promotion, and a standby given as the fence's target. docs/fence-guarantees.md (replication)
names the promise each test keeps.
"""

import os
import signal
import threading
import time

import pytest
from psycopg2 import sql

from fence_support import fence_args, install_helper, make_deployment, setup_deployments
from tests.support.server import PgServer, remove, scratch_dir
from tests.support.sessions import Sessions
from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record

HELD = ("idle", "idle in transaction", "active")


class Cluster(object):
    """A primary and one streaming hot standby named ``standby`` (through slot ``standby_1``)."""

    def __init__(self, version):
        self.version = version
        self.root = scratch_dir("dataplane-repl-")
        self.primary = PgServer(version, self.root / "primary", ["max_connections=100"]).start()
        self.standby = None
        self.stopped = []

    def start_standby(self):
        self.standby = PgServer(self.version, self.root / "standby", standby_of=self.primary, slot="standby_1").start()
        return self.standby

    def close(self):
        for pid in self.stopped:
            _signal(pid, signal.SIGCONT)
        for server in (self.standby, self.primary):
            if server is not None:
                server.stop(mode="immediate")
        remove(self.root)

    def caught_up(self):
        lsn = self.primary.sql("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")[0][0]
        assert self.standby.replayed(lsn), "the standby did not replay %s" % lsn

    def stop_receiver(self):
        """SIGSTOP the standby's WAL receiver: it receives nothing more, its sender stays connected."""
        pid = self.standby.sql("SELECT pid FROM pg_catalog.pg_stat_wal_receiver")[0][0]
        os.kill(pid, signal.SIGSTOP)
        self.stopped.append(pid)
        return pid

    def resume_receiver(self, pid):
        os.kill(pid, signal.SIGCONT)
        self.stopped.remove(pid)

    def listed(self):
        return [{"name": "standby", "host": self.standby.host, "port": self.standby.port}]


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


@pytest.fixture(params=[16, 18], ids=["pg16", "pg18"])
def cluster(request):
    made = Cluster(request.param)
    try:
        made.start_standby()
        yield made
    finally:
        made.close()


@pytest.fixture
def deployment(cluster, names, run_module):
    """Deployment a, set up on the primary with the fence helper and replayed by the standby, with
    only dp1 admitted (as after a failback: the reference setup admits both); returns (commander, dep)."""
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(cluster.primary, [dep], commander)
    cluster.primary.sql(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
        sql.Identifier(dep["database"]), sql.Identifier(dep["dp2"])))
    install_helper(cluster.primary, run_module, [dep["killer"]])
    cluster.caught_up()
    return commander, dep


def _record(server, database):
    return fence_record.parse_record(server.sql(
        "SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database WHERE datname = %s",
        (database,))[0][0])


def _refused(server, role, database):
    admitted, message = server.can_login(role, database)
    return not admitted and "permission denied for database" in message


def _by_source(result):
    return dict((s["source"], s) for s in result["standbys"])


def _alive(held, timeout=2.0):
    """The held sessions that still answer, asked until none does or TIMEOUT s passed (an
    asynchronous connection may read its termination only on the second poll)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [(s.user, s.state, s.pid) for s in held.alive()]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _warnings(res):
    """Warning texts of a module result (plain strings, or ansible-core 2.19+ summaries)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in res.get("warnings", [])]


def _until(check, timeout=30, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("%s did not hold within %s s" % (what, timeout))


def test_a_healthy_standby_has_the_fence_and_loses_its_source_sessions(cluster, deployment, run_module):
    primary, standby = cluster.primary, cluster.standby
    commander, dep = deployment
    on_primary = Sessions(primary, application="repl-primary")
    on_standby = Sessions(standby, application="repl-standby", tx_sql="SELECT 1")  # a hot standby takes no write
    try:
        on_primary.open(HELD, dep["dp1"], dep["database"])
        on_standby.open(HELD, dep["dp1"], dep["database"])
        res = run_module("fence", fence_args(primary, [dep], commander, standbys=cluster.listed()))
        assert not res["failed"], res.get("msg", res)
        assert _alive(on_primary) == [] and _alive(on_standby) == []
    finally:
        on_primary.close()
        on_standby.close()
    wal = res["wal"]
    assert wal["timeline"] == 1, wal
    assert wal["system_identifier"] == primary.sql("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    assert primary.sql("SELECT %s::pg_lsn <= %s::pg_lsn", (wal["revoke_lsn"], wal["final_lsn"]))[0][0], wal
    entries = _by_source(res)
    assert sorted(entries) == ["listed", "replication"], res["standbys"]
    connected, listed = entries["replication"], entries["listed"]
    assert (connected["name"], connected["slot"], connected["state"], connected["gap_bytes"]) == (
        "standby", "standby_1", "caught_up", 0), connected
    assert listed["state"] == "caught_up" and listed["replayed"] is True, listed
    assert (listed["sessions_terminated"], listed["sessions_left"]) == (len(HELD), 0), listed
    print("healthy standby: standbys_ms %s, total_ms %s" % (res["timings"]["standbys_ms"], res["timings"]["total_ms"]))
    assert sorted(s["pid"] for s in listed["sessions"]) == sorted(on_standby.pids())
    assert res["deployments"][0]["verified"] and res["standby_problems"] == []
    # the standby refuses dp1 and holds no dp1 session; it also has the complete record
    assert _refused(standby, dep["dp1"], dep["database"])
    assert standby.pids_of(dep["dp1"]) == []
    cluster.caught_up()
    assert _record(standby, dep["database"])["phase"] == "complete"


def test_commander_without_the_positions_function_cannot_pass_the_gate(cluster, deployment, run_module):
    """Without pg_read_all_stats and without the helper's standby_positions(), the positions of
    connected standbys read NULL: the gate says so at once instead of passing or waiting."""
    primary = cluster.primary
    commander, dep = deployment
    primary.sql(sql.SQL("REVOKE EXECUTE ON FUNCTION dataplane_fence.standby_positions() FROM {}").format(
        sql.Identifier(dep["killer"])))
    started = time.monotonic()
    res = run_module("fence", fence_args(primary, [dep], commander, standby_timeout=20))
    assert res["failed"] and time.monotonic() - started < 15, res
    assert "standby_positions()" in res["msg"] and "fence helper version 4" in res["msg"], res["msg"]
    assert res["deployments"][0]["destination_admitted"] is False
    assert _refused(primary, dep["dp1"], dep["database"])
    assert _record(primary, dep["database"])["phase"] == "fencing"
    install_helper(primary, run_module, [dep["killer"]])  # gives EXECUTE back
    res = run_module("fence", fence_args(primary, [dep], commander))
    assert not res["failed"] and res["deployments"][0]["destination_admitted"], res


def test_a_lagging_standby_keeps_the_destination_out(cluster, deployment, run_module):
    primary, standby = cluster.primary, cluster.standby
    commander, dep = deployment
    receiver = cluster.stop_receiver()
    started = time.monotonic()
    res = run_module("fence", fence_args(primary, [dep], commander, standby_timeout=2))
    took = time.monotonic() - started
    assert res["failed"], (res.get("standbys"), res.get("wal"), res.get("warnings"))
    assert "the standby gate did not pass (standby_policy=require)" in res["msg"], res["msg"]
    connected = _by_source(res)["replication"]
    assert connected["state"] == "lagging" and connected["gap_bytes"] > 0, connected
    assert "standby standby (connected, async, slot standby_1): %d bytes behind" % connected["gap_bytes"] in res["msg"]
    assert 2 <= took < 15, took
    print("lagging standby, standby_timeout 2: the module failed after %.2f s (%d bytes behind)"
          % (took, connected["gap_bytes"]))
    assert res["deployments"][0]["revoked"] and not res["deployments"][0]["granted"], res["deployments"]
    assert res["deployments"][0]["destination_admitted"] is False
    assert _refused(primary, dep["dp1"], dep["database"])
    assert _refused(primary, dep["dp2"], dep["database"])
    assert _record(primary, dep["database"])["phase"] == "fencing"
    # the standby still admits dp1: it never received the REVOKE
    assert standby.can_login(dep["dp1"], dep["database"]) == (True, "admitted")

    # warn: the destination is admitted anyway, with a warning naming the standby
    res = run_module("fence", fence_args(primary, [dep], commander, standby_timeout=1, standby_policy="warn"))
    assert not res["failed"] and res["deployments"][0]["destination_admitted"], res
    assert any("standby standby" in w and "bytes behind" in w for w in _warnings(res)), _warnings(res)
    run_module("fence", fence_args(primary, [dict(dep, dp1=dep["dp2"], dp2=dep["dp1"])], commander,
                                   standby_policy="ignore"))  # back to dp1 for the rest

    # the receiver comes back: a rerun finishes the fence
    cluster.resume_receiver(receiver)
    res = run_module("fence", fence_args(primary, [dep], commander))
    assert not res["failed"] and res["deployments"][0]["verified"], res
    assert _by_source(res)["replication"]["state"] == "caught_up"
    assert _record(primary, dep["database"])["phase"] == "complete"

    # the standby stopped: only its slot is left, behind the next fence's position
    standby.stop()
    res = run_module("fence", fence_args(primary, [dict(dep, dp1=dep["dp2"], dp2=dep["dp1"])], commander,
                                         standby_timeout=1))
    assert res["failed"], (res.get("standbys"), res.get("wal"), res.get("warnings"))
    slot = _by_source(res)["slot"]
    assert (slot["name"], slot["state"], slot["active"]) == ("standby_1", "lagging", False), slot
    assert "standby standby_1 (replication slot, no standby connected): %d bytes behind" % slot["gap_bytes"] \
        in res["msg"], res["msg"]


def _sync_waiters(server):
    return server.sql("SELECT pid FROM pg_catalog.pg_stat_activity WHERE wait_event = 'SyncRep'")


def test_a_stuck_synchronous_standby_fails_the_fence_in_time_and_nothing_is_cancelled(
        cluster, deployment, run_module):
    primary, standby = cluster.primary, cluster.standby
    commander, dep = deployment
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
    primary.sql("SELECT pg_catalog.pg_reload_conf()")
    _until(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication")[0][0] == "sync", what="sync state")

    # a commit that waits, then is confirmed within standby_timeout: success, the wait reported
    receiver = cluster.stop_receiver()

    def resume_after_a_wait():
        _until(lambda: _sync_waiters(primary), what="a commit waiting for the standby")
        time.sleep(1.5)
        cluster.resume_receiver(receiver)

    resumer = threading.Thread(target=resume_after_a_wait)
    resumer.start()
    res = run_module("fence", fence_args(primary, [dep], commander, standby_timeout=20))
    resumer.join()
    assert not res["failed"] and res["deployments"][0]["verified"], res.get("msg", res)
    waits = res["commit_waits"]
    assert len(waits) == 1 and waits[0]["wait_event"] == "SyncRep" and waits[0]["waited_ms"] >= 1000, waits
    assert waits[0]["synchronous_standby_names"] == "standby", waits
    print("synchronous standby back after 1.5 s: the REVOKE's commit waited %d ms" % waits[0]["waited_ms"])
    assert any("waited" in w and "synchronous standby" in w for w in _warnings(res)), _warnings(res)

    # a commit that waits longer than standby_timeout: the module fails at the timeout, saying why
    back = dict(dep, dp1=dep["dp2"], dp2=dep["dp1"])
    receiver = cluster.stop_receiver()
    started = time.monotonic()
    res = run_module("fence", fence_args(primary, [back], commander, standby_timeout=2))
    took = time.monotonic() - started
    assert res["failed"] and 2 <= took < 10, (took, res)
    print("synchronous standby stuck, standby_timeout 2: the module failed after %.2f s" % took)
    assert "has waited" in res["msg"] and "for a synchronous standby (wait event SyncRep" in res["msg"], res["msg"]
    assert "It was not cancelled" in res["msg"] and "the source plane can still connect" in res["msg"], res["msg"]
    assert res["deployments"][0]["revoked"] is False, res["deployments"]  # its statement has not returned
    # not cancelled: the commit still waits, unseen, and the source (dp2 here) still connects
    assert len(_sync_waiters(primary)) == 1
    assert primary.can_login(dep["dp2"], dep["database"]) == (True, "admitted")
    assert _record(primary, dep["database"])["phase"] == "complete"

    # the standby confirms: the commit completes on its own, and a rerun finishes the fence
    cluster.resume_receiver(receiver)
    _until(lambda: not _sync_waiters(primary), what="the end of the SyncRep wait")
    assert _refused(primary, dep["dp2"], dep["database"])
    assert _record(primary, dep["database"])["phase"] == "fencing"
    res = run_module("fence", fence_args(primary, [back], commander))
    assert not res["failed"] and res["deployments"][0]["verified"], res
    assert primary.can_login(dep["dp1"], dep["database"]) == (True, "admitted")


def test_a_crash_of_the_primary_then_a_promotion_keeps_the_fence(cluster, deployment, run_module):
    primary, standby = cluster.primary, cluster.standby
    commander, dep = deployment
    on_standby = Sessions(standby, application="repl-standby", tx_sql="SELECT 1")
    try:
        on_standby.open(HELD, dep["dp1"], dep["database"])
        res = run_module("fence", fence_args(primary, [dep], commander, standbys=cluster.listed()))
        primary.stop(mode="immediate")  # the crash, as soon as the fence reported success
        assert not res["failed"], res.get("msg", res)
        assert _alive(on_standby) == []
    finally:
        on_standby.close()
    standby.promote()
    assert _refused(standby, dep["dp1"], dep["database"])
    assert standby.can_login(dep["dp2"], dep["database"]) == (True, "admitted")
    assert standby.pids_of(dep["dp1"]) == []
    record = _record(standby, dep["database"])
    assert record["phase"] == "complete" and record["fenced"] == [dep["dp1"]], record
    # the promoted server is on timeline 2 at once (pg_control_checkpoint() would still say 1)
    res = run_module("fence", fence_args(standby, [dep], commander), check=True)
    assert not res["failed"] and res["wal"]["timeline"] == 2, res["wal"]
    assert res["wal"]["system_identifier"] == standby.sql("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    assert not res["changed"], res


def test_a_fence_pointed_at_a_standby_is_refused_before_any_change(cluster, deployment, run_module):
    primary, standby = cluster.primary, cluster.standby
    commander, dep = deployment
    acl = "SELECT datacl::text FROM pg_catalog.pg_database WHERE datname = %s"
    before = primary.sql(acl, (dep["database"],))

    res = run_module("fence", fence_args(standby, [dep], commander))
    assert res["failed"], (res.get("standbys"), res.get("wal"), res.get("warnings"))
    assert "this server is a standby (in recovery), so it takes no REVOKE" in res["msg"], res["msg"]
    assert "pg_stat_wal_receiver needs pg_read_all_stats" in res["msg"], res["msg"]
    assert "nothing was changed" in res["msg"] and res["queries"] == [], res
    assert res["deployments"][0]["revoked"] is False, res["deployments"]

    # an admin that may read the WAL receiver is told where the primary is
    res = run_module("fence", fence_args(standby, [dep], "postgres"))
    assert res["failed"] and "its primary is 127.0.0.1:%d" % primary.port in res["msg"], res["msg"]
    assert res["primary"]["sender_port"] == primary.port, res
    assert primary.sql(acl, (dep["database"],)) == before
    assert standby.sql(acl, (dep["database"],)) == before
