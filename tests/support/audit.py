"""Set-up and reading for the audit tests: Deployments set up with the vendor's SQL (the seed)
as a superuser, optionally plus the fence helper (``ensure_helper`` of the collection's
module_utils), the deployment_audit module run with a catalog comparison that proves it changed
nothing, and its findings by check."""

from psycopg2 import sql

from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import Session
from ansible_collections.dataplane.postgresql.plugins.module_utils.server.helper_install import ensure_helper
from tests.support.reference import reference_statements


class _FailingModule(object):
    """Stands in for AnsibleModule when test set-up calls module_utils directly."""

    def fail_json(self, msg, **extra):
        raise AssertionError("set-up failed: %s %s" % (msg, extra))


def make_deployment(names, dep):
    """Names for one Deployment, unique to this test (dropped at teardown), as the
    deployment_audit module takes them."""
    return {
        "id": dep,
        "state": "present",
        "database": names("airflow_db_%s" % dep),
        "owner_role": names("airflow_db_%s_owner" % dep),
        "killer_role": names("airflow_conn_killer_%s" % dep),
        "login_roles": {"dp1": names("dp1_user_%s" % dep), "dp2": names("dp2_user_%s" % dep)},
        "passwords": {},
        "commander_user": None,
        "update_password": False, "drop_database": False, "drop_login_roles": False,
    }


def seed_statements(rec, with_options=True):
    """The vendor's page (tests/support/reference.py) for one Deployment."""
    return reference_statements(dict(database=rec["database"], owner=rec["owner_role"], killer=rec["killer_role"],
                                     dp1=rec["login_roles"]["dp1"], dp2=rec["login_roles"]["dp2"]),
                                rec["commander_user"], member_options=with_options)


def seed(server, names, ids=("a",), helper_schema=None, with_options=True):
    """Commander, login roles and databases first, then the seed SQL; optionally the helper."""
    commander = names("commander_user")
    records = []
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(commander)))
    for dep in ids:
        rec = make_deployment(names, dep)
        rec["commander_user"] = commander
        for login in rec["login_roles"].values():
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(rec["database"])))
        for statement in seed_statements(rec, with_options):
            cur.execute(statement)
        records.append(rec)
    if helper_schema:
        install_helper(conn, names, helper_schema, [r["killer_role"] for r in records])
    conn.close()
    return records


def install_helper(conn, names, schema, killers):
    """The fence helper in SCHEMA, owned by names("fence_signaler"), for KILLERS (through the
    collection's ensure_helper, on CONN, committed)."""
    conn.autocommit = False
    session = Session(_FailingModule(), conn)
    ensure_helper(session, schema, names("fence_signaler"), killers, "present", False)
    conn.commit()
    conn.autocommit = True


CATALOG_SNAPSHOT = """
SELECT 'role' AS kind, to_jsonb(r)::text AS item FROM pg_catalog.pg_roles r
UNION ALL
SELECT 'member', to_jsonb(am)::text FROM pg_catalog.pg_auth_members am
UNION ALL
SELECT 'db', concat_ws(',', d.datname, d.datdba::regrole, d.datacl::text, d.datallowconn, d.datconnlimit)
  FROM pg_catalog.pg_database d
UNION ALL
SELECT 'nsp', concat_ws(',', n.nspname, n.nspowner::regrole, n.nspacl::text) FROM pg_catalog.pg_namespace n
UNION ALL
SELECT 'proc', concat_ws(',', p.oid::regprocedure, p.proowner::regrole, p.proacl::text, md5(p.prosrc),
       p.proconfig::text) FROM pg_catalog.pg_proc p WHERE p.pronamespace > 16384
UNION ALL
SELECT 'setting', concat_ws(',', s.setdatabase, s.setrole, s.setconfig::text) FROM pg_catalog.pg_db_role_setting s
ORDER BY 1, 2
"""


def catalog(server):
    """What the audit must not change: roles, memberships, databases, schemas, functions, settings."""
    return server.sql(CATALOG_SNAPSHOT)


def audit(run_module, server, records, user="postgres", **extra):
    """deployment_audit on RECORDS as USER; fails the test if the catalog changed."""
    args = dict(server.login_args(user), deployments=records)
    if extra.get("helper_schema") and records and "helper_owner_role" not in extra:
        # install_helper's owner: names("fence_signaler"), the same per-test suffix as the commander
        extra["helper_owner_role"] = records[0]["commander_user"].replace("commander_user", "fence_signaler", 1)
    args.update(extra)
    before = catalog(server)
    result = run_module("deployment_audit", args)
    assert catalog(server) == before, "the audit changed the catalog"
    return result


def by_check(result_dep):
    """{check: finding} of one Deployment of an audit result."""
    return dict((f["check"], f) for f in result_dep["findings"])


def failed_checks(result_dep):
    """The sorted names of the checks that failed for one Deployment."""
    return sorted(f["check"] for f in result_dep["findings"] if not f["ok"])
