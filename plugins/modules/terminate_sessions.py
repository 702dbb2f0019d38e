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
  - dataplane.postgresql.fence_helper
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
  description:
    - Milliseconds from the first signal until the sessions were gone (or the timeout); in check mode,
      the listing. The older name of the sum of V(signal_ms) and V(wait_ms) in RV(timings) (V(list_ms) in
      check mode), kept as an alias.
  returned: always
  type: int
timings:
  description:
    - Whole milliseconds per phase (V(connect_ms), V(routes_ms), V(signal_ms) and V(wait_ms), or
      V(list_ms) in check mode) and V(total_ms), the module's whole run.
  returned: always
  type: dict
  contains:
    total_ms:
      description: Milliseconds of the whole run.
      type: int
queries:
  description: The statements that signalled sessions (empty in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dataplane.postgresql.plugins.module_utils.terminate.run import (  # this module's entry point
    DEFAULT_SCHEMA,
    connection_argument_spec,
    run_terminate_sessions,
)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        roles=dict(type="list", elements="str", required=True),
        databases=dict(type="list", elements="str"),
        killer_role=dict(type="str"),
        helper_schema=dict(type="str", default=DEFAULT_SCHEMA),
        wait_timeout=dict(type="float", default=30),
    )
    return spec


def main():
    run_terminate_sessions(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True))


if __name__ == "__main__":
    main()
