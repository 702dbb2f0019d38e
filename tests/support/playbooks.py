"""Running the collection's playbooks against a test server: inventories and the set-up a
managed admin needs."""

import json
import sys

import psycopg2
from psycopg2 import sql


def inventory(tmp_path, server, user):
    """A one-host inventory (host ``pg``) for SERVER, connecting as USER, with the running
    Python as the interpreter (interpreter discovery may pick a broken shim)."""
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "dataplane_pg_host": server.host, "dataplane_pg_port": server.port, "dataplane_pg_user": user}
    path = tmp_path / ("inventory-%s.json" % user)
    path.write_text(json.dumps({"dataplane_postgresql": {"hosts": {"pg": host}}}))
    return path


def database_of(server, user, name):
    """Create database NAME as USER (a managed admin has no CREATE in ``postgres``: the fence
    helper lives in a database it owns). Returns NAME."""
    conn = psycopg2.connect(**server.dsn(user=user))
    try:
        conn.autocommit = True
        conn.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
    return name
