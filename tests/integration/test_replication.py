"""The fence and PostgreSQL replication (primary with streaming hot standbys, scripts/pg.py).

A standby takes no REVOKE: a fence pointed at one is refused before any change, saying so and
naming its primary when the login may read it.
"""

import pytest

from tests.support.fence import fence_args, install_helper, make_deployment, setup_deployments
from tests.support.server import PgServer, remove, scratch_dir


@pytest.fixture(params=[16, 18], ids=["pg16", "pg18"])
def pair(request):
    """A primary and a streaming hot standby (through a slot) of PostgreSQL 16 or 18."""
    root = scratch_dir("dataplane-repl-")
    primary = PgServer(request.param, root / "primary", ["max_connections=100"]).start()
    standby = None
    try:
        standby = PgServer(request.param, root / "standby", standby_of=primary, slot="standby_1").start()
        yield primary, standby
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
        remove(root)


def _caught_up(primary, standby):
    lsn = primary.sql("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")[0][0]
    assert standby.replayed(lsn), "the standby did not replay %s" % lsn


def test_a_fence_pointed_at_a_standby_is_refused_before_any_change(pair, names, run_module):
    primary, standby = pair
    commander = names("commander_user")
    dep = make_deployment(names, "a")
    setup_deployments(primary, [dep], commander)
    install_helper(primary, run_module, [dep["killer"]])
    _caught_up(primary, standby)
    acl = "SELECT datacl::text FROM pg_catalog.pg_database WHERE datname = %s"
    before = primary.sql(acl, (dep["database"],))

    res = run_module("fence", fence_args(standby, [dep], commander))
    assert res["failed"], res
    assert "this server is a standby (in recovery), so it takes no REVOKE" in res["msg"], res["msg"]
    assert "pg_stat_wal_receiver needs pg_read_all_stats" in res["msg"], res["msg"]
    assert "nothing was changed" in res["msg"] and res["queries"] == [], res
    assert res["deployments"][0]["revoked"] is False, res["deployments"]

    # an admin that may read the WAL receiver is told where the primary is
    res = run_module("fence", fence_args(standby, [dep], "postgres"))
    assert res["failed"] and "its primary is 127.0.0.1:%d" % primary.port in res["msg"], res["msg"]
    assert res["primary"]["sender_port"] == primary.port, res
    assert primary.sql(acl, (dep["database"],)) == before
    assert standby.sql(acl, (dep["database"],)) == before
