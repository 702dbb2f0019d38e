"""Pure logic of the fence across replication (module_utils/fence/plan.py): positions, the
standbys the primary knows, and what the standby gate says about them. No server."""

from ansible_collections.dataplane.postgresql.plugins.module_utils.fence.plan import (
    deployment_result,
    failure_summary,
    lsn_bytes,
    option_problems,
    primary_standbys,
    standby_entry,
    standby_gate_message,
    standby_option_problems,
    standby_problems,
    timeline_of,
)

REVOKE = "0/3000148"


def sender(name, flush, slot=None, state="streaming", sync_state="async"):
    return {"pid": 100, "name": name, "state": state, "sync_state": sync_state, "flush_lsn": flush,
            "replay_lsn": flush, "slot": slot}


def slot(name, restart, active_pid=None, wal_status="reserved"):
    return {"name": name, "active_pid": active_pid, "restart_lsn": restart, "wal_status": wal_status}


def test_positions_and_timelines():
    assert lsn_bytes("0/0") == 0 and lsn_bytes(None) is None
    assert lsn_bytes("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert lsn_bytes("1/0") - lsn_bytes("0/FFFFFFFF") == 1
    assert timeline_of("000000020000000000000003") == 2 and timeline_of(None) is None


def test_an_entry_is_caught_up_lagging_or_unknown():
    assert standby_entry("s", "replication", REVOKE, None, REVOKE)["state"] == "caught_up"
    ahead = standby_entry("s", "replication", "0/4000000", None, REVOKE)
    assert (ahead["state"], ahead["gap_bytes"]) == ("caught_up", 0)
    behind = standby_entry("s", "replication", "0/3000000", None, REVOKE)
    assert (behind["state"], behind["gap_bytes"]) == ("lagging", 0x148)
    unknown = standby_entry("s", "listed", None, None, REVOKE, host="h", port=5432)
    assert (unknown["state"], unknown["gap_bytes"], unknown["host"]) == ("unknown", None, "h")
    assert set(["name", "source", "flush_lsn", "replay_lsn", "gap_bytes", "state", "sessions_terminated",
                "sessions_left"]) <= set(unknown)


def test_the_primary_knows_its_senders_and_its_slots():
    entries = primary_standbys(
        [sender("s1", REVOKE, slot="slot_1"), sender("backup", None, state="backup"), sender("s2", None)],
        [slot("slot_1", "0/3000000", active_pid=100), slot("gone", "0/2000000"), slot("new", None),
         slot("lost", "0/1000000", wal_status="lost")], REVOKE)
    assert [(e["name"], e["source"], e["state"]) for e in entries] == [
        ("s1", "replication", "caught_up"), ("s2", "replication", "unknown"), ("gone", "slot", "lagging"),
        ("new", "slot", "unknown"), ("lost", "slot", "lagging")]
    assert entries[0]["slot"] == "slot_1"  # the slot a sender uses is that sender's standby, not another
    assert "WAL sender state streaming" in entries[1]["problem"]
    assert entries[2]["gap_bytes"] == 0x1000148 and entries[2]["active"] is False
    assert "restart_lsn is null" in entries[3]["problem"] and "wal_status lost" in entries[4]["problem"]
    blind = primary_standbys([sender("s1", None)], [], REVOKE, blind="cannot read")
    assert blind[0]["problem"] == "cannot read"
    assert primary_standbys(None, None, REVOKE) == []


def test_the_gate_names_every_standby_without_the_fence():
    listed = dict(standby_entry("h1", "listed", REVOKE, "0/3000000", REVOKE, host="10.0.0.2", port=5433),
                  replayed=False)
    stuck = dict(standby_entry("h2", "listed", REVOKE, REVOKE, REVOKE, host="10.0.0.3", port=5432),
                 replayed=True, sessions_left=1, remaining_sessions=[{"pid": 42}])
    down = dict(standby_entry("h3", "listed", None, None, REVOKE, host="10.0.0.4", port=5432),
                problem="cannot connect to 10.0.0.4:5432: timeout expired")
    good = dict(standby_entry("h4", "listed", REVOKE, REVOKE, REVOKE, host="10.0.0.5", port=5432), replayed=True,
                sessions_left=0)
    entries = primary_standbys([sender("s1", "0/3000000", slot="s1", sync_state="sync")], [], REVOKE) + [
        listed, stuck, down, good]
    assert standby_problems(entries, REVOKE) == [
        "standby s1 (connected, sync, slot s1): 328 bytes behind the REVOKE (flushed 0/3000000, the REVOKE is at "
        "0/3000148)",
        "standby h1 (listed, 10.0.0.2:5433): it has not replayed the REVOKE (replayed up to 0/3000000), so it still "
        "admits the source plane",
        "standby h2 (listed, 10.0.0.3:5432): 1 session(s) of the source plane remain there (pids 42)",
        "standby h3 (listed, 10.0.0.4:5432): cannot connect to 10.0.0.4:5432: timeout expired"]
    assert standby_problems([good], REVOKE) == []
    message = standby_gate_message(standby_problems(entries, REVOKE)[:1], REVOKE, 2.04, 2.0, ["Deployment a: x"])
    assert message.startswith("the standby gate did not pass (standby_policy=require): after 2.0 s "
                              "(standby_timeout: 2.0 s), 1 standby(s) do not have the REVOKE (WAL position 0/3000148)")
    assert "\n- standby s1 (connected, sync, slot s1): 328 bytes behind" in message
    assert "phase 'fencing'" in message and message.endswith("\nDeployment a: x")


def test_a_deployment_held_back_by_the_gate_says_so():
    dep = {"name": "a", "database": "db_a", "source_role": "dp1_a", "destination_role": "dp2_a", "killer_role": "k"}
    held = dict(deployment_result(dep), held_for_standbys=True, destination_connect=False)
    assert failure_summary([held]) == [
        "Deployment a: not every standby has the REVOKE yet (standby_policy=require), so dp2_a was not admitted "
        "(fence state left in phase 'fencing')"]
    before = dict(deployment_result(dep), held_for_standbys=True, destination_connect=True)
    assert "the fence was not completed; dp2_a already held CONNECT before this run" in failure_summary([before])[0]


def test_standby_options_are_checked():
    assert standby_option_problems([{"name": "s1", "host": "h", "port": 5432}]) == []
    assert standby_option_problems([{"name": "s1", "host": "h", "port": 5432}, {"name": "s1", "host": "", "port": 0},
                                    {"name": "", "host": "h", "port": 70000}]) == [
        "standby s1: the name is used by more than one standby", "standby s1: host must not be empty",
        "standby s1: port must be between 1 and 65535", "standbys[2]: name must not be empty",
        "standby standbys[2]: port must be between 1 and 65535"]
    params = {"deployments": [{"name": "a", "database": "db_a", "source_role": "dp1_a", "destination_role": "dp2_a"}],
              "run_id": "r", "helper_schema": "dataplane_fence", "drain_timeout": 1, "wait_timeout": 1,
              "lock_timeout": 1, "standby_timeout": -1, "standbys": []}
    assert option_problems(params)[0] == ["standby_timeout must not be negative"]
