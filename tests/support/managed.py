"""Managed PostgreSQL: the admin is no superuser. Shapes from the providers' documentation
(docs/managed-postgresql.md): a LOGIN CREATEROLE CREATEDB role (Azure adds REPLICATION),
member of a provider group that holds predefined roles WITH ADMIN OPTION. The
``managed_admin`` fixture (tests/support/fixtures.py) makes one per test."""

MANAGED_SHAPES = {
    "rds": ("rds_superuser", "LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE NOREPLICATION"),
    "cloudsql": ("cloudsqlsuperuser", "LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE NOREPLICATION"),
    "azure": ("azure_pg_admin", "LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE REPLICATION"),
}
MANAGED_GROUP_GRANTS = ("pg_signal_backend", "pg_read_all_stats", "pg_monitor")


def create_managed_admin(server, name, shape="rds", group_grants=MANAGED_GROUP_GRANTS):
    """Create (as postgres) the provider group of SHAPE if missing, holding GROUP_GRANTS WITH
    ADMIN OPTION, and the login NAME shaped like that provider's admin, member of the group."""
    group, attributes = MANAGED_SHAPES[shape]
    conn = server.connect()
    cur = conn.cursor()
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,))
    if not cur.fetchone():
        cur.execute('CREATE ROLE "%s" NOLOGIN' % group)
        cur.execute('GRANT %s TO "%s" WITH ADMIN OPTION' % (", ".join(MANAGED_GROUP_GRANTS), group))
    quoted = '"%s"' % name.replace('"', '""')
    cur.execute("CREATE ROLE %s %s" % (quoted, attributes))
    cur.execute('GRANT "%s" TO %s' % (group, quoted))
    if tuple(group_grants) != MANAGED_GROUP_GRANTS:  # a weaker admin: only some grants, directly
        cur.execute('REVOKE "%s" FROM %s' % (group, quoted))
        for granted in group_grants:
            cur.execute("GRANT %s TO %s WITH ADMIN OPTION" % (granted, quoted))
    conn.close()
    return name
