"""The PostgreSQL versions the tests run against, and ``on(...)`` to run a test that takes the
``pg`` fixture on some of them only.

Module-level tests that exercise version-dependent SQL take ``pg`` and run on every supported
version. A playbook end-to-end test runs on every version where the version matters to it and
once where it does not; docs/testing.md ("Which PostgreSQL versions a test runs on") lists
each and says why."""

import pytest

SUPPORTED_VERSIONS = (16, 17, 18)
TOO_OLD_VERSION = 15


def on(*versions):
    """Run the decorated test (which takes ``pg``, directly or through a fixture) on VERSIONS
    only, with the ids pg16, pg17, pg18 as ``pg`` gives them."""
    assert versions and all(v in SUPPORTED_VERSIONS for v in versions), versions
    return pytest.mark.parametrize("pg", versions, indirect=True, ids=["pg%d" % v for v in versions])
