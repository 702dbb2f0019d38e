"""One name per concept in the modules' options, and the old names as (deprecated) aliases.

The modules' argument specs (each module's ``argument_spec()``) are validated here the way
AnsibleModule validates a task's arguments, without running a module or a server: an old name
lands on the new option, with a deprecation for 1.0.0 when it is a deprecated alias.
"""

import importlib

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

MODULES = ("deployment_audit", "deployment_setup", "fence", "fence_helper", "membership", "terminate_sessions")
COLLECTION = "dataplane.postgresql"

# module -> arguments its required options need
REQUIRED = {
    "deployment_audit": {"deployments": []},
    "deployment_setup": {"deployments": []},
    "fence": {"deployments": []},
    "terminate_sessions": {"roles": ["r"]},
}

# (module, old name, one name now, a value): deprecated aliases, removed in 1.0.0
DEPRECATED = [
    ("fence", "parity", "parity_policy", "warn"),
    ("deployment_setup", "fence_helper_schema", "helper_schema", "ops_fence"),
    ("deployment_setup", "fence_helper_owner_role", "helper_owner_role", "ops_signaler"),
]

# (module, alias, option): aliases that stay - the contract fixes fence_helper's ``schema`` and
# ``owner_role``, and the names the other modules use work there too
ALIASES = [
    ("fence_helper", "helper_schema", "schema", "ops_fence"),
    ("fence_helper", "helper_owner_role", "owner_role", "ops_signaler"),
]


def spec_of(module):
    if module == "membership":
        return None  # no fence helper or parity option; its names follow community.postgresql
    return importlib.import_module("ansible_collections.dataplane.postgresql.plugins.modules." + module).argument_spec()


def validate(module, args):
    params = dict(REQUIRED.get(module, {}))
    params.update(args)
    result = ArgumentSpecValidator(spec_of(module)).validate(params)
    assert result.error_messages == [], result.error_messages
    return result


@pytest.mark.parametrize("module, old, new, value", DEPRECATED, ids=["%s-%s" % (m, o) for m, o, _n, _v in DEPRECATED])
def test_an_old_option_name_is_a_deprecated_alias_of_the_one_name(module, old, new, value):
    result = validate(module, {old: value})
    assert result.validated_parameters[new] == value
    assert result._deprecations == [{  # pylint: disable=protected-access
        "msg": "Alias '%s' is deprecated. See the module docs for more information" % old,
        "version": "1.0.0", "date": None, "collection_name": COLLECTION}]
    # the one name: the same value, no deprecation
    result = validate(module, {new: value})
    assert result.validated_parameters[new] == value
    assert result._deprecations == []  # pylint: disable=protected-access


@pytest.mark.parametrize("module, alias, option, value", ALIASES, ids=["%s-%s" % (m, a) for m, a, _o, _v in ALIASES])
def test_the_other_modules_names_are_plain_aliases_in_fence_helper(module, alias, option, value):
    result = validate(module, {alias: value})
    assert result.validated_parameters[option] == value
    assert result._deprecations == []  # pylint: disable=protected-access


def test_the_contract_names_are_the_options():
    """contract.md fixes these option names: they are the options, never aliases."""
    spec = spec_of("fence_helper")
    assert {"killer_roles", "schema", "owner_role", "state"} <= set(spec)
    spec = spec_of("fence")
    assert {"deployments", "mode", "drain_timeout"} <= set(spec)
    assert set(spec["deployments"]["options"]) >= {
        "name", "database", "source_role", "destination_role", "killer_role"}
    assert {"roles", "databases", "killer_role", "wait_timeout"} <= set(spec_of("terminate_sessions"))


def _names(option, spec):
    return [option] + list(spec.get("aliases") or [])


@pytest.mark.parametrize("module", [m for m in MODULES if m != "membership"])
def test_one_name_per_concept(module):
    """The fence helper's schema is helper_schema and its owner helper_owner_role in every module
    (fence_helper: as aliases of the contract's names); parity is a boolean (whether the audit
    checks it) and parity_policy the fence's ignore/warn/refuse."""
    spec = spec_of(module)
    for option, option_spec in spec.items():
        default = option_spec.get("default")
        if default == "dataplane_fence":
            assert "helper_schema" in _names(option, option_spec), (module, option)
        if default == "dataplane_fence_signaler":
            assert "helper_owner_role" in _names(option, option_spec), (module, option)
        if option == "parity":
            assert option_spec["type"] == "bool", module
        if "parity" in _names(option, option_spec) and option != "parity":
            assert option == "parity_policy" and option_spec["choices"] == ["ignore", "warn", "refuse"]
        if option == "parity_policy":
            assert option_spec["type"] == "str" and option_spec["choices"] == ["ignore", "warn", "refuse"]
        # owner_role is fence_helper's (the contract's) name for the helper's owner; anywhere else
        # at the top level it would be mistaken for a Deployment's (database) owner role
        if option == "owner_role":
            assert module == "fence_helper"
    every = set(n for option, option_spec in spec.items() for n in _names(option, option_spec))
    assert not every & {"fence_helper_schema", "fence_helper_owner_role"} or module == "deployment_setup"


def test_deprecated_aliases_are_documented_as_such():
    """Each deprecated alias is listed in the option's documented aliases, and its description says
    that it goes in 1.0.0."""
    import yaml
    for module, old, new, _value in DEPRECATED:
        doc = yaml.safe_load(importlib.import_module(
            "ansible_collections.dataplane.postgresql.plugins.modules." + module).DOCUMENTATION)
        option = doc["options"][new]
        assert old in option["aliases"], (module, old)
        text = " ".join(option["description"]) if isinstance(option["description"], list) else option["description"]
        assert "C(%s) is deprecated and will be removed in version 1.0.0" % old in text, (module, old)
