"""The fence survives the lifecycle (issue 16): provision -> failover -> provision again ->
audit -> hand-made drift -> failback, through the playbooks, on real PostgreSQL 16, 17, 18.

Failover and audit run as a least-privilege commander login; provision as postgres. Every
"refused"/"admitted" below is a real login attempt.
"""

import json

from psycopg2 import sql

from tests.support.playbooks import PROVISION, login, recap
from tests.support.records import RECORD_PREFIX, record_of, set_comment
from tests.support.reports import latest_report
from tests.support.versions import on


def provision(e, check=False, diff=False, **extra):
    extra_vars = {"dataplane_pg_user": "postgres", "dataplane_deployments": e.deployments,
                  "dataplane_commander_user": e.commander, "dataplane_report_dir": str(e.tmp / "reports")}
    extra_vars.update(extra)
    proc = e.run(PROVISION, inventory=e.inventory, extra_vars=extra_vars, check=check, diff=diff)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def provision_report(e):
    return latest_report(e.tmp / "reports", "provision")


def can_connect(server, role, database):
    return server.sql("SELECT has_database_privilege(%s, %s, 'CONNECT')", (role, database))[0][0]


@on(18)  # a playbook test: once (docs/testing.md, "Which PostgreSQL versions a test runs on")
def test_provision_failover_provision_audit_failback(pg, env, names, tmp_path):
    e = env(pg, count=2)
    provision(e)
    first, second = e.ids
    for dep_id in e.ids:
        assert e.logins(dep_id) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}
        assert record_of(pg, e.db(dep_id)) is None   # the reference set-up records no fence

    e.failover_ok("dp1", "dp2", dataplane_run_id="run-one", dataplane_report_dir=str(e.tmp / "reports"))
    fence_states = dict((d["name"], (d["fence_before"], d["fence_after"]))
                        for d in latest_report(e.tmp / "reports", "failover")["deployments"])
    for dep_id in e.ids:
        e.assert_active("dp2", dep_id)
        rec = record_of(pg, e.db(dep_id))
        assert rec["fenced"] == [e.role("dp1", dep_id)] and rec["admitted"] == [e.role("dp2", dep_id)]
        assert rec["phase"] == "complete" and rec["run"] == "run-one" and rec["by"] == e.commander
        # the report: no fence recorded before, dp1 fenced and dp2 admitted after
        before, after = fence_states[dep_id]
        assert before is None and (after["fenced"], after["admitted"]) == (["dp1"], ["dp2"]), fence_states

    # Provision again, adding a third Deployment: the fence holds, the newcomer gets both planes.
    third = names("f2")
    e.add_deployment(third)
    check = provision(e, check=True, diff=True)
    assert "%s: unchanged | fenced: dp1, admitted: dp2 (recorded by %s" % (first, e.commander) in check.stdout
    assert "CONNECT not granted to %s" % e.role("dp1", first) in check.stdout
    assert "%s: would change: database %s created" % (third, e.db(third)) in check.stdout, check.stdout
    assert not e.logins(first)["dp1"][0] == "admitted"
    again = provision(e)
    out = again.stdout
    for dep_id in (first, second):
        assert ("%s: unchanged | fenced: dp1, admitted: dp2 (recorded by %s" % (dep_id, e.commander)) in out, out
        e.assert_active("dp2", dep_id)      # dp1 refused by a real login, dp2 admitted
        assert not can_connect(pg, e.role("dp1", dep_id), e.db(dep_id))
    assert "%s: changed: database %s created" % (third, e.db(third)) in out
    assert "| admitted: dp1, dp2" in out
    assert e.logins(third) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}
    prov = provision_report(e)
    by_id = dict((d["id"], d) for d in prov["deployments"])
    assert by_id[first]["fence"]["fenced"] == ["dp1"] and by_id[first]["fence"]["admitted"] == ["dp2"]
    assert by_id[first]["connect_withheld"] == [e.role("dp1", first)] and not by_id[first]["changed"]
    assert by_id[third]["fence"]["state"] == "open" and by_id[third]["changed"]
    rerun = provision(e)
    assert recap(rerun.stdout)["pg"]["changed"] == 0, rerun.stdout

    # The audit (as commander_user) passes and names the admitted plane.
    proc, report = e.audit()
    assert proc.returncode == 0, proc.stdout
    summary = dict((d["id"], d["summary"]) for d in report["deployments"])
    assert summary[first].startswith("%s: OK, fence capable (helper); fenced: dp1, admitted: dp2" % first), summary
    assert summary[third].startswith("%s: OK, fence capable (helper); admitted: dp1, dp2" % third), summary
    fence = dict((d["id"], d["fence"]) for d in report["deployments"])
    assert fence[second]["admitted"] == ["dp2"] and fence[second]["source"] == "record"

    # CONNECT granted back by hand to the fenced plane: drift, naming the Deployment.
    pg.sql(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
        sql.Identifier(e.db(second)), sql.Identifier(e.role("dp1", second))))
    assert login(pg, e.role("dp1", second), e.db(second)) == ("admitted", None)
    proc, report = e.audit()
    assert proc.returncode != 0
    assert report["drifted"] == [second], report["drifted"]
    assert "Drift found on pg in 1 Deployment(s): %s" % second in proc.stdout
    finding = [f for f in [d for d in report["deployments"] if d["id"] == second][0]["findings"]
               if f["check"] == "fence_state"][0]
    assert not finding["ok"] and "%s (plane dp1) is fenced" % e.role("dp1", second) in finding["detail"], finding
    # ... and provision does not take the hand-made grant as a reason to do anything else.
    again = provision(e)
    assert recap(again.stdout)["pg"]["changed"] == 0
    pg.sql(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
        sql.Identifier(e.db(second)), sql.Identifier(e.role("dp1", second))))

    # Failback restores the other direction, for the first two (the third never failed over).
    back = e.failover_ok("dp2", "dp1", dataplane_failover_deployments=[first, second],
                         dataplane_report_dir=str(e.tmp / "reports"))
    for dep in latest_report(e.tmp / "reports", "failover")["deployments"]:
        assert (dep["fence_before"]["fenced"], dep["fence_before"]["admitted"]) == (["dp1"], ["dp2"]), dep
        assert (dep["fence_after"]["fenced"], dep["fence_after"]["admitted"]) == (["dp2"], ["dp1"]), dep
    assert "%s: dp2 fenced (" % first in back.stdout, back.stdout
    for dep_id in (first, second):
        e.assert_active("dp1", dep_id)
        rec = record_of(pg, e.db(dep_id))
        assert rec["fenced"] == [e.role("dp2", dep_id)] and rec["admitted"] == [e.role("dp1", dep_id)]
    again = e.failover_ok("dp2", "dp1", dataplane_failover_deployments=[first, second])
    assert recap(again.stdout)["pg"]["changed"] == 0
    after = provision(e)
    assert recap(after.stdout)["pg"]["changed"] == 0
    assert "%s: unchanged | fenced: dp2, admitted: dp1" % first in after.stdout
    proc, report = e.audit()
    assert proc.returncode == 0, proc.stdout
    assert "fenced: dp2, admitted: dp1" in dict((d["id"], d["summary"]) for d in report["deployments"])[first]


def test_failover_report_and_set_stats_carry_the_state(pg16, env):
    e = env(pg16, count=1)
    provision(e)
    dep_id = e.ids[0]
    proc = e.failover_ok("dp1", "dp2", dataplane_report_dir=str(e.tmp / "reports"), dataplane_run_id="job-42")
    report = json.loads((e.tmp / "reports" / "failover-pg-job-42.json").read_text())
    dep = report["deployments"][0]
    assert report["run_id"] == "job-42"
    assert dep["fence_before"] is None
    assert dep["fence_after"]["fenced"] == ["dp1"] and dep["fence_after"]["admitted"] == ["dp2"]
    assert dep["fence_after"]["phase"] == "complete" and dep["fence_after"]["run"] == "job-42"
    assert dep["state_after"]["fenced"] == [e.role("dp1", dep_id)]
    assert "%s: dp1 fenced (" % dep_id in proc.stdout and report["safe_to_start_destination"] is True


@on(17)  # a playbook test: once (docs/testing.md)
def test_no_record_inference_and_explicit_readmit(pg, env, names):
    """A 0.1-era fence (CONNECT revoked, no record) is kept; only the explicit variable
    re-admits, and it records that it did."""
    e = env(pg, count=2)
    provision(e)
    fenced, other = e.ids
    # what version 0.1's fence left: dp1's CONNECT revoked, nothing recorded
    pg.sql(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
        sql.Identifier(e.db(fenced)), sql.Identifier(e.role("dp1", fenced))))
    set_comment(pg, e.db(fenced), "kept: a comment of the operators")
    proc = provision(e, diff=True)
    assert recap(proc.stdout)["pg"]["changed"] == 0, proc.stdout
    assert "%s: unchanged | fenced: dp1, admitted: dp2 (inferred, no record)" % fenced in proc.stdout, proc.stdout
    assert login(pg, e.role("dp1", fenced), e.db(fenced))[0] == "refused"
    proc, report = e.audit()
    assert proc.returncode == 0, proc.stdout
    assert "fenced: dp1, admitted: dp2 (inferred, no record)" in [
        d["summary"] for d in report["deployments"] if d["id"] == fenced][0]

    # Check mode of the re-admission: shows it, changes nothing.
    check = provision(e, check=True, diff=True, dataplane_readmit_fenced_planes=True)
    assert "%s: would change: CONNECT granted to %s" % (fenced, e.role("dp1", fenced)) in check.stdout, check.stdout
    assert '"state": "fenced"' in check.stdout and '"state": "open"' in check.stdout   # --diff before/after
    assert login(pg, e.role("dp1", fenced), e.db(fenced))[0] == "refused"
    assert record_of(pg, e.db(fenced)) is None

    readmit = provision(e, dataplane_readmit_fenced_planes=True, dataplane_run_id="readmit-7")
    assert recap(readmit.stdout)["pg"]["changed"] == 1
    assert "%s: changed: CONNECT granted to %s; fence state record" % (fenced, e.role("dp1", fenced)) in readmit.stdout
    assert "%s: unchanged | admitted: dp1, dp2" % other in readmit.stdout
    assert e.logins(fenced) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}
    rec = record_of(pg, e.db(fenced))
    assert rec["fenced"] == [] and rec["admitted"] == sorted([e.role("dp1", fenced), e.role("dp2", fenced)])
    assert rec["run"] == "readmit-7" and rec["by"] == "postgres" and rec["phase"] == "complete"
    comment = pg.sql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                     (e.db(fenced),))[0][0]
    assert comment.startswith("kept: a comment of the operators\n" + RECORD_PREFIX)
    assert record_of(pg, e.db(other)) is None        # untouched: it was never fenced
    assert recap(provision(e, dataplane_readmit_fenced_planes=True).stdout)["pg"]["changed"] == 0
    proc, report = e.audit()
    assert proc.returncode == 0, proc.stdout


def test_recorded_fence_and_damaged_record(pg16, env):
    """A record wins over the catalog; a damaged record refuses provisioning, nothing changed."""
    e = env(pg16, count=2)
    provision(e)
    dep_id, other = e.ids
    e.failover_ok("dp1", "dp2")
    # the interrupted-failover case: the record says "fencing", no plane holds CONNECT
    rec = record_of(pg16, e.db(dep_id))
    rec["phase"], rec["admitted"] = "fencing", []
    set_comment(pg16, e.db(dep_id), RECORD_PREFIX + json.dumps(rec))
    pg16.sql(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
        sql.Identifier(e.db(dep_id)), sql.Identifier(e.role("dp2", dep_id))))
    proc = provision(e)
    assert recap(proc.stdout)["pg"]["changed"] == 0
    assert "phase fencing: an interrupted failover" in proc.stdout, proc.stdout
    assert "[WARNING]" in proc.stdout + proc.stderr
    assert all(e.logins(dep_id)[p][0] == "refused" for p in ("dp1", "dp2"))
    proc, report = e.audit()
    assert proc.returncode != 0 and report["drifted"] == [dep_id]
    assert "phase 'fencing'" in json.dumps(report["deployments"][0]["findings"])
    # a completed failover fixes it
    e.failover_ok("dp1", "dp2", dataplane_failover_deployments=[dep_id])
    e.assert_active("dp2", dep_id)

    # a damaged record: the whole run is refused before any change, naming the Deployment
    set_comment(pg16, e.db(dep_id), RECORD_PREFIX + "{not json")
    acl_before = pg16.sql("SELECT datname, datacl::text FROM pg_database WHERE datname = ANY(%s) ORDER BY 1",
                          ([e.db(d) for d in e.ids],))
    extra = {"dataplane_pg_user": "postgres", "dataplane_deployments": e.deployments,
             "dataplane_commander_user": e.commander}
    bad = e.run(PROVISION, inventory=e.inventory, extra_vars=extra)
    assert bad.returncode != 0
    assert "Deployment %r: the fence state record in the comment of database %r cannot be read" % (
        dep_id, e.db(dep_id)) in bad.stdout, bad.stdout
    assert pg16.sql("SELECT datname, datacl::text FROM pg_database WHERE datname = ANY(%s) ORDER BY 1",
                    ([e.db(d) for d in e.ids],)) == acl_before
    proc, report = e.audit()
    assert proc.returncode != 0 and dep_id in report["drifted"]
    assert "cannot be read" in json.dumps(report["deployments"][0]["findings"])


def test_unknown_state_is_not_granted(pg16, env):
    """No record and no plane holding CONNECT (a 0.1 failover stopped after its REVOKE):
    provision grants nothing and warns."""
    e = env(pg16, count=1)
    provision(e)
    dep_id = e.ids[0]
    pg16.sql(sql.SQL("REVOKE CONNECT ON DATABASE {0} FROM {1}; REVOKE CONNECT ON DATABASE {0} FROM {2}").format(
        sql.Identifier(e.db(dep_id)), sql.Identifier(e.role("dp1", dep_id)), sql.Identifier(e.role("dp2", dep_id))))
    proc = provision(e)
    assert recap(proc.stdout)["pg"]["changed"] == 0
    assert "no plane admitted, no fence recorded" in proc.stdout
    assert all(e.logins(dep_id)[p][0] == "refused" for p in ("dp1", "dp2"))


def test_roles_in_one_user_play_share_the_common_defaults(pg16, env, tmp_path):
    """The three roles through include_role in a user's own play, each with its own role vars:
    the connection comes from the inventory and the shared defaults of dataplane.postgresql.common
    (a dependency of each role), the model from the play's vars; reports and set_stats as usual."""
    e = env(pg16, count=2)
    dep_a, dep_b = e.ids
    reports = tmp_path / "user-play-reports"
    play = tmp_path / "user_play.yml"
    play.write_text(json.dumps([{
        "name": "provision, fail over and audit in one play",
        "hosts": "dataplane_postgresql",
        "gather_facts": False,
        "vars": {"dataplane_deployments": e.deployments, "dataplane_commander_user": e.commander,
                 "dataplane_report_dir": str(reports)},
        "tasks": [
            {"name": "Provision", "ansible.builtin.include_role": {"name": "dataplane.postgresql.deployments"},
             "vars": {"dataplane_pg_user": "postgres"}},
            {"name": "Fail over", "ansible.builtin.include_role": {"name": "dataplane.postgresql.failover"},
             "vars": {"dataplane_pg_user": e.commander, "dataplane_failover_from": "dp1",
                      "dataplane_failover_to": "dp2", "dataplane_failover_deployments": [dep_a]}},
            {"name": "Audit", "ansible.builtin.include_role": {"name": "dataplane.postgresql.audit"},
             "vars": {"dataplane_pg_user": e.commander}},
        ]}]))
    proc = e.run(play, inventory=e.inventory, env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap(proc.stdout)["pg"]["failed"] == 0
    e.assert_active("dp2", dep_a)
    assert e.logins(dep_b) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}

    def only(prefix):
        files = sorted(reports.glob(prefix + "-pg-*.json"))
        assert len(files) == 1, files
        return json.loads(files[0].read_text())
    provisioned = only("provision")
    assert sorted(d["id"] for d in provisioned["deployments"]) == sorted(e.ids) and provisioned["changed"]
    failed_over = only("failover")
    assert [d["name"] for d in failed_over["deployments"]] == [dep_a] and failed_over["verified"]
    assert failed_over["server"] == {"host": pg16.host, "port": pg16.port, "user": e.commander}
    audited = only("audit")
    assert audited["connected_as"] == e.commander and not audited["drift"], audited["summary"]
    assert oct(reports.stat().st_mode & 0o777) == "0o750"
    assert all(oct(p.stat().st_mode & 0o777) == "0o640" for p in reports.iterdir()), list(reports.iterdir())
    stats = proc.stdout.split("CUSTOM STATS")[1]
    for key in ("dataplane_provision", "dataplane_failover", "dataplane_audit"):
        assert key in stats, stats
