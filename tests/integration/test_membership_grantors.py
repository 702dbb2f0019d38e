"""Grantors on PostgreSQL 16+: community.postgresql 5.0's grantor-scoped postgresql_membership,
and provisioning and the audit judging a membership by its effective options.

The module cases are written from upstream 5.0's published behaviour (its module
documentation and integration target) and run against this collection's module and, where
the community.postgresql in the venv has the feature (``upstream_has``), against upstream's
too, with the same expectations. Every outcome is read back from pg_auth_members, and the
privileges a grant gives are asked of PostgreSQL itself (pg_has_role).
"""

import glob
import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.membership import OURS, UPSTREAM, call, create_roles, q, rows_of, upstream_version, warnings_of
from tests.support.provisioning import record

REPO = Path(__file__).resolve().parents[2]

OPTIONS = """
SELECT gr.rolname, am.inherit_option, am.set_option, am.admin_option
  FROM pg_auth_members am
  JOIN pg_roles g ON g.oid = am.roleid
  JOIN pg_roles m ON m.oid = am.member
  JOIN pg_roles gr ON gr.oid = am.grantor
 WHERE g.rolname = %(group)s AND m.rolname = %(member)s
 ORDER BY 1
"""


def options_of(server, group, member):
    """[(grantor, inherit, set, admin)] of one membership, one tuple per grantor's row."""
    return [tuple(r) for r in server.sql(OPTIONS, {"group": group, "member": member})]


def privileges(server, member, group):
    """What PostgreSQL says MEMBER may do with GROUP: (inherits its privileges, may SET ROLE)."""
    return tuple(server.sql("SELECT pg_has_role(%(m)s, %(g)s, 'USAGE'), pg_has_role(%(m)s, %(g)s, 'SET')",
                            {"m": member, "g": group})[0])


def upstream_has(feature):
    """Whether the venv's community.postgresql postgresql_membership has FEATURE: "grantor"
    (5.0's grantor-scoped model) or an option name documented by its module."""
    if feature == "grantor":
        return upstream_version() >= (5, 0, 0)
    for entry in sys.path:
        pattern = os.path.join(entry, "ansible_collections", "community", "postgresql", "plugins", "modules",
                               "postgresql_membership.py")
        for path in glob.glob(pattern):
            with open(path) as handle:
                return ("\n  %s:\n" % feature) in handle.read()
    return False


def impls(*features):
    """Ours always; upstream too where the venv's version has every one of FEATURES (otherwise
    the upstream variant is not generated at all, rather than reported as skipped)."""
    if all(upstream_has(f) for f in features):
        return pytest.mark.parametrize("impl", [OURS, UPSTREAM], ids=["ours", "upstream"])
    return pytest.mark.parametrize("impl", [OURS], ids=["ours"])


def foreign_grant(server, group, member, grantor, options=""):
    """GROUP granted to MEMBER by another role, GRANTOR (given ADMIN on GROUP for it)."""
    server.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(group), q(grantor)))
    server.sql("GRANT %s TO %s %s GRANTED BY %s" % (q(group), q(member), options, q(grantor)))


# --- the module: upstream 5.0's grantor-scoped model ------------------------------------------------------------

@impls("grantor")
def test_exact_keeps_and_names_a_membership_another_role_granted(pg, names, run_module, impl):
    keep, gone, theirs, m, other = names("keep"), names("gone"), names("theirs"), names("member"), names("other")
    create_roles(pg, keep, gone, theirs, m, other)
    pg.sql("GRANT %s TO %s" % (q(gone), q(m)))
    foreign_grant(pg, theirs, m, other)
    res = call(run_module, impl, pg, groups=[keep], target_roles=[m], state="exact")
    assert res["changed"] is True
    assert res["granted"] == {keep: [m]} and res["revoked"] == {gone: [m]}, res
    assert res["queries"] == ['REVOKE %s FROM %s GRANTED BY "postgres"' % (q(gone), q(m)),
                              'GRANT %s TO %s GRANTED BY "postgres"' % (q(keep), q(m))]
    assert rows_of(pg, m) == sorted([(keep, "postgres"), (theirs, other)])
    notes = [w for w in warnings_of(res) if "remains a member" in w]
    assert len(notes) == 1 and theirs in notes[0] and other in notes[0], res
    again = call(run_module, impl, pg, groups=[keep], target_roles=[m], state="exact")
    assert again["changed"] is False and again["queries"] == [] and again["revoked"] == {}
    if impl == OURS:
        # the grantor-agnostic model removes it (as this module did before 0.3.0)
        every = call(run_module, impl, pg, groups=[keep], target_roles=[m], state="exact", granted_by_any=True)
        assert every["revoked"] == {theirs: [m]} and rows_of(pg, m) == [(keep, "postgres")]
        assert every["queries"] == ['REVOKE %s FROM %s GRANTED BY %s' % (q(theirs), q(m), q(other))]


@impls("grantor")
def test_admin_only_through_another_role_is_refused_and_granted_by_names_it(pg, names, run_module, impl):
    """A login holding ADMIN OPTION only through a team role: PostgreSQL would record the
    grant under the team role; 5.0 names the login, so it refuses and points at the team."""
    g, m, team, login = names("group"), names("member"), names("team"), names("login")
    create_roles(pg, g, m, team)
    create_roles(pg, login, attrs="LOGIN")
    pg.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(g), q(team)))
    pg.sql("GRANT %s TO %s" % (q(team), q(login)))
    res = call(run_module, impl, pg, login=login, groups=[g], target_roles=[m])
    assert res["failed"] is True and res.get("changed") is not True, res
    assert 'The granting role "%s" does not hold ADMIN OPTION on "%s"' % (login, g) in res["msg"], res["msg"]
    assert team in res["msg"] and "granted_by" in res["msg"]
    assert rows_of(pg, m) == []
    if impl == OURS:
        # check mode refuses the same way
        check = call(run_module, impl, pg, login=login, check=True, groups=[g], target_roles=[m])
        assert check["failed"] is True and "does not hold ADMIN OPTION" in check["msg"]
        # granted_by_any leaves the choice of grantor to PostgreSQL, as before 0.3.0
        anyone = call(run_module, impl, pg, login=login, groups=[g], target_roles=[m], granted_by_any=True)
        assert anyone["changed"] is True and anyone["queries"] == ['GRANT %s TO %s' % (q(g), q(m))], anyone
        assert rows_of(pg, m) == [(g, team)]
        pg.sql("REVOKE %s FROM %s GRANTED BY %s" % (q(g), q(m), q(team)))
    args = dict(memberships=[dict(groups=[g], granted_by=team)], target_roles=[m]) \
        if upstream_has("memberships") or impl == OURS else dict(groups=[g], target_roles=[m], granted_by=team)
    res = call(run_module, impl, pg, login=login, **args)
    assert res["changed"] is True and res["queries"] == ['GRANT %s TO %s GRANTED BY %s' % (q(g), q(m), q(team))]
    assert rows_of(pg, m) == [(g, team)]
    assert res["grants"] == {g: {m: [{"grantor": team, "admin_option": False, "inherit_option": True,
                                      "set_option": True}]}}
    assert call(run_module, impl, pg, login=login, **args)["changed"] is False


@impls("grantor")
def test_session_role_grantor_checks_before_any_statement(pg, names, run_module, impl):
    """As a non-superuser session role: the grant is recorded (and named) under it; a group it
    holds ADMIN OPTION on only through a team role, or not at all, is refused before anything
    runs, for the whole task; a converged task keeps passing after the grantor became
    unusable, a task with work to do under it does not."""
    group, own, nogrant, team, direct, indirect, m, m2 = (
        names("group"), names("own"), names("nogrant"), names("team"), names("direct"), names("indirect"),
        names("member"), names("member2"))
    create_roles(pg, group, own, nogrant, team, direct, indirect, m, m2)
    for statement in ("GRANT {group} TO {direct} WITH ADMIN TRUE", "GRANT {group} TO {team} WITH ADMIN TRUE",
                      "GRANT {team} TO {indirect} WITH INHERIT TRUE", "GRANT {own} TO {indirect} WITH ADMIN TRUE",
                      "GRANT {nogrant} TO {direct} WITH ADMIN TRUE"):
        pg.sql(statement.format(**dict((k, q(v)) for k, v in dict(
            group=group, own=own, nogrant=nogrant, team=team, direct=direct, indirect=indirect).items())))

    res = call(run_module, impl, pg, session_role=direct, group=group, target_role=m)
    assert res["changed"] is True and res["queries"] == ['GRANT %s TO %s GRANTED BY %s' % (q(group), q(m), q(direct))]
    assert rows_of(pg, m) == [(group, direct)]
    gone = call(run_module, impl, pg, session_role=direct, group=group, target_role=m, state="absent")
    assert gone["queries"] == ['REVOKE %s FROM %s GRANTED BY %s' % (q(group), q(m), q(direct))]

    mixed = call(run_module, impl, pg, session_role=indirect, groups=[own, group], target_role=m)
    assert mixed["failed"] is True, mixed
    assert 'The granting role "%s" does not hold ADMIN OPTION on "%s"' % (indirect, group) in mixed["msg"]
    assert "%s: %s" % (group, team) in mixed["msg"] and "split into separate tasks" in mixed["msg"]
    assert rows_of(pg, m) == []  # own, which indirect could grant, was not granted either

    unreachable = call(run_module, impl, pg, session_role=indirect, group=nogrant, target_role=m)
    assert unreachable["failed"] is True
    assert 'ADMIN OPTION on "%s" is held only by roles' % nogrant in unreachable["msg"], unreachable
    assert "%s: %s" % (nogrant, direct) in unreachable["msg"] and "Set granted_by" not in unreachable["msg"]

    assert 'does not have the privileges of that role' in call(
        run_module, impl, pg, session_role=indirect, group=group, target_role=m, granted_by=direct)["msg"]
    fixed = call(run_module, impl, pg, session_role=indirect, group=group, target_role=m, granted_by=team)
    assert fixed["queries"] == ['GRANT %s TO %s GRANTED BY %s' % (q(group), q(m), q(team))], fixed

    pg.sql("REVOKE %s FROM %s" % (q(team), q(indirect)))
    settled = call(run_module, impl, pg, session_role=indirect, group=group, target_role=m, granted_by=team)
    assert settled["changed"] is False and not settled["failed"], settled
    more = call(run_module, impl, pg, session_role=indirect, group=group, target_role=m2, granted_by=team)
    assert more["failed"] is True and "does not have the privileges of that role" in more["msg"]
    revoke = call(run_module, impl, pg, session_role=indirect, group=group, target_role=m, granted_by=team,
                  state="absent")
    assert revoke["failed"] is True and "cannot act as the granting role" in revoke["msg"], revoke
    assert rows_of(pg, m) == [(group, team)] and rows_of(pg, m2) == []


@impls("grantor")
def test_granted_by_a_role_whose_privileges_the_login_lacks_is_refused(pg, names, run_module, impl):
    g, m, stranger, boss = names("group"), names("member"), names("stranger"), names("boss")
    create_roles(pg, g, m, stranger)
    create_roles(pg, boss, attrs="LOGIN")
    pg.sql("GRANT %s TO %s, %s WITH ADMIN TRUE" % (q(g), q(stranger), q(boss)))
    res = call(run_module, impl, pg, login=boss, groups=[g], target_roles=[m], granted_by=stranger)
    assert res["failed"] is True and 'cannot act as the granting role "%s"' % stranger in res["msg"], res
    assert rows_of(pg, m) == []


@impls("grantor")
def test_clearing_an_option_another_grant_keeps_is_warned(pg, names, run_module, impl):
    g, m, other = names("group"), names("member"), names("other")
    create_roles(pg, g, m, other)
    pg.sql("GRANT %s TO %s" % (q(g), q(m)))
    foreign_grant(pg, g, m, other, "WITH ADMIN TRUE, INHERIT TRUE, SET TRUE")
    res = call(run_module, impl, pg, groups=[g], target_roles=[m], admin_option=False, inherit_option=False)
    # own row: ADMIN already false, INHERIT lowered; other's row untouched and still effective
    assert res["queries"] == ['GRANT %s TO %s WITH INHERIT FALSE GRANTED BY "postgres"' % (q(g), q(m))], res
    assert options_of(pg, g, m) == sorted([(other, True, True, True), ("postgres", False, True, False)])
    assert privileges(pg, m, g) == (True, True)  # PostgreSQL: the union of the grants
    assert res["effective_options"] == {g: {m: {"admin_option": True, "inherit_option": True, "set_option": True}}}
    texts = warnings_of(res)
    assert any("keeps the ADMIN option" in w and other in w for w in texts), texts
    assert any("keeps the INHERIT option" in w for w in texts), texts
    again = call(run_module, impl, pg, groups=[g], target_roles=[m], admin_option=False, inherit_option=False)
    assert again["changed"] is False and again["queries"] == []
    assert any("keeps the ADMIN option" in w for w in warnings_of(again))


@impls("grantor")
def test_options_with_state_absent_are_ignored_with_a_warning(pg, names, run_module, impl):
    g, m = names("group"), names("member")
    create_roles(pg, g, m)
    pg.sql("GRANT %s TO %s" % (q(g), q(m)))
    res = call(run_module, impl, pg, groups=[g], target_roles=[m], state="absent", set_option=True, admin_option=False)
    assert res["changed"] is True and rows_of(pg, m) == []
    assert "The admin_option, set_option parameter(s) have no effect with state=absent and are ignored" \
        in warnings_of(res), res


@impls("grantor")
def test_return_values_grants_and_effective_options(pg, names, run_module, impl):
    g, m, other, absent_m = names("group"), names("member"), names("other"), names("not_member")
    create_roles(pg, g, m, other, absent_m)
    create_roles(pg, names("noinherit"), attrs="NOINHERIT")
    foreign_grant(pg, g, m, other, "WITH INHERIT FALSE, SET FALSE")
    check = call(run_module, impl, pg, check=True, groups=[g], target_roles=[m, absent_m], set_option=True)
    res = call(run_module, impl, pg, groups=[g], target_roles=[m, absent_m], set_option=True)
    expected = {g: {m: [{"grantor": other, "admin_option": False, "inherit_option": False, "set_option": False},
                        {"grantor": "postgres", "admin_option": False, "inherit_option": True, "set_option": True}],
                    absent_m: [{"grantor": "postgres", "admin_option": False, "inherit_option": True,
                                "set_option": True}]}}
    for result in (check, res):
        grants = dict((member, sorted(rows, key=lambda r: r["grantor"])) for member, rows in result["grants"][g].items())
        assert grants == dict((k, sorted(v, key=lambda r: r["grantor"])) for k, v in expected[g].items()), result
        assert result["effective_options"] == {g: {
            m: {"admin_option": False, "inherit_option": True, "set_option": True},
            absent_m: {"admin_option": False, "inherit_option": True, "set_option": True}}}
    gone = call(run_module, impl, pg, groups=[g], target_roles=[absent_m], state="absent")
    assert gone["grants"] == {} and gone["effective_options"] == {}


@impls()
def test_pg15_grants_return_value_and_granted_by_refused(pg15, names, run_module, impl):
    g, m = names("group"), names("member")
    create_roles(pg15, g, m)
    res = call(run_module, impl, pg15, groups=[g], target_roles=[m])
    assert res["queries"] == ['GRANT %s TO %s' % (q(g), q(m))]  # 4.x: no GRANTED BY before 16
    if impl == OURS or upstream_has("grantor"):
        assert res["grants"] == {g: {m: [{"grantor": "postgres", "admin_option": False}]}}
        assert res["effective_options"] == {g: {m: {"admin_option": False}}}
        refused = call(run_module, impl, pg15, groups=[g], target_roles=[m], granted_by="postgres")
        assert refused["failed"] is True and "granted_by" in refused["msg"], refused
        assert "require PostgreSQL 16 or later" in refused["msg"]
        assert rows_of(pg15, m) == [(g, "postgres")]


# --- the module: the memberships list -------------------------------------------------------------------------

@impls("memberships")
def test_memberships_rows_with_their_own_grantor_and_options(pg, names, run_module, impl):
    ro, rw, report, alice, bob, team = (names("ro"), names("rw"), names("report"), names("alice"), names("bob"),
                                        names("team"))
    create_roles(pg, ro, rw, report, alice, bob, team)
    pg.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(rw), q(team)))
    rows = [dict(groups=[ro]),
            dict(groups=[rw], granted_by=team, set_option=False),
            dict(groups=[report], target_roles=[bob])]
    res = call(run_module, impl, pg, target_roles=[alice, bob], memberships=rows)
    assert not res["failed"], res
    assert res["queries"] == ['GRANT %s TO %s GRANTED BY "postgres"' % (q(ro), q(alice)),
                              'GRANT %s TO %s GRANTED BY "postgres"' % (q(ro), q(bob)),
                              'GRANT %s TO %s WITH SET FALSE GRANTED BY %s' % (q(rw), q(alice), q(team)),
                              'GRANT %s TO %s WITH SET FALSE GRANTED BY %s' % (q(rw), q(bob), q(team)),
                              'GRANT %s TO %s GRANTED BY "postgres"' % (q(report), q(bob))]
    assert res["groups"] == [ro, rw, report] and res["target_roles"] == [alice, bob]
    assert res["granted"] == {ro: [alice, bob], rw: [alice, bob], report: [bob]}
    assert options_of(pg, rw, alice) == [(team, True, False, False)]
    assert privileges(pg, alice, rw) == (True, False)
    again = call(run_module, impl, pg, target_roles=[alice, bob], memberships=rows)
    assert again["changed"] is False and again["queries"] == []

    # exact spans the rows: alice keeps ro and rw, loses nothing else; bob loses report
    exact = call(run_module, impl, pg, target_roles=[alice, bob], state="exact",
                 memberships=[dict(groups=[ro]), dict(groups=[rw], granted_by=team)])
    assert exact["revoked"] == {report: [bob]} and exact["granted"] == {ro: [], rw: []}, exact
    assert rows_of(pg, bob) == sorted([(ro, "postgres"), (rw, team)])

    # an empty list with exact: no group left that the connecting role granted
    empty = call(run_module, impl, pg, target_roles=[alice], memberships=[], state="exact")
    assert empty["revoked"] == {ro: [alice]} and rows_of(pg, alice) == [(rw, team)]
    assert any("remains a member" in w and team in w for w in warnings_of(empty)), empty


@impls("memberships", "granted_by_any")
def test_granted_by_any_per_row_and_for_the_task(pg, names, run_module, impl):
    g1, g2, m, other = names("group1"), names("group2"), names("member"), names("other")
    create_roles(pg, g1, g2, m, other)
    for g in (g1, g2):
        foreign_grant(pg, g, m, other)
        pg.sql("GRANT %s TO %s" % (q(g), q(m)))
    res = call(run_module, impl, pg, target_role=m, state="absent",
               memberships=[dict(groups=[g1], granted_by_any=True), dict(groups=[g2])])
    assert not res["failed"], res
    # g1: every grantor's grant, each REVOKE naming its grantor; g2: the own grant only
    assert sorted(res["queries"]) == sorted(['REVOKE %s FROM %s GRANTED BY %s' % (q(g1), q(m), q(other)),
                                             'REVOKE %s FROM %s GRANTED BY "postgres"' % (q(g1), q(m)),
                                             'REVOKE %s FROM %s GRANTED BY "postgres"' % (q(g2), q(m))])
    assert rows_of(pg, m) == [(g2, other)]
    notes = [w for w in warnings_of(res) if "remains a member" in w]
    assert len(notes) == 1 and g2 in notes[0], res

    # the task-wide value: GRANT names no grantor (PostgreSQL picks it), any grant counts
    pg.sql("REVOKE %s FROM %s GRANTED BY %s" % (q(g2), q(m), q(other)))
    foreign_grant(pg, g1, m, other)
    res = call(run_module, impl, pg, target_role=m, granted_by_any=True, memberships=[dict(groups=[g1, g2])])
    assert res["queries"] == ['GRANT %s TO %s' % (q(g2), q(m))] and res["granted"] == {g1: [], g2: [m]}, res
    assert rows_of(pg, m) == sorted([(g1, other), (g2, "postgres")])

    # a row with granted_by_any describes every grant: no grantor or options beside it
    bad = call(run_module, impl, pg, target_role=m,
               memberships=[dict(groups=[g1], granted_by_any=True, granted_by="postgres")])
    assert bad["failed"] is True and "granted_by_any" in bad["msg"], bad
    assert rows_of(pg, m) == sorted([(g1, other), (g2, "postgres")])


@impls("memberships")
@pytest.mark.parametrize("case", ["mixed", "no_form", "groups_alone", "no_targets", "empty_exact",
                                  "duplicate", "derived_duplicate", "no_groups_key"])
def test_memberships_input_errors_change_nothing(pg16, names, run_module, impl, case):
    g, m = names("group"), names("member")
    create_roles(pg16, g, m)
    args, needle = {
        "mixed": (dict(group=g, target_role=m, memberships=[dict(groups=[g])]), "mutually exclusive"),
        "no_form": (dict(target_role=m), "one of the following is required"),
        "groups_alone": (dict(group=g), "target_roles"),
        "no_targets": (dict(memberships=[dict(groups=[g])]), "no target_roles"),
        "empty_exact": (dict(memberships=[], state="exact"), "needs target_roles"),
        "duplicate": (dict(target_role=m, memberships=[dict(groups=[g]), dict(groups=[g])]),
                      'both grant "%s" to "%s"' % (g, m)),
        "derived_duplicate": (dict(target_role=m, memberships=[dict(groups=[g], admin_option=True),
                                                               dict(groups=[g], granted_by="postgres",
                                                                    admin_option=False)]),
                              "the granting role derived for a row that names no granted_by"),
        "no_groups_key": (dict(target_role=m, memberships=[dict(target_roles=[m])]), "groups"),
    }[case]
    res = call(run_module, impl, pg16, **args)
    assert res["failed"] is True and needle in res["msg"], res
    assert rows_of(pg16, m) == []


# --- provisioning and the audit: effective options across grantors ------------------------------------------------

def provision(run_module, server, rec, check=False, **extra):
    args = dict(server.login_args(), deployments=[rec], fence_helper=False, commander_password="cmd-secret-77")
    args.update(extra)
    return run_module("deployment_setup", args, check=check, diff=check)


def killer_finding(run_module, server, rec):
    res = run_module("deployment_audit", dict(server.login_args(), deployments=[rec]))
    assert not res["failed"], res
    [dep] = res["deployments"]
    return dict((f["check"], f) for f in dep["findings"])["killer_memberships"]


@pytest.mark.parametrize("option", ["INHERIT", "SET"])
def test_a_second_grantors_row_is_drift_named_by_the_audit_and_fixed_by_provision(pg, names, run_module, option):
    rec = record(names, "g")
    first = provision(run_module, pg, rec, all_grantors=True)
    assert not first["failed"], first
    # another administrator: a CREATEROLE role given ADMIN on the login role (provisioning
    # accepts such a role among the login role's members; any other member is refused)
    dp1, killer, other = rec["login_roles"]["dp1"], rec["killer_role"], names("other_admin")
    create_roles(pg, other, attrs="NOLOGIN CREATEROLE")
    assert privileges(pg, killer, dp1) == (False, False)
    assert killer_finding(run_module, pg, rec)["ok"] is True

    # another admin grants the login role to the killer again, with INHERIT or SET TRUE
    foreign_grant(pg, dp1, killer, other, "WITH INHERIT %s, SET %s" % (option == "INHERIT", option == "SET"))
    assert options_of(pg, dp1, killer) == sorted([("postgres", False, False, False),
                                                  (other, option == "INHERIT", option == "SET", False)])
    # what the killer may do is the union of the grants, whatever our own row says
    assert privileges(pg, killer, dp1) == (option == "INHERIT", option == "SET")
    finding = killer_finding(run_module, pg, rec)
    assert finding["ok"] is False
    assert "%s effectively granted with %s TRUE" % (dp1, option) in finding["detail"], finding
    assert "granted by %s" % other in finding["detail"]

    # the connecting role's rows only (the default): nothing to do, the drift stays
    own = provision(run_module, pg, rec)
    assert not own.get("failed"), own
    assert own["changed"] is False and own["queries"] == [], own
    assert killer_finding(run_module, pg, rec)["ok"] is False

    # all_grantors (what the deployments role sets): predicted, then fixed on the other row
    statement = 'GRANT %s TO %s WITH %s FALSE GRANTED BY %s' % (q(dp1), q(killer), option, q(other))
    check = provision(run_module, pg, rec, check=True, all_grantors=True)
    assert check["changed"] is True and statement in check["queries"], check
    assert privileges(pg, killer, dp1) == (option == "INHERIT", option == "SET")
    fixed = provision(run_module, pg, rec, all_grantors=True)
    assert fixed["changed"] is True and [t for t in fixed["queries"] if "GRANTED BY" in t] == [statement], fixed
    assert options_of(pg, dp1, killer) == sorted([("postgres", False, False, False), (other, False, False, False)])
    assert privileges(pg, killer, dp1) == (False, False)
    assert killer_finding(run_module, pg, rec)["ok"] is True
    again = provision(run_module, pg, rec, all_grantors=True)
    assert again["changed"] is False and again["queries"] == [], again


def test_the_deployments_role_judges_memberships_across_grantors():
    tasks = yaml.safe_load((REPO / "roles" / "deployments" / "tasks" / "main.yml").read_text())
    [setup] = [t for t in tasks if "dataplane.postgresql.deployment_setup" in t]
    assert setup["dataplane.postgresql.deployment_setup"]["all_grantors"] is True
