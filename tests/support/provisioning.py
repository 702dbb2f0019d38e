"""Provisioning through the deployment_setup module: one Deployment's record with names unique
to the test, and the module's arguments for some records."""


def record(names, tag, **extra):
    """A deployment_setup record for Deployment TAG (every name made unique by NAMES), with
    passwords for both planes and its own commander login name; EXTRA overrides keys."""
    rec = {"id": tag, "state": "present", "database": names("airflow_db_%s" % tag),
           "owner_role": names("airflow_db_%s_owner" % tag), "killer_role": names("airflow_conn_killer_%s" % tag),
           "login_roles": {"dp1": names("dp1_user_%s" % tag), "dp2": names("dp2_user_%s" % tag)},
           "passwords": {"dp1": "first-secret-1", "dp2": "second-secret-2"},
           "commander_user": names("commander")}
    rec.update(extra)
    return rec


def setup_args(server, records, **extra):
    """deployment_setup's arguments for RECORDS on SERVER as postgres (fence helper off unless
    EXTRA says otherwise)."""
    args = server.login_args()
    args.update(deployments=records, fence_helper=False)
    args.update(extra)
    return args
