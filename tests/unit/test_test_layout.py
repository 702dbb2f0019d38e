"""One home for test support: no test file imports another test file or a conftest.

Shared servers, records, playbook runs, session holders and fixtures live in tests/support/ and are
imported as ``tests.support...``; the fixtures reach the tests through tests/conftest.py. A test
file that imports another test file (``from test_failover import Env``), a conftest
(``from conftest import PgServer``) or a helper file beside it (``from fence_support import ...``,
found only because pytest puts the test's folder on ``sys.path``) fails this test, and so does
tests/support importing a test file.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def imports(tree):
    """(line, dotted names) of every import in TREE, also inside functions: ``import a.b`` gives
    a.b; ``from a import b, c`` gives a, a.b, a.c; ``from . import x`` gives .x; a call of
    importlib.import_module or __import__ with a literal name gives that name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            joined = [base + ("" if base.endswith(".") or not base else ".") + alias.name for alias in node.names]
            yield node.lineno, ([base] if node.module else []) + joined
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                yield node.lineno, [node.args[0].value]


def problem(path, name):
    """Why importing NAME from the file PATH breaks the rule, or None."""
    parts = [p for p in name.split(".") if p]
    if any(p == "conftest" for p in parts):
        return "imports a conftest (%s): take fixtures by name, helpers from tests.support" % name
    if any(p.startswith("test_") for p in parts):
        return "imports a test file (%s): move what it shares into tests/support" % name
    if name.startswith("."):
        return "relative import %s: import shared code as tests.support.<module>" % name
    if parts[0] == "tests" and len(parts) > 1 and parts[1] != "support":
        return "imports %s: shared code lives in tests/support" % name
    sibling = path.parent / parts[0]
    if parts[0] != "tests" and (sibling.with_suffix(".py").is_file() or (sibling / "__init__.py").is_file()):
        return "imports %s, a file beside it (found through pytest's sys.path): move it into tests/support" % name
    return None


def problems_of(path, source=None):
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    out = []
    for line, dotted in imports(tree):
        found = [why for why in (problem(path, name) for name in dotted) if why]
        if found:  # one line per import statement
            out.append("%s:%d: %s" % (path.relative_to(REPO), line, found[-1]))
    return out


def checked_files():
    """Every test file under tests/, every conftest, and tests/support itself."""
    files = set(TESTS.rglob("test_*.py")) | set(TESTS.rglob("conftest.py")) | set((TESTS / "support").rglob("*.py"))
    return sorted(p for p in files if "output" not in p.relative_to(TESTS).parts)


def test_no_test_file_imports_another_test_file_or_a_conftest():
    files = checked_files()
    # not vacuous: the suites' test files are all here
    assert len([p for p in files if p.name.startswith("test_")]) >= 40, files
    for suite in ("unit", "integration", "airflow", "ha"):
        assert any(p.name.startswith("test_") and p.relative_to(TESTS).parts[0] == suite for p in files), suite
    found = []
    for path in files:
        found.extend(problems_of(path))
    assert found == [], "\n".join(found)


def test_the_check_catches_each_kind_of_import():
    """The checker itself, on sources that break the rule in each way it knows (and one that keeps it)."""
    where = TESTS / "integration" / "test_example.py"
    bad = {
        "from test_failover import Env": "imports a test file",
        "import test_failover": "imports a test file",
        "from tests.integration import test_failover": "imports a test file",
        "from tests.integration.test_failover import Env": "imports a test file",
        "from conftest import PgServer": "imports a conftest",
        "from tests import conftest": "imports a conftest",
        "from .test_failover import Env": "imports a test file",
        "from . import helpers": "relative import",
        "from tests.integration.playbooks import x": "shared code lives in tests/support",
        "import importlib\nimportlib.import_module('test_failover')": "imports a test file",
        "def f():\n    from test_provision import record\n": "imports a test file",
    }
    for source, why in bad.items():
        found = problems_of(where, source)
        assert found and any(why in line for line in found), (source, found)
    assert problems_of(where, "import json\nfrom tests.support.playbooks import Env\nimport psycopg2\n") == []
    # a helper file beside a test file, imported by its bare name
    beside = TESTS / "support" / "test_example.py"
    assert "a file beside it" in problems_of(beside, "from server import PgServer")[0]
