"""The shape of plugins/module_utils, checked from the files (docs/architecture.md).

Layers, each importing only from the ones before it:

    base  <-  model  <-  server  <-  one package per action (provision, fence, audit, membership,
                                     terminate, helper)

No action package imports another; every module in plugins/modules imports its action's entry
point (``<action>/run.py``) and nothing else of module_utils; module_utils imports its own files
relatively; no two files import each other, even through others; the fence module ships at most
45% of module_utils' lines.
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
UTILS = REPO / "plugins" / "module_utils"
MODULES = REPO / "plugins" / "modules"
PREFIX = "ansible_collections.dataplane.postgresql.plugins.module_utils"
LAYERS = {"base": 0, "model": 1, "server": 2}
ACTIONS = ("provision", "fence", "audit", "membership", "terminate", "helper")
FENCE_CLOSURE_LIMIT = 0.45


def utils_files():
    return sorted(p for p in UTILS.rglob("*.py"))


def dotted(path):
    """plugins/module_utils/fence/run.py -> 'fence.run'; a package's __init__ -> 'fence'."""
    parts = list(path.relative_to(UTILS).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name):
    base = UTILS.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path):
    """[(imported module_utils name, line, absolute?)] for every import in PATH, nested ones too
    (Ansible packs those as well)."""
    here = dotted(path).split(".") if UTILS in path.parents else []
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                stem = ".".join(base + ([node.module] if node.module else []))
                absolute = False
            elif node.module and (node.module + ".").startswith(PREFIX + "."):
                stem = node.module[len(PREFIX) + 1:] if node.module != PREFIX else ""
                absolute = True
            else:
                continue
            for alias in node.names:
                candidate = (stem + "." + alias.name).strip(".")
                found.append((candidate if _exists(candidate) else stem, node.lineno, absolute))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PREFIX + "."):
                    found.append((alias.name[len(PREFIX) + 1:], node.lineno, True))
    return found


def layer(name):
    top = name.split(".", 1)[0]
    if top in LAYERS:
        return LAYERS[top]
    assert top in ACTIONS, "%s is in no layer: add its package to LAYERS or ACTIONS" % name
    return 3


def graph():
    return dict((dotted(p), set(n for n, line, a in imports_of(p) if n)) for p in utils_files())


def closure(names, edges):
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(edges.get(name, ()))
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # packages' __init__
    return seen


def lines_of(name):
    base = UTILS.joinpath(*name.split("."))
    path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    return path.read_text().count("\n") if path.is_file() else 0


def test_every_file_is_in_a_layer_and_no_flat_file_is_left():
    assert [p.name for p in UTILS.glob("*.py")] == [], "module_utils files live in packages"
    for path in utils_files():
        layer(dotted(path) or "base")


@pytest.mark.parametrize("path", utils_files(), ids=lambda p: dotted(p) or "__init__")
def test_imports_follow_the_layers(path):
    me = dotted(path)
    for name, line, absolute in imports_of(path):
        where = "%s:%d imports %s" % (path.relative_to(REPO), line, name)
        assert not absolute, where + " by its absolute name: module_utils imports its own files relatively"
        assert layer(name) <= layer(me), where + ": against the direction base <- model <- server <- actions"
        if layer(me) == 3 and layer(name) == 3:
            assert name.split(".", 1)[0] == me.split(".", 1)[0], where + ": action packages never import each other"


def test_no_two_files_import_each_other():
    edges = graph()
    for name in edges:
        others = closure(edges[name], edges) - {name}
        assert name not in closure(edges[name], edges), "%s imports itself through %s" % (
            name, sorted(n for n in others if name in closure(edges.get(n, ()), edges)))


@pytest.mark.parametrize("module", sorted(p.stem for p in MODULES.glob("*.py") if p.stem != "__init__"))
def test_a_module_imports_its_action_entry_point_only(module):
    names = set(n for n, line, a in imports_of(MODULES / (module + ".py")))
    assert len(names) == 1, "%s imports %s" % (module, sorted(names))
    (name,) = names
    assert name.split(".", 1)[0] in ACTIONS and name.endswith(".run"), "%s imports %s" % (module, name)


def test_the_fence_module_ships_at_most_45_percent_of_module_utils():
    edges = graph()
    entry = set(n for n, line, a in imports_of(MODULES / "fence.py"))
    shipped = sum(lines_of(n) for n in closure(entry, edges))
    total = sum(p.read_text().count("\n") for p in utils_files())
    assert 0 < shipped <= FENCE_CLOSURE_LIMIT * total, "fence ships %d of %d lines (%.0f%%)" % (
        shipped, total, 100.0 * shipped / total)
    # the measure sees what it must: the fence's own code and the sessions it terminates
    assert {"fence.run", "fence.plan", "server.sessions", "base.database"} <= closure(entry, edges)


def test_the_flat_0_2_import_paths_still_work_through_the_routing(tmp_path):
    """meta/runtime.yml redirects the 0.2 names; a module using them still runs (and Ansible
    prints the deprecation)."""
    library = tmp_path / "library"
    library.mkdir()
    (library / "old_paths_probe.py").write_text(
        "from ansible.module_utils.basic import AnsibleModule\n"
        "from %s.fence_runner import run_fence\n"
        "from %s.fence_helper import DEFAULT_SCHEMA\n"
        "module = AnsibleModule(argument_spec={})\n"
        "module.exit_json(changed=False, where=run_fence.__module__, schema=DEFAULT_SCHEMA)\n" % (PREFIX, PREFIX))
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    env = dict(os.environ, ANSIBLE_LIBRARY=str(library), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0")
    run = subprocess.run([ansible, "localhost", "-c", "local", "-m", "old_paths_probe"], cwd=str(tmp_path),
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"where": "%s.fence.run"' % PREFIX in run.stdout and '"schema": "dataplane_fence"' in run.stdout
    assert "fence_runner has been removed (use dataplane.postgresql.plugins.module_utils.fence.run)" in \
        " ".join((run.stdout + run.stderr).split())
