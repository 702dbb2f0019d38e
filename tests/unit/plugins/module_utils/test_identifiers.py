"""module_utils/base/identifiers.py: names refused before any statement, and names in messages."""

from ansible_collections.dataplane.postgresql.plugins.module_utils.base.identifiers import (
    identifier_problem,
    name_listing,
    role_name_problem,
)


def test_identifier_problems():
    assert identifier_problem("Alice-Ops") is None
    assert identifier_problem("a" * 63) is None
    assert "64 bytes" in identifier_problem("a" * 64, "group")
    assert "NUL" in identifier_problem("a\x00b")
    assert identifier_problem("", "schema") == "schema must not be empty"
    assert "must be a string" in identifier_problem(None)
    # bytes, not characters: 32 two-byte characters are 64 bytes
    assert "64 bytes" in identifier_problem("\u00e9" * 32)


def test_role_name_problems():
    assert role_name_problem("dp1_user_a") is None
    assert "starts with 'pg_'" in role_name_problem("PG_x")
    assert "reserved" in role_name_problem("Public")
    assert "64 bytes" in role_name_problem("r" * 64)


def test_name_listing_cuts_after_the_limit():
    assert name_listing([], 3) == ""
    assert name_listing(["a", "b", "c"], 3) == "a, b, c"
    assert name_listing(iter(["a", "b", "c", "d", "e"]), 3) == "a, b, c and 2 more"
