"""The collection's SQL resolves no operator through search_path.

A metadata database is ground that others control: the login roles (through the schema role)
and commander_user (through the owner role) can create operators and functions in its
schemas, and PostgreSQL picks a planted ``public.=(oid, regclass)`` over pg_catalog's
``=(oid, oid)`` for ``oid_column = 'x'::regclass`` (an exact match beats a coercion). Sessions
pin search_path at connect time (module_utils/base/database.py); on top of that, every operator in
the SQL text is written ``OPERATOR(pg_catalog.=)``, so the SQL is safe even where the pin
might not hold (a pooler that drops start-up options). docs/maintaining.md gives the rule.

This test reads every string of plugins/ that is SQL and fails on an operator written bare,
on the constructs that look an operator up by name (IN (...), LIKE, BETWEEN,
IS DISTINCT FROM, JOIN ... USING): write ``x OPERATOR(pg_catalog.=) ANY (ARRAY[...])`` and
an ON clause instead; and on a function called by its bare name (``pg_catalog.unnest``;
a multi-array unnest is ``ROWS FROM (pg_catalog.unnest(a), pg_catalog.unnest(b))``).
"""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "plugins"

# A string is SQL when it starts with one of these keywords (upper case, as the collection
# writes SQL), possibly after an opening parenthesis, or when it names a pg_catalog object.
SQL_START = re.compile(
    r"^\s*\(?\s*(SELECT|WITH|INSERT|UPDATE|DELETE|GRANT|REVOKE|ALTER|CREATE|DROP|COMMENT|SET|RESET|DO|LOCK|"
    r"REASSIGN|SHOW|VALUES|FROM|WHERE|JOIN|LEFT JOIN|AND|OR|ON|UNION|ORDER BY|GROUP BY|CASE|WHEN|THEN|ELSE|"
    r"END|LIMIT|RETURNING|DECLARE|BEGIN|IF|FOR|LOOP|RAISE|RETURN|PERFORM|EXECUTE|EXISTS|NOT|ARRAY)\b")
SQL_HINT = re.compile(r"\bpg_catalog\.|\bpg_roles\b|\bpg_auth_members\b|\bpg_stat_activity\b|\bpg_database\b")

# Removed before looking for operators: what is not an operator of the query.
NOT_OPERATORS = [
    re.compile(r"--[^\n]*"),                               # comments
    re.compile(r"'(?:[^']|'')*'"),                          # string literals
    re.compile(r'"(?:[^"]|"")*"'),                          # quoted identifiers
    re.compile(r"\$[A-Za-z_]*\$"),                          # dollar-quote delimiters
    re.compile(r"OPERATOR\s*\(\s*pg_catalog\.[^)\s]+\s*\)"),  # the qualified form
    re.compile(r"%\([A-Za-z_][A-Za-z_0-9]*\)s|%[sd]|%%"),   # driver and Python placeholders
    re.compile(r"%(?:ROW)?TYPE\b"),                          # PL/pgSQL declarations
    re.compile(r"::|:=|=>"),                                # casts, PL/pgSQL assignment, named arguments
    re.compile(r"\(\s*\*\s*\)|\bSELECT\s+\*|\.\*"),         # count(*), SELECT *, t.*
    re.compile(r"\b(?:SET|RESET)\s+(?:LOCAL\s+)?[A-Za-z_.]+\s*(?:=|TO)"),  # SET name = value
    re.compile(r"(?<![\w)\]])-\s*\d"),                      # a negative number
    re.compile(r"\{[A-Za-z_0-9]*\}"),                       # sql.SQL placeholders
]
OPERATOR_CHARS = re.compile(r"[=<>!~+\-*/|&#^@%]+")
BY_NAME = re.compile(r"\b(?:NOT\s+)?IN\s*\(|\bI?LIKE\b|\bBETWEEN\b|\bIS\s+(?:NOT\s+)?DISTINCT\s+FROM\b|"
                     r"\bUSING\s*\(|\bSIMILAR\s+TO\b")


# Strings left out, each with its reason. The fence helper's function body runs only inside
# the function, which is declared ``SET search_path = pg_catalog, pg_temp`` and lives in the
# helper's database (the admin's, where no tenant can create objects); its text is part of
# the installed helper's version, so rewriting it would force every installation to upgrade.
EXEMPT = {("plugins/module_utils/server/helper.py", "FUNCTION_BODY")}


def _docstring_nodes(tree, path):
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                nodes.add(id(body[0].value))
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            exempt = set((str(path), name) for name in names) & EXEMPT
            if set(names) & {"DOCUMENTATION", "EXAMPLES", "RETURN"} or exempt:
                for sub in ast.walk(node.value):
                    nodes.add(id(sub))
    return nodes


def _strings(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstring_nodes(tree, path.relative_to(REPO))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def sql_strings():
    for path in sorted(PLUGINS.rglob("*.py")):
        for line, text in _strings(path):
            if SQL_START.search(text) or SQL_HINT.search(text):
                yield "%s:%d" % (path.relative_to(REPO), line), text


# A function called by its bare name is resolved through search_path too (a planted
# public.unnest(text[]) beats pg_catalog's polymorphic one). SQL keywords are written in upper
# case, so a lower-case name before "(" is a call, except a column list: an alias's
# ("AS u(a, b)") or a common table expression's ("up(start, grp) AS (").
BARE_CALL = re.compile(r"(?<![\w.\"])([a-z_][a-z0-9_]*)\s*\(")
COLUMN_LIST_AFTER = re.compile(r"\s*\([^()]*\)\s+AS\s*\(")


def bare_calls(text):
    """The functions TEXT calls by a name that search_path would resolve."""
    for pattern in NOT_OPERATORS[:4]:  # comments, literals, quoted identifiers, dollar quotes
        text = pattern.sub(" ", text)
    found = []
    for match in BARE_CALL.finditer(text):
        before = text[:match.start()].rstrip()
        if re.search(r"\bAS$", before) or COLUMN_LIST_AFTER.match(text, match.end(1)):
            continue
        found.append(match.group(1))
    return found


def bare_operators(text):
    """The operators and by-name constructs in TEXT that search_path would resolve."""
    for pattern in NOT_OPERATORS:
        text = pattern.sub(" ", text)
    found = [m.group(0) for m in OPERATOR_CHARS.finditer(text)]
    found += [m.group(0) for m in BY_NAME.finditer(text)]
    return found


def test_the_scanner_finds_sql():
    """The scanner reads the SQL it is meant to keep (it would pass vacuously otherwise)."""
    places = [place for place, dummy in sql_strings()]
    assert len(places) > 100
    for name in ("server/helper.py", "server/helper_install.py", "provision/schema_role.py", "audit/checks.py",
                 "server/memberships.py", "base/database.py"):
        assert any(name in place for place in places), name
    assert all(path in (str(p.relative_to(REPO)) for p in PLUGINS.rglob("*.py")) for path, dummy in EXEMPT)


@pytest.mark.parametrize("text, expected", [
    ("SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = %s", ["="]),
    ("SELECT 1 WHERE a.x <> b.y AND c || d", ["<>", "||"]),
    ("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname IN ('a', 'b')", ["IN ("]),
    ("SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n USING (oid)", ["USING ("]),
    ("SELECT r.rolname LIKE 'x%' FROM pg_catalog.pg_roles r", ["LIKE"]),
    ("SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) %(oid)s", []),
    ("SELECT pg_catalog.count(*), 'a = b', \"we=ird\" FROM pg_catalog.pg_roles -- x = y", []),
    ("SET search_path = pg_catalog, pg_temp", []),
    ("DECLARE v pg_catalog.oid; BEGIN v := -1; END", []),
])
def test_bare_operators(text, expected):
    assert bare_operators(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("SELECT 1 FROM unnest(%s::text[]) AS d", ["unnest"]),
    ("SELECT count(*), pg_catalog.count(*) FROM pg_catalog.pg_roles", ["count"]),
    ("SELECT 1 FROM ROWS FROM (pg_catalog.unnest(%s::text[])) AS u(a, b)", []),
    ("WITH RECURSIVE up(start, grp) AS (SELECT 1, 2) SELECT COALESCE(NULLIF('f(x)', ''), 'y') FROM up", []),
])
def test_bare_calls(text, expected):
    assert bare_calls(text) == expected


def test_no_operator_is_resolved_through_search_path():
    problems = []
    for place, text in sql_strings():
        found = bare_operators(text) + bare_calls(text)
        if found:
            problems.append("%s: %s in %r" % (place, ", ".join(found), text[:200]))
    assert not problems, "SQL with operators resolved through search_path " \
        "(write OPERATOR(pg_catalog.=) and so on, see docs/maintaining.md):\n" + "\n".join(problems)
