"""Pure planning logic of module_utils/server/memberships.py: current rows + wanted grants -> statements."""

import pytest

from ansible_collections.dataplane.postgresql.plugins.module_utils.server.memberships import (
    effective_options,
    exact_revocations,
    missing_roles_message,
    grant_problems,
    normalize_grant,
    plan_grants,
    predict_rows,
    statement_text,
    summarize,
    unconverged,
)

V15, V16, V18 = 150019, 160015, 180006


def row(group, member, grantor="postgres", inherit=True, set_=True, admin=False):
    return {"group": group, "member": member, "grantor": grantor,
            "inherit_option": inherit, "set_option": set_, "admin_option": admin}


def grant(group, member, **kw):
    return normalize_grant(dict(kw, group=group, target_role=member))


def texts(current, grants, version=V16, acting="postgres", any_grantor=False):
    return [statement_text(s) for s in plan_grants(current, grants, version, acting, any_grantor=any_grantor)]


# --- statements -------------------------------------------------------------------------

def test_new_reference_grant_names_only_requested_options():
    assert texts([], [grant("dp1_user_a", "airflow_conn_killer_a", inherit_option=False, set_option=False)]) == [
        'GRANT "dp1_user_a" TO "airflow_conn_killer_a" WITH INHERIT FALSE, SET FALSE']


def test_new_grant_without_options_is_plain():
    assert texts([], [grant("g", "m")]) == ['GRANT "g" TO "m"']


def test_all_three_options_in_fixed_order_and_granted_by():
    assert texts([], [grant("g", "m", admin_option=True, set_option=True, inherit_option=False, granted_by="Boss-1")],
                 acting="postgres") == ['GRANT "g" TO "m" WITH INHERIT FALSE, SET TRUE, ADMIN TRUE GRANTED BY "Boss-1"']


def test_matching_row_is_a_noop():
    current = [row("g", "m", inherit=False, set_=False)]
    assert texts(current, [grant("g", "m", inherit_option=False, set_option=False, admin_option=False)]) == []


def test_omitted_options_keep_current_values():
    current = [row("g", "m", inherit=True, set_=True, admin=True)]
    assert texts(current, [grant("g", "m")]) == []


def test_drift_changes_only_the_differing_option():
    current = [row("g", "m", inherit=True, set_=False)]
    assert texts(current, [grant("g", "m", inherit_option=False, set_option=False)]) == [
        'GRANT "g" TO "m" WITH INHERIT FALSE']


def test_admin_can_be_lowered_by_grant_on_16():
    current = [row("g", "m", admin=True)]
    assert texts(current, [grant("g", "m", admin_option=False)]) == ['GRANT "g" TO "m" WITH ADMIN FALSE']


def test_other_grantors_rows_do_not_count_as_this_grantors():
    current = [row("g", "m", grantor="g1", inherit=False, set_=False)]
    assert texts(current, [grant("g", "m", inherit_option=False, set_option=False)]) == [
        'GRANT "g" TO "m" WITH INHERIT FALSE, SET FALSE']
    # ... and a grant naming that grantor matches its row
    assert texts(current, [grant("g", "m", inherit_option=False, set_option=False, granted_by="g1")]) == []


def test_acting_grantor_decides_which_row_is_compared():
    current = [row("g", "m", grantor="postgres", inherit=True), row("g", "m", grantor="alice", inherit=False)]
    wanted = [grant("g", "m", inherit_option=False)]
    assert texts(current, wanted, acting="alice") == []
    assert texts(current, wanted, acting="postgres") == ['GRANT "g" TO "m" WITH INHERIT FALSE']


def test_absent_revokes_only_existing_row_of_that_grantor():
    current = [row("g", "m", grantor="g1")]
    assert texts(current, [grant("g", "m", state="absent")]) == []
    assert texts(current, [grant("g", "m", state="absent", granted_by="g1")]) == [
        'REVOKE "g" FROM "m" GRANTED BY "g1"']
    assert texts([row("g", "m")], [grant("g", "m", state="absent")]) == ['REVOKE "g" FROM "m"']


def test_absent_ignores_options():
    assert texts([row("g", "m")], [grant("g", "m", state="absent", inherit_option=False)]) == ['REVOKE "g" FROM "m"']


def test_quoting_of_hostile_but_valid_names():
    assert texts([], [grant('We"ird-Name', "Mixed Case")]) == ['GRANT "We""ird-Name" TO "Mixed Case"']


def test_grants_apply_in_order_and_see_each_other():
    # the second entry is already satisfied by the first: one statement only
    wanted = [grant("g", "m", inherit_option=False), grant("g", "m", inherit_option=False)]
    assert texts([], wanted) == ['GRANT "g" TO "m" WITH INHERIT FALSE']


def test_many_pairs_one_statement_each():
    wanted = [grant("g%d" % i, "m", set_option=False) for i in range(5)]
    current = [row("g0", "m", set_=False), row("g1", "m", set_=True)]
    assert texts(current, wanted) == ['GRANT "g1" TO "m" WITH SET FALSE'] + [
        'GRANT "g%d" TO "m" WITH SET FALSE' % i for i in range(2, 5)]


# --- PostgreSQL 15 ------------------------------------------------------------------------

def test_pg15_plain_membership_and_admin_option_syntax():
    assert texts([], [grant("g", "m", admin_option=True)], version=V15) == ['GRANT "g" TO "m" WITH ADMIN OPTION']
    assert texts([], [grant("g", "m")], version=V15) == ['GRANT "g" TO "m"']
    current = [row("g", "m", grantor="g1", inherit=None, set_=None, admin=True)]
    # one row per pair whoever granted it
    assert texts(current, [grant("g", "m")], version=V15) == []
    assert texts(current, [grant("g", "m", admin_option=False)], version=V15) == [
        'REVOKE ADMIN OPTION FOR "g" FROM "m"']
    assert texts(current, [grant("g", "m", state="absent", granted_by="other")], version=V15) == [
        'REVOKE "g" FROM "m"']


# --- problems -----------------------------------------------------------------------------

def test_no_problems_for_good_input():
    assert grant_problems([grant("Dp1-User", "killer", inherit_option=False, set_option=False)], V16) == []


@pytest.mark.parametrize("bad, needle", [
    ("", "must not be empty"),
    ("a\x00b", "NUL"),
    ("x" * 64, "64 bytes"),
    ("é" * 32, "64 bytes"),
    ("pg_signal_backend", "pg_"),
    ("public", "reserved"),
])
def test_bad_names_are_problems(bad, needle):
    for wanted in (grant(bad, "m"), grant("g", bad), grant("g", "m", granted_by=bad)):
        problems = grant_problems([wanted], V16)
        assert len(problems) == 1 and needle in problems[0], problems


def test_63_bytes_is_fine():
    assert grant_problems([grant("x" * 63, "m")], V16) == []


def test_every_problem_is_listed():
    problems = grant_problems([grant("", "m"), grant("g", "pg_x"), grant("g", "g"),
                               grant("a", "b", state="gone"), grant("c", "d", admin_option="yes")], V16)
    assert len(problems) == 5
    assert any("member of itself" in p for p in problems)
    assert any("state must be" in p for p in problems)
    assert any("admin_option must be" in p for p in problems)


def test_contradicting_entries():
    problems = grant_problems([grant("g", "m", set_option=True), grant("g", "m", set_option=False)], V16)
    assert len(problems) == 1 and "contradicts grants[0]" in problems[0]
    assert grant_problems([grant("g", "m"), grant("g", "m", granted_by="g1", state="absent")], V16) == []


def test_inherit_set_need_16_and_message_names_version():
    wanted = [grant("g", "m", inherit_option=False), grant("g2", "m", set_option=True)]
    [problem] = grant_problems(wanted, V15)
    assert "PostgreSQL 15.19" in problem and "16 or newer" in problem
    assert "g -> m" in problem and "g2 -> m" in problem
    assert grant_problems(wanted, V16) == [] and grant_problems(wanted, V18) == []
    # names only (version unknown yet) and plain membership / admin on 15 are fine
    assert grant_problems(wanted, None) == []
    assert grant_problems([grant("g", "m", admin_option=True), grant("g2", "m", state="absent")], V15) == []
    # absent ignores options, so it does not need 16 either
    assert grant_problems([grant("g", "m", state="absent", inherit_option=False)], V15) == []


# --- prediction, effective options, summary ---------------------------------------------------

def test_predicted_new_row_uses_postgresql_defaults():
    [new] = predict_rows([], [grant("g", "m")], V16, "postgres", {"m": False})
    assert new == row("g", "m", inherit=False, set_=True, admin=False)
    [new] = predict_rows([], [grant("g", "m", set_option=False)], V16, "postgres", {"m": True})
    assert new == row("g", "m", inherit=True, set_=False)


def test_predicted_revoke_keeps_other_grantors():
    current = [row("g", "m"), row("g", "m", grantor="g1", inherit=False)]
    assert predict_rows(current, [grant("g", "m", state="absent")], V16, "postgres") == [current[1]]


def test_effective_options_are_or_across_grantors():
    assert effective_options([row("g", "m", inherit=False, set_=False), row("g", "m", "g1", inherit=True, set_=False)]) == {
        "inherit_option": True, "set_option": False, "admin_option": False}
    assert effective_options([]) is None
    assert effective_options([row("g", "m", inherit=None, set_=None)])["inherit_option"] is None


def test_summary_and_unconverged():
    before = [row("g", "m", inherit=True)]
    after = [row("g", "m", inherit=False)]
    wanted = [grant("g", "m", inherit_option=False)]
    [item] = summarize(wanted, before, after, "postgres")
    assert item["changed"] and item["member_before"] and item["member_after"]
    assert item["effective_before"]["inherit_option"] is True and item["effective_after"]["inherit_option"] is False
    assert item["grants_after"] == [{"grantor": "postgres", "inherit_option": False, "set_option": True,
                                     "admin_option": False}]
    assert unconverged(wanted, after, V16, "postgres") == []
    assert unconverged(wanted, before, V16, "postgres") == wanted
    assert unconverged(wanted, after, V16, "someone_else") == wanted


# --- any grantor (the membership module without granted_by) ----------------------------------

def test_any_grantor_present_satisfied_by_another_grantors_row():
    current = [row("g", "m", grantor="g1", inherit=False, set_=False)]
    assert texts(current, [grant("g", "m")], any_grantor=True) == []
    assert texts(current, [grant("g", "m", inherit_option=False, set_option=False)], any_grantor=True) == []
    # per grantor (deployment_setup's default) the login's own row is still wanted
    assert texts(current, [grant("g", "m")]) == ['GRANT "g" TO "m"']


def test_any_grantor_compares_effective_options_across_rows():
    current = [row("g", "m", grantor="g1", inherit=True, set_=False), row("g", "m", grantor="g2", inherit=False, set_=True)]
    assert texts(current, [grant("g", "m", inherit_option=True, set_option=True)], any_grantor=True) == []
    # an option no row gives: the acting grantor's row is added with it
    assert texts(current, [grant("g", "m", admin_option=True)], any_grantor=True) == [
        'GRANT "g" TO "m" WITH ADMIN TRUE']
    # an option only false in some rows is not satisfied; the acting grantor's existing row changes
    current.append(row("g", "m", grantor="postgres", inherit=True, set_=True))
    assert texts(current, [grant("g", "m", set_option=False)], any_grantor=True) == ['GRANT "g" TO "m" WITH SET FALSE']


def test_any_grantor_with_granted_by_converges_that_grantors_row_only():
    current = [row("g", "m", grantor="g1", set_=True)]
    assert texts(current, [grant("g", "m", granted_by="g2")], any_grantor=True) == ['GRANT "g" TO "m" GRANTED BY "g2"']
    assert texts(current, [grant("g", "m", granted_by="g1", set_option=False)], any_grantor=True) == [
        'GRANT "g" TO "m" WITH SET FALSE GRANTED BY "g1"']


def test_any_grantor_absent_revokes_every_grantors_row_acting_first():
    current = [row("g", "m", grantor="zed"), row("g", "m", grantor="postgres"), row("g", "m", grantor="abe")]
    assert texts(current, [grant("g", "m", state="absent")], any_grantor=True) == [
        'REVOKE "g" FROM "m"', 'REVOKE "g" FROM "m" GRANTED BY "abe"', 'REVOKE "g" FROM "m" GRANTED BY "zed"']
    assert predict_rows(current, [grant("g", "m", state="absent")], V16, "postgres", any_grantor=True) == []
    # granted_by narrows it to that grantor
    assert texts(current, [grant("g", "m", state="absent", granted_by="abe")], any_grantor=True) == [
        'REVOKE "g" FROM "m" GRANTED BY "abe"']
    # 14/15: one row per pair, one plain REVOKE
    assert texts([row("g", "m", grantor="abe", inherit=None, set_=None)], [grant("g", "m", state="absent")],
                 version=V15, any_grantor=True) == ['REVOKE "g" FROM "m"']


def test_any_grantor_unconverged_reads_effective_options():
    wanted = [grant("g", "m", set_option=False)]
    after = [row("g", "m", set_=False), row("g", "m", grantor="g1", set_=True)]
    assert unconverged(wanted, after, V16, "postgres", any_grantor=True) == wanted
    assert unconverged(wanted, after[:1], V16, "postgres", any_grantor=True) == []
    gone = [grant("g", "m", state="absent")]
    assert unconverged(gone, after[1:], V16, "postgres", any_grantor=True) == gone
    assert unconverged(gone, [], V16, "postgres", any_grantor=True) == []


# --- state exact, predefined groups, messages ------------------------------------------------------

def test_exact_revocations_cover_every_other_group_of_the_members():
    current = [row("keep", "m"), row("old", "m"), row("old", "m", grantor="g1"), row("pg_monitor", "m"),
               row("old", "other"), row("m", "someone")]
    wanted = [grant("keep", "m"), grant("new", "m")]
    out = exact_revocations(current, wanted, ["m"])
    assert [(g["group"], g["target_role"], g["state"], g["granted_by"]) for g in out] == [
        ("old", "m", "absent", None), ("pg_monitor", "m", "absent", None)]
    only_g1 = exact_revocations(current, wanted, ["m"], granted_by="g1")
    assert [(g["group"], g["granted_by"]) for g in only_g1] == [("old", "g1")]
    assert exact_revocations(current, [], ["m"])[0]["group"] == "keep"


def test_predefined_roles_allowed_as_groups_only_when_asked():
    wanted = [grant("pg_monitor", "m")]
    assert grant_problems(wanted, V16, allow_predefined_groups=True) == []
    assert "pg_" in grant_problems(wanted, V16)[0]
    # never as a member or grantor, and other name rules still hold
    assert len(grant_problems([grant("g", "pg_monitor"), grant("g", "m", granted_by="pg_x")], V16,
                              allow_predefined_groups=True)) == 2
    assert "64 bytes" in grant_problems([grant("pg_" + "x" * 61, "m")], V16, allow_predefined_groups=True)[0]


def test_missing_roles_message_words_one_role_like_upstream():
    assert missing_roles_message(["fake"]) == "Role fake does not exist"
    assert missing_roles_message(["a", "b"]) == "Roles a, b do not exist (nothing was changed)"


# --- community.postgresql 5.0's grantor-scoped statements, all_grantors, grantor checks ---------

def named_texts(current, grants, version=V16, acting="postgres", **modes):
    return [statement_text(s) for s in plan_grants(current, grants, version, acting, **modes)]


def test_name_grantor_writes_the_acting_grantor_on_16_only():
    wanted = [grant("g", "m", set_option=False), grant("h", "m", state="absent")]
    current = [row("h", "m")]
    assert named_texts(current, wanted, name_grantor=True) == [
        'GRANT "g" TO "m" WITH SET FALSE GRANTED BY "postgres"', 'REVOKE "h" FROM "m" GRANTED BY "postgres"']
    assert named_texts(current, wanted, version=V15, name_grantor=True) == ['GRANT "g" TO "m"', 'REVOKE "h" FROM "m"']
    # another grantor's row: the own grant is made beside it, and absent leaves it alone
    other = [row("g", "m", grantor="team")]
    assert named_texts(other, [grant("g", "m")], name_grantor=True) == ['GRANT "g" TO "m" GRANTED BY "postgres"']
    assert named_texts(other, [grant("g", "m", state="absent")], name_grantor=True) == []


def test_all_grantors_clears_false_options_on_every_row_and_absent_removes_every_row():
    current = [row("dp1", "killer", inherit=False, set_=False),
               row("dp1", "killer", grantor="other", inherit=True, set_=True, admin=True)]
    wanted = [grant("dp1", "killer", inherit_option=False, set_option=False)]
    assert named_texts(current, wanted, all_grantors=True) == [
        'GRANT "dp1" TO "killer" WITH INHERIT FALSE, SET FALSE GRANTED BY "other"']
    after = predict_rows(current, wanted, V16, "postgres", all_grantors=True)
    assert effective_options(after) == {"inherit_option": False, "set_option": False, "admin_option": True}
    assert named_texts(after, wanted, all_grantors=True) == []
    # without it only the acting grantor's row counts
    assert named_texts(current, wanted) == []
    assert named_texts(current, [grant("dp1", "killer", state="absent")], all_grantors=True) == [
        'REVOKE "dp1" FROM "killer"', 'REVOKE "dp1" FROM "killer" GRANTED BY "other"']


def test_grantor_problems():
    from ansible_collections.dataplane.postgresql.plugins.module_utils.server.memberships import (
        grantor_problems,
    )
    context = {"is_superuser": False, "login": "boss", "bootstrap_superuser": "postgres"}
    named = [("grant", "g", "boss"), ("grant", "h", "team"), ("revoke", "k", "stranger"), ("grant", "x", None)]
    holders = {"g": [("team", True)], "h": [("team", True)]}
    problems = grantor_problems(named, context, holders, {"team": True, "stranger": False})
    assert problems == [
        'The connecting role cannot act as the granting role "stranger", because it does not have the '
        'privileges of that role. Set granted_by to a role it does have the privileges of.',
        'The granting role "boss" does not hold ADMIN OPTION on "g". Set granted_by to a role that does and '
        'whose privileges the connecting role has (g: team); groups that need different granting roles need a '
        'grants or memberships item each (or split into separate tasks).']
    [lacking] = grantor_problems([("grant", "g", "boss")], context, {"g": [("direct", False)]}, {})
    assert 'ADMIN OPTION on "g" is held only by roles' in lacking and "(g: direct)" in lacking
    assert "Set granted_by" not in lacking
    # the bootstrap superuser needs no ADMIN OPTION; a superuser has every role's privileges
    su = dict(context, is_superuser=True, login="postgres")
    assert grantor_problems([("grant", "g", "postgres"), ("revoke", "g", "stranger")], su, {}, {}) == []
    assert "no role does" in grantor_problems([("grant", "g", "team")], su, {}, {})[0]


def test_foreign_notes_name_what_other_grantors_keep():
    from ansible_collections.dataplane.postgresql.plugins.module_utils.server.memberships import (
        foreign_notes,
        foreign_warning,
    )
    after = [row("g", "m", inherit=False), row("g", "m", grantor="other", inherit=True, admin=True)]
    notes = foreign_notes([grant("g", "m", inherit_option=False, admin_option=False)], after, "postgres", V16)
    assert [(n["kind"], n.get("option"), n["others"]) for n in notes] == [
        ("option", "inherit_option", ["other"]), ("option", "admin_option", ["other"])]
    assert foreign_warning(notes[1]).startswith('Role "m" keeps the ADMIN option on "g" through the grant(s) '
                                                'recorded under "other"')
    [gone] = foreign_notes([grant("g", "m", state="absent")], after[1:], "postgres", V16)
    assert foreign_warning(gone).startswith('Role "m" remains a member of "g" through the grant(s) recorded '
                                            'under "other"')
    assert foreign_notes([grant("g", "m", state="absent")], after[1:], "postgres", V15) == []


def test_derived_grantor_clashes():
    from ansible_collections.dataplane.postgresql.plugins.module_utils.server.memberships import (
        derived_grantor_clashes,
    )
    grants = [grant("g", "m", admin_option=True), grant("g", "m", granted_by="postgres", admin_option=False),
              grant("g", "m", granted_by="team")]
    [clash] = derived_grantor_clashes(grants, ["memberships[0]", "memberships[1]", "memberships[2]"], "postgres")
    assert clash.startswith('memberships[0] and memberships[1] both grant "g" to "m" under "postgres", the '
                            'granting role derived for a row that names no granted_by')
    assert derived_grantor_clashes(grants, ["memberships[0]", "memberships[1]", "memberships[2]"], "boss") == []
