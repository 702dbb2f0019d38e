"""The audit's replication checks, pure half: server facts, listed standbys and a failover
report in, findings out (plugins/module_utils/audit/replication.py); the report file's filter."""

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dataplane.postgresql.plugins.filter.audit_report import audit_last_report
from ansible_collections.dataplane.postgresql.plugins.module_utils.audit import replication as rep
from ansible_collections.dataplane.postgresql.plugins.module_utils.server.replication_reads import lsn_int, lsn_text

DB = "airflow_db_a"
SYSID = "7716191371620663027"
RECORD = {"v": 1, "fenced": ["dp1_user_a"], "admitted": ["dp2_user_a"], "phase": "complete", "generation": 2,
          "run": "118", "by": "commander_user", "at": "2026-12-06T14:03:38.204Z"}


def report(**extra):
    out = {"run_id": "118", "host": "pg", "finished_at": "2026-12-06T14:03:39Z", "check_mode": False,
           "wal": {"revoke_lsn": "0/3000060", "final_lsn": "0/3000148", "timeline": 1, "system_identifier": SYSID},
           "standbys": [], "deployments": [{"name": "a", "database": DB, "record": dict(RECORD)}]}
    out.update(extra)
    return out


def server(**extra):
    out = {"in_recovery": False, "current_lsn": "0/3000200", "timeline": 1, "checkpoint_timeline": 1,
           "system_identifier": SYSID, "senders": []}
    out.update(extra)
    return out


def sender(name, pid=123, flush=None, slot=None, restart=None, active=True):
    return {"pid": pid, "application_name": name, "state": None, "flush_lsn": flush, "replay_lsn": flush,
            "slot": slot, "slot_active": active, "slot_restart_lsn": restart}


def listed(name, receive="0/3000148", reachable=True, in_recovery=True, sysid=SYSID, sessions=()):
    return {"name": name, "host": "10.0.0.2", "port": 5432, "reachable": reachable,
            "error": None if reachable else "connection refused", "in_recovery": in_recovery,
            "receive_lsn": receive, "replay_lsn": receive, "system_identifier": sysid, "sessions": list(sessions)}


def lost(entry_record, srv=None, rpt=None):
    rpt = rpt or report()
    return rep.last_failover_finding(rpt["deployments"][0], {"record": entry_record, "error": None}, srv or server(),
                                     rpt)


# ----------------------------------------------------------------------------- positions as numbers

def test_wal_positions_round_trip():
    assert lsn_int("0/3000148") == 0x3000148
    assert lsn_int("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert lsn_text(lsn_int("16/B374D848")) == "16/B374D848"
    assert lsn_int(None) is None and lsn_int("nonsense") is None and lsn_int("x/y") is None


# ----------------------------------------------------------------------------- last_failover

def test_the_reports_record_on_the_server_passes():
    finding = lost(dict(RECORD))
    assert finding["ok"] and finding["detail"].startswith("the fence of run 118 is on the server: generation 2")


def test_a_missing_record_is_a_fence_lost_in_a_promotion():
    finding = lost(None, server(timeline=2))
    assert not finding["ok"]
    assert finding["detail"].startswith(rep.LOST + ": airflow_db_a has no fence record, the failover's run 118 "
                                        "wrote generation 2 (fenced: dp1_user_a; admitted: dp2_user_a")
    assert "the server is on timeline 2, the failover ran on timeline 1 (it was promoted since)" in finding["detail"]


def test_a_missing_record_on_the_same_timeline_says_no_promotion_happened():
    finding = lost(None)
    assert not finding["ok"] and rep.LOST in finding["detail"]
    assert "so it was not promoted since: the database's comment was changed" in finding["detail"]


@pytest.mark.parametrize("change, order", [
    ({"generation": 1, "phase": "fencing"}, "older"),
    ({"at": "2026-12-06T14:03:37.9Z", "run": "117"}, "older"),
    ({"at": "2026-12-06T14:03:38.5Z", "run": "119"}, "newer"),
    ({"generation": 4, "run": "120"}, "newer"),
    ({}, "same"),
])
def test_records_are_ordered_by_generation_then_time(change, order):
    assert rep.record_order(dict(RECORD, **change), RECORD) == order
    finding = lost(dict(RECORD, **change))
    assert finding["ok"] is (order != "older"), finding


def test_a_promotion_that_kept_the_record_is_only_noted():
    finding = lost(dict(RECORD), server(timeline=2))
    assert finding["ok"], finding
    assert "it was promoted since), and its record shows the fence is in this server's history" in finding["detail"]


def test_another_server_fails_even_with_the_same_record():
    finding = lost(dict(RECORD), server(system_identifier="1234"))
    assert not finding["ok"] and finding["detail"].startswith(rep.LOST)
    assert "system identifier is 1234, the report's %s" % SYSID in finding["detail"]


def test_without_a_record_in_the_report_only_the_timeline_tells():
    rpt = report(deployments=[{"name": "a", "database": DB, "record": None}])
    assert lost(None, rpt=rpt)["ok"]
    finding = lost(None, server(timeline=3), rpt=rpt)
    assert not finding["ok"] and finding["detail"].startswith(rep.LOST), finding


def test_a_damaged_record_is_not_compared():
    finding = rep.last_failover_finding(report()["deployments"][0], {"record": None, "error": "bad json"},
                                        server(), report())
    assert not finding["ok"] and "cannot be read (see fence_state)" in finding["detail"]


# ----------------------------------------------------------------------------- standby_positions

def entries_for(srv, listed_reads=(), rpt=None):
    rpt = rpt or report()
    position = rep.fence_position(rpt)
    comparable = rep.comparability(srv, rpt, position)
    return rep.standby_entries(srv, list(listed_reads), rpt, position if comparable is True else None), position, \
        comparable


def test_a_slot_behind_the_revoke_is_named_with_its_gap():
    srv = server(senders=[sender(None, pid=None, slot="s1", restart="0/3000000", active=False)])
    entries, position, comparable = entries_for(srv)
    [entry] = entries
    assert (entry["name"], entry["source"], entry["state"], entry["gap_bytes"]) == ("s1", "slot", "behind", 0x148)
    finding = rep.positions_finding(entries, position, comparable)
    assert not finding["ok"]
    assert finding["detail"] == ("standby s1 (not connected, slot s1) has flushed up to 0/3000000, 328 bytes behind "
                                 "the fence of run 118 (REVOKE at 0/3000060): promoted, it would lose the fence; "
                                 "drop the slot if that standby is gone")


def test_a_standby_between_the_revoke_and_the_last_commit():
    entries, position, comparable = entries_for(server(senders=[sender("s2", flush="0/3000100")]))
    assert entries[0]["state"] == "revoke_only"
    finding = rep.positions_finding(entries, position, comparable)
    assert not finding["ok"] and "has the REVOKE of run 118 but not its last commit at 0/3000148" in finding["detail"]


def test_positions_that_cannot_be_read_are_unknown_not_guessed():
    srv = server(senders=[sender("nopriv"), sender("withslot", slot="withslot", restart="0/3000148")])
    entries, position, comparable = entries_for(srv)
    assert [(e["name"], e["state"], e["position_from"]) for e in entries] == [
        ("nopriv", "unknown", None), ("withslot", "flushed", "slot")]
    finding = rep.positions_finding(entries, position, comparable)
    assert finding["ok"] and "position unknown for nopriv (pg_stat_replication shows positions only" in finding["detail"]


def test_a_listed_standby_is_one_entry_with_the_servers_view_and_its_own_position():
    srv = server(senders=[sender("s1", slot="s1", restart="0/3000000")])
    entries, position, comparable = entries_for(srv, [listed("s1", receive="0/3000148")])
    [entry] = entries
    assert entry["listed"] and entry["source"] == "replication" and entry["position_from"] == "standby"
    assert entry["state"] == "flushed" and entry["gap_bytes"] == 0
    assert rep.positions_finding(entries, position, comparable)["ok"]


def test_a_standby_the_report_named_as_behind_and_now_unknown_fails():
    rpt = report(standbys=[{"name": "gone", "source": "replication", "flush_lsn": "0/3000000", "gap_bytes": 328},
                           {"name": "fine", "source": "slot", "flush_lsn": "0/3000148", "gap_bytes": 0}])
    entries, position, comparable = entries_for(server(), rpt=rpt)
    assert [(e["name"], e["state"]) for e in entries] == [("gone", "not_seen_behind"), ("fine", "not_seen")]
    finding = rep.positions_finding(entries, position, comparable)
    assert not finding["ok"] and "standby gone (named in the report) had not flushed the fence" in finding["detail"]
    assert "fine" not in finding["detail"].split(";")[0]


@pytest.mark.parametrize("srv, rpt, why", [
    (server(timeline=2), report(), "the server is on timeline 2"),
    (server(in_recovery=True), report(), "this server is a standby"),
    (server(), report(wal=None), "the report gives no WAL position"),
    (server(), None, "no failover report given"),
])
def test_positions_are_compared_only_on_the_reports_server_and_timeline(srv, rpt, why):
    position = rep.fence_position(rpt) if rpt else None
    assert rep.comparability(srv, rpt, position).startswith(why)


# ----------------------------------------------------------------------------- standby_sessions

PLANES = {"dp1_user_a": "dp1", "dp2_user_a": "dp2"}


def test_sessions_of_a_fenced_role_on_a_listed_standby_are_named():
    sessions = [{"role": "dp1_user_a", "database": DB, "pid": 41}, {"role": "dp1_user_a", "database": "postgres",
                                                                    "pid": 42}, {"role": "dp2_user_a", "database": DB,
                                                                                 "pid": 43}]
    entries = rep.standby_entries(server(), [listed("s1", sessions=sessions)], None, None)
    finding = rep.sessions_finding({"dp1_user_a"}, entries, server(), PLANES)
    assert not finding["ok"]
    assert finding["detail"].startswith("dp1_user_a (plane dp1) is fenced but has 2 session(s) on standby s1 "
                                        "(10.0.0.2:5432) (pid 41, 42; database airflow_db_a, postgres)")
    assert "dp2_user_a" not in finding["detail"]


@pytest.mark.parametrize("read, expected", [
    (listed("s1", reachable=False), "standby s1 (10.0.0.2:5432) cannot be read (connection refused)"),
    (listed("s1", in_recovery=False), "is not in recovery: it was promoted"),
    (listed("s1", sysid="99"), "is not a standby of this server (system identifier 99"),
])
def test_a_listed_standby_that_is_no_standby_of_this_server_fails(read, expected):
    entries = rep.standby_entries(server(), [read], None, None)
    finding = rep.sessions_finding(set(), entries, server(), PLANES)
    assert not finding["ok"] and expected in finding["detail"], finding


def test_no_session_on_a_healthy_listed_standby():
    entries = rep.standby_entries(server(), [listed("s1")], None, None)
    assert rep.sessions_finding({"dp1_user_a"}, entries, server(), PLANES) == {
        "check": "standby_sessions", "ok": True, "detail": "no session of dp1_user_a on s1"}


# ----------------------------------------------------------------------------- input

def test_input_problems():
    assert rep.input_problems({"standbys": [{"name": "a"}, {"name": "a"}]}) == [
        "standbys: the names a are listed more than once"]
    assert rep.input_problems({"last_report": report()}) == []
    problems = rep.input_problems({"last_report": report(wal={"final_lsn": "soon"}, deployments=[{}])})
    assert len(problems) == 2 and "wal.final_lsn is 'soon'" in problems[1]


# ----------------------------------------------------------------------------- the report file

def failover_file(tmp_path, **extra):
    data = {"playbook": "failover", "host": "pg", "run_id": "118", "check_mode": False, "finished_at": "t",
            "wal": {"revoke_lsn": "0/1", "final_lsn": "0/2", "timeline": 1, "system_identifier": SYSID},
            "deployments": [{"name": "a", "database": DB, "state_before": None, "state_after": RECORD,
                             "sessions": [{"pid": 1}]}], "queries": ["REVOKE ..."]}
    data.update(extra)
    path = tmp_path / "failover-pg-118.json"
    path.write_text(json.dumps(data))
    return path


def test_the_filter_keeps_what_the_audit_compares(tmp_path):
    out = audit_last_report(str(failover_file(tmp_path)), "pg")
    assert out["deployments"] == [{"name": "a", "database": DB, "record": RECORD}]
    assert out["wal"]["final_lsn"] == "0/2" and out["run_id"] == "118" and "queries" not in out
    assert audit_last_report(None, "pg") is None and audit_last_report("", "pg") is None


def test_a_check_mode_report_gives_the_record_it_found(tmp_path):
    path = failover_file(tmp_path, check_mode=True, deployments=[
        {"name": "a", "database": DB, "state_before": dict(RECORD, generation=0), "state_after": RECORD}])
    assert audit_last_report(str(path), "pg")["deployments"][0]["record"]["generation"] == 0


@pytest.mark.parametrize("extra, message", [
    ({"host": "other"}, "is the report of host other, not of pg: set dataplane_audit_last_report per host"),
    ({"playbook": "audit"}, "is not a failover report"),
])
def test_the_filter_refuses_a_file_that_is_not_this_hosts_failover_report(tmp_path, extra, message):
    with pytest.raises(AnsibleFilterError, match=message):
        audit_last_report(str(failover_file(tmp_path, **extra)), "pg")
    with pytest.raises(AnsibleFilterError, match="cannot be read as JSON"):
        audit_last_report(str(tmp_path / "missing.json"), "pg")
