"""The fence on a real HA cluster: Patroni 4.1.5 with etcd, two members, PostgreSQL 16 and 18.

Everything is real (tests/support/patroni.py): etcd, Patroni, streaming replication through
Patroni's slots, the provision and failover playbooks run by ansible-playbook, and the crash: the
leader's Patroni and postmaster get SIGKILL right after the failover reported success, Patroni
promotes the replica, and the new leader must still hold the fence (dp1 refused, dp2 admitted,
no dp1 session, the fence record intact).

Two more tests cover the standbys: a dp1 session held on a replica is ended by the failover
(the replica given in ``dataplane_standbys``), and a failover whose replica does not receive the
fence (its WAL receiver stopped) does not report success. Their set-up checks raise
``SetupError`` when the scenario itself did not come about.
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from psycopg2 import sql

from tests.support.patroni import PatroniCluster
from tests.support.playbooks import inventory
from tests.support.reports import latest_report
from tests.support.sessions import Sessions

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "playbooks" / "provision.yml"
FAILOVER = REPO / "playbooks" / "failover.yml"
COMMANDER = "commander_user"
COMMANDER_PASSWORD = "ha-commander-secret"
IDS = ("sales", "ml-platform")
RECORD_PREFIX = "dataplane.postgresql fence state: "
HELD_STATES = ("idle", "idle in transaction", "active")

pytestmark = pytest.mark.slow


class SetupError(RuntimeError):
    """The scenario itself did not come about (not the behaviour under test)."""


def require(condition, message):
    if not condition:
        raise SetupError(message)


def db(dep_id):
    return "airflow_db_%s" % dep_id


def role(plane, dep_id):
    return "%s_user_%s" % (plane, dep_id)


def deployments():
    return [{"id": i, "passwords": {"dp1": "pw-dp1-" + i, "dp2": "pw-dp2-" + i}} for i in IDS]


def _cluster(request, version):
    started = time.monotonic()
    cluster = PatroniCluster(version, members=2)
    cluster.start()
    print("\nPatroni cluster of PostgreSQL %s ready in %.1f s: leader %s, replicas %s"
          % (version, time.monotonic() - started, cluster.leader(), [m.name for m in cluster.replicas()]))
    try:
        yield cluster
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print("---- logs of the cluster\n" + cluster.logs())
        cluster.stop()


@pytest.fixture(params=[16, 18], ids=["pg16", "pg18"])
def cluster(request):
    yield from _cluster(request, request.param)


@pytest.fixture
def cluster16(request):
    yield from _cluster(request, 16)


def provision(ansible_playbook, tmp_path, leader):
    proc = ansible_playbook(PROVISION, inventory=inventory(tmp_path, leader, "postgres"),
                            extra_vars={"dataplane_deployments": deployments(),
                                        "dataplane_commander_password": COMMANDER_PASSWORD})
    require(proc.returncode == 0, "provision failed:\n%s%s" % (proc.stdout[-4000:], proc.stderr[-2000:]))


def failover(ansible_playbook, tmp_path, leader, **extra):
    extra_vars = {"dataplane_deployments": deployments(), "dataplane_pg_password": COMMANDER_PASSWORD,
                  "dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2",
                  "dataplane_report_dir": str(tmp_path / "reports")}
    extra_vars.update(extra)
    return ansible_playbook(FAILOVER, inventory=inventory(tmp_path, leader, COMMANDER), extra_vars=extra_vars)


def fence_record(server, database):
    comment = server.sql("SELECT pg_catalog.shobj_description(d.oid, 'pg_database') FROM pg_catalog.pg_database d "
                         "WHERE d.datname OPERATOR(pg_catalog.=) %s", (database,))[0][0] or ""
    lines = [line for line in comment.splitlines() if line.startswith(RECORD_PREFIX)]
    assert len(lines) == 1, "no fence record in the comment of %s: %r" % (database, comment)
    return json.loads(lines[0][len(RECORD_PREFIX):])


def sessions_of(server, roles):
    return server.sql("SELECT pid, usename, datname, state FROM pg_catalog.pg_stat_activity "
                      "WHERE usename OPERATOR(pg_catalog.=) ANY(%s)", (list(roles),))


def still_alive(held, timeout=2.0):
    """The held sessions that still answer, asked until none does or TIMEOUT s passed: an
    asynchronous connection's first poll after its backend was terminated may only read the
    error, and the next one reports it."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [(s.user, s.state, s.pid) for s in held.alive()]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def standbys(*members):
    return [{"name": m.name, "host": m.host, "port": m.port} for m in members]


def provisioned(cluster, ansible_playbook, tmp_path):
    """Provision IDS through the leader; return (leader, replica) once the replica replayed it
    and admits dp1 like the leader."""
    leader = cluster.wait_for_leader(60)
    replicas = cluster.replicas()
    require(len(replicas) == 1, "expected one replica, Patroni shows %s" % cluster.topology())
    replica = replicas[0]
    provision(ansible_playbook, tmp_path, leader)
    cluster.wait_replayed(leader, replica)
    for dep_id in IDS:
        for member in (leader, replica):
            for plane in ("dp1", "dp2"):
                require(member.can_login(role(plane, dep_id), db(dep_id)) == (True, "admitted"),
                        "%s cannot log in to %s on %s before the failover" % (role(plane, dep_id), db(dep_id),
                                                                              member.name))
    return leader, replica


def test_the_fence_survives_a_crash_of_the_leader_and_patroni_promotion(cluster, ansible_playbook, tmp_path):
    leader, replica = provisioned(cluster, ansible_playbook, tmp_path)
    held = Sessions(leader, application="ha-dp1")
    try:
        for dep_id in IDS:
            held.open_states(role("dp1", dep_id), db(dep_id), HELD_STATES)
        require(len(held.alive()) == len(IDS) * len(HELD_STATES), "the dp1 sessions did not open")

        started = time.monotonic()
        proc = failover(ansible_playbook, tmp_path, leader)
        fenced_in = time.monotonic() - started
        alive = still_alive(held)
        activity = sessions_of(leader, [role("dp1", i) for i in IDS])
        # the crash, right after the reported success (and the two looks above)
        old = cluster.kill_leader()
        killed_at = time.monotonic()
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        assert alive == [] and activity == [], (alive, activity, proc.stdout[-4000:])
        report = latest_report(tmp_path / "reports", "failover")
        assert report["verified"] is True, report
        for dep in report["deployments"]:
            assert dep["sessions_terminated"] == len(HELD_STATES) and dep["verified"], dep
    finally:
        held.close()

    assert old.name == leader.name
    new = cluster.wait_new_leader(old, timeout=90)
    print("failover playbook %.1f s; the replica %s led and took writes %.1f s after the kill"
          % (fenced_in, new.name, time.monotonic() - killed_at))
    assert new.name == replica.name
    assert not new.in_recovery()
    for dep_id in IDS:
        source, destination = role("dp1", dep_id), role("dp2", dep_id)
        admitted, message = new.can_login(source, db(dep_id))
        assert not admitted and "permission denied for database" in message, (source, message)
        assert new.can_login(destination, db(dep_id)) == (True, "admitted")
        assert sessions_of(new, [source]) == []
        record = fence_record(new, db(dep_id))
        assert record["fenced"] == [source] and record["admitted"] == [destination], record
        assert record["phase"] == "complete" and record["by"] == COMMANDER, record
        # the new leader writes, and a write as dp2 lands in dp2's database
        conn = new.connect(destination, db(dep_id))
        try:
            conn.cursor().execute(sql.SQL("CREATE TABLE {} (v int)").format(sql.Identifier("after_promotion")))
        finally:
            conn.close()
    assert [a for a in cluster.listeners() if a[0] != "127.0.0.1"] == []


def test_dp1_sessions_held_on_a_replica_are_ended_by_the_failover(cluster16, ansible_playbook, tmp_path):
    leader, replica = provisioned(cluster16, ansible_playbook, tmp_path)
    held = Sessions(replica, application="ha-dp1-replica", tx_sql="SELECT 1")  # a hot standby takes no write
    try:
        for dep_id in IDS:
            held.open_states(role("dp1", dep_id), db(dep_id), HELD_STATES)
        require(len(held.alive()) == len(IDS) * len(HELD_STATES), "the dp1 sessions on the replica did not open")
        proc = failover(ansible_playbook, tmp_path, leader, dataplane_standbys=standbys(replica))
        require(proc.returncode == 0, "the failover failed:\n" + proc.stdout[-6000:] + proc.stderr[-2000:])
        cluster16.wait_replayed(leader, replica)
        for dep_id in IDS:  # the REVOKE reached the replica: new dp1 sessions are refused there
            admitted, message = replica.can_login(role("dp1", dep_id), db(dep_id))
            require(not admitted and "permission denied for database" in message, message)
        assert sessions_of(replica, [role("dp1", i) for i in IDS]) == []
        assert still_alive(held) == []
        report = latest_report(tmp_path / "reports", "failover")
        listed = [s for s in report["standbys"] if s["source"] == "listed"]
        assert len(listed) == 1 and listed[0]["name"] == replica.name, report["standbys"]
        assert listed[0]["replayed"] and listed[0]["sessions_left"] == 0, listed
        assert listed[0]["sessions_terminated"] == len(IDS) * len(HELD_STATES), listed
        assert report["wal"]["revoke_lsn"] and report["wal"]["timeline"] >= 1, report["wal"]
    finally:
        held.close()


def test_a_failover_with_a_lagging_replica_does_not_report_success(cluster16, ansible_playbook, tmp_path):
    leader, replica = provisioned(cluster16, ansible_playbook, tmp_path)
    receiver = replica.sql("SELECT pid FROM pg_catalog.pg_stat_wal_receiver")
    require(receiver and receiver[0][0], "the replica has no WAL receiver")
    receiver_pid = receiver[0][0]
    os.kill(receiver_pid, signal.SIGSTOP)  # the replica receives nothing more, Patroni sees nothing amiss
    try:
        proc = failover(ansible_playbook, tmp_path, leader, dataplane_standbys=standbys(replica),
                        dataplane_failover_standby_timeout=5)
        position = leader.sql("SELECT pg_catalog.pg_current_wal_lsn()::text")[0][0]
        require(replica.sql("SELECT pg_catalog.pg_last_wal_receive_lsn() < %s::pg_catalog.pg_lsn", (position,))[0][0],
                "the replica was not behind the fence: the scenario did not happen")
        assert proc.returncode != 0, ("the failover reported success while the replica lacked the fence:\n"
                                      + proc.stdout[-3000:])
        report = latest_report(tmp_path / "reports", "failover")
        assert report["safe_to_start_destination"] is False, report["verdict"]
        assert "the standby gate did not pass" in "\n".join(report["problems"]), report["problems"]
        lagging = [s for s in report["standbys"] if s["state"] == "lagging"]
        assert lagging and all(s["gap_bytes"] > 0 for s in lagging), report["standbys"]
        for dep_id in IDS:  # the record stays in phase fencing until a rerun finishes the fence
            assert fence_record(leader, db(dep_id))["phase"] == "fencing"
    finally:
        os.kill(receiver_pid, signal.SIGCONT)
