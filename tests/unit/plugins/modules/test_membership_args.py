"""Pure helpers of the membership module: how upstream-style arguments become grants and
how statements become upstream's granted/revoked dicts."""

from ansible_collections.dataplane.postgresql.plugins.modules.membership import (
    _by_group,
    argument_spec,
    requested_grants,
)


def params(**kw):
    base = dict(groups=None, target_roles=None, grants=None, inherit_option=None, set_option=None,
                admin_option=None, granted_by=None, state="present")
    base.update(kw)
    return base


def test_names_are_stripped_and_pairs_unique_group_major():
    grants = requested_grants(params(groups=["g1", " g2", "g1"], target_roles=["a", " b "]))
    assert [(g["group"], g["target_role"]) for g in grants] == [("g1", "a"), ("g1", "b"), ("g2", "a"), ("g2", "b")]


def test_exact_asks_for_present_with_the_options():
    [grant] = requested_grants(params(groups=["g"], target_roles=["m"], state="exact", set_option=False))
    assert grant["state"] == "present" and grant["set_option"] is False


def test_grants_items_are_taken_as_given():
    [grant] = requested_grants(params(grants=[dict(group=" g", target_role="m", state=None)], state="absent"))
    assert grant["group"] == " g" and grant["state"] == "absent"


def test_by_group_seeds_requested_groups_and_lists_each_member_once():
    actions = [("g1", "a", "grant"), ("g1", "a", "grant"), ("g2", "b", "revoke"), ("g3", "c", "revoke_admin")]
    assert _by_group(actions, ("grant", "revoke_admin"), ["g1", "g2"]) == {"g1": ["a"], "g2": [], "g3": ["c"]}
    assert _by_group(actions, ("revoke",)) == {"g2": ["b"]}


def test_upstream_options_and_aliases_are_accepted():
    spec = argument_spec()
    assert set(spec["groups"]["aliases"]) >= {"group", "source_role"}
    assert set(spec["target_roles"]["aliases"]) >= {"target_role", "user", "users"}
    assert "db" in spec["login_db"]["aliases"]
    assert spec["state"]["choices"] == ["present", "absent", "exact"]
    assert spec["fail_on_role"]["default"] is True and spec["trust_input"]["default"] is True
    assert spec["session_role"]["type"] == "str"
