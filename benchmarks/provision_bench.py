# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: provision N Deployments (default 200) on a fresh PostgreSQL 16.

    .venv/bin/python benchmarks/provision_bench.py [--count 200] [--version 16] [--runs 1] [--reruns 3]

Timings, wall clock:
  psql      one psql session (the server's own psql) running the same SQL on a fresh
            server: CREATE ROLE commander_user and the login roles with passwords,
            CREATE DATABASE per Deployment, then the vendor's SQL per Deployment;
  fresh     `ansible-playbook dataplane.postgresql.provision` on another fresh server
            (fence helper included, as by default);
  rerun     the same playbook again, nothing to change (changed=0 is checked), --reruns times,
            each next to its floor: a one-task `ansible-playbook` on the same inventory plus one
            connection (and SELECT 1) to each metadata database in turn, as the admin;
  rerun_module  the deployment_setup module alone, run as Ansible runs it, with the records
            the role passes, nothing to change: the process's wall time and the module's own
            ``timings`` (where a rerun spends its time; the rest of ``rerun`` is Ansible and
            the role's other tasks).
Each timed phase starts on its own fresh server after os.sync(); with --runs > 1 the order
of psql and ansible alternates. The timings are dominated by CREATE DATABASE, i.e. by disk
write-back, so on a shared machine compare runs taken close together.
Targets: fresh <= 1.3 x psql (issue 5); rerun <= 1.5 x its floor, median of the reruns
(issue 23); issue 13's rerun <= 2 s is printed too. Exit 1 when a target of issues 5 or 23 is
missed. Prints one JSON line and writes it to benchmarks/results/provision-<count>.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib


def ident(name):
    return '"%s"' % name.replace('"', '""')


def ids(count):
    return ["dep%03d" % i for i in range(count)]


def psql_script(count):
    lines = ["CREATE ROLE commander_user LOGIN PASSWORD 'commander-bench-secret';"]
    for dep in ids(count):
        for plane in ("dp1", "dp2"):
            lines.append("CREATE ROLE %s LOGIN PASSWORD 'pw-%s-%s';" % (ident("%s_user_%s" % (plane, dep)), plane, dep))
    for dep in ids(count):
        lines.append("CREATE DATABASE %s;" % ident("airflow_db_%s" % dep))
    for dep in ids(count):
        owner, killer = ident("airflow_db_%s_owner" % dep), ident("airflow_conn_killer_%s" % dep)
        db, dp1, dp2 = ident("airflow_db_%s" % dep), ident("dp1_user_%s" % dep), ident("dp2_user_%s" % dep)
        lines += [
            "CREATE ROLE %s NOLOGIN;" % owner,
            "CREATE ROLE %s NOLOGIN NOINHERIT;" % killer,
            "ALTER DATABASE %s OWNER TO %s;" % (db, owner),
            "REVOKE CONNECT ON DATABASE %s FROM PUBLIC;" % db,
            "GRANT CONNECT ON DATABASE %s TO %s;" % (db, dp1),
            "GRANT CONNECT ON DATABASE %s TO %s;" % (db, dp2),
            "GRANT %s TO %s WITH INHERIT FALSE, SET FALSE;" % (dp1, killer),
            "GRANT %s TO %s WITH INHERIT FALSE, SET FALSE;" % (dp2, killer),
            "GRANT %s TO commander_user;" % owner,
            "GRANT %s TO commander_user;" % killer,
        ]
    return "\n".join(lines) + "\n"


def run_psql(info, script_path):
    psql = Path(info["bin_dir"]) / "psql"
    cmd = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", info["host"], "-p", str(info["port"]),
           "-U", info["user"], "-d", "postgres", "-f", str(script_path)]
    began = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - began
    if proc.returncode != 0:
        raise SystemExit("psql failed: %s" % proc.stderr)
    return elapsed


def run_playbook(vars_path, inventory_path):
    elapsed, stdout = benchlib.run_playbook(["dataplane.postgresql.provision", "-i", inventory_path,
                                             "-e", "@%s" % vars_path])
    changed = None
    for line in stdout.splitlines():
        if "changed=" in line and "ok=" in line:
            changed = int(line.split("changed=")[1].split()[0])
    return elapsed, changed


def count_catalog(info, count):
    psql = Path(info["bin_dir"]) / "psql"
    query = ("SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE 'airflow_db_dep%%'), "
             "(SELECT count(*) FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.member "
             "WHERE r.rolname LIKE 'airflow_conn_killer_dep%%')")
    out = subprocess.run([str(psql), "-X", "-At", "-h", info["host"], "-p", str(info["port"]), "-U", info["user"],
                          "-d", "postgres", "-c", query.replace("%%", "%")], capture_output=True, text=True, check=False)
    databases, killer_rows = [int(x) for x in out.stdout.strip().split("|")]
    assert databases == count and killer_rows == 2 * count, (databases, killer_rows)


def module_args(info, vars_path):
    """What the deployments role passes deployment_setup, for the module run on its own."""
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import (
        expand_deployments,
    )
    variables = json.loads(Path(vars_path).read_text())
    return dict(login_host=info["host"], login_port=info["port"], login_user=info["user"], login_db="postgres",
                deployments=expand_deployments(variables["dataplane_deployments"]),
                commander_password=variables["dataplane_commander_password"])


def measure_psql(args, root, run, script, vars_path, results):
    base = root / ("psql%d" % run)
    info = benchlib.start_postgresql(args.version, base, attempts=3)
    try:
        os.sync()  # start from clean page-cache write-back, as the other measurement does
        results["psql_s"].append(round(run_psql(info, script), 3))
        count_catalog(info, args.count)
    finally:
        benchlib.stop_postgresql(base)
        shutil.rmtree(base, ignore_errors=True)


def measure_ansible(args, root, run, script, vars_path, results):
    base = root / ("ansible%d" % run)
    info = benchlib.start_postgresql(args.version, base, attempts=3)
    try:
        inventory = root / "inventory.json"
        inventory.write_text(json.dumps({"dataplane_postgresql": {"hosts": {"bench": {
            "ansible_connection": "local", "ansible_python_interpreter": benchlib.PYTHON,
            "dataplane_pg_host": info["host"], "dataplane_pg_port": info["port"]}}}}))
        os.sync()
        fresh, changed = run_playbook(vars_path, inventory)
        assert changed and changed >= 1, changed
        count_catalog(info, args.count)
        results["fresh_s"].append(round(fresh, 3))
        databases = ["airflow_db_%s" % dep for dep in ids(args.count)]
        for dummy in range(args.reruns):  # the floor first, then the rerun, alternating
            results["rerun_floor_s"].append(round(benchlib.one_task_playbook(inventory, root)
                                                  + benchlib.connect_each(info["port"], databases), 3))
            rerun, changed = run_playbook(vars_path, inventory)
            assert changed == 0, "rerun reported changed=%s" % changed
            results["rerun_s"].append(round(rerun, 3))
        module_s, result = benchlib.run_module("deployment_setup", module_args(info, vars_path))
        assert result["changed"] is False, "module rerun reported a change"
        results["rerun_module_s"].append(round(module_s, 3))
        results["rerun_module_timings"].append(result["timings"])
    finally:
        benchlib.stop_postgresql(base)
        shutil.rmtree(base, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--version", type=int, default=16)
    parser.add_argument("--runs", type=int, default=1, help="repeat and keep the best of each timing")
    parser.add_argument("--reruns", type=int, default=3, help="reruns (each next to its floor) per run")
    args = parser.parse_args()

    root = benchlib.make_work_dir()
    results = {"count": args.count, "version": args.version, "load_average": os.getloadavg()[0],
               "psql_s": [], "fresh_s": [], "rerun_s": [], "rerun_floor_s": [], "rerun_module_s": [],
               "rerun_module_timings": []}
    try:
        script = root / "seed.sql"
        script.write_text(psql_script(args.count))
        vars_path = root / "vars.json"
        vars_path.write_text(json.dumps({
            "dataplane_commander_password": "commander-bench-secret",
            "dataplane_deployments": [{"id": dep, "passwords": {"dp1": "pw-dp1-%s" % dep, "dp2": "pw-dp2-%s" % dep}}
                                      for dep in ids(args.count)]}))
        for run in range(args.runs):
            # Alternate which goes first, so neither always inherits the other's disk write-back.
            order = (measure_psql, measure_ansible) if run % 2 == 0 else (measure_ansible, measure_psql)
            for measure in order:
                measure(args, root, run, script, vars_path, results)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    best = dict((k, min(results[k + "_s"])) for k in ("psql", "fresh", "rerun"))
    rerun = benchlib.versus_floor(
        "provision rerun %d" % args.count, benchlib.Figure(results["rerun_s"]), benchlib.Figure(results["rerun_floor_s"]),
        "one-task ansible-playbook + one connection to each metadata database", target_ratio=1.5)
    print("provision fresh %d: %.2f s, psql %.2f s, ratio %.2f x (best of %d); target ratio <= 1.3 x: %s"
          % (args.count, best["fresh"], best["psql"], best["fresh"] / best["psql"], args.runs,
             "met" if best["fresh"] <= 1.3 * best["psql"] else "NOT MET"))
    print("provision rerun %d: best %.2f s; issue 13's target <= 2.0 s: %s"
          % (args.count, best["rerun"], "met" if best["rerun"] <= 2.0 else "not met"))
    results.update(best_psql_s=best["psql"], best_fresh_s=best["fresh"], best_rerun_s=best["rerun"],
                   fresh_over_psql=round(best["fresh"] / best["psql"], 2),
                   fresh_over_psql_per_run=[round(f / p, 2) for f, p in zip(results["fresh_s"], results["psql_s"])],
                   rerun_versus_floor=rerun, load_average_after=os.getloadavg()[0],
                   targets={"fresh_over_psql": 1.3, "rerun_over_floor": 1.5, "issue_13_rerun_s": 2.0},
                   met=best["fresh"] <= 1.3 * best["psql"] and rerun["met"])
    out_dir = benchlib.REPO / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ("provision-%d.json" % args.count)).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))
    return 0 if results["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
