"""The membership module beside community.postgresql's postgresql_membership: both called with
upstream's spelling of the options, the memberships read back from pg_auth_members, and which
community.postgresql the venv holds."""

import glob
import json
import os
import sys

OURS = "membership"
UPSTREAM = "community.postgresql.postgresql_membership"

MEMBER_OF = """
SELECT g.rolname, gr.rolname
  FROM pg_auth_members am
  JOIN pg_roles g ON g.oid = am.roleid
  JOIN pg_roles m ON m.oid = am.member
  LEFT JOIN pg_roles gr ON gr.oid = am.grantor
 WHERE m.rolname = %(member)s
 ORDER BY 1, 2
"""


def q(name):
    """NAME as a quoted identifier."""
    return '"%s"' % name.replace('"', '""')


def upstream_version():
    """The community.postgresql version the tests run (the venv's, from the ansible wheel)."""
    for entry in sys.path:
        for path in glob.glob(os.path.join(entry, "ansible_collections", "community", "postgresql", "MANIFEST.json")):
            with open(path) as handle:
                return tuple(int(p) for p in json.load(handle)["collection_info"]["version"].split(".")[:3])
    return (0, 0, 0)


def create_roles(server, *names, attrs=""):
    for name in names:
        server.sql("CREATE ROLE %s %s" % (q(name), attrs))


def groups_of(server, member):
    """Sorted group names MEMBER belongs to (one entry per grantor row)."""
    return [g for g, _grantor in server.sql(MEMBER_OF, {"member": member})]


def rows_of(server, member):
    """[(group, grantor)] of MEMBER's memberships, sorted."""
    return server.sql(MEMBER_OF, {"member": member})


def call(run_module, impl, server, check=False, diff=False, login="postgres", **args):
    """Run IMPL with upstream's spelling of the connection options (db, login_user...)."""
    base = dict(login_host=server.host, login_port=server.port, login_user=login, db="postgres")
    return run_module(impl, dict(base, **args), check=check, diff=diff)


def warnings_of(res):
    """Warning texts of a module result (plain strings, or ansible-core 2.19+ summaries)."""
    out = []
    for warning in res.get("warnings", []):
        out.append(warning["event"]["msg"] if isinstance(warning, dict) else warning)
    return out
