# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of PostgreSQL identifiers before they reach any statement.

Names are never interpolated into SQL: statements quote them with ``sql.Identifier``.
These checks exist so that a name PostgreSQL would silently truncate, or refuse only
after earlier statements already ran, fails before anything changes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

MAX_IDENTIFIER_BYTES = 63

# Role names PostgreSQL reserves (CREATE ROLE refuses them, GRANT reads them as keywords).
RESERVED_ROLE_NAMES = frozenset(["public", "none", "current_user", "current_role", "session_user"])


def identifier_problem(name, kind="name"):
    """Return why NAME cannot be used as an identifier, or None if it can."""
    if not isinstance(name, str):
        return "%s must be a string, got %r" % (kind, name)
    if name == "":
        return "%s must not be empty" % kind
    if "\x00" in name:
        return "%s %r contains a NUL character" % (kind, name)
    size = len(name.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        return ("%s %r is %d bytes long; PostgreSQL would truncate it to %d bytes"
                % (kind, name, size, MAX_IDENTIFIER_BYTES))
    return None


def role_name_problem(name, kind="role name"):
    """Return why NAME cannot be a role name, or None if it can."""
    problem = identifier_problem(name, kind)
    if problem:
        return problem
    if name.lower().startswith("pg_"):
        return "%s %r starts with 'pg_', which PostgreSQL reserves for system roles" % (kind, name)
    if name.lower() in RESERVED_ROLE_NAMES:
        return "%s %r is reserved by PostgreSQL" % (kind, name)
    return None


def name_listing(names, limit):
    """NAMES for a message: the first LIMIT joined with commas, then "and N more"."""
    names = list(names)
    if len(names) > limit:
        return "%s and %d more" % (", ".join(names[:limit]), len(names) - limit)
    return ", ".join(names)


def collect_problems(checks):
    """Run (checker, name, kind) triples and return the list of problems found."""
    problems = []
    for checker, name, kind in checks:
        problem = checker(name, kind)
        if problem:
            problems.append(problem)
    return problems
