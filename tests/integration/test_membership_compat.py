"""dataplane.postgresql.membership as a drop-in for community.postgresql.postgresql_membership.

Each upstream-style case runs against BOTH modules (parameter ``impl``) with the same
arguments and the same expectations, written from upstream's documentation. Ours follows
community.postgresql 5.0's grantor-scoped model on PostgreSQL 16+; the venv has an older
upstream (4.2.0), so where the two models differ (``grantor_scoped``) each side is checked
against its own version's documented behaviour: options and aliases, return values (queries, groups, target_roles, state, granted,
revoked), fail_on_role, trust_input, session_role, state=exact, check mode. Where this
collection differs on purpose (documented in the module), the test says so and checks both
sides. Every outcome is read back from pg_auth_members on real PostgreSQL 15, 16, 17 and 18.
"""

import json

import pytest

from tests.support.membership import OURS, UPSTREAM, call, create_roles, groups_of, q, rows_of, upstream_version
from tests.support.membership import warnings_of

IMPLS = pytest.mark.parametrize("impl", [OURS, UPSTREAM], ids=["ours", "upstream"])

UPSTREAM_KEYS = ("changed", "failed", "queries", "groups", "target_roles", "state", "granted", "revoked")


def grantor_scoped(impl, server):
    """Whether IMPL follows community.postgresql 5.0's grantor-scoped model on SERVER: ours
    does on PostgreSQL 16+, upstream from 5.0 on; before 16 both behave like 4.x."""
    return server.major >= 16 and (impl == OURS or upstream_version() >= (5, 0, 0))


def five(impl):
    """Whether IMPL has community.postgresql 5.0's return values (on any server version)."""
    return impl == OURS or upstream_version() >= (5, 0, 0)


def by(impl, server, grantor="postgres"):
    """The GRANTED BY clause 5.0's statements carry (none for 4.x or before PostgreSQL 16)."""
    return ' GRANTED BY %s' % q(grantor) if grantor_scoped(impl, server) else ""


def visible(res):
    """What a playbook written for upstream can read."""
    return dict((k, res.get(k)) for k in UPSTREAM_KEYS if k in res)


# --- present / absent, aliases, check mode ---------------------------------------------------

def _present_absent_cycle(server, names, run_module, impl):
    g1, g2, u1, u2 = names("group1"), names("group2"), names("user1"), names("user.with.dots")
    create_roles(server, g1, g2, u1, u2)

    # check mode: reports the grant, changes nothing
    res = call(run_module, impl, server, check=True, group=g1, user=u1, state="present")
    assert visible(res) == dict(changed=True, failed=False, queries=['GRANT %s TO %s' % (q(g1), q(u1)) + by(impl, server)],
                                groups=[g1], target_roles=[u1], state="present", granted={g1: [u1]}), res
    assert groups_of(server, u1) == []
    res = call(run_module, impl, server, check=True, group=g1, user=u1, state="absent")
    assert visible(res) == dict(changed=False, failed=False, queries=[], groups=[g1], target_roles=[u1],
                                state="absent", revoked={g1: []}), res

    # grant, then again: idempotent, granted lists nobody
    res = call(run_module, impl, server, source_role=g1, target_role=u1)
    assert res["changed"] is True and res["granted"] == {g1: [u1]} and res["state"] == "present"
    assert groups_of(server, u1) == [g1]
    res = call(run_module, impl, server, source_role=g1, target_role=u1)
    assert visible(res) == dict(changed=False, failed=False, queries=[], groups=[g1], target_roles=[u1],
                                state="present", granted={g1: []}), res

    # revoke, then again
    res = call(run_module, impl, server, groups=[g1], target_roles=[u1], state="absent")
    assert visible(res) == dict(changed=True, failed=False, queries=['REVOKE %s FROM %s' % (q(g1), q(u1)) + by(impl, server)],
                                groups=[g1], target_roles=[u1], state="absent", revoked={g1: [u1]}), res
    assert groups_of(server, u1) == []
    res = call(run_module, impl, server, groups=[g1], target_roles=[u1], state="absent")
    assert res["changed"] is False and res["revoked"] == {g1: []} and res["queries"] == []

    # two groups x two users, the users as a comma-separated string (upstream's documented form)
    res = call(run_module, impl, server, groups=[g1, g2], users="%s, %s" % (u1, u2))
    assert res["changed"] is True
    assert res["target_roles"] == [u1, u2] and res["groups"] == [g1, g2]
    assert res["granted"] == {g1: [u1, u2], g2: [u1, u2]}
    assert res["queries"] == ['GRANT %s TO %s' % (q(g), q(u)) + by(impl, server) for g in (g1, g2) for u in (u1, u2)]
    assert groups_of(server, u1) == sorted([g1, g2]) and groups_of(server, u2) == sorted([g1, g2])
    again = call(run_module, impl, server, groups=[g1, g2], users="%s, %s" % (u1, u2))
    assert again["changed"] is False and again["granted"] == {g1: [], g2: []}

    # one revoked; the next present grants only that one back
    call(run_module, impl, server, group=g1, user=u1, state="absent")
    res = call(run_module, impl, server, groups=[g1, g2], target_roles=[u1, u2])
    assert res["queries"] == ['GRANT %s TO %s' % (q(g1), q(u1)) + by(impl, server)]
    assert res["granted"] == {g1: [u1], g2: []}


@IMPLS
def test_present_absent_cycle(pg, names, run_module, impl):
    _present_absent_cycle(pg, names, run_module, impl)


@IMPLS
def test_pg15_present_absent_cycle_like_upstream(pg15, names, run_module, impl):
    _present_absent_cycle(pg15, names, run_module, impl)


# --- fail_on_role -------------------------------------------------------------------------------

@IMPLS
def test_fail_on_role(pg, names, run_module, impl):
    g, u, fake_g, fake_u = names("group"), names("user"), names("fake_group"), names("fake_user")
    create_roles(pg, g, u)

    res = call(run_module, impl, pg, group=fake_g, user=u, fail_on_role=True)
    assert res["failed"] is True and res.get("changed") is not True
    assert "Role %s does not exist" % fake_g in res["msg"]
    res = call(run_module, impl, pg, group=[g], user=[fake_u])
    assert res["failed"] is True and "Role %s does not exist" % fake_u in res["msg"]
    assert groups_of(pg, u) == []

    for state, key in (("present", "granted"), ("absent", "revoked")):
        res = call(run_module, impl, pg, group=fake_g, user=fake_u, fail_on_role=False, state=state)
        assert visible(res) == dict(changed=False, failed=False, queries=[], groups=[], target_roles=[],
                                    state=state, **{key: {}}), res
        assert any(fake_g in w for w in warnings_of(res)), res

    # the existing roles of a mixed list are still handled
    res = call(run_module, impl, pg, groups=[g, fake_g], target_roles=[fake_u, u], fail_on_role=False)
    assert res["changed"] is True and res["groups"] == [g] and res["target_roles"] == [u]
    assert res["granted"] == {g: [u]} and res["queries"] == ['GRANT %s TO %s' % (q(g), q(u)) + by(impl, pg)]
    assert groups_of(pg, u) == [g]


# --- trust_input ----------------------------------------------------------------------------------

@IMPLS
def test_trust_input(pg16, names, run_module, impl):
    g, u = names("group"), names("user")
    create_roles(pg16, g, u)
    dangerous = 'curious.anonymous"; SELECT * FROM information_schema.tables; --'
    res = call(run_module, impl, pg16, groups=[g, dangerous], user=u, trust_input=False)
    assert res["failed"] is True
    assert res["msg"] == "Passed input '%s' is potentially dangerous" % dangerous
    res = call(run_module, impl, pg16, groups=[g, dangerous], user=u, trust_input=True)
    assert res["failed"] is True and res["msg"] == "Role %s does not exist" % dangerous
    assert groups_of(pg16, u) == []


# --- state=exact ------------------------------------------------------------------------------------

def _exact_cycle(server, names, run_module, impl):
    g1, g2, g3, u1, u2 = names("group1"), names("group2"), names("group.with.dots"), names("user1"), names("user2")
    create_roles(server, g1, g2, g3, u1, u2)
    server.sql("GRANT %s, %s, %s TO %s" % (q(g1), q(g2), q(g3), q(u1)))

    res = call(run_module, impl, server, check=True, groups=[], user=u1, state="exact")
    assert res["changed"] is True and res["granted"] == {} and res["state"] == "exact"
    assert res["revoked"] == {g1: [u1], g2: [u1], g3: [u1]}
    assert groups_of(server, u1) == sorted([g1, g2, g3])
    res = call(run_module, impl, server, groups=[], user=u1, state="exact")
    assert res["changed"] is True and res["revoked"] == {g1: [u1], g2: [u1], g3: [u1]}
    assert sorted(res["queries"]) == sorted('REVOKE %s FROM %s' % (q(g), q(u1)) + by(impl, server) for g in (g1, g2, g3))
    assert groups_of(server, u1) == []

    res = call(run_module, impl, server, groups=[g1, g2, g3], user=u1, state="exact")
    assert res["changed"] is True and res["revoked"] == {}
    assert res["granted"] == {g1: [u1], g2: [u1], g3: [u1]}
    assert groups_of(server, u1) == sorted([g1, g2, g3])

    res = call(run_module, impl, server, groups=[g1], user=u1, state="exact")
    # 5.0 lists every requested group in granted (4.x only the groups granted to someone)
    assert res["changed"] is True and res["revoked"] == {g2: [u1], g3: [u1]}
    assert res["granted"] == ({g1: []} if five(impl) else {})
    assert groups_of(server, u1) == [g1]

    res = call(run_module, impl, server, groups=[g2, g3], users=[u1, u2], state="exact")
    assert res["changed"] is True and res["revoked"] == {g1: [u1]}
    assert res["granted"] == {g2: [u1, u2], g3: [u1, u2]}
    assert groups_of(server, u1) == sorted([g2, g3]) and groups_of(server, u2) == sorted([g2, g3])

    res = call(run_module, impl, server, groups=[g2, g3], users=[u1, u2], state="exact")
    assert visible(res) == dict(changed=False, failed=False, queries=[], groups=[g2, g3], target_roles=[u1, u2],
                                state="exact", granted={g2: [], g3: []} if five(impl) else {}, revoked={}), res


@IMPLS
def test_exact(pg, names, run_module, impl):
    _exact_cycle(pg, names, run_module, impl)


@IMPLS
def test_pg15_exact_like_upstream(pg15, names, run_module, impl):
    _exact_cycle(pg15, names, run_module, impl)


# --- session_role -------------------------------------------------------------------------------------

@IMPLS
def test_session_role_grants_as_that_role(pg, names, run_module, impl):
    g, m, admin, login = names("group"), names("member"), names("team_admin"), names("login")
    create_roles(pg, g, m, admin)
    create_roles(pg, login, attrs="LOGIN")
    pg.sql("GRANT %s TO %s WITH ADMIN OPTION" % (q(g), q(admin)))
    pg.sql("GRANT %s TO %s" % (q(admin), q(login)))

    res = call(run_module, impl, pg, login=login, session_role=admin, group=g, target_role=m)
    assert not res["failed"], res
    assert res["changed"] is True and res["queries"] == ['GRANT %s TO %s' % (q(g), q(m)) + by(impl, pg, admin)]
    assert rows_of(pg, m) == [(g, admin)]  # recorded as granted by the session role
    res = call(run_module, impl, pg, login=login, session_role=admin, group=g, target_role=m)
    assert res["changed"] is False and res["queries"] == []

    # a role the login may not switch to: clear failure, nothing changed
    other = names("other")
    create_roles(pg, other)
    res = call(run_module, impl, pg, login=login, session_role=other, group=g, target_role=other, state="absent")
    assert res["failed"] is True and "Could not switch role" in res["msg"]


def test_session_role_is_quoted_never_pasted(pg16, names, run_module):
    """A session_role that would inject a statement if pasted into SET ROLE "...": ours
    quotes it as one identifier, so it is just a role that does not exist."""
    g, m, victim, sr = names("group"), names("member"), names("victim"), names("sr")
    create_roles(pg16, g, m, victim, sr)
    hostile = '%s"; DROP ROLE "%s' % (sr, victim)
    res = call(run_module, OURS, pg16, session_role=hostile, group=g, target_role=m)
    assert res["failed"] is True and "Could not switch role" in res["msg"], res
    assert res["queries"] == []
    assert pg16.sql("SELECT count(*) FROM pg_roles WHERE rolname = %s", (victim,)) == [(1,)]
    assert groups_of(pg16, m) == []
    # and trust_input=false refuses it before connecting, as upstream does
    res = call(run_module, OURS, pg16, session_role=hostile, group=g, target_role=m, trust_input=False)
    assert res["failed"] is True and "potentially dangerous" in res["msg"]
    # an over-long session_role fails before connecting
    res = call(run_module, OURS, pg16, session_role="s" * 64, group=g, target_role=m)
    assert res["failed"] is True and "64 bytes" in res["msg"]


# --- null lists ------------------------------------------------------------------------------------------

@IMPLS
def test_groups_null_is_an_error(pg16, names, run_module, impl):
    g, u = names("group"), names("user")
    create_roles(pg16, g, u)
    pg16.sql("GRANT %s TO %s" % (q(g), q(u)))
    for state in ("present", "absent", "exact"):
        res = call(run_module, impl, pg16, groups=None, target_roles=[u], state=state)
        assert res["failed"] is True and res.get("changed") is not True, res
    res = call(run_module, impl, pg16, groups=[g], target_roles=None)
    assert res["failed"] is True
    assert groups_of(pg16, u) == [g]
    if impl == OURS:
        res = call(run_module, impl, pg16, groups=None, target_roles=[u])
        assert "groups must be a list" in res["msg"] and res["queries"] == []


# --- grantors (PostgreSQL 16+) ------------------------------------------------------------------------------

@IMPLS
def test_present_when_another_role_granted_it(pg, names, run_module, impl):
    """5.0: another role's grant is not the module's own, so present makes its own beside it
    (the membership no longer depends on that role). 4.x, and ours with granted_by_any: any
    grant satisfies present, nothing is added."""
    g, m, g1 = names("group"), names("member"), names("grantor1")
    create_roles(pg, g, m, g1)
    pg.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(g), q(g1)))
    pg.sql("GRANT %s TO %s GRANTED BY %s" % (q(g), q(m), q(g1)))
    if impl == OURS:
        res = call(run_module, impl, pg, groups=[g], target_roles=[m], granted_by_any=True)
        assert visible(res) == dict(changed=False, failed=False, queries=[], groups=[g], target_roles=[m],
                                    state="present", granted={g: []}), res
        assert rows_of(pg, m) == [(g, g1)]
    res = call(run_module, impl, pg, groups=[g], target_roles=[m])
    if grantor_scoped(impl, pg):
        assert visible(res) == dict(changed=True, failed=False, queries=['GRANT %s TO %s' % (q(g), q(m)) + by(impl, pg)],
                                    groups=[g], target_roles=[m], state="present", granted={g: [m]}), res
        assert rows_of(pg, m) == sorted([(g, g1), (g, "postgres")])
        assert sorted(e["grantor"] for e in res["grants"][g][m]) == sorted([g1, "postgres"])
        again = call(run_module, impl, pg, groups=[g], target_roles=[m])
        assert again["changed"] is False and again["queries"] == []
    else:
        assert visible(res) == dict(changed=False, failed=False, queries=[], groups=[g], target_roles=[m],
                                    state="present", granted={g: []}), res
        assert rows_of(pg, m) == [(g, g1)]


def test_granted_by_any_rule_with_options_and_granted_by(pg, names, run_module):
    """granted_by_any: the effective options of every grantor's rows count; with granted_by,
    that grantor's rows are converged and the others left alone."""
    g, m, g1 = names("group"), names("member"), names("grantor1")
    create_roles(pg, g, g1)
    create_roles(pg, m, attrs="NOINHERIT")
    pg.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(g), q(g1)))
    pg.sql("GRANT %s TO %s WITH INHERIT TRUE, SET FALSE GRANTED BY %s" % (q(g), q(m), q(g1)))
    anyone = dict(groups=[g], target_roles=[m], granted_by_any=True)

    same = call(run_module, OURS, pg, inherit_option=True, set_option=False, **anyone)
    assert same["changed"] is False and same["queries"] == [] and rows_of(pg, m) == [(g, g1)]

    # an option no row has: the acting grantor's row is added with it
    more = call(run_module, OURS, pg, diff=True, set_option=True, **anyone)
    assert more["changed"] is True and more["queries"] == ['GRANT %s TO %s WITH SET TRUE' % (q(g), q(m))]
    assert rows_of(pg, m) == sorted([(g, g1), (g, "postgres")])
    assert more["memberships"][0]["effective_after"]["set_option"] is True
    assert more["effective_options"] == {g: {m: {"inherit_option": True, "set_option": True, "admin_option": False}}}
    assert set(more["diff"]["after"]["%s in %s" % (m, g)]) == {g1, "postgres"}
    assert call(run_module, OURS, pg, set_option=True, **anyone)["changed"] is False

    # granted_by: that grantor's row is converged, postgres's row stays as it is
    mine = call(run_module, OURS, pg, groups=[g], target_roles=[m], granted_by=g1, set_option=True)
    assert mine["queries"] == ['GRANT %s TO %s WITH SET TRUE GRANTED BY %s' % (q(g), q(m), q(g1))]
    assert pg.sql("SELECT bool_and(set_option), count(*) FROM pg_auth_members "
                  "WHERE member = %s::regrole", (q(m),)) == [(True, 2)]

    # a false option another grantor's row keeps true: warned, not hidden
    warn = call(run_module, OURS, pg, set_option=False, **anyone)
    assert warn["changed"] is True
    assert any("other grantors" in w for w in warnings_of(warn)), warn
    assert warn["memberships"][0]["effective_after"]["set_option"] is True


@IMPLS
def test_absent_when_another_role_granted_it(pg, names, run_module, impl):
    """5.0: absent revokes the module's own grant only and warns that the role remains a
    member. 4.x: a plain REVOKE that reports a change while the member stays. Ours with
    granted_by_any: every grantor's grant goes."""
    g, m, g1 = names("group"), names("member"), names("grantor1")
    create_roles(pg, g, m, g1)
    pg.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(g), q(g1)))
    pg.sql("GRANT %s TO %s GRANTED BY %s" % (q(g), q(m), q(g1)))
    pg.sql("GRANT %s TO %s" % (q(g), q(m)))  # the connecting role's own grant
    res = call(run_module, impl, pg, groups=[g], target_roles=[m], state="absent")
    assert res["changed"] is True and res["revoked"] == {g: [m]}
    assert res["queries"] == ['REVOKE %s FROM %s' % (q(g), q(m)) + by(impl, pg)]
    assert rows_of(pg, m) == [(g, g1)]
    if grantor_scoped(impl, pg):
        assert any("remains a member" in w for w in warnings_of(res)), res
        assert res["effective_options"] == {g: {m: {"admin_option": False, "inherit_option": True,
                                                    "set_option": True}}}
        again = call(run_module, impl, pg, groups=[g], target_roles=[m], state="absent")
        assert again["changed"] is False and again["queries"] == [] and again["revoked"] == {g: []}
        assert any("remains a member" in w for w in warnings_of(again)), again
    if impl == OURS:
        gone = call(run_module, impl, pg, groups=[g], target_roles=[m], state="absent", granted_by_any=True)
        assert gone["queries"] == ['REVOKE %s FROM %s GRANTED BY %s' % (q(g), q(m), q(g1))]
        assert rows_of(pg, m) == [] and gone["remaining"] == [] and gone["effective_options"] == {}
        assert not any("remains a member" in w for w in warnings_of(gone)), gone


# --- PostgreSQL 15: options refused, nothing changed ------------------------------------------------------

def test_pg15_options_refused_plain_membership_works(pg15, names, run_module):
    g, m = names("group"), names("member")
    create_roles(pg15, g, m)
    for opts in (dict(inherit_option=False), dict(set_option=True)):
        res = call(run_module, OURS, pg15, groups=[g], target_roles=[m], **opts)
        assert res["failed"] is True and "15." in res["msg"] and "16" in res["msg"], res
        assert res["queries"] == [] and groups_of(pg15, m) == []
    res = call(run_module, OURS, pg15, groups=[g], target_roles=[m], admin_option=True)
    assert res["queries"] == ['GRANT %s TO %s WITH ADMIN OPTION' % (q(g), q(m))]
    assert res["granted"] == {g: [m]}
    assert pg15.sql("SELECT admin_option FROM pg_auth_members WHERE member = %s::regrole", (q(m),)) == [(True,)]


# --- exact with the additions: options, check and diff mode -------------------------------------------------

def test_exact_with_options_check_diff_idempotent(pg, names, run_module):
    g1, g2, old, m = names("group1"), names("group2"), names("old"), names("member")
    create_roles(pg, g1, g2, old, m)
    pg.sql("GRANT %s, %s TO %s" % (q(g1), q(old), q(m)))
    args = dict(groups=[g1, g2], target_roles=[m], state="exact", inherit_option=False, set_option=False)
    before = rows_of(pg, m)
    check = call(run_module, OURS, pg, check=True, diff=True, **args)
    assert check["changed"] is True and rows_of(pg, m) == before
    expected = ['REVOKE %s FROM %s' % (q(old), q(m)) + by(OURS, pg),
                'GRANT %s TO %s WITH INHERIT FALSE, SET FALSE' % (q(g1), q(m)) + by(OURS, pg),
                'GRANT %s TO %s WITH INHERIT FALSE, SET FALSE' % (q(g2), q(m)) + by(OURS, pg)]
    assert check["queries"] == expected
    assert check["granted"] == {g1: [m], g2: [m]} and check["revoked"] == {old: [m]}
    assert "%s in %s" % (m, old) in check["diff"]["before"] and "%s in %s" % (m, old) not in check["diff"]["after"]
    real = call(run_module, OURS, pg, diff=True, **args)
    assert real["queries"] == expected and real["diff"] == check["diff"]
    assert pg.sql("SELECT g.rolname, inherit_option, set_option FROM pg_auth_members am "
                  "JOIN pg_roles g ON g.oid = am.roleid WHERE member = %s::regrole ORDER BY 1",
                  (q(m),)) == sorted([(g1, False, False), (g2, False, False)])
    again = call(run_module, OURS, pg, **args)
    assert again["changed"] is False and again["queries"] == []


# --- a playbook written for upstream, with only the module name swapped -----------------------------------------

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Grant
      MODULE:
        login_host: "{{ pg_host }}"
        login_port: "{{ pg_port }}"
        login_user: postgres
        db: postgres
        group: "{{ grp }}"
        target_roles: "{{ user1 }},{{ user2 }}"
      register: granted
    - name: React to what was granted, as upstream playbooks do
      ansible.builtin.assert:
        that:
          - granted is changed
          - granted.state == 'present'
          - granted.groups == [grp]
          - granted.target_roles == [user1, user2]
          - granted.granted[grp] == [user1, user2]
      when: granted.granted[grp] | length > 0
    - name: Exact
      MODULE:
        login_host: "{{ pg_host }}"
        login_port: "{{ pg_port }}"
        login_user: postgres
        groups: []
        user: "{{ user1 }}"
        state: exact
      register: exact
    - name: Revoke what is left
      MODULE:
        login_host: "{{ pg_host }}"
        login_port: "{{ pg_port }}"
        login_user: postgres
        groups: "{{ grp }}"
        users: ["{{ user1 }}", "{{ user2 }}"]
        state: absent
      register: revoked
    - name: Hand the results to the test
      ansible.builtin.copy:
        content: "{{ {'granted': granted, 'exact': exact, 'revoked': revoked} | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
      changed_when: false
"""


def test_upstream_playbook_with_the_module_name_swapped(pg16, names, ansible_playbook, tmp_path):
    grp, user1, user2 = names("grp"), names("user1"), names("user2")
    create_roles(pg16, grp, user1, user2)
    results = {}
    for impl in (UPSTREAM, "dataplane.postgresql.membership"):
        book = tmp_path / ("%s.yml" % impl)
        book.write_text(PLAYBOOK.replace("MODULE", impl))
        out = tmp_path / ("%s.json" % impl)
        run = ansible_playbook(book, inventory="localhost,", args=("-c", "local"),
                               extra_vars=dict(pg_host=pg16.host, pg_port=pg16.port, grp=grp, user1=user1,
                                               user2=user2, result_file=str(out)))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "failed=0" in run.stdout
        results[impl] = dict((k, visible(v)) for k, v in json.loads(out.read_text()).items())
        assert groups_of(pg16, user1) == [] and groups_of(pg16, user2) == []
    ours, theirs = results["dataplane.postgresql.membership"], results[UPSTREAM]
    if not grantor_scoped(UPSTREAM, pg16):
        # 4.x writes no GRANTED BY; 5.0 (and this module) name the grantor they mean
        for step in ours.values():
            step["queries"] = [text.replace(by(OURS, pg16), "") for text in step["queries"]]
    assert theirs == ours
    assert results[UPSTREAM]["exact"]["revoked"] == {grp: [user1]}
    assert results[UPSTREAM]["revoked"]["revoked"] == {grp: [user2]}


# --- predefined roles, concurrent runs ------------------------------------------------------------------------

@IMPLS
def test_predefined_role_as_group(pg, names, run_module, impl):
    m = names("monitoring")
    create_roles(pg, m)
    res = call(run_module, impl, pg, groups=["pg_read_all_stats"], target_roles=[m])
    assert not res["failed"], res
    assert res["queries"] == ['GRANT "pg_read_all_stats" TO %s' % q(m) + by(impl, pg)]
    assert res["granted"] == {"pg_read_all_stats": [m]}
    assert groups_of(pg, m) == ["pg_read_all_stats"]
    assert call(run_module, impl, pg, groups=["pg_read_all_stats"], target_roles=[m])["changed"] is False
    res = call(run_module, impl, pg, groups=["pg_read_all_stats"], target_roles=[m], state="absent")
    assert res["changed"] is True and groups_of(pg, m) == []


def test_two_runs_at_once_leave_one_row(pg, names, run_module):
    """Two playbooks granting the same memberships at the same time: both succeed, and the
    catalog holds one row per membership (PostgreSQL makes the second GRANT a no-op)."""
    import threading

    groups = [names("grp%d" % i) for i in range(5)]
    m = names("member")
    create_roles(pg, m, *groups)
    results = []

    def run():
        results.append(call(run_module, OURS, pg, groups=groups, target_roles=[m], set_option=False))

    threads = [threading.Thread(target=run) for dummy in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r["failed"] for r in results] == [False, False], results
    assert rows_of(pg, m) == sorted((g, "postgres") for g in groups)
    again = call(run_module, OURS, pg, groups=groups, target_roles=[m], set_option=False)
    assert again["changed"] is False and again["queries"] == []


def test_absent_as_non_superuser_when_another_grantor_also_granted(pg, names, run_module):
    """A non-superuser admin cannot revoke a row another grantor made: with granted_by_any the
    task fails before any statement and says what to do; by default (5.0) it revokes its own
    row and warns; with granted_by it does that and reports the membership that remains."""
    g, m, boss, other = names("group"), names("member"), names("boss"), names("other_admin")
    create_roles(pg, g, m, other)
    create_roles(pg, boss, attrs="LOGIN")
    pg.sql("GRANT %s TO %s, %s WITH ADMIN TRUE" % (q(g), q(boss), q(other)))
    pg.sql("GRANT %s TO %s GRANTED BY %s" % (q(g), q(m), q(boss)))
    pg.sql("GRANT %s TO %s GRANTED BY %s" % (q(g), q(m), q(other)))
    before = rows_of(pg, m)

    # granted_by_any: other's row cannot be revoked by boss; refused before any statement
    res = call(run_module, OURS, pg, login=boss, groups=[g], target_roles=[m], state="absent", granted_by_any=True)
    assert res["failed"] is True and res["queries"] == [], res
    assert 'cannot act as the granting role "%s"' % other in res["msg"] and "Set granted_by" in res["msg"], res
    assert rows_of(pg, m) == before

    # the default (5.0): boss's own grant goes, the role remains a member through other's
    res = call(run_module, OURS, pg, login=boss, groups=[g], target_roles=[m], state="absent")
    assert res["changed"] is True and res["queries"] == ['REVOKE %s FROM %s GRANTED BY %s' % (q(g), q(m), q(boss))]
    assert rows_of(pg, m) == [(g, other)]
    assert any("remains a member" in w and other in w for w in warnings_of(res)), res
    pg.sql("GRANT %s TO %s GRANTED BY %s" % (q(g), q(m), q(boss)))

    res = call(run_module, OURS, pg, login=boss, groups=[g], target_roles=[m], granted_by=boss, state="absent")
    assert res["changed"] is True and res["revoked"] == {g: [m]}
    assert rows_of(pg, m) == [(g, other)]
    assert res["remaining"] == [{"group": g, "target_role": m, "grantors": [other],
                                 "effective": {"inherit_option": True, "set_option": True, "admin_option": False}}]
