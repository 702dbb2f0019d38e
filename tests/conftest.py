"""Test harness: real PostgreSQL servers started through scripts/pg.py.

One server per major version per test session, started on first use and stopped at the
end (also when tests fail). Each test gets its own names (``names`` fixture) and whatever
it creates under them is dropped afterwards.

Fixtures
  pg            parametrized over the supported versions (16, 17, 18)
  pg15          the too-old server, for the error path
  pg16          one PostgreSQL 16 (for tests that need only one version)
  pg_server     factory: pg_server(17) gives that version's server
  names         unique, per-test name maker: names("dp1_user") -> "dp1_user_t3a9f"
  run_module    run one of this collection's modules in-process-free, as Ansible would
"""

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest

# re-exported: test modules take these with `from conftest import ...`
from tests.support import PG_SCRIPT, REPO  # noqa: F401  pylint: disable=unused-import
from tests.support.server import PgServer, free_port, scratch_dir  # noqa: F401  pylint: disable=unused-import

SUPPORTED_VERSIONS = (16, 17, 18)
TOO_OLD_VERSION = 15
SERVER_SETTINGS = ["max_connections=400"]


class ServerPool(object):
    def __init__(self, root):
        self.root = root
        self.servers = {}

    def get(self, version):
        if version not in self.servers:
            server = PgServer(version, self.root / ("pg%d" % version), SERVER_SETTINGS)
            self.servers[version] = server.start()
        return self.servers[version]

    def stop_all(self):
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="session")
def _server_pool():
    root = scratch_dir("dataplane-pg-")
    pool = ServerPool(root)
    yield pool
    pool.stop_all()
    subprocess.run(["rm", "-rf", str(root)], check=False)


# Which server versions each test used, for the per-version line at the end of the run. The
# fixtures note the version in the test's user_properties, which travel with its reports (also
# from pytest-xdist workers to the controller, where the summary is written).
_VERSIONS_USED = {}
_OUTCOMES = {}
VERSION_PROPERTY = "postgresql_version"


def _using(request, server):
    entry = (VERSION_PROPERTY, server.info.get("version", str(server.version)))
    if entry not in request.node.user_properties:
        request.node.user_properties.append(entry)
    return server


@pytest.fixture
def pg_server(request, _server_pool):
    return lambda version: _using(request, _server_pool.get(version))


@pytest.fixture(params=SUPPORTED_VERSIONS, ids=["pg%d" % v for v in SUPPORTED_VERSIONS])
def pg(request, _server_pool):
    return _using(request, _server_pool.get(request.param))


@pytest.fixture
def pg16(request, _server_pool):
    return _using(request, _server_pool.get(16))


@pytest.fixture
def pg15(request, _server_pool):
    return _using(request, _server_pool.get(TOO_OLD_VERSION))


def pytest_runtest_logreport(report):
    for name, value in getattr(report, "user_properties", ()):
        if name == VERSION_PROPERTY:
            _VERSIONS_USED.setdefault(report.nodeid, set()).add(value)
    if report.when == "call" or report.outcome != "passed":
        _OUTCOMES.setdefault(report.nodeid, set()).add(report.outcome)


def pytest_terminal_summary(terminalreporter):
    """One line per real PostgreSQL version: how many tests ran against it, and how they ended."""
    if not _VERSIONS_USED:
        return
    counts = {}
    for nodeid, versions in _VERSIONS_USED.items():
        outcomes = _OUTCOMES.get(nodeid, {"not run"})
        outcome = "failed" if "failed" in outcomes else sorted(outcomes)[0]
        for version in versions:
            counts.setdefault(version, {}).setdefault(outcome, 0)
            counts[version][outcome] += 1
    terminalreporter.write_sep("-", "tests per real PostgreSQL server")
    for version in sorted(counts, key=lambda v: [int(x) for x in v.split(".")]):
        terminalreporter.write_line("PostgreSQL %-6s %s" % (version, ", ".join(
            "%d %s" % (n, outcome) for outcome, n in sorted(counts[version].items()))))


class Names(object):
    """Per-test unique names; remembers them so teardown can drop what exists."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self.made = []

    def __call__(self, base):
        name = "%s_%s" % (base, self.tag)
        self.made.append(name)
        return name


def _drop_everything_named(server, tag):
    conn = server.connect()
    cur = conn.cursor()
    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND (usename LIKE %s OR datname LIKE %s)",
                ("%" + tag + "%", "%" + tag + "%"))
    cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", ("%" + tag + "%",))
    for (db,) in cur.fetchall():
        cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % psycopg2.extensions.quote_ident(db, cur))
    cur.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY rolname", ("%" + tag + "%",))
    roles = [r for (r,) in cur.fetchall()]
    for db in ("postgres",):
        for role in roles:
            cur.execute("DROP OWNED BY %s CASCADE" % psycopg2.extensions.quote_ident(role, cur))
    for role in roles:
        cur.execute("DROP ROLE IF EXISTS %s" % psycopg2.extensions.quote_ident(role, cur))
    conn.close()


@pytest.fixture
def names(request, _server_pool):
    maker = Names()
    yield maker
    for server in list(_server_pool.servers.values()):
        _drop_everything_named(server, maker.tag)


def _module_path(name):
    """plugins/modules/NAME.py of this collection, or for "namespace.collection.module" that
    module from the venv's ansible_collections (e.g. community.postgresql.postgresql_membership)."""
    if "." not in name:
        return REPO / "plugins" / "modules" / (name + ".py")
    namespace, collection, module = name.split(".")
    import ansible_collections
    for root in ansible_collections.__path__:
        path = Path(root) / namespace / collection / "plugins" / "modules" / (module + ".py")
        if path.is_file():
            return path
    raise AssertionError("module %s is not installed in this venv" % name)


@pytest.fixture(scope="session")
def run_module():
    """run_module(name, args, check=False, diff=False) -> the module's JSON result.

    Runs plugins/modules/NAME.py the way Ansible does (arguments as JSON), with the
    collection importable through the venv's ansible_collections link. A dotted NAME
    (community.postgresql.postgresql_membership) runs that collection's module instead.
    """
    def _run(name, args, check=False, diff=False, timeout=120):
        payload = dict(args)
        payload["_ansible_check_mode"] = check
        payload["_ansible_diff"] = diff
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
        try:
            proc = subprocess.run([sys.executable, str(_module_path(name)),
                                   handle.name], capture_output=True, text=True, timeout=timeout,
                                  check=False)
        finally:
            os.unlink(handle.name)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("module %s printed no JSON (rc=%s):\n%s\n%s"
                                 % (name, proc.returncode, proc.stdout, proc.stderr))
        result.setdefault("failed", proc.returncode != 0 and not result.get("failed") is False)
        return result
    return _run


@pytest.fixture(scope="session")
def ansible_playbook():
    """ansible_playbook(playbook, inventory_text=None, extra_vars=None, check=False, diff=False)
    -> CompletedProcess. Runs the venv's ansible-playbook with the venv's Python as interpreter."""
    bindir = Path(sys.executable).parent

    def _run(playbook, extra_vars=None, inventory=None, check=False, diff=False, env=None, timeout=600,
             args=()):
        cmd = [str(bindir / "ansible-playbook"), str(playbook)]
        if inventory:
            cmd += ["-i", str(inventory)]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        cmd += list(args)
        run_env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, LC_ALL="C.UTF-8",
                       ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        run_env.update(env or {})
        return subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=timeout, cwd=str(REPO),
                              check=False)
    return _run


# Managed PostgreSQL: the admin is no superuser. Shapes from the providers' documentation
# (docs/managed-postgresql.md): a LOGIN CREATEROLE CREATEDB role (Azure adds REPLICATION),
# member of a provider group that holds predefined roles WITH ADMIN OPTION.
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


@pytest.fixture
def managed_admin(names):
    """managed_admin(server, shape='rds') -> the name of a new non-superuser admin login on
    SERVER, shaped like Amazon RDS/Aurora's master user ('rds'), Cloud SQL's ('cloudsql') or
    Azure Flexible Server's ('azure'); dropped with everything else named by the test."""
    def make(server, shape="rds", group_grants=MANAGED_GROUP_GRANTS):
        return create_managed_admin(server, names("%s_admin" % shape), shape, group_grants)
    return make
