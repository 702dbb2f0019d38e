"""The pure half of the audit's code_objects and login_passwords checks: the allow-list, the
findings, and the one query's safety on hostile ground (checked as text)."""

import re

import pytest

from ansible_collections.dataplane.postgresql.plugins.module_utils.audit import code_objects as co
from ansible_collections.dataplane.postgresql.plugins.module_utils.audit import login_passwords as lp
from ansible_collections.dataplane.postgresql.plugins.module_utils.audit.checks import (
    overall_summary,
    summary_line,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import expand_deployments
from ansible_collections.dataplane.postgresql.plugins.module_utils.base.scram import scram_secret

[REC_A, REC_B] = expand_deployments([{"id": "a"}, {"id": "b"}])
SCHEMA = "airflow_db_a_schema"

TRIGGER = {"kind": "trigger", "name": "public.dag_run.keep_me", "owner": SCHEMA, "security_definer": None,
           "extension": None, "runs": "public.keep_me()", "runs_owner": SCHEMA, "runs_security_definer": False,
           "target": "public.dag_run", "event": "23", "enabled": True}
FUNCTION = {"kind": "function", "name": "public.keep_me()", "owner": SCHEMA, "security_definer": False,
            "extension": None, "runs": None, "runs_owner": None, "runs_security_definer": None,
            "target": "public", "event": None, "enabled": None}
OPERATOR = {"kind": "operator", "name": "public.=(oid,regclass)", "owner": SCHEMA, "security_definer": None,
            "extension": None, "runs": "public.eq(oid,regclass)", "runs_owner": SCHEMA,
            "runs_security_definer": True, "target": "public", "event": None, "enabled": None}


# ----------------------------------------------------------------------------- allow-list

@pytest.mark.parametrize("written, reported", [
    ("public.f(integer, text)", "public.f(integer,text)"),
    ("  PUBLIC.F( INTEGER ,TEXT )", "public.f(integer,text)"),
    ('"public"."f"(integer)', "public.f(integer)"),
    ('public."My Trg"', 'public."My Trg"'),
    ('public.t."a ""b"" c"', 'public.t."a ""b"" c"'),
    ("public.p(character   varying,timestamp with time zone)",
     "public.p(character varying,timestamp with time zone)"),
    ("public.= (oid, regclass)", "public.=(oid,regclass)"),
])
def test_names_compare_as_postgresql_reads_them(written, reported):
    assert co.normalise_name(written) == co.normalise_name(reported)


@pytest.mark.parametrize("written, reported", [
    ('public."My Trg"', "public.my trg"),       # quoted names keep their case
    ("public.f(integer)", "public.f(bigint)"),
    ("public.f(integer)", "other.f(integer)"),
    ('public."F"(integer)', "public.f(integer)"),
])
def test_different_names_stay_different(written, reported):
    assert co.normalise_name(written) != co.normalise_name(reported)


def test_parse_allowed_kinds_aliases_and_scopes():
    parsed = co.parse_allowed([
        "trigger public.dag_run.keep_me",
        "Event Trigger audit_ddl",
        "window function public.w(integer)",
        "cast text AS public.mood",
        {"object": "operator public.= (oid, regclass)", "database": "airflow_db_a"},
        {"object": "function public.keep_me()", "deployment": "b", "database": None},
    ])
    assert [(p["kind"], p["name"], p["database"], p["deployment"]) for p in parsed] == [
        ("trigger", "public.dag_run.keep_me", None, None),
        ("event_trigger", "audit_ddl", None, None),
        ("function", "public.w(integer)", None, None),
        ("cast", "(text as public.mood)", None, None),
        ("operator", "public.=(oid,regclass)", "airflow_db_a", None),
        ("function", "public.keep_me()", None, "b"),
    ]
    assert co.parse_allowed(None) == [] and co.parse_allowed([]) == []


def test_parse_allowed_names_every_bad_entry():
    with pytest.raises(co.AllowedObjectError) as error:
        co.parse_allowed(["triger public.t.x", "function", {"object": "rule a.b.c", "scope": "x"}, 42, {"database": "d"}])
    text = str(error.value)
    assert "allowed_objects[0]: 'triger public.t.x': unknown kind 'triger'" in text
    assert "allowed_objects[1]: 'function': the function's name is missing" in text
    assert "allowed_objects[2]: unknown key(s) scope" in text
    assert "allowed_objects[3]: an entry must be a non-empty string" in text
    assert "allowed_objects[4]: an entry must be a non-empty string" in text


def test_is_allowed_matches_kind_name_and_scope():
    allowed = co.parse_allowed([
        "trigger public.dag_run.keep_me",
        {"object": "function public.keep_me()", "deployment": "a"},
        {"object": "operator public.=(oid, regclass)", "database": "airflow_db_b"},
    ])
    assert co.is_allowed(TRIGGER, REC_A, allowed) and co.is_allowed(TRIGGER, REC_B, allowed)
    assert co.is_allowed(FUNCTION, REC_A, allowed) and not co.is_allowed(FUNCTION, REC_B, allowed)
    assert not co.is_allowed(OPERATOR, REC_A, allowed) and co.is_allowed(OPERATOR, REC_B, allowed)
    # the same name under another kind is another object
    assert not co.is_allowed(dict(FUNCTION, kind="procedure"), REC_A, allowed)
    assert not co.is_allowed(TRIGGER, REC_A, [])


# ----------------------------------------------------------------------------- findings

def test_planted_objects_fail_the_finding_named_with_owner_and_why():
    finding, listed = co.finding(REC_A, [FUNCTION, OPERATOR, TRIGGER], None, [])
    assert finding["check"] == "code_objects" and finding["ok"] is False
    assert [(o["kind"], o["name"]) for o in listed] == [
        ("trigger", "public.dag_run.keep_me"), ("operator", "public.=(oid,regclass)"), ("function", "public.keep_me()")]
    detail = finding["detail"]
    assert detail.startswith("3 object(s) in airflow_db_a run code in other sessions (the admitted plane's sessions "
                             "after a failover, or an admin's) and are not in dataplane_audit_allowed_objects: ")
    assert ("trigger public.dag_run.keep_me (owner airflow_db_a_schema): fires BEFORE INSERT OR UPDATE, FOR EACH "
            "ROW on public.dag_run in every session that writes that table; it runs public.keep_me() (owner "
            "airflow_db_a_schema)") in detail
    assert ("operator public.=(oid,regclass) (owner airflow_db_a_schema): chosen over PostgreSQL's own operator, "
            "when its argument types fit better, in any session whose search_path includes schema public (the "
            "default search_path does); it runs public.eq(oid,regclass) (owner airflow_db_a_schema), SECURITY "
            "DEFINER: with airflow_db_a_schema's privileges") in detail
    assert listed[0]["why"].endswith("; in the admitted plane's sessions after a failover, or an admin's")


def test_allowed_objects_pass_and_are_listed():
    allowed = co.parse_allowed(["trigger public.dag_run.keep_me", "function public.keep_me()"])
    finding, listed = co.finding(REC_A, [TRIGGER, FUNCTION], None, allowed)
    assert finding == {"check": "code_objects", "ok": True, "detail": (
        "only objects in dataplane_audit_allowed_objects run code in other sessions in airflow_db_a: "
        "trigger public.dag_run.keep_me, function public.keep_me()")}
    assert all(o["allowed"] for o in listed)


def test_nothing_found_and_nothing_readable():
    finding, listed = co.finding(REC_A, [], None, [])
    assert finding["ok"] and listed == []
    finding, listed = co.finding(REC_A, None, "FATAL: no", [], connected_as="commander_user")
    assert not finding["ok"] and listed == []
    assert finding["detail"].startswith("the code objects of airflow_db_a could not be read as commander_user: FATAL: no")


def test_long_lists_are_cut_in_the_detail_not_in_the_result():
    many = [dict(FUNCTION, name="public.f%02d()" % i) for i in range(13)]
    finding, listed = co.finding(REC_A, many, None, [])
    assert len(listed) == 13
    assert "public.f09()" in finding["detail"] and "public.f10()" not in finding["detail"]
    assert finding["detail"].endswith("... and 3 more (listed in code_objects)")


@pytest.mark.parametrize("obj, text", [
    (dict(FUNCTION, security_definer=True),
     "SECURITY DEFINER: runs with the privileges of its owner airflow_db_a_schema in every session that calls it"),
    (dict(FUNCTION, kind="function", extension="ext1", security_definer=True), "; member of extension ext1"),
    (dict(TRIGGER, event="10", enabled=False),
     "fires BEFORE DELETE, FOR EACH STATEMENT on public.dag_run in every session that writes that table; "
     "disabled now, but its table's owner can enable it"),
    (dict(TRIGGER, event="85"), "fires INSTEAD OF INSERT OR UPDATE, FOR EACH ROW"),
    ({"kind": "rule", "name": "public.t.r", "target": "public.t", "event": "2 instead", "enabled": True},
     "rewrites every UPDATE on public.t (DO INSTEAD) in the session that runs it"),
    ({"kind": "cast", "name": "(public.mood AS integer)", "event": "i", "runs": "public.m(public.mood)"},
     "a cast has no schema: every session of the database applies it implicitly"),
    ({"kind": "event_trigger", "name": "e", "event": "ddl_command_start", "enabled": True},
     "fires on ddl_command_start in every session of the database"),
    (dict(OPERATOR, target="other"), "includes schema other; it runs"),
])
def test_why_says_where_it_runs(obj, text):
    assert text in co.why(obj)


def test_merge_findings_adds_the_check_to_present_deployments_that_were_read():
    results = [{"id": "a", "state": "present", "database": "airflow_db_a", "findings": [], "drift": False,
                "fence_capable": True, "fence_route": "helper"},
               {"id": "b", "state": "present", "database": "airflow_db_b", "findings": [], "drift": False,
                "fence_capable": True, "fence_route": "helper"}]
    results, overall = co.merge_findings(results, [REC_A, REC_B], {"airflow_db_a": [TRIGGER]}, {}, [],
                                         summary_line, overall_summary)
    assert overall["drifted"] == ["a"]
    assert results[0]["summary"].startswith("a: DRIFT (1), fence capable (helper): code_objects: 1 object(s)")
    assert results[0]["code_objects"][0]["name"] == "public.dag_run.keep_me"
    assert "text" not in results[0]["code_objects"][0]
    assert results[1]["findings"] == [] and "code_objects" not in results[1]


# ----------------------------------------------------------------------------- the query

# Text of the query outside string literals, with every OPERATOR(pg_catalog.x) taken out: what
# is left must hold no operator that name resolution (the search path) would pick.
def _bare_operators(query):
    text = re.sub(r"'(?:[^']|'')*'", "''", query)
    text = re.sub(r"OPERATOR\(pg_catalog\.(=|<>|>=|<=|<|>|\|\|)\)", " ", text)
    text = text.replace("::", " ")
    return re.findall(r"[=<>!~|+\-*/%^&#@]+", text)


def test_the_query_resolves_no_operator_through_the_search_path():
    assert _bare_operators(co.CODE_OBJECTS_QUERY) == []
    assert _bare_operators("SELECT a = b") == ["="]       # the check itself can fail
    assert " IN (" not in co.CODE_OBJECTS_QUERY.upper()   # x IN (...) is x = ... : use = ANY


def test_the_query_qualifies_every_function_catalog_and_cast():
    query = re.sub(r"'(?:[^']|'')*'", "''", co.CODE_OBJECTS_QUERY)
    for name in re.findall(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(", query):
        assert name.startswith("pg_catalog.") or name.upper() in ("OPERATOR", "AS", "IN", "EXISTS", "AND", "OR"), name
    for name in re.findall(r"(?:FROM|JOIN)\s+([A-Za-z_][A-Za-z0-9_.]*)", query):
        assert name.startswith("pg_catalog.") or name in ("ext", "nsp"), name
    for target in re.findall(r"::\s*([A-Za-z_][A-Za-z0-9_.\"]*)", query):
        assert target.startswith("pg_catalog."), target
    assert lp.VERIFIERS_QUERY.count("OPERATOR(pg_catalog.=)") == 1


# ----------------------------------------------------------------------------- login_passwords

def _with_passwords(rec, **passwords):
    return dict(rec, passwords=passwords)


class _Session(object):
    """Rows for the two queries of login_passwords.read_facts."""

    def __init__(self, readable, stored):
        self.readable, self.stored, self.ran = readable, stored, []

    def rows(self, statement, params=None):
        self.ran.append(statement)
        if statement == lp.READABLE_QUERY:
            return [{"readable": self.readable}]
        return [{"rolname": n, "rolpassword": v} for n, v in self.stored.items() if n in params["names"]]


def test_passwords_compared_only_when_given():
    assert lp.read_facts(_Session(True, {}), [REC_A]) is None
    assert lp.finding(REC_A, None) is None


def test_changed_and_missing_passwords_are_reported_without_secrets():
    rec = _with_passwords(REC_A, dp1="one-secret", dp2="two-secret")
    stored = {"dp1_user_a": scram_secret("one-secret"), "dp2_user_a": scram_secret("changed")}
    facts = lp.read_facts(_Session(True, stored), [rec])
    assert facts == {"readable": True, "match": {"dp1_user_a": True, "dp2_user_a": False}}
    finding = lp.finding(rec, facts)
    assert finding["ok"] is False
    assert finding["detail"].startswith("dp2_user_a (plane dp2): the stored password is not the one given")
    assert "dp1_user_a" not in finding["detail"] and "secret" not in finding["detail"]

    facts = lp.read_facts(_Session(True, {"dp1_user_a": None, "dp2_user_a": scram_secret("two-secret")}), [rec])
    assert lp.finding(rec, facts)["detail"].startswith("dp1_user_a (plane dp1) has no password stored")

    facts = lp.read_facts(_Session(True, {"dp1_user_a": scram_secret("one-secret"),
                                          "dp2_user_a": scram_secret("two-secret")}), [rec])
    assert lp.finding(rec, facts) == {"check": "login_passwords", "ok": True,
                                      "detail": "the stored passwords of dp1_user_a, dp2_user_a are the ones given"}


def test_unreadable_pg_authid_compares_nothing():
    rec = _with_passwords(REC_A, dp1="one-secret")
    session = _Session(False, {"dp1_user_a": scram_secret("other")})
    facts = lp.read_facts(session, [rec])
    assert facts == {"readable": False, "match": {}}
    assert session.ran == [lp.READABLE_QUERY]
    finding = lp.finding(rec, facts, "commander_user")
    assert finding["ok"] and finding["detail"].startswith("not checked: commander_user cannot read pg_authid")


def test_absent_deployments_and_missing_roles_are_left_to_other_checks():
    rec = _with_passwords(REC_A, dp1="one-secret")
    assert lp.finding(dict(rec, state="absent"), {"readable": True, "match": {}}) is None
    assert lp.finding(rec, {"readable": True, "match": {}})["ok"] is True
