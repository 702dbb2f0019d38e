#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: terminate_sessions
short_description: Terminate the sessions of PostgreSQL roles and wait until they are gone
description:
  - Terminates every session of O(roles) (optionally only in O(databases)), then polls
    C(pg_stat_activity) until they are gone or O(wait_timeout) expires, and returns each
    session and what remains.
  - Uses C(pg_terminate_backend) directly when the login may (it is a superuser, or has the
    privileges of the target role or of C(pg_signal_backend)); otherwise goes through the fence
    helper (M(dataplane.postgresql.fence_helper)) as O(killer_role), which works with the
    reference grants (target roles granted to the killer role C(WITH INHERIT FALSE, SET FALSE)).
  - All sessions are signalled at once, then waited for; the slow timeout form of
    C(pg_terminate_backend) is never used.
  - Before anything is signalled, every role is checked; if any role has no route the module
    fails and signals nothing.
  - In check mode the sessions are listed and nothing is signalled.
  - A session that commits while it is terminated (for example one waiting for synchronous
    replication) may already have committed; terminating never undoes committed work.
version_added: 0.1.0
author:
  - dataplane.postgresql contributors (@dataplane)
extends_documentation_fragment:
  - dataplane.postgresql.connection
attributes:
  check_mode:
    support: full
options:
  roles:
    description:
      - Roles whose sessions are terminated.
    type: list
    elements: str
    required: true
  databases:
    description:
      - Only sessions connected to these databases. All databases when omitted.
    type: list
    elements: str
  killer_role:
    description:
      - Go through the fence helper as this role for the roles the login cannot terminate
        directly. The login must have the privileges of this role, and each such role must be
        granted directly to it.
    type: str
  helper_schema:
    description:
      - Schema of the fence helper in the database the module connects to.
    type: str
    default: dataplane_fence
  wait_timeout:
    description:
      - Seconds to wait until no session of O(roles) (in O(databases)) remains. A session that
        appears while the module waits (a client reconnecting, for example) is signalled too.
        V(0) signals, looks once more, and returns.
    type: float
    default: 30
notes:
  - Supports check mode.
seealso:
  - module: dataplane.postgresql.fence_helper
  - module: dataplane.postgresql.fence
"""

EXAMPLES = r"""
- name: Terminate the dp1 login role's sessions through the killer role
  dataplane.postgresql.terminate_sessions:
    login_user: commander_user
    roles: [dp1_user_a]
    killer_role: airflow_conn_killer_a
    wait_timeout: 10

- name: As a superuser, terminate sessions in one database only
  dataplane.postgresql.terminate_sessions:
    login_user: postgres
    roles: [dp1_user_a, dp2_user_a]
    databases: [airflow_db_a]
"""

RETURN = r"""
changed:
  description: Whether PostgreSQL accepted the termination signal for at least one session; in check
    mode, whether there is any session to signal.
  returned: always
  type: bool
sessions:
  description: The sessions found (and, unless in check mode, signalled).
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Backend process id.
      type: int
    role:
      description: Role of the session.
      type: str
    database:
      description: Database of the session.
      type: str
    application:
      description: C(application_name) (null when the login may not see it).
      type: str
    client_addr:
      description: Client address (null for Unix sockets or when not visible).
      type: str
    backend_start:
      description: When the session started, ISO 8601 (null when not visible).
      type: str
    route:
      description: V(direct) or V(helper).
      type: str
    terminated:
      description: Whether PostgreSQL accepted the termination signal (false in check mode, and for a
        session that ended on its own just before the signal).
      type: bool
remaining:
  description: Sessions of O(roles) (in O(databases)) still present when the module returned.
  returned: always
  type: list
  elements: dict
routes:
  description: For each role, V(direct) or V(helper).
  returned: always
  type: dict
elapsed_ms:
  description: Milliseconds from the first signal until the sessions were gone (or the timeout).
  returned: always
  type: int
queries:
  description: The statements that signalled sessions (empty in check mode).
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dataplane.postgresql.plugins.module_utils.database import (
    Session,
    connect,
    connection_argument_spec,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.fence_helper import DEFAULT_SCHEMA
from ansible_collections.dataplane.postgresql.plugins.module_utils.identifiers import (
    identifier_problem,
    role_name_problem,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils import sessions as sess


def input_problems(params):
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


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        roles=dict(type="list", elements="str", required=True),
        databases=dict(type="list", elements="str"),
        killer_role=dict(type="str"),
        helper_schema=dict(type="str", default=DEFAULT_SCHEMA),
        wait_timeout=dict(type="float", default=30),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    problems = input_problems(params)
    if problems:
        module.fail_json(msg="invalid options: " + "; ".join(problems), problems=problems, queries=[])
    roles = list(dict.fromkeys(params["roles"]))
    databases = params["databases"]

    session = Session(module, connect(module, autocommit=True))
    try:
        routes = sess.termination_routes(session, [(r, params["killer_role"]) for r in roles],
                                         schema=params["helper_schema"])
        missing = [r for r in routes if r["route"] is None]
        if missing:
            session.fail("cannot terminate the sessions of %s; nothing was signalled: %s"
                         % (", ".join(r["role"] for r in missing), "; ".join(r["problem"] for r in missing)),
                         routes=dict((r["role"], r["route"]) for r in routes), problems=[r["problem"] for r in missing])
        direct = [r["role"] for r in routes if r["route"] == "direct"]
        helper_pairs = [(params["killer_role"], r["role"]) for r in routes if r["route"] == "helper"]
        signal = not module.check_mode

        def signal_sessions(direct_roles, pairs):
            """List (and, unless in check mode, signal) sessions; one statement per route."""
            out = []
            for row in sess.signal_direct(session, direct_roles, databases, signal=signal):
                out.append(dict(sess.session_record(row), route="direct", terminated=bool(row["terminated"])))
            for row in sess.signal_via_helper(session, pairs, databases, signal=signal,
                                              schema=params["helper_schema"]):
                out.append(dict(sess.session_record(row), route="helper", terminated=bool(row["terminated"])))
            return out

        start = time.monotonic()
        found = signal_sessions(direct, helper_pairs)
        if signal:
            def on_new(fresh):  # a session that appeared while we waited (e.g. a reconnect)
                roles_now = set(r["usename"] for r in fresh)
                known = set(s["pid"] for s in found)
                more = signal_sessions([r for r in direct if r in roles_now],
                                       [p for p in helper_pairs if p[1] in roles_now])
                found.extend(s for s in more if s["pid"] not in known)

            # poll until no session of the roles remains (not only the pids signalled first)
            remaining = [sess.session_record(r) for r in sess.wait_until_gone(
                session, roles, databases, timeout=params["wait_timeout"], on_new=on_new,
                seen_pids=[s["pid"] for s in found])]
        else:  # check mode: nothing was signalled, so everything found remains
            remaining = [dict((k, v) for k, v in s.items() if k not in ("route", "terminated")) for s in found]
        elapsed_ms = int(round((time.monotonic() - start) * 1000))
    except Exception as exc:
        session.fail("terminate_sessions: %s" % exc)
    session.close()
    # check mode: changed when there is something to signal; else when a signal was accepted
    changed = bool(found) if module.check_mode else any(s["terminated"] for s in found)
    module.exit_json(changed=changed, sessions=found, remaining=remaining,
                     routes=dict((r["role"], r["route"]) for r in routes), elapsed_ms=elapsed_ms,
                     queries=session.queries)


if __name__ == "__main__":
    main()
