"""The two ways the collection's modules run (plugins/plugin_utils/local_module.py), shown with
``fence`` and ``deployment_setup``: forked from the Ansible worker (local connection, the
controller's own Python), and the usual way (AnsiballZ payload through the connection), which ``DATAPLANE_POSTGRESQL_FORK_MODULES=0``,
another interpreter or any other connection selects. Both must give the same results: the same
changes, warnings and deprecations, check and diff mode, failures, and no secret in the output.

Once, on PostgreSQL 16: what is compared is Ansible's side of a module run; the SQL is the same
on either path and is tested on every version elsewhere."""

import json
import re
import sys

from tests.support.playbooks import count_sessions, run_playbook, summary_lines
from tests.support.versions import on

SWITCH = "DATAPLANE_POSTGRESQL_FORK_MODULES"
FORKED = "running the module in a process forked from the worker"
# what -vvv prints when Ansible transfers a module's AnsiballZ payload (the usual path)
USUAL = re.compile(r"PUT .*AnsiballZ_(fence|deployment_setup)\.py")

# Every module call of the comparison: a check-mode fence with a deprecated alias (a deprecation
# and the plan), a fence refused for a name that is no database (a failure with its message),
# a check-mode, diff-mode provision of a new Deployment whose passwords must not appear, and a
# real provision of it (changed, then a second run with nothing to do).
PLAYBOOK = """
- hosts: pg
  gather_facts: false
  vars:
    conn: &conn
      login_host: "{{ dataplane_pg_host }}"
      login_port: "{{ dataplane_pg_port }}"
      login_user: postgres
  tasks:
    - name: fence, check mode, deprecated alias
      dataplane.postgresql.fence:
        <<: *conn
        parity: ignore
        deployments: "{{ fence_deployments }}"
      check_mode: true
      register: fence_check

    - name: fence of a database that does not exist
      dataplane.postgresql.fence:
        <<: *conn
        deployments:
          - {name: ghost, database: "no such database", source_role: dp1_user_ghost, destination_role: dp2_user_ghost}
      register: fence_refused
      ignore_errors: true

    - name: provision, check and diff mode
      dataplane.postgresql.deployment_setup:
        <<: *conn
        deployments: "{{ new_deployments | dataplane.postgresql.deployment_model(commander_user=commander) }}"
      check_mode: true
      diff: true
      register: setup_check

    - name: provision
      dataplane.postgresql.deployment_setup:
        <<: *conn
        deployments: "{{ new_deployments | dataplane.postgresql.deployment_model(commander_user=commander) }}"
      register: setup_real

    - name: provision again, nothing to do
      dataplane.postgresql.deployment_setup:
        <<: *conn
        deployments: "{{ new_deployments | dataplane.postgresql.deployment_model(commander_user=commander) }}"
      register: setup_rerun

    - name: results
      ansible.builtin.copy:
        dest: "{{ results_file }}"
        content: "{{ dict(fence_check=fence_check, fence_refused=fence_refused, setup_check=setup_check,
                          setup_real=setup_real, setup_rerun=setup_rerun) | to_json }}"
        mode: "0600"
"""

# values that differ from one run to the next, whichever the path: run ids and times (also
# inside the fence state record that the reported statements write)
VOLATILE = {"run_id", "started_at", "finished_at"}
VOLATILE_TEXT = [(re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+Z"), "<time>"), (re.compile(r"\b[0-9a-f]{32}\b"), "<run>")]


def stable(value, names):
    """VALUE with volatile keys and text left out and this run's Deployment ids (NAMES:
    placeholder -> id) replaced by placeholders, in keys and text."""
    if isinstance(value, dict):
        return dict((stable(k, names), stable(v, names)) for k, v in value.items()
                    if k not in VOLATILE and not k.endswith("_ms"))
    if isinstance(value, list):
        return [stable(v, names) for v in value]
    if isinstance(value, str):
        for placeholder, name in names.items():
            value = value.replace(name, placeholder)
        for pattern, placeholder in VOLATILE_TEXT:
            value = pattern.sub(placeholder, value)
        return value
    return value


def differences(a, b, path="$"):
    """Where A and B differ: one line per differing leaf, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            found += differences(a.get(key, "<missing>"), b.get(key, "<missing>"), "%s.%s" % (path, key))
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, "%s[%d]" % (path, i))]
    return [] if a == b else ["%s: %r != %r" % (path, a, b)]


def run_paths(env, tmp_path, label, switch, new_id, interpreter=None):
    """The comparison playbook with SWITCH (``None``: unset) and -vvv; (process, results)."""
    playbook = tmp_path / "paths.yml"
    playbook.write_text(PLAYBOOK)
    results = tmp_path / ("results-%s.json" % label)
    extra = {"fence_deployments": [{"name": d, "database": env.db(d), "source_role": env.role("dp1", d),
                                    "destination_role": env.role("dp2", d)} for d in env.ids],
             "new_deployments": [{"id": new_id, "passwords": {"dp1": "secret-one-" + new_id,
                                                              "dp2": "secret-two-" + new_id}}],
             "commander": env.commander, "results_file": str(results)}
    if interpreter:
        extra["ansible_python_interpreter"] = interpreter
    proc = run_playbook(playbook, inventory=env.inventory, extra_vars=extra, diff=False, args=("-vvv",),
                        env={SWITCH: switch} if switch is not None else None)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr
    return proc, json.loads(results.read_text())


@on(16)
def test_forked_and_usual_module_runs_give_the_same_results(env, pg, names, tmp_path):
    e = env(pg, count=2)
    e.provision()
    forked_id, usual_id = names("fk"), names("us")
    proc_forked, forked = run_paths(e, tmp_path, "forked", None, forked_id)
    proc_usual, usual = run_paths(e, tmp_path, "usual", "0", usual_id)

    # each run took the path it was meant to, for every call of both modules
    assert proc_forked.stdout.count(FORKED) == 5 and not USUAL.search(proc_forked.stdout), proc_forked.stdout[-4000:]
    assert FORKED not in proc_usual.stdout and len(USUAL.findall(proc_usual.stdout)) == 5, proc_usual.stdout[-4000:]

    # the same results, this run's new Deployment's name aside
    assert differences(stable(forked, {"NEW": forked_id}), stable(usual, {"NEW": usual_id})) == []
    # ... and they are what the modules say, not two identical empty answers
    assert forked["fence_check"]["changed"] is True and len(forked["fence_check"]["deployments"]) == 2
    assert any("parity" in d["msg"] for d in forked["fence_check"]["deprecations"]), forked["fence_check"]
    assert forked["fence_refused"]["failed"] is True and "no such database" in forked["fence_refused"]["msg"]
    assert forked["setup_check"]["changed"] is True and forked["setup_check"].get("diff"), forked["setup_check"]
    assert forked["setup_real"]["changed"] is True and forked["setup_rerun"]["changed"] is False
    for new_id in (forked_id, usual_id):
        assert pg.sql("SELECT pg_catalog.count(*) FROM pg_catalog.pg_roles WHERE rolname = %s",
                      ("dp2_user_" + new_id,))[0][0] == 1
    # no_log: the passwords appear in neither output, even at -vvv
    for proc, new_id in ((proc_forked, forked_id), (proc_usual, usual_id)):
        assert "secret-one-" + new_id not in proc.stdout + proc.stderr
        assert "secret-two-" + new_id not in proc.stdout + proc.stderr


@on(16)
def test_failover_with_live_sessions_the_usual_way(env, pg):
    """The whole failover playbook with modules run the usual way: the fence finds and terminates
    live sessions, and the verdict is the same as on the forked path (the rest of the suite)."""
    e = env(pg, count=2)
    e.provision()
    for dep_id in e.ids:
        e.sessions.open_states(e.role("dp1", dep_id), e.db(dep_id))
    before = count_sessions(pg, [e.role("dp1", d) for d in e.ids])
    proc = e.failover("dp1", "dp2", run_env={SWITCH: "0"}, args=("-vvv",))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr
    assert FORKED not in proc.stdout and USUAL.search(proc.stdout)
    assert before == 6 and count_sessions(pg, [e.role("dp1", d) for d in e.ids]) == 0
    assert summary_lines(proc.stdout)[0].startswith(
        "SAFE to start dp2 on pg: 2 of 2 Deployments fenced and verified (dp1 refused, 0 dp1 sessions")


@on(16)
def test_another_interpreter_runs_modules_the_usual_way(env, pg, names, tmp_path):
    """With an interpreter that is not the controller's own Python (here a script that starts the
    same Python, so that the module still runs), the fork is not used."""
    e = env(pg, count=1)
    e.provision()
    wrapper = tmp_path / "python-elsewhere"
    wrapper.write_text('#!/bin/sh\nexec "%s" "$@"\n' % sys.executable)
    wrapper.chmod(0o755)
    proc, results = run_paths(e, tmp_path, "other", None, names("ot"), interpreter=str(wrapper))
    assert FORKED not in proc.stdout and len(USUAL.findall(proc.stdout)) == 5, proc.stdout[-4000:]
    assert results["setup_real"]["changed"] is True and results["setup_rerun"]["changed"] is False
