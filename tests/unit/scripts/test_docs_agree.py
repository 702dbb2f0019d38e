"""What the README and the AWX example promise agrees with the collection."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def version(text):
    return tuple(int(x) for x in re.search(r"(\d+\.\d+)", text).group(1).split("."))


def test_the_execution_environment_asks_for_the_ansible_core_the_collection_needs():
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    ee = yaml.safe_load((REPO / "examples" / "awx" / "execution-environment.yml").read_text())
    wanted = ee["dependencies"]["ansible_core"]["package_pip"]
    assert wanted.startswith("ansible-core>="), wanted
    assert version(wanted) == version(runtime["requires_ansible"]), (wanted, runtime["requires_ansible"])


def test_the_demo_options_are_documented():
    demo = (REPO / "scripts" / "demo.py").read_text()
    readme = (REPO / "README.md").read_text()
    options = re.findall(r'add_argument\("(--[\w-]+)"', demo)
    assert options, "no option found in scripts/demo.py"
    for option in options:
        assert "`%s`" % option in readme, option


def test_the_readme_has_an_offline_recipe_and_the_shadowing_warning():
    readme = (REPO / "README.md").read_text()
    assert "ansible-galaxy collection download" in readme
    assert "pip download --no-deps \"ansible==" in readme
    assert "An installed copy shadows a checkout" in readme
