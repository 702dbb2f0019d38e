"""Input checks of the terminate_sessions module (module_utils/server/sessions.py), without a server."""

from ansible_collections.dataplane.postgresql.plugins.module_utils.server.sessions import session_record
from ansible_collections.dataplane.postgresql.plugins.module_utils.terminate.run import (
    terminate_request_problems,
)


def params(**kw):
    base = dict(roles=["dp1_user_a"], databases=None, killer_role=None, helper_schema="dataplane_fence",
                wait_timeout=30.0)
    base.update(kw)
    return base


def test_a_plain_request_has_no_problems():
    assert terminate_request_problems(params()) == []
    assert terminate_request_problems(params(databases=["ledger"], killer_role="ops_terminator")) == []


def test_every_problem_is_named():
    problems = terminate_request_problems(params(roles=[], databases=["x" * 64], killer_role="pg_monitor",
                                                 helper_schema="", wait_timeout=-0.5))
    assert any(p.startswith("database") for p in problems), problems
    assert any(p.startswith("killer_role") for p in problems), problems
    assert any(p.startswith("helper_schema") for p in problems), problems
    assert "roles must not be empty" in problems
    assert "wait_timeout must not be negative" in problems
    assert len(problems) == 5


def test_a_bad_role_name_is_refused():
    problems = terminate_request_problems(params(roles=["ok", "nul\x00"]))
    assert len(problems) == 1 and problems[0].startswith("role"), problems


def test_session_record_shape():
    rec = session_record(dict(pid=7, usename="r", datname="d", application_name="a", client_addr=None,
                              backend_start=None))
    assert rec == dict(pid=7, role="r", database="d", application="a", client_addr=None, backend_start=None)
