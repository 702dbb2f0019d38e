"""The ha suite: a real Patroni cluster per test (tests/support/patroni.py).

The fixtures of tests/conftest.py (``ansible_playbook`` among them) apply here too. This file
only lets a fixture know how its test ended, so a failed test prints the cluster's logs.
"""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
