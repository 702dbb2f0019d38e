"""The pytest fixtures and hooks of every suite: real PostgreSQL servers started through
scripts/pg.py, per-test names, the module and playbook runners, and the set-ups several test
files share. tests/conftest.py imports them (pytest finds fixtures and hooks by name in a
conftest); test files never import this module or each other.

Servers: one per major version per test session (per pytest-xdist worker), started on first use
and stopped at the end (also when tests fail). Each test gets its own names (``names``) and
whatever it creates under them is dropped afterwards, on the servers it used.

Fixtures
  pg               parametrized over the supported versions (16, 17, 18); a test narrows it
                   with ``@on(17)`` (tests/support/versions.py)
  pg15             the too-old server, for the error path
  pg16, pg17, pg18 one server of that version (for tests that run once: docs/testing.md says which)
  pg_server        factory: pg_server(17) gives that version's server
  names            unique, per-test name maker: names("dp1_user") -> "dp1_user_t3a9f"
  run_module       run one of this collection's modules as Ansible would (tests/support/modules.py)
  ansible_playbook run the venv's ansible-playbook (tests/support/playbooks.py)
  managed_admin    managed_admin(server, shape) -> a non-superuser admin like a cloud provider's
  two_deployments  Deployments a and b set up as the vendor's page says, plus the fence helper
  env              env(server=None, count=2) -> a playbooks.Env (default server: PostgreSQL 16)
"""

import subprocess
import uuid

import psycopg2
import pytest

from tests.support import modules, playbooks
from tests.support.fence import install_helper, make_deployment, setup_deployments
from tests.support.managed import MANAGED_GROUP_GRANTS, create_managed_admin
from tests.support.server import PgServer, scratch_dir
from tests.support.versions import SUPPORTED_VERSIONS, TOO_OLD_VERSION
SERVER_SETTINGS = ["max_connections=400"]


class ServerPool(object):
    """The session's servers, one per major version, started on first use."""

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
    used = request.node.__dict__.setdefault("_dataplane_servers", [])
    if server not in used:
        used.append(server)
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
def pg17(request, _server_pool):
    return _using(request, _server_pool.get(17))


@pytest.fixture
def pg18(request, _server_pool):
    return _using(request, _server_pool.get(18))


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    """Let a fixture know how its test ended (``item.rep_setup``, ``rep_call``): the ha suite's
    cluster prints its logs when the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


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
    for role in roles:
        cur.execute("DROP OWNED BY %s CASCADE" % psycopg2.extensions.quote_ident(role, cur))
    for role in roles:
        cur.execute("DROP ROLE IF EXISTS %s" % psycopg2.extensions.quote_ident(role, cur))
    conn.close()


@pytest.fixture
def names(request, _server_pool):
    """Per-test names; at teardown everything named with its tag is dropped from every server of
    the pool that the test used (the server fixtures note which)."""
    maker = Names()
    yield maker
    for server in request.node.__dict__.get("_dataplane_servers", ()):
        _drop_everything_named(server, maker.tag)


@pytest.fixture(scope="session")
def run_module():
    """run_module(name, args, check=False, diff=False) -> the module's JSON result
    (tests/support/modules.py)."""
    return modules.run_module


@pytest.fixture(scope="session")
def ansible_playbook():
    """ansible_playbook(playbook, extra_vars=None, inventory=None, check=False, diff=False, env=None,
    timeout=600, args=()) -> CompletedProcess (tests/support/playbooks.py)."""
    return playbooks.run_playbook


@pytest.fixture
def managed_admin(names):
    """managed_admin(server, shape='rds') -> the name of a new non-superuser admin login on
    SERVER, shaped like Amazon RDS/Aurora's master user ('rds'), Cloud SQL's ('cloudsql') or
    Azure Flexible Server's ('azure'); dropped with everything else named by the test."""
    def make(server, shape="rds", group_grants=MANAGED_GROUP_GRANTS):
        return create_managed_admin(server, names("%s_admin" % shape), shape, group_grants)
    return make


@pytest.fixture
def two_deployments(pg, names, run_module):
    """Deployments a and b set up as the seed says, with the fence helper; returns
    (commander, [a, b])."""
    commander = names("commander_user")
    deps = [make_deployment(names, "a"), make_deployment(names, "b")]
    setup_deployments(pg, deps, commander)
    install_helper(pg, run_module, [d["killer"] for d in deps])
    return commander, deps


@pytest.fixture
def env(request, names, ansible_playbook, tmp_path):
    """env(server=None, count=2) -> a ``playbooks.Env`` on SERVER (default: PostgreSQL 16) with
    COUNT Deployments and a commander login; its held sessions are closed afterwards."""
    made = []

    def make(server=None, count=2):
        e = playbooks.Env(server or request.getfixturevalue("pg16"), names, ansible_playbook, tmp_path, count)
        made.append(e)
        return e
    yield make
    for e in made:
        e.sessions.close()
