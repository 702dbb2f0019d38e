"""What an operator reads at 3 a.m., through the playbooks against real PostgreSQL 16: the audit
of a subset stays within it, a record that contradicts the catalog is never answered with
"fail over again", and every error says what happened, whether anything changed, and what to
do (each test checks the message's content, not only that the run failed)."""

import json
import re
import shutil

from psycopg2 import sql

from test_failover import AUDIT, FAILOVER, REPO, Env, count_sessions, recap, summary_lines, write_inventory
from tests.support.reports import latest_report
from tests.support.server import PgServer, scratch_dir


def make_env(pg16, names, ansible_playbook, tmp_path, count):
    e = Env(pg16, names, ansible_playbook, tmp_path, count)
    e.provision()
    return e


def test_audit_of_a_subset_stays_within_it(pg16, names, ansible_playbook, tmp_path):
    e = make_env(pg16, names, ansible_playbook, tmp_path, 3)
    chosen, other, third = e.ids
    try:
        proc, report = e.audit(dataplane_audit_deployments=[chosen])
        assert proc.returncode == 0, proc.stdout
        assert [d["id"] for d in report["deployments"]] == [chosen] and report["drift"] is False, report["summary"]
        assert report["summary"] == [s for s in report["summary"] if s.startswith(chosen + ": OK, fence capable")]
        assert other not in proc.stdout.split("Audit summary")[1] and third not in proc.stdout.split("Audit summary")[1]
        # drift outside the subset is not this audit's: PUBLIC gets CONNECT on another Deployment
        pg16.sql(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(e.db(other))))
        proc, report = e.audit(dataplane_audit_deployments="%s,%s" % (chosen, third))
        assert proc.returncode == 0 and report["drifted"] == [], report["summary"]
        # ... and the full audit still sees it
        proc, report = e.audit()
        assert proc.returncode != 0 and report["drifted"] == [other], report["summary"]
        # an id that is not a Deployment is named, with the ids that exist
        proc, report = e.audit(dataplane_audit_deployments=[chosen, "nope"])
        assert proc.returncode != 0 and report["drifted"] == ["nope"]
        assert "nope: DRIFT (1): dataplane_audit_deployments names it, but dataplane_deployments has no such id " \
            "(its ids: %s)" % ", ".join(e.ids) in proc.stdout, proc.stdout
    finally:
        e.sessions.close()


def test_audit_of_a_forged_record_says_which_plane_the_catalog_admits(pg16, names, ansible_playbook, tmp_path):
    """A record saying the healthy plane is fenced: the audit names the plane the catalog admits
    and says to check before any failover; it never advises failing over again."""
    e = make_env(pg16, names, ansible_playbook, tmp_path, 1)
    dep_id = e.ids[0]
    try:
        e.failover_ok("dp1", "dp2")
        comment = pg16.sql("SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database "
                           "WHERE datname = %s", (e.db(dep_id),))[0][0]
        dp1, dp2 = e.role("dp1", dep_id), e.role("dp2", dep_id)
        forged = comment.replace(dp1, "\x00").replace(dp2, dp1).replace("\x00", dp2)
        pg16.sql(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(e.db(dep_id)), sql.Literal(forged)))
        proc, report = e.audit()
        assert proc.returncode != 0
        finding = [f for f in report["deployments"][0]["findings"] if f["check"] == "fence_state"][0]
        assert not finding["ok"]
        assert ("the record contradicts the catalog: the catalog admits plane dp2 (%s) and refuses plane dp1 (%s), "
                "the record says the opposite. Check which plane's Airflow is running before any failover"
                % (dp2, dp1)) in finding["detail"], finding["detail"]
        assert "fail over again" not in proc.stdout.lower() and "fail over again" not in json.dumps(report).lower()
        e.assert_active("dp2", dep_id)   # the audit changed nothing
    finally:
        e.sessions.close()


def test_a_deployment_missing_on_the_server_names_the_way_out(pg16, names, ansible_playbook, tmp_path):
    """One Deployment of the vars was never provisioned: the failover is refused with nothing
    changed, and the advice is provision or leave it out, never the parity override; one
    server, so no word about stopping every server."""
    e = make_env(pg16, names, ansible_playbook, tmp_path, 2)
    ghost = names("ghost")
    try:
        for dep_id in e.ids:
            e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
        deployments = e.deployments + [{"id": ghost}]
        proc = e.run(FAILOVER, inventory=e.inventory, extra_vars={
            "dataplane_pg_user": e.commander, "dataplane_deployments": deployments,
            "dataplane_commander_user": e.commander, "dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2"})
        assert proc.returncode != 0
        summary = summary_lines(proc.stdout)
        assert summary[0].startswith("NOT SAFE to start dp2 on pg: the failover was refused, nothing was changed")
        assert "database airflow_db_%s does not exist" % ghost in proc.stdout
        assert ("Missing on the server: %s. Run dataplane.postgresql.provision to create it, or leave it out with "
                "dataplane_failover_deployments (for example -e dataplane_failover_deployments=%s)."
                % (ghost, ",".join(e.ids))) in summary, "\n".join(summary)
        assert "dataplane_failover_parity_policy" not in proc.stdout
        assert "stops every server" not in proc.stdout
        for dep_id in e.ids:
            assert count_sessions(pg16, [e.role("dp1", dep_id)]) == 3
            assert e.logins(dep_id) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}
        # the advice works: the healthy ones fail over
        e.failover_ok("dp1", "dp2", dataplane_failover_deployments=",".join(e.ids))
        for dep_id in e.ids:
            e.assert_active("dp2", dep_id)
    finally:
        e.sessions.close()


def test_an_unknown_selected_id_lists_the_ids_that_exist(pg16, names, ansible_playbook, tmp_path):
    e = make_env(pg16, names, ansible_playbook, tmp_path, 2)
    first = e.ids[0]
    proc = e.failover("dp1", "dp2", dataplane_failover_deployments=[first + "x"])
    assert proc.returncode != 0
    assert ("unknown Deployment ids selected in dataplane_failover_deployments: %sx. The ids of dataplane_deployments "
            "for this host are: %s (did you mean %s for %sx?)." % (first, ", ".join(e.ids), first, first)) \
        in summary_lines(proc.stdout), proc.stdout
    assert "Finalization of task args" not in proc.stdout and "filter plugin" not in proc.stdout
    assert summary_lines(proc.stdout)[0].startswith(
        "NOT SAFE to start dp2 on pg: the failover was refused, nothing was changed")
    assert recap(proc.stdout)["pg"]["changed"] == 0
    for dep_id in e.ids:
        assert e.logins(dep_id) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}


def test_controlled_mode_says_the_drain_ran_out(pg16, names, ansible_playbook, tmp_path):
    e = make_env(pg16, names, ansible_playbook, tmp_path, 1)
    dep_id = e.ids[0]
    try:
        e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
        proc = e.failover_ok("dp1", "dp2", dataplane_failover_mode="controlled", dataplane_failover_drain_timeout=1)
        assert re.search(r"%s: dp1 fenced \(no session ended on its own; the 1 s drain ran out: 3 sessions "
                         r"terminated; \d+ ms\), dp2 admitted \(it already was\); verified" % dep_id, proc.stdout), \
            proc.stdout
        e.assert_active("dp2", dep_id)
    finally:
        e.sessions.close()


def test_a_wrong_password_says_nothing_changed_and_which_variable_to_fix(ansible_playbook, tmp_path):
    """Against a server that asks for passwords: provision and failover with a wrong
    dataplane_pg_password fail saying that nothing was changed and what to fix."""
    base = scratch_dir("dataplane-pw-")
    (base / "pw").write_text("admin-secret-1\n")
    server = PgServer(16, base / "pg", auth="scram-sha-256", password_file=base / "pw").start()
    try:
        inventory = write_inventory(tmp_path / "inventory.yml", server)
        deployments = [{"id": "pw1", "passwords": {"dp1": "dp1-secret", "dp2": "dp2-secret"}}]
        common = {"dataplane_deployments": deployments, "dataplane_report_dir": str(tmp_path / "reports")}
        ok = ansible_playbook(REPO / "playbooks" / "provision.yml", inventory=inventory, extra_vars=dict(
            common, dataplane_pg_user="postgres", dataplane_pg_password="admin-secret-1",
            dataplane_commander_password="commander-secret"))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        wrong = ansible_playbook(REPO / "playbooks" / "provision.yml", inventory=inventory, extra_vars=dict(
            common, dataplane_pg_user="postgres", dataplane_pg_password="not-the-password"))
        assert wrong.returncode != 0
        assert "Provision failed on pg: unable to connect to database" in wrong.stdout, wrong.stdout
        assert ("Nothing was changed: provision never reached the server. The server refused the login: check "
                "dataplane_pg_password (the password of dataplane_pg_user, an admin for provision;") in wrong.stdout
        assert latest_report(tmp_path / "reports", "provision")["failed"] is True
        proc = ansible_playbook(FAILOVER, inventory=inventory, extra_vars=dict(
            common, dataplane_pg_user="commander_user", dataplane_pg_password="not-the-password",
            dataplane_failover_from="dp1", dataplane_failover_to="dp2"))
        assert proc.returncode != 0
        summary = summary_lines(proc.stdout)
        assert summary[0].startswith("NOT SAFE to start dp2 on pg: the failover failed before changing anything"), \
            summary
        assert ("Nothing was changed: the fence never reached the server. The server refused the login: check "
                "dataplane_pg_password (the password of dataplane_pg_user, for the failover usually "
                "commander_user;") in "\n".join(summary), summary
        for secret in ("not-the-password", "admin-secret-1", "dp1-secret", "commander-secret"):
            assert secret not in proc.stdout + wrong.stdout
        report = latest_report(tmp_path / "reports", "failover")
        assert report["safe_to_start_destination"] is False and report["failed"] is True
        audited = ansible_playbook(AUDIT, inventory=inventory, extra_vars=dict(
            common, dataplane_pg_user="commander_user", dataplane_pg_password="not-the-password"))
        assert audited.returncode != 0
        assert ("Nothing was changed (the audit never changes anything). The server refused the login: check "
                "dataplane_pg_password") in audited.stdout, audited.stdout
        assert "not-the-password" not in audited.stdout
        assert latest_report(tmp_path / "reports", "audit")["failed"] is True
        # nothing changed: both planes still admitted
        for plane in ("dp1", "dp2"):
            conn = server.connect(user="%s_user_pw1" % plane, password="%s-secret" % plane, dbname="airflow_db_pw1")
            conn.close()
    finally:
        server.stop()
        shutil.rmtree(str(base), ignore_errors=True)


def provision_lines(stdout):
    section = stdout.split("TASK [dataplane.postgresql.deployments : Provisioning summary]")[1].split("TASK [")[0]
    return [json.loads(line.strip().rstrip(",")) for line in section.splitlines()
            if line.strip().startswith('"') and not line.strip().startswith('"msg"')]


def test_provision_summary_credits_each_change_to_its_owner(pg16, names, ansible_playbook, tmp_path):
    """commander_user has a line of its own, the schema role is named (not folded into the
    membership count), and check mode says "would" everywhere."""
    e = Env(pg16, names, ansible_playbook, tmp_path, 2)
    commander = names("cmdr")
    extra = {"dataplane_pg_user": "postgres", "dataplane_deployments": e.deployments,
             "dataplane_commander_user": commander, "dataplane_commander_password": "cmdr-pass-1"}
    check = e.run(REPO / "playbooks" / "provision.yml", inventory=e.inventory, extra_vars=extra, check=True)
    assert check.returncode == 0, check.stdout
    lines = provision_lines(check.stdout)
    assert lines[-2:] == ["%s: would be created (LOGIN, for every Deployment)" % commander,
                          "fence helper: would change"], lines
    assert all(": changed" not in line for line in lines), lines
    proc = e.run(REPO / "playbooks" / "provision.yml", inventory=e.inventory, extra_vars=extra)
    assert proc.returncode == 0, proc.stdout
    lines = provision_lines(proc.stdout)
    first, second = lines[0], lines[1]
    assert first.startswith("%s: changed: " % e.ids[0]) and second.startswith("%s: changed: " % e.ids[1]), lines
    assert commander not in first, first   # it was credited to the first Deployment
    for dep_id, line in zip(e.ids, (first, second)):
        assert "schema role airflow_db_%s_schema: " % dep_id in line, line
        counted = re.search(r"(\d+) membership statements", line)
        assert counted and int(counted.group(1)) <= 6, line   # the reference memberships only
    assert "%s: created (LOGIN, for every Deployment)" % commander in lines, lines
    assert pg16.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (commander,)) == [(True,)]


def test_a_misspelt_host_variable_stops_every_server(pg16, names, ansible_playbook, tmp_path):
    """Two servers, one with a misspelt host variable: neither fences anything."""
    e = make_env(pg16, names, ansible_playbook, tmp_path, 2)
    try:
        for dep_id in e.ids:
            e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
        write_inventory(e.inventory, pg16, {"a": {"dataplane_failover_deployments": [e.ids[0]]},
                                            "b": {"dataplane_failover_deployment": [e.ids[1]]}})
        proc = e.failover("dp1", "dp2")
        assert proc.returncode != 0
        assert "dataplane_failover_deployment is not a variable of dataplane.postgresql (did you mean " \
            "dataplane_failover_deployments?)" in proc.stdout, proc.stdout
        assert "Fence the source" not in proc.stdout
        assert recap(proc.stdout)["a"]["changed"] == 0 and recap(proc.stdout)["b"]["changed"] == 0
        for dep_id in e.ids:
            assert count_sessions(pg16, [e.role("dp1", dep_id)]) == 3
            assert e.logins(dep_id) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}
    finally:
        e.sessions.close()
