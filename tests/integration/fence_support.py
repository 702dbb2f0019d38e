"""Shared set-up for the fence tests: the vendor's reference setup (tests/support/reference.py)
for some Deployments, plus real sessions opened as a login role (tests/support/sessions.py)."""

import psycopg2
import pytest

from tests.support import sessions as _sessions
from tests.support.reference import deployment_names, setup_deployments  # noqa: F401  (for the tests)


def make_deployment(names, ident):
    """The seed's names for Deployment IDENT, each made unique by NAMES."""
    return deployment_names(ident, names)


def fence_args(server, deps, commander, **extra):
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


@pytest.fixture
def two_deployments(pg, names, run_module):
    """Deployments a and b set up as the seed says, with the fence helper; returns
    (commander, [a, b]). A fixture: import it into the test module that uses it."""
    commander = names("commander_user")
    deps = [make_deployment(names, "a"), make_deployment(names, "b")]
    setup_deployments(pg, deps, commander)
    install_helper(pg, run_module, [d["killer"] for d in deps])
    return commander, deps
