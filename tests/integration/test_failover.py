"""The failover role and playbook against real PostgreSQL servers.

Every test provisions its Deployments with the provision playbook (fence helper on), opens
real sessions as the source plane, runs the failover playbook as a least-privilege
commander login (trust auth), and checks the outcome with real connection attempts.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from tests.support import REPO
from tests.support.playbooks import FAILOVER, PROVISION, count_sessions, recap, summary_lines, write_inventory
from tests.support.processes import kill_tree
from tests.support.reports import only_report

AWX_PROJECT = REPO / "examples" / "awx"


# ---------------------------------------------------------------- tests

def test_failover_and_failback_cycle(pg, names, ansible_playbook, tmp_path, env):
    """dp1 -> dp2 -> dp1 with live sessions each way; reports; reruns change nothing."""
    e = env(pg)
    e.provision()
    for dep_id in e.ids:
        assert e.logins(dep_id)["dp1"] == ("admitted", None)
        e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
    report_dir = tmp_path / "reports"

    proc = e.failover_ok("dp1", "dp2", dataplane_report_dir=str(report_dir))
    assert recap(proc.stdout)["pg"]["changed"] >= 1
    for dep_id in e.ids:
        e.assert_active("dp2", dep_id)
        assert count_sessions(pg, [e.role("dp1", dep_id)]) == 0
        # provision admitted both planes: dp2 already held CONNECT
        assert re.search(r"%s: dp1 fenced \(3 sessions terminated; \d+ ms\), dp2 admitted \(it already was\); "
                         r"verified" % dep_id,
                         proc.stdout), proc.stdout
    # the verdict comes first, with the counts and the run id
    summary = summary_lines(proc.stdout)
    assert re.match(r"^SAFE to start dp2 on pg: 2 of 2 Deployments fenced and verified \(dp1 refused, 0 dp1 "
                    r"sessions, dp2 admitted\); run \S+$", summary[0]), summary
    assert not any("PROBLEMS" in line for line in summary)
    first_file = only_report(report_dir)
    report = json.loads(first_file.read_text())
    assert report["from"] == "dp1" and report["to"] == "dp2" and report["verified"] is True
    assert report["safe_to_start_destination"] is True and report["verdict"] == summary[0]
    assert report["run_id"] in first_file.name and report["started_at"] <= report["finished_at"]
    # what is true now (admitted) beside what this run did (nothing: provision had admitted dp2)
    assert all(d["destination_admitted"] and not d["granted"] for d in report["deployments"])
    assert sorted(d["name"] for d in report["deployments"]) == sorted(e.ids)
    for dep in report["deployments"]:
        assert dep["sessions_terminated"] == 3 and dep["verified"] and dep["changed"]
        assert dep["time_to_fence_ms"] is not None and dep["time_to_fence_ms"] >= 0
        assert sorted(s["role"] for s in dep["sessions"]) == [dep["source_role"]] * 3

    rerun = e.failover_ok("dp1", "dp2", dataplane_report_dir=str(report_dir))
    assert recap(rerun.stdout)["pg"]["changed"] == 0, rerun.stdout
    assert "already failed over (dp1 fenced, dp2 admitted), nothing to do; verified" in rerun.stdout
    assert summary_lines(rerun.stdout)[0].startswith("SAFE to start dp2 on pg: 2 of 2 Deployments")
    # the confirming rerun has its own file; the first run's evidence (the terminated sessions) stays
    files = sorted(report_dir.glob("failover-pg-*.json"))
    assert len(files) == 2 and first_file in files, files
    assert json.loads(first_file.read_text()) == report
    again_report = json.loads([f for f in files if f != first_file][0].read_text())
    assert again_report["safe_to_start_destination"] is True and again_report["run_id"] != report["run_id"]
    assert all(d["destination_admitted"] and not d["granted"] and d["sessions_terminated"] == 0
               for d in again_report["deployments"])

    # failback, with live sessions of dp2 this time
    for dep_id in e.ids:
        e.sessions.open_states(e.role("dp2", dep_id), e.db(dep_id))
    back = e.failover_ok("dp2", "dp1", user="postgres")   # an admin may run it too
    assert recap(back.stdout)["pg"]["changed"] >= 1
    for dep_id in e.ids:   # dp1 was fenced: this run grants it CONNECT again
        assert re.search(r"%s: dp2 fenced \(3 sessions terminated; \d+ ms\), dp1 admitted; verified" % dep_id,
                         back.stdout), back.stdout
    for dep_id in e.ids:
        e.assert_active("dp1", dep_id)
        assert count_sessions(pg, [e.role("dp2", dep_id)]) == 0
    again = e.failover_ok("dp2", "dp1")
    assert recap(again.stdout)["pg"]["changed"] == 0, again.stdout


def test_two_servers_in_one_run(pg16, pg_server, env, tmp_path):
    """Each inventory host is a server: one play fences both (one fence call each, via forks)."""
    first = env(pg16, count=1)
    first.provision()
    second = env(pg_server(17), count=1)
    second.provision()
    for e in (first, second):
        e.sessions.open_states(e.role("dp1", e.ids[0]), e.db(e.ids[0]))
    inventory = write_inventory(tmp_path / "two.yml", pg16, {
        "s16": {"dataplane_deployments": first.deployments},
        "s17": {"dataplane_pg_port": second.server.port, "dataplane_deployments": second.deployments}})
    proc = first.run(FAILOVER, inventory=inventory, args=["--forks", "2"], extra_vars={
        "dataplane_pg_user": first.commander, "dataplane_commander_user": first.commander,
        "dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2",
        "dataplane_report_dir": str(tmp_path / "reports")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recap(proc.stdout)["s16"]["changed"] >= 1 and recap(proc.stdout)["s17"]["changed"] >= 1
    for host, e in (("s16", first), ("s17", second)):
        e.assert_active("dp2", e.ids[0])
        assert count_sessions(e.server, [e.role("dp1", e.ids[0])]) == 0
        report = json.loads(only_report(tmp_path / "reports", host).read_text())
        assert [d["name"] for d in report["deployments"]] == e.ids and report["verified"]


class Probe(object):
    """Keeps trying both logins of each Deployment and watches the source's sessions.

    Records, on the monotonic clock: when a login's connection was confirmed (t_ok: the
    server had admitted it by then), and when a session of the source role was seen in
    pg_stat_activity (the snapshot's start: the session existed at some time after it).
    """

    def __init__(self, server, logins, source_roles):
        self.server = server
        self.logins = logins          # [(key, user, dbname)]
        self.source_roles = source_roles
        self.events = []              # (key, outcome, t_start, t_ok)
        self.seen = {}                # role -> last snapshot start time when a session existed
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._try, args=item, daemon=True) for item in logins]
        self.threads.append(threading.Thread(target=self._watch, daemon=True))

    def _try(self, key, user, dbname):
        while not self.stop.is_set():
            t_start = time.monotonic()
            try:
                conn = psycopg2.connect(host=self.server.host, port=self.server.port, user=user,
                                        dbname=dbname, connect_timeout=5)
                t_ok = time.monotonic()
                conn.close()
                self.events.append((key, "admitted", t_start, t_ok))
            except psycopg2.OperationalError:
                self.events.append((key, "refused", t_start, time.monotonic()))
            time.sleep(0.002)

    def _watch(self):
        conn = self.server.connect()
        cur = conn.cursor()
        while not self.stop.is_set():
            t_start = time.monotonic()
            cur.execute("SELECT usename, count(*) FROM pg_catalog.pg_stat_activity WHERE usename = ANY(%s) "
                        "GROUP BY usename", (list(self.source_roles),))
            for role, _count in cur.fetchall():
                self.seen[role] = t_start
            time.sleep(0.002)
        conn.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def test_safety_invariant_observed_by_concurrent_probe(pg16, env):
    """The destination is admitted only after the source is refused and its last session gone."""
    e = env(count=2)
    e.provision()
    e.failover_ok("dp2", "dp1")               # start from "dp1 active, dp2 fenced"
    for dep_id in e.ids:
        e.assert_active("dp1", dep_id)
        e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
    logins = [((dep_id, plane), e.role(plane, dep_id), e.db(dep_id)) for dep_id in e.ids for plane in ("dp1", "dp2")]
    with Probe(pg16, logins, [e.role("dp1", d) for d in e.ids]) as probe:
        time.sleep(0.5)
        e.failover_ok("dp1", "dp2")
        time.sleep(0.5)
    for dep_id in e.ids:
        src, dst = e.role("dp1", dep_id), (dep_id, "dp2")
        src_ok = [ev for ev in probe.events if ev[0] == (dep_id, "dp1") and ev[1] == "admitted"]
        src_refused = [ev for ev in probe.events if ev[0] == (dep_id, "dp1") and ev[1] == "refused"]
        dst_ok = [ev for ev in probe.events if ev[0] == dst and ev[1] == "admitted"]
        dst_refused = [ev for ev in probe.events if ev[0] == dst and ev[1] == "refused"]
        # the probe saw both sides of the switch, so the comparison below means something
        assert src_ok and src_refused and dst_ok and dst_refused, (len(src_ok), len(src_refused),
                                                                   len(dst_ok), len(dst_refused))
        first_admitted = min(ev[3] for ev in dst_ok)
        assert max(ev[3] for ev in src_ok) < first_admitted, "source admitted after the destination"
        assert max(ev[2] for ev in src_ok) < first_admitted, "source login started after the destination's"
        assert probe.seen[src] < first_admitted, "a source session existed after the destination was admitted"
        assert min(ev[3] for ev in dst_refused) < first_admitted
        assert all(ev[3] < first_admitted for ev in dst_refused), "destination refused after admission"
        print("probe %s: %d login attempts; last source session seen %.1f ms before the destination's "
              "first admission" % (dep_id, len([ev for ev in probe.events if ev[0][0] == dep_id]),
                                   (first_admitted - probe.seen[src]) * 1000))
        e.assert_active("dp2", dep_id)


def _one_broken_deployment(pg16, e):
    """Provision E's two Deployments; the second keeps dp1's CONNECT through PUBLIC (the fence
    could not hold); 3 live dp1 sessions each. Returns (good id, bad id, datacl of each database)."""
    e.provision()
    good, bad = e.ids
    pg16.sql(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(e.db(bad))))
    for dep_id in e.ids:
        e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
    before = dict((d, pg16.sql("SELECT datacl::text FROM pg_database WHERE datname = %s", (e.db(d),))[0][0])
                  for d in e.ids)
    return good, bad, before


def _assert_nothing_changed(pg16, e, before):
    """Every dp1 session still there, dp1 still admitted, every database's ACL as BEFORE."""
    for dep_id in e.ids:
        assert count_sessions(pg16, [e.role("dp1", dep_id)]) == 3
        assert e.logins(dep_id)["dp1"] == ("admitted", None)
        assert pg16.sql("SELECT datacl::text FROM pg_database WHERE datname = %s", (e.db(dep_id),))[0][0] \
            == before[dep_id]


def test_preflight_failure_changes_nothing_anywhere(pg16, env, names, tmp_path):
    """One broken Deployment on one host: no host fences anything, the failure names it."""
    e = env(count=2)
    good, bad, before = _one_broken_deployment(pg16, e)
    # two inventory hosts (same server): host a has the good Deployment, host b the bad one
    write_inventory(e.inventory, pg16, {"a": {"dataplane_failover_deployments": [good]},
                                        "b": {"dataplane_failover_deployments": [bad]}})
    report_dir = tmp_path / "reports"
    proc = e.failover("dp1", "dp2", dataplane_report_dir=str(report_dir))
    assert proc.returncode != 0
    assert bad in proc.stdout and "PUBLIC" in proc.stdout.upper(), proc.stdout
    assert "nothing was changed" in proc.stdout
    _assert_nothing_changed(pg16, e, before)
    assert recap(proc.stdout)["a"]["changed"] == 0 and recap(proc.stdout)["b"]["changed"] == 0
    assert recap(proc.stdout)["a"]["failed"] == 1 and recap(proc.stdout)["b"]["failed"] == 1
    # neither host fenced; each says so first, and leaves its report
    reports = dict((host, json.loads(only_report(report_dir, host).read_text())) for host in ("a", "b"))
    for host, report in reports.items():
        assert report["refused"] and report["safe_to_start_destination"] is False and report["deployments"] == []
        assert report["verdict"].startswith("NOT SAFE to start dp2 on %s: the failover was refused, nothing was "
                                            "changed" % host), report["verdict"]
    assert reports["a"]["problems"] == [
        "Refused on a, nothing was changed: no server fences when another cannot (b: its preflight found problems)."]
    assert any(bad in p and "PUBLIC" in p.upper() for p in reports["b"]["problems"]), reports["b"]


def test_preflight_runs_on_every_host_before_any_fence(pg16, env):
    """Several hosts: the check-mode preflight runs on every host, before the first fence."""
    e = env(count=2)
    e.provision()
    write_inventory(e.inventory, pg16, {"a": {"dataplane_failover_deployments": [e.ids[0]]},
                                        "b": {"dataplane_failover_deployments": [e.ids[1]]}})
    proc = e.failover_ok("dp1", "dp2")
    tasks = [line for line in proc.stdout.splitlines() if line.startswith("TASK [")]
    preflight = next(i for i, t in enumerate(tasks) if "Preflight the fence" in t)
    fence = next(i for i, t in enumerate(tasks) if "Fence the source and admit the destination" in t)
    assert preflight < fence, tasks
    section = proc.stdout.split("Preflight the fence")[1].split("TASK [")[0]
    assert "ok: [a]" in section and "ok: [b]" in section, section
    for dep_id in e.ids:
        e.assert_active("dp2", dep_id)


def test_one_host_fences_without_a_separate_preflight(pg16, env):
    """One host: no check-mode preflight task; the fence module's own preflight refuses a
    Deployment whose source keeps CONNECT through PUBLIC, and nothing changes."""
    e = env(count=2)
    good, bad, before = _one_broken_deployment(pg16, e)
    proc = e.failover("dp1", "dp2", dataplane_report_dir=str(e.tmp / "refused"))
    assert proc.returncode != 0
    assert "Preflight the fence" not in proc.stdout, proc.stdout
    # the verdict first, the problems last and loud; a refused run leaves its report too
    summary = summary_lines(proc.stdout)
    assert re.match(r"^NOT SAFE to start dp2 on pg: the failover was refused, nothing was changed \(see the "
                    r"problems below\); run \S+$", summary[0]), summary
    assert summary[1] == "PROBLEMS on pg: do not start dp2 before a run says SAFE", summary
    refused = json.loads(only_report(e.tmp / "refused").read_text())
    assert refused["refused"] is True and refused["safe_to_start_destination"] is False
    assert refused["verdict"] == summary[0] and refused["problems"] == summary[2:]
    assert refused["started_at"] and refused["finished_at"] and refused["deployments"] == []
    section = proc.stdout.split("Preflight every Deployment on every server")[1].split("TASK [")[0]
    assert "skipping: [pg]" in section, section
    assert "refused on pg: the preflight found problems and nothing was changed" in proc.stdout, proc.stdout
    assert bad in proc.stdout and "PUBLIC" in proc.stdout.upper(), proc.stdout
    _assert_nothing_changed(pg16, e, before)
    assert recap(proc.stdout)["pg"]["changed"] == 0
    # the same request without the broken Deployment goes through in one fence call
    ok = e.failover_ok("dp1", "dp2", dataplane_failover_deployments=[good])
    assert "Preflight the fence" not in ok.stdout, ok.stdout
    e.assert_active("dp2", good)
    assert count_sessions(pg16, [e.role("dp1", good)]) == 0


def test_rerun_after_crash_mid_fence_converges(pg16, env):
    """Kill ansible-playbook after the REVOKE (controlled mode, long drain), then rerun."""
    e = env(count=2)
    e.provision()
    e.failover_ok("dp2", "dp1")
    for dep_id in e.ids:
        e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), str(FAILOVER), "-i", str(e.inventory), "-e",
           json.dumps({"dataplane_pg_user": e.commander, "dataplane_deployments": e.deployments,
                       "dataplane_commander_user": e.commander, "dataplane_failover_from": "dp1",
                       "dataplane_failover_to": "dp2", "dataplane_failover_mode": "controlled",
                       "dataplane_failover_drain_timeout": 300})]
    run_env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, LC_ALL="C.UTF-8", ANSIBLE_NOCOLOR="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=run_env,
                            cwd=str(REPO))
    revoked = False
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            still = pg16.sql("SELECT has_database_privilege(%s, %s, 'CONNECT')",
                             (e.role("dp1", e.ids[0]), e.db(e.ids[0])))[0][0]
            if not still:
                revoked = True
                break
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        kill_tree(proc.pid)
        output = proc.communicate()[0].decode(errors="replace")
    assert revoked, output
    # mid-fence state: the source is refused but its sessions drain; the destination waits
    time.sleep(0.5)
    assert count_sessions(pg16, [e.role("dp1", e.ids[0])]) == 3
    assert e.logins(e.ids[0])["dp1"][0] == "refused"
    for dep_id in e.ids:
        assert e.logins(dep_id)["dp2"][0] == "refused", "destination admitted before the source was fenced"
    rerun = e.failover_ok("dp1", "dp2")
    assert recap(rerun.stdout)["pg"]["changed"] >= 1
    for dep_id in e.ids:
        e.assert_active("dp2", dep_id)
        assert count_sessions(pg16, [e.role("dp1", dep_id)]) == 0
    final = e.failover_ok("dp1", "dp2")
    assert recap(final.stdout)["pg"]["changed"] == 0


def test_invalid_requests_fail_before_any_change(pg16, env):
    e = env(count=1)
    e.provision()
    dep_id = e.ids[0]
    cases = [
        (dict(source="dp1", destination="dp1"),
         "dataplane_failover_from and dataplane_failover_to are both dp1: a failover goes from one plane"),
        (dict(source="dp1", destination="dp3"),
         "dataplane_failover_to is dp3, which is not one of dataplane_planes (dp1, dp2)."),
        (dict(source="dp3", destination="dp2", dataplane_failover_drain_timeout="-5"),
         "dataplane_failover_from is dp3, which is not one of dataplane_planes (dp1, dp2). "
         "dataplane_failover_drain_timeout is -5: a whole number of seconds, 0 or more."),
        (dict(source="dp1", destination="dp2", dataplane_failover_deployments=["nope"]),
         "unknown Deployment ids selected"),
    ]
    # One sentence per failed condition, and none for a condition that holds.
    sentences = ("dataplane_failover_from is", "dataplane_failover_to is", "are both",
                 "dataplane_failover_mode is", "dataplane_failover_drain_timeout is")
    for kwargs, message in cases:
        source, destination = kwargs.pop("source"), kwargs.pop("destination")
        proc = e.failover(source, destination, **kwargs)
        # each sentence on a line of its own, after the verdict
        assert proc.returncode != 0 and all(m in proc.stdout for m in re.split(r"(?<=\.) (?=dataplane_)", message)), \
            proc.stdout
        assert "NOT SAFE to start %s on pg: the failover was refused, nothing was changed" % destination \
            in proc.stdout, proc.stdout
        fail_line = next((line for line in proc.stdout.splitlines() if "FAILED!" in line), "")
        expected = sum(1 for s in sentences if s in message)
        assert sum(1 for s in sentences if s in fail_line) == expected, fail_line
        assert e.logins(dep_id) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}
    missing = e.run(FAILOVER, inventory=e.inventory, extra_vars={"dataplane_deployments": e.deployments})
    assert missing.returncode != 0 and "dataplane_failover_from" in missing.stdout


def test_check_mode_changes_nothing(pg16, env):
    e = env(count=1)
    e.provision()
    dep_id = e.ids[0]
    e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
    report_dir = e.tmp / "reports"
    proc = e.run(FAILOVER, inventory=e.inventory, check=True,
                 extra_vars={"dataplane_pg_user": e.commander, "dataplane_deployments": e.deployments,
                             "dataplane_commander_user": e.commander, "dataplane_report_dir": str(report_dir),
                             "dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = summary_lines(proc.stdout)
    assert re.match(r"^CHECK MODE, nothing changed\. NOT SAFE yet to start dp2 on pg: the failover would fence 1 of 1 "
                    r"Deployment \(3 dp1 sessions to terminate\) and admit dp2; run \S+$", summary[0]), summary
    assert summary[2] == "%s: would fence dp1 (revoke CONNECT from %s, terminate 3 sessions) and keep admitted %s" % (
        dep_id, e.role("dp1", dep_id), e.role("dp2", dep_id)), summary
    pids = sorted(r[0] for r in pg16.sql("SELECT pid FROM pg_stat_activity WHERE usename = %s",
                                         (e.role("dp1", dep_id),)))
    shown = sorted(int(re.match(r"^    would terminate pid (\d+), application '[^']*', client \S+", line).group(1))
                   for line in summary[3:6])
    assert shown == pids, summary
    assert count_sessions(pg16, [e.role("dp1", dep_id)]) == 3
    assert e.logins(dep_id)["dp1"] == ("admitted", None)
    # a check-mode run leaves its report too: the verdict, and the sessions that would be terminated
    report = json.loads(only_report(report_dir).read_text())
    assert report["check_mode"] is True and report["safe_to_start_destination"] is False
    assert report["verdict"] == summary[0]
    assert sorted(s["pid"] for s in report["deployments"][0]["sessions"]) == pids
    assert report["deployments"][0]["destination_admitted"] is True


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_awx_project_through_ansible_runner(pg16, env, tmp_path):
    """examples/awx as AWX runs it: ansible-runner, survey-shaped extravars, set_stats artifacts."""
    ansible_runner = pytest.importorskip("ansible_runner")
    survey = json.loads((AWX_PROJECT / "survey" / "failover.json").read_text())
    variables = dict((q["variable"], q) for q in survey["spec"])
    assert {"dataplane_failover_from", "dataplane_failover_to", "dataplane_failover_mode",
            "failover_deployment_ids"} <= set(variables)
    assert all(q["type"] in ("text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect")
               for q in survey["spec"])

    e = env(count=3)
    e.provision()
    chosen, untouched = e.ids[:2], e.ids[2]
    for dep_id in e.ids:
        e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))

    private = tmp_path / "runner"
    shutil.copytree(AWX_PROJECT, private / "project")
    (private / "inventory").mkdir()
    write_inventory(private / "inventory" / "hosts.yml", pg16, {"pg": {
        "dataplane_pg_user": e.commander, "dataplane_commander_user": e.commander,
        "dataplane_deployments": e.deployments}})
    # survey answers as AWX passes them: strings from choices, an int, a textarea string
    extravars = {"dataplane_failover_from": "dp1", "dataplane_failover_to": "dp2",
                 "dataplane_failover_mode": "controlled", "dataplane_failover_drain_timeout": 1,
                 "failover_deployment_ids": "%s,\n%s\n" % tuple(chosen)}
    result = ansible_runner.run(
        private_data_dir=str(private), playbook="failover.yml", extravars=extravars, quiet=True,
        envvars={"ANSIBLE_PYTHON_INTERPRETER": sys.executable, "LC_ALL": "C.UTF-8", "ANSIBLE_NOCOLOR": "1",
                 "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")})
    stdout = result.stdout.read()
    assert result.status == "successful" and result.rc == 0, stdout
    stats = [ev for ev in result.events if ev.get("event") == "playbook_on_stats"][-1]
    artifact = stats["event_data"]["artifact_data"]["dataplane_failover"]["pg"]
    assert sorted(d["name"] for d in artifact["deployments"]) == sorted(chosen)
    assert artifact["mode"] == "controlled" and artifact["verified"] is True
    # the verdict, for a workflow to branch on
    assert artifact["safe_to_start_destination"] is True and artifact["verdict"].startswith(
        "SAFE to start dp2 on pg: 2 of 2 Deployments fenced and verified"), artifact["verdict"]
    assert artifact["started_at"] <= artifact["finished_at"]
    assert all(d["destination_admitted"] for d in artifact["deployments"])
    # the fence state before and after, by plane, for the next workflow node
    for dep in artifact["deployments"]:
        assert dep["fence_before"] is None, dep
        assert dep["fence_after"]["fenced"] == ["dp1"] and dep["fence_after"]["admitted"] == ["dp2"], dep
        assert dep["fence_after"]["phase"] == "complete" and dep["fence_after"]["run"] == artifact["run_id"]
    for dep_id in chosen:
        e.assert_active("dp2", dep_id)
    assert e.logins(untouched)["dp1"] == ("admitted", None)
    assert count_sessions(pg16, [e.role("dp1", untouched)]) == 3


def test_a_misspelt_variable_is_refused_before_any_connection(pg16, env, tmp_path):
    """`-e dataplane_failover_deployment=<id>` (singular) must not select every Deployment:
    the run is refused before any connection, in check mode and for real, naming the closest
    known name; nothing is selected and nothing changes. A misspelt required variable is one
    line, not the argument check's dump."""
    e = env(count=3)
    e.provision()
    for dep_id in e.ids:
        e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
    before = dict((d, pg16.sql("SELECT datacl::text FROM pg_database WHERE datname = %s", (e.db(d),))[0][0])
                  for d in e.ids)
    report_dir = tmp_path / "reports"
    for check in (True, False):
        extra = {"dataplane_pg_user": e.commander, "dataplane_deployments": e.deployments,
                 "dataplane_commander_user": e.commander, "dataplane_failover_from": "dp1",
                 "dataplane_failover_to": "dp2", "dataplane_failover_deployment": e.ids[0],
                 "dataplane_report_dir": str(report_dir)}
        proc = e.run(FAILOVER, inventory=e.inventory, check=check, extra_vars=extra)
        assert proc.returncode != 0, proc.stdout
        assert ("dataplane_failover_deployment is not a variable of dataplane.postgresql "
                "(did you mean dataplane_failover_deployments?)") in proc.stdout, proc.stdout
        assert "nothing was changed" in proc.stdout
        # refused before the first task that connects: nothing selected, no fence, no summary
        assert "Fence the source" not in proc.stdout and "Resolve the Deployments" not in proc.stdout
        assert recap(proc.stdout)["pg"]["changed"] == 0 and recap(proc.stdout)["pg"]["failed"] == 1
    for dep_id in e.ids:
        assert count_sessions(pg16, [e.role("dp1", dep_id)]) == 3
        assert e.logins(dep_id) == {"dp1": ("admitted", None), "dp2": ("admitted", None)}
        assert pg16.sql("SELECT datacl::text FROM pg_database WHERE datname = %s", (e.db(dep_id),))[0][0] \
            == before[dep_id]
    # each refused run left its own report
    reports = sorted(report_dir.glob("failover-pg-*.json"))
    assert len(reports) == 2, reports
    for path in reports:
        report = json.loads(path.read_text())
        assert report["refused"] is True and report["safe_to_start_destination"] is False
        assert report["deployments"] == [] and "did you mean dataplane_failover_deployments?" in report["problems"][0]
    assert sorted(json.loads(p.read_text())["check_mode"] for p in reports) == [False, True]

    # the source plane misspelt: one line that says what is missing, no argument-spec dump
    form = e.run(FAILOVER, inventory=e.inventory, extra_vars={
        "dataplane_pg_user": e.commander, "dataplane_deployments": e.deployments, "dataplane_failover_form": "dp1",
        "dataplane_failover_to": "dp2"})
    assert form.returncode != 0
    lines = form.stdout.split("[ERROR]: ")[1].split("Origin:")[0].strip().splitlines()
    assert lines == [
        "Task failed: Action failed: Refused before any connection to the server, nothing was changed:",
        "- dataplane_failover_form is not a variable of dataplane.postgresql (did you mean dataplane_failover_from?).",
        "- dataplane_failover_from is required by dataplane.postgresql.failover (The source plane, fenced (one of "
        "dataplane_planes)): set it, for example with -e dataplane_failover_from=<value>.",
        "Correct the name, or list your own variables in dataplane_allowed_extra_vars."], form.stdout
    assert "argument_spec_data" not in form.stdout and len(form.stdout) < 3000, form.stdout
    # a value outside the choices of a shared option: one line too
    bogus = e.failover("dp1", "dp2", dataplane_pg_ssl_mode="bogus")
    assert bogus.returncode != 0
    assert ("- value of dataplane_pg_ssl_mode must be one of: allow, disable, prefer, require, verify-ca, "
            "verify-full, got: bogus (dataplane.postgresql.failover).") in bogus.stdout, bogus.stdout
    assert "argument_spec_data" not in bogus.stdout


def test_the_other_playbooks_refuse_unknown_names_and_accept_the_users_own(pg16, env):
    """Provision and audit refuse a misspelt name too; dataplane_allowed_extra_vars lets the
    user's own names through; the other playbooks' variables are known (one inventory)."""
    e = env(count=1)
    proc = e.run(PROVISION, inventory=e.inventory, extra_vars={
        "dataplane_pg_user": "postgres", "dataplane_deployments": e.deployments,
        "dataplane_commander_user": e.commander, "dataplane_create_database": False})
    assert proc.returncode != 0
    assert "dataplane_create_database is not a variable of dataplane.postgresql (did you mean " \
        "dataplane_create_databases?)" in proc.stdout, proc.stdout
    assert not pg16.sql("SELECT 1 FROM pg_database WHERE datname = %s", (e.db(e.ids[0]),))
    e.run(PROVISION, inventory=e.inventory, extra_vars={
        "dataplane_pg_user": "postgres", "dataplane_deployments": e.deployments,
        "dataplane_commander_user": e.commander, "dataplane_site": "north",
        "dataplane_failover_mode": "controlled",             # a failover variable: known
        "dataplane_allowed_extra_vars": ["dataplane_site"]}).check_returncode()
    audit = e.run(REPO / "playbooks" / "audit.yml", inventory=e.inventory, extra_vars={
        "dataplane_pg_user": e.commander, "dataplane_deployments": e.deployments,
        "dataplane_commander_user": e.commander, "dataplane_audit_fail_on_drfit": False})
    assert audit.returncode != 0
    assert "dataplane_audit_fail_on_drfit is not a variable of dataplane.postgresql (did you mean " \
        "dataplane_audit_fail_on_drift?)" in audit.stdout, audit.stdout
    assert "Audit the server" not in audit.stdout
