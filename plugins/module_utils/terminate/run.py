# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The terminate_sessions module's action: check the request, find, terminate, wait, verify.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..base.database import Session, connect
from ..base.identifiers import identifier_problem, role_name_problem
from ..base.results import Timings, refuse
from ..server.sessions import (
    helper_one_call,
    session_record,
    signal_direct,
    signal_via_helper,
    termination_routes,
    wait_until_gone,
)

# What plugins/modules/ takes from this entry point (a module imports its action's entry point
# only; see docs/architecture.md).
from ..base.database import connection_argument_spec
from ..server.helper import DEFAULT_SCHEMA

__all__ = ["run_terminate_sessions", "connection_argument_spec", "DEFAULT_SCHEMA"]


def terminate_request_problems(params):
    """Problems in the terminate_sessions options (a module.params-like dict). Pure."""
    problems = []
    for role in params["roles"]:
        problems.append(identifier_problem(role, "role"))
    for db in params["databases"] or ():
        problems.append(identifier_problem(db, "database"))
    if params["killer_role"] is not None:
        problems.append(role_name_problem(params["killer_role"], "killer_role"))
    problems.append(identifier_problem(params["helper_schema"], "helper_schema"))
    if not params["roles"]:
        problems.append("roles must not be empty")
    if params["wait_timeout"] < 0:
        problems.append("wait_timeout must not be negative")
    return [p for p in problems if p]


def run_terminate_sessions(module):
    """The terminate_sessions module's main(): check, route, signal, wait, exit the module."""
    timings = Timings()
    params = module.params
    problems = terminate_request_problems(params)
    if problems:
        refuse(module, "terminate_sessions request", problems, timings=timings.as_dict())
    roles = list(dict.fromkeys(params["roles"]))
    databases = params["databases"]
    schema = params["helper_schema"]

    session = Session(module, connect(module, autocommit=True))
    timings.mark("connect")
    try:
        routes = termination_routes(session, [(r, params["killer_role"]) for r in roles], schema=schema)
        timings.mark("routes")
        missing = [r for r in routes if r["route"] is None]
        if missing:
            session.fail("cannot terminate the sessions of %s; nothing was signalled: %s"
                         % (", ".join(r["role"] for r in missing), "; ".join(r["problem"] for r in missing)),
                         routes=dict((r["role"], r["route"]) for r in routes),
                         problems=[r["problem"] for r in missing], timings=timings.as_dict())
        direct = [r["role"] for r in routes if r["route"] == "direct"]
        helper_pairs = [(params["killer_role"], r["role"]) for r in routes if r["route"] == "helper"]
        signal = not module.check_mode
        one_call = helper_one_call(routes)

        def signal_sessions(direct_roles, pairs):
            """List (and, unless in check mode, signal) sessions; one statement per route."""
            out = []
            for row in signal_direct(session, direct_roles, databases, signal=signal):
                out.append(dict(session_record(row), route="direct", terminated=bool(row["terminated"])))
            for row in signal_via_helper(session, pairs, databases, signal=signal, schema=schema,
                                         one_call=one_call):
                out.append(dict(session_record(row), route="helper", terminated=bool(row["terminated"])))
            return out

        found = signal_sessions(direct, helper_pairs)
        timings.mark("signal" if signal else "list")
        if signal:
            def on_new(fresh):  # a session that appeared while we waited (e.g. a reconnect)
                roles_now = set(r["usename"] for r in fresh)
                known = set(s["pid"] for s in found)
                more = signal_sessions([r for r in direct if r in roles_now],
                                       [p for p in helper_pairs if p[1] in roles_now])
                found.extend(s for s in more if s["pid"] not in known)

            # poll until no session of the roles remains (not only the pids signalled first)
            remaining = [session_record(r) for r in wait_until_gone(
                session, roles, databases, timeout=params["wait_timeout"], on_new=on_new,
                seen_pids=[s["pid"] for s in found])]
            timings.mark("wait")
        else:  # check mode: nothing was signalled, so everything found remains
            remaining = [dict((k, v) for k, v in s.items() if k not in ("route", "terminated")) for s in found]
    except Exception as exc:
        session.fail("terminate_sessions: %s" % exc, timings=timings.as_dict())
    session.close()
    result = timings.as_dict()
    # check mode: changed when there is something to signal; else when a signal was accepted
    changed = bool(found) if module.check_mode else any(s["terminated"] for s in found)
    module.exit_json(changed=changed, sessions=found, remaining=remaining,
                     routes=dict((r["role"], r["route"]) for r in routes), timings=result,
                     elapsed_ms=sum(result.get(k, 0) for k in ("signal_ms", "wait_ms", "list_ms")),
                     queries=session.queries)
