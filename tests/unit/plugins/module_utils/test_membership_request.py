"""Pure helpers of module_utils/membership/run.py (the membership module's logic): how
upstream-style arguments become grants and how statements become upstream's granted/revoked
dicts. The module itself is not imported."""

from ansible_collections.dataplane.postgresql.plugins.module_utils.membership.run import (
    CONSTRAINTS,
    argument_spec,
    by_group,
    diff_view,
    names_to_check,
    request_problems,
    requested_grants,
    requested_roles,
    skipped_roles,
    upstream_grants,
    upstream_view,
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
    assert by_group(actions, ("grant", "revoke_admin"), ["g1", "g2"]) == {"g1": ["a"], "g2": [], "g3": ["c"]}
    assert by_group(actions, ("revoke",)) == {"g2": ["b"]}


def test_upstream_options_and_aliases_are_accepted():
    spec = argument_spec()
    assert set(spec["groups"]["aliases"]) >= {"group", "source_role"}
    assert set(spec["target_roles"]["aliases"]) >= {"target_role", "user", "users"}
    assert "db" in spec["login_db"]["aliases"]
    assert spec["state"]["choices"] == ["present", "absent", "exact"]
    assert spec["fail_on_role"]["default"] is True and spec["trust_input"]["default"] is True
    assert spec["session_role"]["type"] == "str"


def test_grants_suboptions_mirror_the_top_level_options():
    spec = argument_spec()
    sub = spec["grants"]["options"]
    for name in ("inherit_option", "set_option", "admin_option", "granted_by"):
        assert sub[name]["type"] == spec[name]["type"] and "default" not in sub[name]
    assert sub["group"]["required"] is True and sub["target_role"]["required"] is True
    assert sub["state"]["choices"] == ["present", "absent"]
    assert ["groups", "grants"] in CONSTRAINTS["mutually_exclusive"]
    assert CONSTRAINTS["required_by"] == {"groups": "target_roles"}
    assert ["groups", "memberships"] in CONSTRAINTS["mutually_exclusive"]
    assert CONSTRAINTS["required_one_of"] == [["groups", "grants", "memberships"]]


def test_request_problems_null_lists_and_exact_with_grants():
    assert request_problems(params(groups=["g"], target_roles=["m"])) == []
    assert request_problems(params(groups=[], target_roles=[])) == []
    found = request_problems(params(groups=None, target_roles=None))
    assert found == ["groups must be a list of role names (an empty list is allowed), not null",
                     "target_roles must be a list of role names (an empty list is allowed), not null"]
    assert request_problems(params(grants=[], state="exact")) == [
        "state=exact works with groups and target_roles, not with grants"]
    assert request_problems(params(grants=[], state="present")) == []


def test_requested_roles_keep_order_strip_and_with_grants_name_each_once():
    p = params(groups=[" g2", "g1"], target_roles=["b ", "a", "a"])
    assert requested_roles(p, requested_grants(p)) == (["g2", "g1"], ["b", "a", "a"])
    p = params(grants=[dict(group="g", target_role="a"), dict(group="g", target_role="b"),
                       dict(group="h", target_role="a")])
    assert requested_roles(p, requested_grants(p)) == (["g", "h"], ["a", "b"])


def test_upstream_view_per_state():
    actions = [("g1", "a", "grant"), ("g2", "b", "revoke")]
    assert upstream_view("present", False, actions, ["g1", "g3"]) == {"granted": {"g1": ["a"], "g3": []}}
    assert upstream_view("absent", False, actions, ["g2", "g3"]) == {"revoked": {"g2": ["b"], "g3": []}}
    both = {"granted": {"g1": ["a"]}, "revoked": {"g2": ["b"]}}
    # community.postgresql 5.0: exact lists every requested group in granted
    expected = {"granted": {"g1": ["a"], "g3": []}, "revoked": {"g2": ["b"]}}
    assert upstream_view("exact", False, actions, ["g1", "g3"]) == expected
    assert upstream_view("present", True, actions, ["g1", "g3"]) == both


def test_diff_view_one_key_per_membership_one_entry_per_grantor():
    rows = [{"group": "g", "member": "m", "grantor": "postgres", "inherit_option": True, "set_option": False,
             "admin_option": False},
            {"group": "g", "member": "m", "grantor": None, "inherit_option": None, "set_option": None,
             "admin_option": True}]
    assert diff_view(rows) == {"m in g": {
        "postgres": {"inherit_option": True, "set_option": False, "admin_option": False},
        "": {"inherit_option": None, "set_option": None, "admin_option": True}}}


def test_names_to_check_every_name_the_request_carries():
    assert names_to_check(params(groups=["g"], target_roles=["m"], granted_by="x", session_role="s")) == [
        "g", "m", "s", "x"]
    assert names_to_check(params(grants=[dict(group="g", target_role="m", granted_by=None)])) == ["g", "m"]


def test_skipped_roles_are_the_missing_names_of_dropped_grants():
    result = {"missing_roles": ["ghost", "nobody", "grantor"],
              "skipped": [{"group": "ghost", "target_role": "m"}, {"group": "g", "target_role": "nobody"}]}
    assert skipped_roles(result) == ["ghost", "nobody"]


def test_memberships_rows_fall_back_to_top_level_target_roles_and_options():
    rows = [dict(groups=["g1", " g2"]), dict(groups=["h"], target_roles=["c"], granted_by="team", set_option=False)]
    p = params(memberships=rows, target_roles=["a", "b"], inherit_option=False)
    assert request_problems(p) == []
    grants = requested_grants(p)
    assert [(g["group"], g["target_role"], g["granted_by"], g["inherit_option"], g["set_option"]) for g in grants] == [
        ("g1", "a", None, False, None), ("g2", "a", None, False, None),
        ("g1", "b", None, False, None), ("g2", "b", None, False, None),
        ("h", "c", "team", False, False)]
    assert requested_roles(p, grants) == (["g1", "g2", "h"], ["a", "b", "c"])


def test_memberships_request_problems():
    assert request_problems(params(memberships=[dict(groups=["g"])])) == [
        "memberships[0] has no target_roles, and there is no top-level target_roles to fall back on"]
    assert "needs target_roles" in request_problems(params(memberships=[], state="exact"))[0]
    assert request_problems(params(memberships=[], state="exact", target_roles=["a"])) == []
    [dup] = request_problems(params(memberships=[dict(groups=["g"]), dict(groups=["g", "h"])], target_roles=["a"]))
    assert dup.startswith('memberships[0] and memberships[1] both grant "g" to "a"')
    # the same pair under another grantor is another grant
    assert request_problems(params(memberships=[dict(groups=["g"]), dict(groups=["g"], granted_by="team")],
                                   target_roles=["a"])) == []


def test_upstream_grants_and_effective_options():
    rows = [{"group": "g", "member": "m", "grantor": "postgres", "inherit_option": False, "set_option": True,
             "admin_option": False},
            {"group": "g", "member": "m", "grantor": "other", "inherit_option": True, "set_option": False,
             "admin_option": False}]
    grants, effective = upstream_grants(rows, [("g", "m"), ("g", "x")], 160000)
    assert grants == {"g": {"m": [
        {"grantor": "other", "admin_option": False, "inherit_option": True, "set_option": False},
        {"grantor": "postgres", "admin_option": False, "inherit_option": False, "set_option": True}]}}
    assert effective == {"g": {"m": {"admin_option": False, "inherit_option": True, "set_option": True}}}
    grants, effective = upstream_grants(rows[:1], [("g", "m")], 150000)
    assert grants == {"g": {"m": [{"grantor": "postgres", "admin_option": False}]}}
    assert effective == {"g": {"m": {"admin_option": False}}}
