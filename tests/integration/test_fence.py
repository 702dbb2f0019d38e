"""The fence module against real servers, as commander_user set up exactly as the seed says."""

import threading
import time

import psycopg2
import pytest

from fence_support import Sessions, fence_args, make_deployment, setup_deployments
from fence_support import can_connect as _can_connect
from fence_support import install_helper as _install_helper
# a fixture (pytest finds it by name in this module)
from fence_support import two_deployments  # noqa: F401  pylint: disable=unused-import


def test_forced_fence_as_commander(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    live = Sessions(pg, a["dp1"], a["database"]).open()
    other = Sessions(pg, b["dp1"], b["database"]).open(("idle", "idle_in_tx"))
    also_dp2 = Sessions(pg, a["dp2"], a["database"]).open(("idle",))
    try:
        res = run_module("fence", fence_args(pg, [a], commander))
        assert not res["failed"], res
        [dep] = res["deployments"]
        assert dep["changed"] and dep["revoked"] and dep["verified"]
        assert dep["route"] == "helper"
        assert dep["granted"] is False  # dp2 already held CONNECT
        assert sorted(s["pid"] for s in dep["sessions_terminated"]) == sorted(live.pids())
        apps = sorted(s["application"] for s in dep["sessions_terminated"])
        assert apps == sorted("fence-test-%s" % k for k in ("idle", "idle_in_tx", "active", "lock"))
        assert all(s["client_addr"] == "127.0.0.1" and s["backend_start"] for s in dep["sessions_terminated"])
        assert dep["remaining_sessions"] == [] and dep["connect_still_via"] == []
        assert isinstance(dep["time_to_fence_ms"], int) and isinstance(res["time_total_ms"], int)
        # every source session is gone, in every database
        assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (a["dp1"],))[0][0] == 0
        # the uncommitted INSERT is gone and the lock is free
        conn = pg.connect(dbname=a["database"])
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM t WHERE src = 'uncommitted'")
        assert cur.fetchone()[0] == 0
        cur.execute("BEGIN; LOCK TABLE lockme IN ACCESS EXCLUSIVE MODE NOWAIT; ROLLBACK")
        conn.close()
        # the source is refused, the destination admitted, the other Deployment untouched
        assert not _can_connect(pg, a["dp1"], a["database"])
        assert _can_connect(pg, a["dp2"], a["database"])
        assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (a["dp2"],))[0][0] == 1
        assert sorted(r[0] for r in pg.sql("SELECT pid FROM pg_stat_activity WHERE usename = %s",
                                           (b["dp1"],))) == sorted(other.pids())
        assert _can_connect(pg, b["dp1"], b["database"])
        assert any("REVOKE CONNECT" in q for q in res["queries"])
        assert any("terminate_member_sessions" in q for q in res["queries"])
    finally:
        live.close()
        other.close()
        also_dp2.close()


def _datacl(server, db):
    return server.sql("SELECT datacl::text FROM pg_database WHERE datname = %s", (db,))[0][0]


def test_check_mode_changes_and_kills_nothing(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle", "idle_in_tx"))
    acl = _datacl(pg, a["database"])
    try:
        res = run_module("fence", fence_args(pg, [a], commander), check=True)
        assert not res["failed"], res
        [dep] = res["deployments"]
        assert res["changed"] and dep["revoked"] and dep["granted"] is False
        assert sorted(s["pid"] for s in dep["sessions_terminated"]) == sorted(live.pids())
        assert pg.pids_of(a["dp1"]) == sorted(live.pids())
        assert _datacl(pg, a["database"]) == acl
        assert any("REVOKE CONNECT" in q for q in res["queries"])
    finally:
        live.close()


def test_idempotent_and_two_deployments_in_one_call(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    la = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    lb = Sessions(pg, b["dp1"], b["database"]).open(("idle_in_tx",))
    try:
        args = fence_args(pg, [a, b], commander)
        first = run_module("fence", args)
        assert not first["failed"], first
        assert [d["changed"] for d in first["deployments"]] == [True, True]
        assert [len(d["sessions_terminated"]) for d in first["deployments"]] == [1, 1]
        assert all(d["verified"] for d in first["deployments"])
        second = run_module("fence", args)
        assert not second["failed"] and second["changed"] is False, second
        assert all(d["verified"] and not d["changed"] and d["sessions_terminated"] == [] for d in second["deployments"])
        assert second["queries"] == []
        # the way back: dp1 admitted again, dp2 fenced, with the destination GRANT recorded as the owner's
        back = run_module("fence", dict(args, deployments=[
            dict(d, source_role=d["destination_role"], destination_role=d["source_role"]) for d in args["deployments"]]))
        assert not back["failed"] and all(d["revoked"] and d["granted"] and d["verified"] for d in back["deployments"])
        assert "%s=c/%s" % (a["dp1"], a["owner"]) in _datacl(pg, a["database"])
        assert a["dp2"] not in _datacl(pg, a["database"])
    finally:
        la.close()
        lb.close()


@pytest.mark.parametrize("path", ["public", "group", "grantor"])
def test_connect_through_another_path_is_reported_and_fails(pg, names, two_deployments, run_module, path):
    commander, (a, b) = two_deployments
    i = psycopg2.sql.Identifier
    if path == "public":
        pg.sql(psycopg2.sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(i(a["database"])))
        expected = "PUBLIC"
    elif path == "group":
        group = names("readers")
        pg.sql(psycopg2.sql.SQL("CREATE ROLE {0} NOLOGIN; GRANT CONNECT ON DATABASE {1} TO {0}; GRANT {0} TO {2}")
               .format(i(group), i(a["database"]), i(a["dp1"])))
        expected = "group role %s" % group
    else:
        delegate = names("delegate")
        pg.sql(psycopg2.sql.SQL("CREATE ROLE {0} NOLOGIN; GRANT CONNECT ON DATABASE {1} TO {0} WITH GRANT OPTION; "
                                "SET ROLE {0}; GRANT CONNECT ON DATABASE {1} TO {2}; RESET ROLE")
               .format(i(delegate), i(a["database"]), i(a["dp1"])))
        expected = "another grantor"
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    acl = _datacl(pg, a["database"])
    try:
        res = run_module("fence", fence_args(pg, [a, b], commander))
        assert res["failed"] and "nothing was changed" in res["msg"], res
        [report] = res["preflight"]
        assert report["name"] == "a" and any(expected in p for p in report["problems"]), report
        assert expected in res["msg"] and res["queries"] == []
        assert _datacl(pg, a["database"]) == acl and pg.pids_of(a["dp1"]) == live.pids()
        assert _datacl(pg, b["database"]).count(b["dp1"]) == 1  # b untouched as well
    finally:
        live.close()


def test_preflight_names_the_missing_grant(pg, names, two_deployments, run_module):
    commander, (a, b) = two_deployments
    i = psycopg2.sql.Identifier
    pg.sql(psycopg2.sql.SQL("REVOKE {} FROM {}").format(i(b["owner"]), i(commander)))
    pg.sql(psycopg2.sql.SQL("REVOKE {} FROM {}").format(i(b["dp1"]), i(b["killer"])))
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    try:
        res = run_module("fence", fence_args(pg, [a, b], commander))
        assert res["failed"] and [r["name"] for r in res["preflight"]] == ["b"]
        problems = " ".join(res["preflight"][0]["problems"])
        assert "GRANT %s TO %s" % (b["owner"], commander) in problems
        assert "GRANT %s TO %s" % (b["dp1"], b["killer"]) in problems
        assert pg.pids_of(a["dp1"]) == live.pids()  # a was not fenced either: nothing changed
        assert a["dp1"] in _datacl(pg, a["database"])
    finally:
        live.close()


def test_preflight_refuses_superuser_and_owner_member_sources(pg, names, two_deployments, run_module):
    commander, (a, b) = two_deployments
    i = psycopg2.sql.Identifier
    pg.sql(psycopg2.sql.SQL("ALTER ROLE {} SUPERUSER").format(i(a["dp1"])))
    pg.sql(psycopg2.sql.SQL("GRANT {} TO {}").format(i(b["owner"]), i(b["dp1"])))
    res = run_module("fence", fence_args(pg, [a, b], commander))
    assert res["failed"] and [r["name"] for r in res["preflight"]] == ["a", "b"]
    assert "superuser" in res["preflight"][0]["problems"][0]
    assert "member of the owner role" in " ".join(res["preflight"][1]["problems"])


def _close_once_fence_runs(server, commander, sessions, delay=0.4):
    """Close SESSIONS DELAY seconds after commander's connection appears (the fence is running)."""
    def run():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (commander,))[0][0]:
                break
            time.sleep(0.01)
        time.sleep(delay)
        sessions.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_controlled_mode_drains_then_terminates(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    leaving = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    staying = Sessions(pg, a["dp1"], a["database"]).open(("idle_in_tx",))
    _close_once_fence_runs(pg, commander, leaving)
    try:
        started = time.monotonic()
        res = run_module("fence", fence_args(pg, [a], commander, mode="controlled", drain_timeout=1.5))
        elapsed = time.monotonic() - started
        assert not res["failed"], res
        [dep] = res["deployments"]
        assert [s["pid"] for s in dep["sessions_drained"]] == leaving.pids()
        assert [s["pid"] for s in dep["sessions_terminated"]] == staying.pids()
        assert dep["verified"] and elapsed >= 1.5 and dep["time_to_fence_ms"] >= 1500
        assert pg.pids_of(a["dp1"]) == []
    finally:
        staying.close()


def test_controlled_mode_returns_early_when_drained(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    leaving = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    _close_once_fence_runs(pg, commander, leaving)
    started = time.monotonic()
    res = run_module("fence", fence_args(pg, [a], commander, mode="controlled", drain_timeout=30))
    assert not res["failed"] and time.monotonic() - started < 10, res
    [dep] = res["deployments"]
    assert dep["sessions_terminated"] == [] and [s["pid"] for s in dep["sessions_drained"]] == leaving.pids()


def test_concurrent_fences_of_a_deployment_are_serialized(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    holder = pg.connect()
    holder.cursor().execute("SELECT pg_advisory_lock(1685087843, hashtext(%s))", (a["database"],))
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("res", run_module("fence", fence_args(pg, [a], commander))))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        waiting = 0
        while time.monotonic() < deadline and not waiting:
            waiting = pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0][0]
            time.sleep(0.05)
        assert waiting == 1 and "res" not in out
        assert a["dp1"] in _datacl(pg, a["database"])  # nothing done while waiting
    finally:
        holder.close()
    worker.join(30)
    assert not out["res"]["failed"] and out["res"]["deployments"][0]["verified"], out["res"]


def test_a_second_fence_gives_up_after_lock_timeout(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    holder = pg.connect()
    holder.cursor().execute("SELECT pg_advisory_lock(1685087843, hashtext(%s))", (a["database"],))
    holder_pid = holder.get_backend_pid()
    acl_before = _datacl(pg, a["database"])
    try:
        started = time.monotonic()
        res = run_module("fence", dict(fence_args(pg, [a], commander), lock_timeout=1))
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert res["failed"] and "another fence of the same database is still running" in res["msg"], res
    assert [h["pid"] for h in res["lock_holders"]] == [holder_pid]
    assert elapsed < 8
    assert _datacl(pg, a["database"]) == acl_before  # nothing changed
    assert not any("REVOKE" in q for q in res["queries"])


def test_fence_refuses_postgresql_15(pg15, names, run_module):
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(pg15, [dep], commander)
    acl = _datacl(pg15, dep["database"])
    res = run_module("fence", fence_args(pg15, [dep], commander))
    assert res["failed"] and "PostgreSQL 15" in res["msg"] and "16 or newer" in res["msg"]
    assert "Nothing was changed" in res["msg"] and res["queries"] == []
    assert _datacl(pg15, dep["database"]) == acl


def test_bad_names_fail_before_connecting(run_module):
    res = run_module("fence", dict(login_host="127.0.0.1", login_port=1, deployments=[
        dict(name="x", database="d" * 64, source_role="pg_x", destination_role="ok", killer_role="k")]))
    assert res["failed"] and "truncate" in res["msg"] and "pg_" in res["msg"]


def test_without_the_helper_the_preflight_says_so(pg, names, run_module):
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(pg, [dep], commander)
    live = Sessions(pg, dep["dp1"], dep["database"]).open(("idle",))
    try:
        res = run_module("fence", fence_args(pg, [dep], commander, helper_schema=names("nohelper")))
        assert res["failed"] and res["queries"] == []
        assert "fence helper is not installed" in res["preflight"][0]["problems"][0]
        assert pg.pids_of(dep["dp1"]) == live.pids()
    finally:
        live.close()


def test_as_superuser_the_fence_terminates_directly(pg, names, run_module):
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(pg, [dep], commander)
    live = Sessions(pg, dep["dp1"], dep["database"]).open(("idle", "idle_in_tx"))
    try:
        res = run_module("fence", fence_args(pg, [dep], "postgres", helper_schema=names("nohelper")))
        assert not res["failed"], res
        [d] = res["deployments"]
        assert d["route"] == "direct" and d["verified"] and len(d["sessions_terminated"]) == 2
        assert "%s=c/%s" % (dep["dp1"], dep["owner"]) not in _datacl(pg, dep["database"])
    finally:
        live.close()


def test_through_ansible_playbook_with_module_defaults(pg16, names, run_module, ansible_playbook, tmp_path):
    """The action group carries the connection; one task fences, check mode first changes nothing."""
    import json
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(pg16, [dep], commander)
    _install_helper(pg16, run_module, [dep["killer"]])
    live = Sessions(pg16, dep["dp1"], dep["database"]).open(("idle", "idle_in_tx"))
    (tmp_path / "inventory.ini").write_text("[dataplane_postgresql]\nsrv ansible_connection=local\n")
    (tmp_path / "play.yml").write_text(
        "- hosts: dataplane_postgresql\n"
        "  gather_facts: false\n"
        "  module_defaults:\n"
        "    group/dataplane.postgresql.all:\n"
        "      login_host: 127.0.0.1\n"
        "      login_port: %d\n"
        "      login_user: %s\n"
        "  tasks:\n"
        "    - name: Fence\n"
        "      dataplane.postgresql.fence:\n"
        "        deployments: %s\n"
        "      register: fenced\n"
        "    - name: Show\n"
        "      ansible.builtin.debug:\n"
        "        msg: \"RESULT {{ fenced.deployments | map(attribute='verified') | list | to_json }}\"\n"
        % (pg16.port, commander, json.dumps(fence_args(pg16, [dep], commander)["deployments"])))
    try:
        checked = ansible_playbook(tmp_path / "play.yml", inventory=tmp_path / "inventory.ini", check=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert pg16.pids_of(dep["dp1"]) == sorted(live.pids())
        proc = ansible_playbook(tmp_path / "play.yml", inventory=tmp_path / "inventory.ini")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "RESULT [true]" in proc.stdout and "changed=1" in proc.stdout
        assert pg16.pids_of(dep["dp1"]) == []
    finally:
        live.close()


# --- the fence state record (issue 16) ------------------------------------------------------------

def _comment(server, db):
    return server.sql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                      (db,))[0][0]


def _record(server, db):
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record
    return fence_record.parse_record(_comment(server, db))


def test_the_fence_records_its_state_in_the_database_comment(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    i = psycopg2.sql.Identifier
    pg.sql(psycopg2.sql.SQL("COMMENT ON DATABASE {} IS 'Sales metadata, team X'").format(i(a["database"])))
    args = fence_args(pg, [a, b], commander, run_id="awx-job-41")
    res = run_module("fence", args)
    assert not res["failed"], res
    assert res["run_id"] == "awx-job-41"
    for dep, spec in zip(res["deployments"], (a, b)):
        assert dep["state_before"] is None and dep["state_written"] is True
        after = dep["state_after"]
        assert after["fenced"] == [spec["dp1"]] and after["admitted"] == [spec["dp2"]], after
        assert after["phase"] == "complete" and after["generation"] == 2 and after["run"] == "awx-job-41"
        assert after["by"] == commander and after["at"].endswith("Z")
        assert _record(pg, spec["database"]) == after  # what the server holds
    assert _comment(pg, a["database"]).split("\n")[0] == "Sales metadata, team X"  # the user's line is kept
    assert sum(q.count("COMMENT ON DATABASE") for q in res["queries"]) == 4  # fencing + complete, each

    # a rerun in the same direction writes nothing and changes nothing
    again = run_module("fence", dict(args, run_id="awx-job-42"))
    assert not again["failed"] and again["changed"] is False and again["queries"] == [], again
    assert [d["state_before"] for d in again["deployments"]] == [d["state_after"] for d in res["deployments"]]
    assert _record(pg, a["database"])["run"] == "awx-job-41"

    # failback: the other direction, generation moves on, the other plane is now the fenced one
    back = run_module("fence", dict(args, run_id="awx-job-43", deployments=[
        dict(d, source_role=d["destination_role"], destination_role=d["source_role"]) for d in args["deployments"]]))
    assert not back["failed"], back
    rec = _record(pg, a["database"])
    assert rec["fenced"] == [a["dp2"]] and rec["admitted"] == [a["dp1"]] and rec["phase"] == "complete"
    assert rec["generation"] == 4 and rec["run"] == "awx-job-43"
    assert back["deployments"][0]["state_before"]["run"] == "awx-job-41"
    assert not _can_connect(pg, a["dp2"], a["database"]) and _can_connect(pg, a["dp1"], a["database"])


def test_check_mode_shows_the_planned_record_and_writes_nothing(pg, two_deployments, run_module):
    commander, (a, b) = two_deployments
    res = run_module("fence", fence_args(pg, [a], commander, run_id="plan"), check=True)
    assert not res["failed"], res
    [dep] = res["deployments"]
    assert dep["state_before"] is None and dep["state_written"] is True
    assert dep["state_after"]["phase"] == "complete" and dep["state_after"]["fenced"] == [a["dp1"]]
    assert dep["state_after"]["admitted"] == [a["dp2"]] and dep["state_after"]["run"] == "plan"
    assert any("COMMENT ON DATABASE" in q for q in res["queries"])
    assert _comment(pg, a["database"]) is None and a["dp1"] in _datacl(pg, a["database"])


def test_an_already_fenced_catalog_without_a_record_gets_one(pg, two_deployments, run_module):
    """A Deployment fenced before records existed (or by hand): the fence only writes the record."""
    commander, (a, b) = two_deployments
    i = psycopg2.sql.Identifier
    pg.sql(psycopg2.sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(i(a["database"]), i(a["dp1"])))
    res = run_module("fence", fence_args(pg, [a], commander))
    assert not res["failed"], res
    [dep] = res["deployments"]
    assert dep["changed"] and not dep["revoked"] and not dep["granted"] and dep["state_written"]
    assert _record(pg, a["database"])["phase"] == "complete"
    again = run_module("fence", fence_args(pg, [a], commander))
    assert again["changed"] is False and again["queries"] == []


@pytest.mark.parametrize("damage", ["json", "format"])
def test_a_damaged_record_fails_the_preflight_of_its_deployment(pg, two_deployments, run_module, damage):
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record
    commander, (a, b) = two_deployments
    line = fence_record.RECORD_PREFIX + ("{not json" if damage == "json" else '{"v": 99}')
    pg.sql(psycopg2.sql.SQL("COMMENT ON DATABASE {} IS {}").format(psycopg2.sql.Identifier(a["database"]),
                                                                   psycopg2.sql.Literal(line)))
    live = Sessions(pg, a["dp1"], a["database"]).open(("idle",))
    acl_a, acl_b = _datacl(pg, a["database"]), _datacl(pg, b["database"])
    try:
        res = run_module("fence", fence_args(pg, [a, b], commander))
        assert res["failed"] and "nothing was changed" in res["msg"], res
        [report] = res["preflight"]
        assert report["name"] == "a" and "fence state" in " ".join(report["problems"])
        assert res["queries"] == []
        assert _datacl(pg, a["database"]) == acl_a and _datacl(pg, b["database"]) == acl_b
        assert _comment(pg, a["database"]) == line and _comment(pg, b["database"]) is None
        assert pg.pids_of(a["dp1"]) == live.pids()
    finally:
        live.close()


def test_an_unregistered_killer_fails_the_preflight_as_commander(pg, names, run_module):
    """commander_user cannot read the helper's registry: the preflight asks the helper itself
    (list-only), so a killer role that only holds a stray EXECUTE grant stops the fence before
    the REVOKE instead of failing at the termination step with neither plane admitted."""
    commander = names("commander_user")
    a, b = make_deployment(names, "a"), make_deployment(names, "b")
    setup_deployments(pg, [a, b], commander)
    _install_helper(pg, run_module, [a["killer"]])  # b's killer is not registered
    i = psycopg2.sql.Identifier
    pg.sql(psycopg2.sql.SQL("GRANT USAGE ON SCHEMA dataplane_fence TO {k}; "
                            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dataplane_fence TO {k}").format(
                                k=i(b["killer"])))
    live = Sessions(pg, b["dp1"], b["database"]).open(("idle",))
    try:
        res = run_module("fence", fence_args(pg, [a, b], commander))
        assert res["failed"], res
        assert [r["name"] for r in res["preflight"]] == ["b"], res["preflight"]
        problems = " ".join(res["preflight"][0]["problems"])
        assert "refuses killer role %s" % b["killer"] in problems and "registered" in problems, problems
        assert pg.pids_of(b["dp1"]) == live.pids()
        assert b["dp1"] in _datacl(pg, b["database"]) and a["dp1"] in _datacl(pg, a["database"])
        # the registered Deployment alone fences
        res = run_module("fence", fence_args(pg, [a], commander))
        assert not res["failed"] and res["deployments"][0]["verified"], res
    finally:
        live.close()


def test_refusal_format_timings_and_generic_names(pg16, names, run_module):
    """Refused input uses the shared format; timings carry total_ms (time_total_ms is its alias);
    requests need no Airflow naming."""
    bad = run_module("fence", dict(deployments=[dict(name="x", database="ledger", source_role="pg_x",
                                                     destination_role="app_green")]))
    assert bad["failed"] and bad["msg"].startswith("fence request refused, nothing was changed: Deployment x:")
    assert bad["queries"] == [] and bad["problems"] and "total_ms" in bad["timings"]
    commander = names("ops")
    dep = dict(name="billing", database=names("ledger"), owner=names("ledger_owner"), killer=names("terminator"),
               dp1=names("app_blue"), dp2=names("app_green"), id="billing")
    setup_deployments(pg16, [dep], commander)
    _install_helper(pg16, run_module, [dep["killer"]])
    live = Sessions(pg16, dep["dp1"], dep["database"]).open(("idle", "idle_in_tx"))
    try:
        res = run_module("fence", fence_args(pg16, [dep], commander))
        assert not res["failed"], res
        assert res["deployments"][0]["verified"] and len(res["deployments"][0]["sessions_terminated"]) == 2
        assert res["time_total_ms"] == res["timings"]["total_ms"]
        assert set(res["timings"]) >= {"connect_ms", "lock_ms", "preflight_ms", "revoke_ms", "signal_ms", "wait_ms",
                                       "verify_and_grant_ms", "total_ms"}
        assert not _can_connect(pg16, dep["dp1"], dep["database"]) and _can_connect(pg16, dep["dp2"], dep["database"])
    finally:
        live.close()
