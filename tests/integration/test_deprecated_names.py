"""Deprecated role variable names still work, and say so, on a real PostgreSQL 16.

One name per concept (README, "One name per concept"): the roles read the fence helper's names
from dataplane_fence_helper_schema / dataplane_fence_helper_owner_role and the fence's parity
policy from dataplane_failover_parity_policy. The older per-role names are still read until
1.0.0, win over the new ones where they were read before, and every run that sees one prints a
deprecation warning naming its replacement (the common role's check task).

The helper is provisioned under names of this test, and the new variables point elsewhere: the
audit and the failover only succeed (as commander_user, who can terminate sessions only through
the helper) if the old variables are the ones used.
"""

from psycopg2 import sql

from test_failover import PROVISION, FAILOVER
from test_schema_role import AUDIT, Deployments, can_connect, connect_as

import pytest


def one_line(proc):
    """stdout and stderr, white space folded (Ansible may wrap a warning)."""
    return " ".join((proc.stdout + "\n" + proc.stderr).split())


def warned(proc, old, new):
    return ("[DEPRECATION WARNING]: %s is deprecated: set %s instead" % (old, new)) in one_line(proc)


@pytest.fixture
def deployment(pg16, names, ansible_playbook, tmp_path):
    return Deployments(pg16, names, ansible_playbook, tmp_path, count=1)


def test_old_role_variable_names_still_work_and_warn(pg16, names, deployment):
    d = deployment
    dep = d.ids[0]
    schema, owner = names("fence"), names("signaler")
    elsewhere = {"dataplane_fence_helper_schema": names("nofence"), "dataplane_fence_helper_owner_role": names("nobody")}

    # Provision with the one names: no deprecation warning.
    proc = d.playbook(PROVISION, dataplane_fence_helper_schema=schema, dataplane_fence_helper_owner_role=owner)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is deprecated: set" not in one_line(proc)
    assert pg16.sql("SELECT r.rolname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " JOIN pg_roles r ON r.oid = p.proowner WHERE n.nspname = %s", (schema,)) == [(owner,)] * 2

    # The audit with the audit role's old names (the new ones point where no helper is): they are read.
    proc = d.playbook(AUDIT, user=d.commander, dataplane_audit_helper_schema=schema,
                      dataplane_audit_helper_owner_role=owner, **elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "%s: OK, fence capable (helper)" % dep in proc.stdout, proc.stdout
    assert warned(proc, "dataplane_audit_helper_schema", "dataplane_fence_helper_schema"), proc.stderr
    assert warned(proc, "dataplane_audit_helper_owner_role", "dataplane_fence_helper_owner_role"), proc.stderr
    assert "This feature will be removed from collection 'dataplane.postgresql' version 1.0.0." in one_line(proc)

    # Plane parity drift: dp2 would not start as the schema role. The failover with the failover
    # role's old names: the helper in the old schema terminates dp1's session, and
    # dataplane_failover_ignore_parity=true (the new policy's warn) lets it fail over anyway.
    pg16.sql(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET role").format(
        sql.Identifier(d.login("dp2", dep)), sql.Identifier(d.db(dep))))
    live = connect_as(pg16, d.login("dp1", dep), d.db(dep))
    try:
        proc = d.playbook(FAILOVER, user=d.commander, dataplane_failover_from="dp1", dataplane_failover_to="dp2",
                          dataplane_failover_helper_schema=schema, dataplane_failover_ignore_parity=True,
                          **elsewhere)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SAFE to start dp2" in proc.stdout and "NOT SAFE" not in proc.stdout, proc.stdout
        assert "parity: %s would not start as the schema role" % d.login("dp2", dep) in one_line(proc)
        assert warned(proc, "dataplane_failover_helper_schema", "dataplane_fence_helper_schema"), proc.stderr
        assert warned(proc, "dataplane_failover_ignore_parity", "dataplane_failover_parity_policy"), proc.stderr
        assert "(true is warn, false is refuse)" in one_line(proc)
    finally:
        live.close()
    assert not can_connect(pg16, d.login("dp1", dep), d.db(dep))
    assert can_connect(pg16, d.login("dp2", dep), d.db(dep))
    terminated = pg16.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (d.login("dp1", dep),))
    assert terminated == [(0,)]
