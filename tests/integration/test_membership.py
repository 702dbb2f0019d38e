"""dataplane.postgresql.membership against real PostgreSQL 16/17/18 (and 15 for the error path).

Every assertion about the outcome reads pg_auth_members itself; nothing PostgreSQL decides
is mocked.
"""

import json
from pathlib import Path

import pytest

PLAYBOOK = Path(__file__).parent / "playbooks" / "membership.yml"

CATALOG = """
SELECT g.rolname, m.rolname, gr.rolname,
       (to_jsonb(am) ->> 'inherit_option')::boolean, (to_jsonb(am) ->> 'set_option')::boolean, am.admin_option
  FROM pg_auth_members am
  JOIN pg_roles g ON g.oid = am.roleid
  JOIN pg_roles m ON m.oid = am.member
  LEFT JOIN pg_roles gr ON gr.oid = am.grantor
 WHERE g.rolname LIKE %(tag)s OR m.rolname LIKE %(tag)s
 ORDER BY 1, 2, 3
"""


def catalog(server, names):
    """pg_auth_members rows of this test's roles: (group, member, grantor, inherit, set, admin)."""
    return sorted(tuple(r) for r in server.sql(CATALOG, {"tag": "%" + names.tag + "%"}))


def q(name):
    return '"%s"' % name.replace('"', '""')


def create_roles(server, *specs):
    """Each spec is "name ATTRS..." or a (name, attrs) tuple for names with spaces."""
    for spec in specs:
        name, attrs = spec if isinstance(spec, tuple) else (spec.partition(" ")[0], spec.partition(" ")[2])
        server.sql("CREATE ROLE %s %s" % (q(name), attrs))


# community.postgresql 5.0's statements name the grantor they mean on PostgreSQL 16+: a
# superuser's grant is recorded under the bootstrap superuser, "postgres" on these servers.
BY = ' GRANTED BY "postgres"'


def membership(run_module, server, check=False, diff=False, user="postgres", **args):
    return run_module("membership", dict(server.login_args(user=user), **args), check=check, diff=diff)


# --- the reference pair -------------------------------------------------------------------

def test_reference_pair_read_back_and_idempotent(pg, names, run_module):
    dp1, killer = names("dp1_user"), names("airflow_conn_killer")
    create_roles(pg, dp1 + " LOGIN", killer + " NOLOGIN NOINHERIT")

    res = membership(run_module, pg, groups=[dp1], target_roles=[killer], inherit_option=False, set_option=False)
    assert not res["failed"], res
    assert res["changed"] is True
    assert res["queries"] == ['GRANT "%s" TO "%s" WITH INHERIT FALSE, SET FALSE' % (dp1, killer) + BY]
    assert catalog(pg, names) == [(dp1, killer, "postgres", False, False, False)]
    [item] = res["memberships"]
    assert item["member_before"] is False and item["member_after"] is True
    assert item["effective_after"] == {"inherit_option": False, "set_option": False, "admin_option": False}
    assert item["grants_after"] == [{"grantor": "postgres", "inherit_option": False, "set_option": False,
                                     "admin_option": False}]
    assert res["server_version"].startswith("%d." % pg.major)

    again = membership(run_module, pg, groups=[dp1], target_roles=[killer], inherit_option=False, set_option=False)
    assert again["changed"] is False and again["queries"] == []
    assert catalog(pg, names) == [(dp1, killer, "postgres", False, False, False)]


def test_new_grant_gets_postgresql_defaults_for_omitted_options(pg, names, run_module):
    g, inh, noinh = names("grp"), names("inh_member"), names("noinh_member")
    create_roles(pg, g, inh + " INHERIT", noinh + " NOINHERIT")
    check = membership(run_module, pg, check=True, groups=[g], target_roles=[inh, noinh])
    res = membership(run_module, pg, groups=[g], target_roles=[inh, noinh])
    assert res["changed"] and res["queries"] == ['GRANT "%s" TO "%s"' % (g, inh) + BY, 'GRANT "%s" TO "%s"' % (g, noinh) + BY]
    # inherit follows the member's INHERIT attribute, set defaults to true, admin to false
    assert catalog(pg, names) == [(g, inh, "postgres", True, True, False), (g, noinh, "postgres", False, True, False)]
    # check mode predicted exactly what PostgreSQL then recorded
    assert [m["grants_after"] for m in check["memberships"]] == [m["grants_after"] for m in res["memberships"]]
    # an omitted option keeps whatever is there
    pg.sql("GRANT %s TO %s WITH SET FALSE" % (q(g), q(inh)))
    keep = membership(run_module, pg, groups=[g], target_roles=[inh], admin_option=False)
    assert keep["changed"] is False and keep["queries"] == []


# --- drift ----------------------------------------------------------------------------------

def test_drift_by_hand_is_corrected_with_diff(pg, names, run_module):
    dp1, killer = names("dp1_user"), names("airflow_conn_killer")
    create_roles(pg, dp1 + " LOGIN", killer + " NOLOGIN NOINHERIT")
    pg.sql("GRANT %s TO %s WITH INHERIT FALSE, SET FALSE" % (q(dp1), q(killer)))
    pg.sql("GRANT %s TO %s WITH INHERIT TRUE" % (q(dp1), q(killer)))  # someone, by hand
    assert catalog(pg, names) == [(dp1, killer, "postgres", True, False, False)]

    res = membership(run_module, pg, diff=True, groups=[dp1], target_roles=[killer],
                     inherit_option=False, set_option=False)
    assert res["changed"] is True
    assert res["queries"] == ['GRANT "%s" TO "%s" WITH INHERIT FALSE' % (dp1, killer) + BY]
    assert catalog(pg, names) == [(dp1, killer, "postgres", False, False, False)]
    key = "%s in %s" % (killer, dp1)
    assert res["diff"]["before"][key]["postgres"]["inherit_option"] is True
    assert res["diff"]["after"][key]["postgres"] == {"inherit_option": False, "set_option": False,
                                                     "admin_option": False}
    [item] = res["memberships"]
    assert item["effective_before"]["inherit_option"] is True and item["effective_after"]["inherit_option"] is False

    again = membership(run_module, pg, groups=[dp1], target_roles=[killer], inherit_option=False, set_option=False)
    assert again["changed"] is False


def test_admin_option_raised_and_lowered(pg, names, run_module):
    g, m = names("grp"), names("member")
    create_roles(pg, g, m)
    up = membership(run_module, pg, groups=[g], target_roles=[m], admin_option=True)
    assert up["changed"] and catalog(pg, names) == [(g, m, "postgres", True, True, True)]
    down = membership(run_module, pg, groups=[g], target_roles=[m], admin_option=False)
    assert down["queries"] == ['GRANT "%s" TO "%s" WITH ADMIN FALSE' % (g, m) + BY]
    assert catalog(pg, names) == [(g, m, "postgres", True, True, False)]


# --- grantors -------------------------------------------------------------------------------

def test_multiple_grantors_each_row_managed_and_absent_reports_remaining(pg, names, run_module):
    g, m, g1, g2 = names("grp"), names("member"), names("grantor1"), names("grantor2")
    create_roles(pg, g, m + " NOINHERIT", g1 + " LOGIN", g2)
    pg.sql("GRANT %s TO %s, %s WITH ADMIN TRUE" % (q(g), q(g1), q(g2)))
    admin_rows = [(g, g1, "postgres", True, True, True), (g, g2, "postgres", True, True, True)]

    grants = [
        dict(group=g, target_role=m, granted_by=g1, inherit_option=True, set_option=False),
        dict(group=g, target_role=m, granted_by=g2, inherit_option=False, set_option=False),
        dict(group=g, target_role=m, inherit_option=False, set_option=False),
    ]
    res = membership(run_module, pg, grants=grants)
    assert res["changed"] and len(res["queries"]) == 3
    assert sorted(catalog(pg, names)) == sorted(admin_rows + [
        (g, m, g1, True, False, False), (g, m, g2, False, False, False), (g, m, "postgres", False, False, False)])
    # effective options are the OR across the three grantors
    assert res["memberships"][2]["effective_after"] == {"inherit_option": True, "set_option": False,
                                                        "admin_option": False}
    assert [r["grantor"] for r in res["memberships"][2]["grants_after"]] == sorted([g1, g2, "postgres"])
    assert membership(run_module, pg, grants=grants)["changed"] is False

    # g2's row drifts; only g2's row is corrected
    pg.sql("GRANT %s TO %s WITH SET TRUE GRANTED BY %s" % (q(g), q(m), q(g2)))
    fix = membership(run_module, pg, grants=grants)
    assert fix["queries"] == ['GRANT "%s" TO "%s" WITH SET FALSE GRANTED BY "%s"' % (g, m, g2)]

    # absent for one grantor (granted_by): the other grantors' rows remain and are reported
    gone = membership(run_module, pg, groups=[g], target_roles=[m], granted_by="postgres", state="absent")
    assert gone["changed"] and gone["queries"] == ['REVOKE "%s" FROM "%s" GRANTED BY "postgres"' % (g, m)]
    assert sorted(catalog(pg, names)) == sorted(admin_rows + [(g, m, g1, True, False, False),
                                                              (g, m, g2, False, False, False)])
    assert gone["remaining"] == [{"group": g, "target_role": m, "grantors": sorted([g1, g2]),
                                  "effective": {"inherit_option": True, "set_option": False, "admin_option": False}}]
    assert gone["memberships"][0]["member_after"] is True
    assert gone["revoked"] == {g: [m]}
    assert membership(run_module, pg, groups=[g], target_roles=[m], granted_by="postgres",
                      state="absent")["changed"] is False

    # absent for a named grantor removes only that row
    one = membership(run_module, pg, grants=[dict(group=g, target_role=m, granted_by=g1)], state="absent")
    assert one["changed"] and one["queries"] == ['REVOKE "%s" FROM "%s" GRANTED BY "%s"' % (g, m, g1)]
    assert one["remaining"][0]["grantors"] == [g2]

    # absent with granted_by_any: the membership goes, whoever granted it
    last = membership(run_module, pg, groups=[g], target_roles=[m], state="absent", granted_by_any=True)
    assert last["changed"] and last["remaining"] == []
    assert last["queries"] == ['REVOKE "%s" FROM "%s" GRANTED BY "%s"' % (g, m, g2)]
    assert sorted(catalog(pg, names)) == sorted(admin_rows)


def test_non_superuser_login_is_the_grantor(pg, names, run_module):
    g, m, boss = names("grp"), names("member"), names("boss")
    create_roles(pg, g, m, boss + " LOGIN")
    pg.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(g), q(boss)))
    res = membership(run_module, pg, user=boss, groups=[g], target_roles=[m], set_option=False)
    assert not res["failed"], res
    assert res["acting_grantor"] == boss
    assert (g, m, boss, True, False, False) in catalog(pg, names)
    assert membership(run_module, pg, user=boss, groups=[g], target_roles=[m], set_option=False)["changed"] is False


# --- check mode ---------------------------------------------------------------------------------

def test_check_mode_changes_nothing_and_predicts_the_run(pg, names, run_module):
    g, m, old, keep = names("grp"), names("member"), names("old_grp"), names("keep_grp")
    create_roles(pg, g, m + " NOINHERIT", old, keep)
    pg.sql("GRANT %s TO %s WITH INHERIT TRUE, SET TRUE" % (q(keep), q(m)))
    pg.sql("GRANT %s TO %s" % (q(old), q(m)))
    grants = [dict(group=g, target_role=m, set_option=False),
              dict(group=keep, target_role=m, inherit_option=False, admin_option=True),
              dict(group=old, target_role=m, state="absent")]
    before = catalog(pg, names)
    everything = pg.sql("SELECT oid, roleid, member, grantor, admin_option, inherit_option, set_option "
                        "FROM pg_auth_members ORDER BY oid")

    check = membership(run_module, pg, check=True, diff=True, grants=grants)
    assert check["changed"] is True
    expected = ['GRANT "%s" TO "%s" WITH SET FALSE' % (g, m) + BY,
                'GRANT "%s" TO "%s" WITH INHERIT FALSE, ADMIN TRUE' % (keep, m) + BY,
                'REVOKE "%s" FROM "%s"' % (old, m) + BY]
    assert check["queries"] == expected
    assert catalog(pg, names) == before
    assert pg.sql("SELECT oid, roleid, member, grantor, admin_option, inherit_option, set_option "
                  "FROM pg_auth_members ORDER BY oid") == everything

    real = membership(run_module, pg, diff=True, grants=grants)
    assert real["queries"] == expected
    assert real["diff"] == check["diff"]
    assert [i["grants_after"] for i in real["memberships"]] == [i["grants_after"] for i in check["memberships"]]
    assert catalog(pg, names) == sorted([(g, m, "postgres", False, False, False),
                                         (keep, m, "postgres", False, True, True)])

    noop = membership(run_module, pg, check=True, grants=grants)
    assert noop["changed"] is False and noop["queries"] == []


# --- validation: nothing changes ------------------------------------------------------------------

def test_missing_roles_listed_and_nothing_changed(pg, names, run_module):
    g, m = names("grp"), names("member")
    ghost1, ghost2, ghost3 = names("ghost_grp"), names("ghost_member"), names("ghost_grantor")
    create_roles(pg, g, m)
    res = membership(run_module, pg, grants=[
        dict(group=g, target_role=m),
        dict(group=ghost1, target_role=m),
        dict(group=g, target_role=ghost2, granted_by=ghost3)])
    assert res["failed"] is True
    for ghost in (ghost1, ghost2, ghost3):
        assert ghost in res["msg"]
    assert sorted(res["missing_roles"]) == sorted([ghost1, ghost2, ghost3])
    assert catalog(pg, names) == []


@pytest.mark.parametrize("bad, needle", [
    ("x" * 64, "64 bytes"),
    ("", "empty"),
    ("a\x00b", "NUL"),
    ("pg_sneaky", "pg_"),
    ("public", "reserved"),
], ids=["too_long", "empty", "nul", "pg_prefix", "public"])
def test_hostile_names_rejected_before_any_change(pg, names, run_module, bad, needle):
    g, m = names("grp"), names("member")
    create_roles(pg, g, m)
    snapshot = pg.sql("SELECT count(*) FROM pg_auth_members")
    for grants in ([dict(group=g, target_role=m), dict(group=bad, target_role=m)],
                   [dict(group=g, target_role=m), dict(group=g, target_role=bad)],
                   [dict(group=g, target_role=m, granted_by=bad)]):
        res = membership(run_module, pg, grants=grants)
        assert res["failed"] is True and needle in res["msg"], res
        assert res.get("queries") == []
    assert catalog(pg, names) == []
    assert pg.sql("SELECT count(*) FROM pg_auth_members") == snapshot


def test_grantor_without_admin_refused_before_any_statement(pg, names, run_module):
    g, m, m2, nobody = names("grp"), names("member"), names("member2"), names("no_admin")
    create_roles(pg, g, m, m2, nobody)
    res = membership(run_module, pg, grants=[dict(group=g, target_role=m),
                                             dict(group=g, target_role=m2, granted_by=nobody)])
    assert res["failed"] is True and res["queries"] == []
    assert 'The granting role "%s" does not hold ADMIN OPTION on "%s"' % (nobody, g) in res["msg"], res["msg"]
    assert catalog(pg, names) == []


def test_statement_failure_rolls_back_everything(pg, names, run_module):
    # PostgreSQL refuses to revoke a row whose member has granted the group onward (no
    # CASCADE): the grant before it in the same call is rolled back with it.
    g, m, m2, m3 = names("grp"), names("member"), names("member2"), names("member3")
    create_roles(pg, g, m, m2, m3)
    pg.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(g), q(m)))
    pg.sql("GRANT %s TO %s GRANTED BY %s" % (q(g), q(m2), q(m)))
    before = catalog(pg, names)
    res = membership(run_module, pg, grants=[dict(group=g, target_role=m3),
                                             dict(group=g, target_role=m, state="absent")])
    assert res["failed"] is True
    assert "dependent privileges exist" in res["msg"], res["msg"]
    assert catalog(pg, names) == before


def test_mixed_case_hyphen_and_quote_names(pg, names, run_module):
    g, m = names("Dp1-User"), names('Killer "Role"-X')
    create_roles(pg, (g, "LOGIN"), (m, "NOINHERIT"))
    res = membership(run_module, pg, groups=[g], target_roles=[m], inherit_option=False, set_option=False)
    assert not res["failed"], res
    assert res["queries"] == ['GRANT %s TO %s WITH INHERIT FALSE, SET FALSE' % (q(g), q(m)) + BY]
    assert catalog(pg, names) == [(g, m, "postgres", False, False, False)]
    assert membership(run_module, pg, groups=[g], target_roles=[m], inherit_option=False,
                      set_option=False)["changed"] is False


# --- PostgreSQL 15 ----------------------------------------------------------------------------------

def test_pg15_options_fail_naming_the_version_and_nothing_changes(pg15, names, run_module):
    g, m, other = names("grp"), names("member"), names("other")
    create_roles(pg15, g, m + " NOINHERIT", other)
    res = membership(run_module, pg15, grants=[dict(group=other, target_role=m),
                                               dict(group=g, target_role=m, inherit_option=False, set_option=False)])
    assert res["failed"] is True
    assert "PostgreSQL 15." in res["msg"] and "16 or newer" in res["msg"]
    assert "inherit_option" in res["msg"] and "set_option" in res["msg"]
    assert catalog(pg15, names) == []


def test_pg15_plain_membership_and_admin_work(pg15, names, run_module):
    g, m = names("grp"), names("member")
    create_roles(pg15, g, m)
    res = membership(run_module, pg15, groups=[g], target_roles=[m])
    assert not res["failed"], res
    assert res["changed"] and res["queries"] == ['GRANT "%s" TO "%s"' % (g, m)]
    assert catalog(pg15, names) == [(g, m, "postgres", None, None, False)]
    assert res["memberships"][0]["effective_after"] == {"inherit_option": None, "set_option": None,
                                                        "admin_option": False}
    assert membership(run_module, pg15, groups=[g], target_roles=[m])["changed"] is False

    up = membership(run_module, pg15, groups=[g], target_roles=[m], admin_option=True)
    assert up["queries"] == ['GRANT "%s" TO "%s" WITH ADMIN OPTION' % (g, m)]
    assert catalog(pg15, names) == [(g, m, "postgres", None, None, True)]
    down = membership(run_module, pg15, groups=[g], target_roles=[m], admin_option=False)
    assert down["queries"] == ['REVOKE ADMIN OPTION FOR "%s" FROM "%s"' % (g, m)]
    assert catalog(pg15, names) == [(g, m, "postgres", None, None, False)]

    gone = membership(run_module, pg15, groups=[g], target_roles=[m], state="absent")
    assert gone["changed"] and catalog(pg15, names) == []


# --- a real ansible-playbook run ------------------------------------------------------------------------

def test_ansible_playbook_converges_and_is_idempotent(pg16, names, ansible_playbook, tmp_path):
    login, killer, commander = names("dp1_user"), names("airflow_conn_killer"), names("commander_user")
    create_roles(pg16, login + " LOGIN", killer + " NOLOGIN NOINHERIT", commander + " LOGIN")
    extra = dict(pg_host=pg16.host, pg_port=pg16.port, login_role=login, killer_role=killer,
                 commander_role=commander)

    dry = ansible_playbook(PLAYBOOK, extra_vars=extra, inventory="localhost,", check=True,
                           args=("-c", "local"))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert catalog(pg16, names) == []

    out = tmp_path / "result.json"
    run = ansible_playbook(PLAYBOOK, extra_vars=dict(extra, result_file=str(out)), inventory="localhost,",
                           args=("-c", "local"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "changed=1 " in run.stdout and "failed=0" in run.stdout
    report = json.loads(out.read_text())
    first, second = report["first"], report["second"]
    assert first["changed"] is True
    assert first["queries"] == ['GRANT "%s" TO "%s" WITH INHERIT FALSE, SET FALSE' % (login, killer) + BY,
                                'GRANT "%s" TO "%s"' % (killer, commander) + BY]
    assert second["changed"] is False and second["queries"] == []
    assert catalog(pg16, names) == sorted([(login, killer, "postgres", False, False, False),
                                           (killer, commander, "postgres", True, True, False)])


# --- more edges ---------------------------------------------------------------------------------------------

def test_bad_name_fails_before_connecting(names, run_module):
    # nothing listens on port 1: the name check must answer first, without a connection attempt
    res = run_module("membership", dict(login_host="127.0.0.1", login_port=1, groups=["x" * 64],
                                        target_roles=["someone"]))
    assert res["failed"] is True and "64 bytes" in res["msg"] and res["queries"] == []
    res = run_module("membership", dict(login_host="127.0.0.1", login_port=1, groups=["g"],
                                        target_roles=["pg_monitor"]))
    assert res["failed"] is True and "pg_" in res["msg"] and res["queries"] == []


def test_63_byte_names_work(pg, names, run_module):
    g = names("g" * 56)
    m = names("M-" + "é" * 27)  # 2 + 54 + 7 = 63 bytes, mixed case, multi-byte
    assert len(g.encode()) == 63 and len(m.encode()) == 63
    create_roles(pg, g, m)
    res = membership(run_module, pg, groups=[g], target_roles=[m], set_option=False)
    assert not res["failed"], res
    assert catalog(pg, names) == [(g, m, "postgres", True, False, False)]


def test_grants_items_take_top_level_defaults(pg, names, run_module):
    g1, g2, m = names("grp1"), names("grp2"), names("member")
    create_roles(pg, g1, g2, m)
    res = membership(run_module, pg, set_option=False, grants=[dict(group=g1, target_role=m),
                                                               dict(group=g2, target_role=m, set_option=True)])
    assert res["queries"] == ['GRANT "%s" TO "%s" WITH SET FALSE' % (g1, m) + BY,
                              'GRANT "%s" TO "%s" WITH SET TRUE' % (g2, m) + BY]
    assert catalog(pg, names) == [(g1, m, "postgres", True, False, False), (g2, m, "postgres", True, True, False)]
    gone = membership(run_module, pg, state="absent", grants=[dict(group=g1, target_role=m),
                                                              dict(group=g2, target_role=m)])
    assert gone["changed"] and gone["remaining"] == [] and catalog(pg, names) == []


def test_pg15_check_mode_plain_membership(pg15, names, run_module):
    g, m = names("grp"), names("member")
    create_roles(pg15, g, m)
    res = membership(run_module, pg15, check=True, groups=[g], target_roles=[m], admin_option=True)
    assert res["changed"] and res["queries"] == ['GRANT "%s" TO "%s" WITH ADMIN OPTION' % (g, m)]
    assert res["memberships"][0]["effective_after"]["admin_option"] is True
    assert catalog(pg15, names) == []


def test_input_errors_before_connecting(run_module):
    # nothing listens on port 1: each of these must be refused before a connection attempt
    base = dict(login_host="127.0.0.1", login_port=1)
    res = run_module("membership", dict(base, grants=[dict(group="g", target_role="m")], state="exact"))
    assert res["failed"] is True and "state=exact works with groups" in res["msg"] and res["queries"] == []
    res = run_module("membership", dict(base, groups=None, target_roles=["m"]))
    assert res["failed"] is True and "groups must be a list" in res["msg"]
    res = run_module("membership", dict(base, groups=["g"], target_roles=["m"], session_role="s" * 64))
    assert res["failed"] is True and "session_role" in res["msg"] and "64 bytes" in res["msg"]
    res = run_module("membership", dict(base, groups=['x"; DROP ROLE y; --'], target_roles=["m"], trust_input=False))
    assert res["failed"] is True and "potentially dangerous" in res["msg"]


def test_refusals_use_the_shared_format(run_module):
    # nothing listens on port 1: refused before connecting, in results.refusal_message's format
    base = dict(login_host="127.0.0.1", login_port=1)
    res = run_module("membership", dict(base, groups=None, target_roles=None))
    assert res["failed"] is True and res["queries"] == []
    assert res["msg"].startswith("membership request refused, nothing was changed: ")
    assert res["problems"] == ["groups must be a list of role names (an empty list is allowed), not null",
                               "target_roles must be a list of role names (an empty list is allowed), not null"]
    res = run_module("membership", dict(base, groups=["pg_nonsense_x", "g"], target_roles=["g", "s" * 64]))
    assert res["failed"] is True and res["msg"].startswith("membership request refused, nothing was changed: ")
    assert len(res["problems"]) >= 2 and all(p in res["msg"] for p in res["problems"])


def test_pg15_options_refused_in_the_shared_format(pg15, names, run_module):
    g, m = names("grp"), names("member")
    create_roles(pg15, g, m)
    res = membership(run_module, pg15, groups=[g], target_roles=[m], set_option=False)
    assert res["failed"] is True and res["queries"] == [] and res["server_version"].startswith("15.")
    assert res["msg"].startswith("membership request refused, nothing was changed: The inherit_option, "
                                 "set_option parameter(s) require PostgreSQL 16 or later: PostgreSQL 15.")
    assert catalog(pg15, names) == []


def test_timings_and_session_role_through_session(pg, names, run_module):
    g, m, acting = names("grp"), names("member"), names("acting")
    create_roles(pg, g, m, acting + " LOGIN CREATEROLE")
    pg.sql("GRANT %s TO %s WITH ADMIN TRUE" % (q(g), q(acting)))
    res = membership(run_module, pg, groups=[g], target_roles=[m], session_role=acting)
    assert not res["failed"], res
    assert res["changed"] and res["acting_grantor"] == acting
    assert catalog(pg, names) == [(g, acting, "postgres", True, True, True), (g, m, acting, True, True, False)]
    timings = res["timings"]
    assert set(timings) == {"total_ms", "connect_ms", "converge_ms"}
    assert all(isinstance(v, int) and v >= 0 for v in timings.values())
    assert timings["total_ms"] >= timings["connect_ms"]


def test_names_with_percent_semicolon_and_quotes_in_one_round_trip(pg16, names, run_module):
    # several statements go to the server in one execute: names that look like placeholders or
    # statement ends must stay names
    g1, g2, m = names('pct%s;"g'), names("pct%(x)s'; g"), names("m%%")
    create_roles(pg16, (g1, ""), (g2, ""), (m, ""))
    args = dict(grants=[dict(group=g1, target_role=m, set_option=False), dict(group=g2, target_role=m)])
    res = membership(run_module, pg16, **args)
    assert not res["failed"], res
    assert res["queries"] == ['GRANT %s TO %s WITH SET FALSE' % (q(g1), q(m)) + BY, 'GRANT %s TO %s' % (q(g2), q(m)) + BY]
    assert catalog(pg16, names) == sorted([(g1, m, "postgres", True, False, False),
                                           (g2, m, "postgres", True, True, False)])
    again = membership(run_module, pg16, **args)
    assert again["changed"] is False and again["queries"] == []
