# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts every reader of the schema role shares: the membership options a login holds on it and
the per-database ``role`` setting that puts a session into it (provision writes them, parity and
the audit read them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MEMBERSHIP_OPTIONS = {"inherit_option": False, "set_option": True, "admin_option": False}


def setting_value(setconfig, name="role"):
    """The value of NAME in a pg_db_role_setting.setconfig array, or None."""
    prefix = name + "="
    for item in setconfig or ():
        if item.startswith(prefix):
            return item[len(prefix):]
    return None


def effective_role_setting(rows, login, database):
    """The role a LOGIN's session in DATABASE starts as: the database-specific setting wins
    over the login's global one. ROWS: [{rolname, datname (None = all databases), setconfig}]."""
    specific = [r for r in rows if r["rolname"] == login and r.get("datname") == database]
    general = [r for r in rows if r["rolname"] == login and r.get("datname") is None]
    for group in (specific, general):
        for row in group:
            value = setting_value(row.get("setconfig"))
            if value is not None:
                return value
    return None


# The attributes of ROLES, and the role settings of LOGINS (everywhere and in DATABASES); the
# parity checks (parity.py) read the same.
ROLES_QUERY = """
SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls
  FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(roles)s)
"""


SETTINGS_QUERY = """
SELECT r.rolname, d.datname, s.setconfig
  FROM pg_catalog.pg_db_role_setting s
  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.setrole
  LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase
 WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(logins)s) AND (s.setdatabase OPERATOR(pg_catalog.=) 0 OR d.datname OPERATOR(pg_catalog.=) ANY(%(databases)s))
"""
