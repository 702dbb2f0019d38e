"""No function in plugins/ is over 100 lines (docs/maintaining.md).

A function is counted from its ``def`` line to its last line (docstring and comments
included); methods and nested functions count on their own. A long function is split into
named steps, in the shape every action follows: read the facts, plan from them (pure,
unit-tested without a server), then apply the plan.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
PLUGINS = REPO / "plugins"
MAX_LINES = 100

# Known exceptions, to be removed: file (relative to plugins/) -> names of the functions allowed
# to stay over MAX_LINES for now (none left: Fence.run is split into its steps);
# test_known_exceptions_are_still_needed fails for an entry that is no longer needed.
KNOWN_LONG_FUNCTIONS = {}


def plugin_files():
    return sorted(p.relative_to(PLUGINS).as_posix() for p in PLUGINS.rglob("*.py"))


def functions_of(source):
    """[(qualified name, lines, first line)] of every function in SOURCE (Python text), methods
    and nested functions included (``Class.method``, ``outer.inner``)."""
    found = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                found.append((name, child.end_lineno - child.lineno + 1, child.lineno))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def long_functions(path):
    return [(name, lines, line) for name, lines, line in functions_of((PLUGINS / path).read_text())
            if lines > MAX_LINES]


@pytest.mark.parametrize("path", plugin_files())
def test_no_function_is_over_100_lines(path):
    allowed = KNOWN_LONG_FUNCTIONS.get(path, set())
    too_long = ["%s (line %d): %d lines" % (name, line, lines)
                for name, lines, line in long_functions(path) if name not in allowed]
    assert not too_long, ("plugins/%s: over %d lines; split into named steps (read, pure plan, apply): %s"
                          % (path, MAX_LINES, "; ".join(too_long)))


def test_known_exceptions_are_still_needed():
    stale = []
    for path, names in sorted(KNOWN_LONG_FUNCTIONS.items()):
        still_long = set(name for name, lines, line in long_functions(path)) if (PLUGINS / path).is_file() else set()
        stale += ["plugins/%s: %s" % (path, name) for name in sorted(names - still_long)]
    assert not stale, ("no longer over %d lines; delete from KNOWN_LONG_FUNCTIONS: %s"
                       % (MAX_LINES, "; ".join(stale)))


def test_the_counting_sees_methods_and_nested_functions():
    source = "class A(object):\n    def m(self):\n        def inner():\n            pass\n        return 1\n"
    assert functions_of(source) == [("A.m", 4, 2), ("A.m.inner", 2, 3)]
