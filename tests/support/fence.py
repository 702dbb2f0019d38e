"""Set-up for the fence module tests: the vendor's reference setup (tests/support/reference.py)
for some Deployments, the fence's arguments for them, the helper installed for their killer
roles, and real sessions opened as a login role (tests/support/sessions.py). The fixture
``two_deployments`` (tests/support/fixtures.py) is built from these."""

import psycopg2

from tests.support import sessions as _sessions
from tests.support.reference import deployment_names, setup_deployments

__all__ = ["Sessions", "can_connect", "fence_args", "install_helper", "make_deployment", "setup_deployments"]


def make_deployment(names, ident):
    """The seed's names for Deployment IDENT, each made unique by NAMES."""
    return deployment_names(ident, names)


def fence_args(server, deps, commander, **extra):
    """The fence module's arguments for DEPS (source dp1, destination dp2) as COMMANDER."""
    args = server.login_args(commander)
    args["deployments"] = [dict(name=d["id"], database=d["database"], source_role=d["dp1"],
                                destination_role=d["dp2"], killer_role=d["killer"]) for d in deps]
    args.update(extra)
    return args


class Sessions(_sessions.Sessions):
    """Live sessions of one role in one database: ``open(kinds)`` with kinds idle, idle_in_tx
    (an uncommitted INSERT into t), active (pg_sleep), lock (holds lockme)."""

    def __init__(self, server, user, dbname):
        super(Sessions, self).__init__(server, user, dbname, application="fence-test",
                                       tx_sql="INSERT INTO t VALUES ('uncommitted')")

    def open(self, kinds=("idle", "idle_in_tx", "active", "lock")):
        return super(Sessions, self).open(kinds)


def install_helper(server, run_module, killers):
    """Install the fence helper as postgres for KILLERS; fail the test if that fails."""
    res = run_module("fence_helper", dict(server.login_args(), killer_roles=killers))
    assert not res["failed"], res
    return res


def can_connect(server, user, dbname):
    """A real login attempt: True when admitted, False when CONNECT is refused."""
    try:
        server.connect(user, dbname).close()
        return True
    except psycopg2.OperationalError as exc:
        assert "permission denied for database" in str(exc)
        return False
