# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: 1,000 grants in one dataplane.postgresql.membership call on PostgreSQL 16.

Starts its own PostgreSQL (scripts/pg.py) under /tmp, creates GROUPS x MEMBERS roles,
then times the module as Ansible runs it (a Python process reading its JSON arguments):

  first run    every grant is new           (1,000 GRANT ... WITH INHERIT FALSE, SET FALSE)
  no-op rerun  nothing to do                 (changed false, 0 statements)
  check drift  10% of the rows drifted by hand, check mode
  fix drift    the same, for real

Usage: .venv/bin/python benchmarks/membership_bench.py [--version 16] [--grants 1000]
Not a test: it prints wall times and exits 0 when every run behaved as expected.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "plugins" / "modules" / "membership.py"
PG = REPO / "scripts" / "pg.py"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_module(args, check=False):
    payload = dict(args, _ansible_check_mode=check)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    try:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, str(MODULE), handle.name], capture_output=True, text=True,
                              check=False)
        elapsed = time.perf_counter() - started
    finally:
        os.unlink(handle.name)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit("module printed no JSON:\n%s\n%s" % (proc.stdout, proc.stderr))
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result.get("msg"))
    return elapsed, result


def rows_checksum(conn, tag):
    cur = conn.cursor()
    cur.execute("SELECT count(*), count(*) FILTER (WHERE NOT inherit_option AND NOT set_option) "
                "FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid WHERE g.rolname LIKE %s",
                (tag + "%",))
    return cur.fetchone()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, default=16)
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--members", type=int, default=4)
    args = parser.parse_args()
    n_groups = max(1, args.grants // args.members)
    total = n_groups * args.members

    base = Path(tempfile.mkdtemp(prefix="dataplane-bench-", dir="/tmp"))
    os.chmod(base, 0o755)
    port = free_port()
    start = subprocess.run([sys.executable, str(PG), "start", "--version", str(args.version),
                            "--dir", str(base / "pg"), "--port", str(port), "--set", "fsync=off"],
                           capture_output=True, text=True, check=False)
    if start.returncode != 0:
        raise SystemExit("could not start PostgreSQL: %s" % start.stderr)
    info = json.loads(start.stdout.strip().splitlines()[-1])
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        cur = conn.cursor()
        groups = ["Bench-Grp_%04d" % i for i in range(n_groups)]
        members = ["bench_member_%d" % i for i in range(args.members)]
        for name in groups:
            cur.execute('CREATE ROLE "%s" LOGIN' % name)
        for name in members:
            cur.execute('CREATE ROLE "%s" NOLOGIN NOINHERIT' % name)

        module_args = dict(login_host="127.0.0.1", login_port=port, login_user="postgres",
                           grants=[dict(group=g, target_role=m, inherit_option=False, set_option=False)
                                   for g in groups for m in members])
        print("PostgreSQL %s, %d grants (%d groups x %d members) in one module call"
              % (info["version"], total, n_groups, args.members))

        first_t, first = run_module(module_args)
        assert first["changed"] and len(first["queries"]) == total, (first["changed"], len(first["queries"]))
        assert rows_checksum(conn, "Bench-Grp_") == (total, total)
        print("first run    %7.3f s  changed=%s statements=%d" % (first_t, first["changed"], len(first["queries"])))

        noop_t, noop = run_module(module_args)
        assert not noop["changed"] and noop["queries"] == []
        print("no-op rerun  %7.3f s  changed=%s statements=%d" % (noop_t, noop["changed"], len(noop["queries"])))

        drifted = groups[::10]
        for name in drifted:
            cur.execute('GRANT "%s" TO "%s" WITH INHERIT TRUE' % (name, members[0]))
        check_t, check = run_module(module_args, check=True)
        assert check["changed"] and len(check["queries"]) == len(drifted)
        assert rows_checksum(conn, "Bench-Grp_") == (total, total - len(drifted))
        print("check drift  %7.3f s  changed=%s statements=%d (catalog untouched)"
              % (check_t, check["changed"], len(check["queries"])))

        fix_t, fix = run_module(module_args)
        assert fix["changed"] and len(fix["queries"]) == len(drifted)
        assert rows_checksum(conn, "Bench-Grp_") == (total, total)
        print("fix drift    %7.3f s  changed=%s statements=%d" % (fix_t, fix["changed"], len(fix["queries"])))

        empty_t, dummy = run_module(dict(module_args, grants=[]))
        print("(baseline: module start-up + connect with 0 grants %.3f s)" % empty_t)
        conn.close()
    finally:
        subprocess.run([sys.executable, str(PG), "stop", "--dir", str(base / "pg")], capture_output=True,
                       check=False)
        shutil.rmtree(str(base), ignore_errors=True)


if __name__ == "__main__":
    main()
