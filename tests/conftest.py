"""The fixtures and hooks of every suite live in tests/support/fixtures.py (one home for test
support); pytest finds them here by name. Test files never import this file, nor each other:
shared code goes to tests/support (tests/unit/test_test_layout.py checks that)."""

# pylint: disable=unused-import
from tests.support.fixtures import (  # noqa: F401
    _server_pool, ansible_playbook, env, managed_admin, names, pg, pg15, pg16, pg17, pg18, pg_server,
    pytest_runtest_logreport, pytest_runtest_makereport, pytest_terminal_summary, run_module, two_deployments)
