"""The options the roles share are defined once (roles/common/meta/shared_options.yml), and every
role's meta/argument_specs.yml agrees with that definition (scripts/role_specs.py writes them)."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "role_specs.py"
ROLES = ("audit", "common", "deployments", "failover")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.fixture(scope="module")
def role_specs():
    spec = importlib.util.spec_from_file_location("dataplane_role_specs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def options_of(root, role, entry):
    data = yaml.load((Path(root) / "roles" / role / "meta" / "argument_specs.yml").read_text(), Loader=LOADER)
    return data["argument_specs"][entry]["options"]


def test_the_definition_is_complete(role_specs):
    data = role_specs.source(REPO)
    assert len(data["options"]) >= 20
    for name, option in data["options"].items():
        assert name.startswith("dataplane_"), name
        assert option.get("description") and option.get("type"), name
        assert not set(option) - set(role_specs.KEY_ORDER), (name, sorted(option))
    assert set(data["roles"]) == set(ROLES) - {"common"}
    for role, entry in data["roles"].items():
        assert set((entry or {}).get("without") or ()) <= set(data["options"]), role
    assert role_specs.roles_with_specs(REPO) == sorted(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_spec_of_a_shared_option_is_its_definition(role_specs, role):
    """Field by field: description, type, elements, choices, default, no_log, aliases."""
    data = role_specs.source(REPO)
    entry = "defaults" if role == "common" else "main"
    options = options_of(REPO, role, entry)
    wanted = role_specs.shared_names(data, role)
    assert wanted, role
    for name in wanted:
        assert name in options, "%s: shared option %s is missing" % (role, name)
        for key in role_specs.COMPARED:
            assert options[name].get(key) == data["options"][name].get(key), (role, name, key)
    # a shared option the role does not take is not listed either
    assert not (set(options) & set(data["options"])) - set(wanted), role


def test_no_role_differs_and_the_files_are_what_the_script_writes(role_specs):
    assert role_specs.differences(REPO) == []
    assert role_specs.stale(REPO) == [], "run .venv/bin/python scripts/role_specs.py"


@pytest.fixture
def copy(tmp_path):
    """A copy of the roles, to break."""
    shutil.copytree(str(REPO / "roles"), str(tmp_path / "roles"))
    return tmp_path


def _edit(root, role, edit):
    path = root / "roles" / role / "meta" / "argument_specs.yml"
    data = yaml.load(path.read_text(), Loader=LOADER)
    edit(data["argument_specs"]["defaults" if role == "common" else "main"]["options"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("role, option, key, value", [
    ("failover", "dataplane_pg_port", "default", 5433),
    ("audit", "dataplane_pg_ssl_mode", "choices", ["disable", "require"]),
    ("deployments", "dataplane_fence_helper_schema", "description", "Somewhere else."),
    ("common", "dataplane_planes", "type", "str"),
    ("failover", "dataplane_pg_user", "aliases", ["dataplane_login"]),
    ("audit", "dataplane_pg_password", "no_log", False),
])
def test_a_role_that_differs_from_the_definition_is_named(role_specs, copy, role, option, key, value):
    def edit(options):
        options[option][key] = value
    _edit(copy, role, edit)
    problems = role_specs.differences(copy)
    assert len(problems) == 1 and problems[0].startswith("%s (" % role) and "%s.%s" % (option, key) in problems[0], \
        problems
    assert [p.parent.parent.name for p in role_specs.stale(copy)] == [role]


def test_a_missing_or_an_extra_shared_option_is_named(role_specs, copy):
    _edit(copy, "audit", lambda options: options.pop("dataplane_report_dir"))
    _edit(copy, "failover", lambda options: options.update(
        dataplane_fence_helper_owner_role=role_specs.source(copy)["options"]["dataplane_fence_helper_owner_role"]))
    assert role_specs.differences(copy) == [
        "audit (main): shared option dataplane_report_dir is missing",
        "failover (main): lists shared option dataplane_fence_helper_owner_role, which the role does not take"]


def test_the_script_repairs_a_role_and_keeps_its_own_options(role_specs, copy):
    own_before = dict((k, v) for k, v in options_of(copy, "failover", "main").items()
                      if k not in role_specs.source(copy)["options"])
    _edit(copy, "failover", lambda options: options["dataplane_pg_port"].update(default=1))
    path = role_specs.spec_path(copy, "failover")
    path.write_text(role_specs.render(role_specs.generate(copy, "failover")))
    assert role_specs.differences(copy) == []
    after = options_of(copy, "failover", "main")
    assert dict((k, v) for k, v in after.items() if k in own_before) == own_before
    assert list(after)[:len(own_before)] == list(own_before)  # the role's own options first


def test_the_deprecated_names_point_at_an_option(role_specs):
    """Each deprecated variable names its replacement, an option of the roles that read it."""
    data = role_specs.source(REPO)
    assert data["deprecated"]
    for old, entry in data["deprecated"].items():
        assert str(entry["version"]) == "1.0.0", old
        for role in entry["roles"]:
            options = options_of(REPO, role, "main")
            assert entry["replacement"] in options, (old, role)
            assert old not in options, (old, role)  # documented as deprecated, not as an option
        if entry.get("values"):
            choices = [o for r in entry["roles"] for o in [options_of(REPO, r, "main")[entry["replacement"]]]]
            for value in entry["values"].values():
                assert all(value in c["choices"] for c in choices), (old, value)
