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

import benchlib
from psycopg2 import sql


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

    with benchlib.scratch_postgresql(args.version, settings=["fsync=off"]) as (info, _work_dir):
        port = info["port"]
        conn = benchlib.connect(port)
        conn.autocommit = True
        cur = conn.cursor()
        groups = ["Bench-Grp_%04d" % i for i in range(n_groups)]
        members = ["bench_member_%d" % i for i in range(args.members)]
        for name in groups:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        for name in members:
            cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(sql.Identifier(name)))

        module_args = dict(login_host="127.0.0.1", login_port=port, login_user="postgres",
                           grants=[dict(group=g, target_role=m, inherit_option=False, set_option=False)
                                   for g in groups for m in members])
        print("PostgreSQL %s, %d grants (%d groups x %d members) in one module call"
              % (info["version"], total, n_groups, args.members))

        first_t, first = benchlib.run_module("membership", module_args)
        assert first["changed"] and len(first["queries"]) == total, (first["changed"], len(first["queries"]))
        assert rows_checksum(conn, "Bench-Grp_") == (total, total)
        print("first run    %7.3f s  changed=%s statements=%d" % (first_t, first["changed"], len(first["queries"])))

        noop_t, noop = benchlib.run_module("membership", module_args)
        assert not noop["changed"] and noop["queries"] == []
        print("no-op rerun  %7.3f s  changed=%s statements=%d" % (noop_t, noop["changed"], len(noop["queries"])))

        drifted = groups[::10]
        for name in drifted:
            grant = sql.SQL("GRANT {} TO {} WITH INHERIT TRUE")
            cur.execute(grant.format(sql.Identifier(name), sql.Identifier(members[0])))
        check_t, check = benchlib.run_module("membership", module_args, check_mode=True)
        assert check["changed"] and len(check["queries"]) == len(drifted)
        assert rows_checksum(conn, "Bench-Grp_") == (total, total - len(drifted))
        print("check drift  %7.3f s  changed=%s statements=%d (catalog untouched)"
              % (check_t, check["changed"], len(check["queries"])))

        fix_t, fix = benchlib.run_module("membership", module_args)
        assert fix["changed"] and len(fix["queries"]) == len(drifted)
        assert rows_checksum(conn, "Bench-Grp_") == (total, total)
        print("fix drift    %7.3f s  changed=%s statements=%d" % (fix_t, fix["changed"], len(fix["queries"])))

        empty_t, dummy = benchlib.run_module("membership", dict(module_args, grants=[]))
        print("(baseline: module start-up + connect with 0 grants %.3f s)" % empty_t)
        conn.close()


if __name__ == "__main__":
    main()
