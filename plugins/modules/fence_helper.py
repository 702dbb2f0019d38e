#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: fence_helper
short_description: Install the least-privilege session terminator used by the fence
description:
  - Installs, updates or removes the fence helper in the database the module connects to
    (O(login_db), default C(postgres)).
  - The helper is a C(SECURITY DEFINER) function
    C(<schema>.terminate_member_sessions(p_killer, p_roles, p_databases, p_signal)) owned by a
    C(NOLOGIN) role that holds C(pg_signal_backend) and C(pg_read_all_stats). It terminates only
    sessions of roles directly granted to the killer role named by the caller, never a
    superuser's session and never its own, and only when the caller's session user has the
    privileges of that killer role. Its C(search_path) is pinned to C(pg_catalog, pg_temp) and
    every name in it is schema-qualified.
  - The helper accepts a killer role only when it is in the helper's registry, a table
    C(<schema>.killer_roles) owned by O(owner_role) on which nobody holds any privilege. The module
    registers each role in O(killer_roles) by its oid and name, so a role that is dropped and
    created again under the same name is not registered until the module runs again. A role that
    can log in, or has C(SUPERUSER), C(CREATEROLE), C(REPLICATION) or C(BYPASSRLS), is refused
    as a killer role (nothing is changed).
  - C(EXECUTE) on the function and C(USAGE) on the schema are held by exactly the registered
    killer roles; any other privilege on the function, the schema or the registry (C(PUBLIC), other
    roles, grant options, C(CREATE)) is revoked.
  - Every part of the helper is compared and repaired in one transaction, namely the function's owner,
    body, language, C(SECURITY DEFINER), exact settings (C(proconfig)), arguments and result;
    overloads and any other object in the schema (dropped; the module refuses, changing nothing,
    to take over a schema that holds other objects and no helper); the owner role's attributes,
    the roles it holds and the roles that hold it; registry entries for roles that were dropped,
    renamed, or may not be killer roles.
  - The function body is versioned (a comment on the function carries the version); a newer
    collection replaces an older body.
  - Installing needs a superuser (or a role with C(ADMIN) on C(pg_signal_backend) and
    C(pg_read_all_stats), C(CREATEROLE) and C(CREATE) on the database, such as the admin of
    Amazon RDS/Aurora, Cloud SQL or Azure Flexible Server; it grants itself the owner role for the
    transaction where PostgreSQL 16 asks for C(SET ROLE), and revokes it before C(COMMIT));
    using it needs only the reference grants.
  - Works on PostgreSQL 14 to 18 (the function does not depend on the 16 membership options).
  - Everything runs in one transaction, committed at the end (nothing in check mode).
version_added: 0.1.0
author:
  - dataplane.postgresql contributors (@dataplane)
extends_documentation_fragment:
  - dataplane.postgresql.connection
attributes:
  check_mode:
    support: full
options:
  killer_roles:
    description:
      - Roles allowed to use the helper (the Deployments' connection-terminator roles). They must exist.
    type: list
    elements: str
    default: []
  schema:
    description:
      - Schema that holds the helper function. Created owned by O(owner_role), with no
        privileges for C(PUBLIC).
      - The alias O(helper_schema) is the name the other modules give the helper's schema
        (O(dataplane.postgresql.fence#module:helper_schema),
        O(dataplane.postgresql.terminate_sessions#module:helper_schema),
        O(dataplane.postgresql.deployment_setup#module:helper_schema),
        O(dataplane.postgresql.deployment_audit#module:helper_schema)); both names stay.
    type: str
    default: dataplane_fence
    aliases: [helper_schema]
  owner_role:
    description:
      - C(NOLOGIN) role that owns the function and holds C(pg_signal_backend) and
        C(pg_read_all_stats). Created when missing; C(LOGIN), C(CREATEROLE), C(CREATEDB),
        C(REPLICATION) and C(BYPASSRLS) are taken away if someone added them, and so are any
        other role granted to it and the C(ADMIN) option on the two predefined roles.
      - Memberships of other roles in it (any membership, also C(ADMIN) only, per grantor) are revoked,
        because such a role could redefine the function. A role holding C(ADMIN) on both predefined
        roles by memberships of its own, or through a role whose privileges it has while it does not
        inherit the owner role's (a managed-service admin and its provider group), is left alone,
        since it could grant them to itself.
      - A C(SUPERUSER) owner role is refused (nothing is changed).
      - The fence helper's owner, not a Deployment's owner role (the C(owner_role) of a Deployment
        record is the database owner). The alias O(helper_owner_role) is the name the other modules
        give it (O(dataplane.postgresql.deployment_setup#module:helper_owner_role),
        O(dataplane.postgresql.deployment_audit#module:helper_owner_role)); both names stay.
    type: str
    default: dataplane_fence_signaler
    aliases: [helper_owner_role]
  exact_killer_roles:
    description:
      - With V(false), O(killer_roles) are registered and other registered killer roles stay
        (so Deployments can be provisioned one at a time).
      - With V(true), the registry and the grants become exactly O(killer_roles); every other role is
        unregistered and loses C(EXECUTE) and C(USAGE).
    version_added: 0.2.0
    type: bool
    default: false
  state:
    description:
      - V(present) installs, updates or repairs the helper and registers O(killer_roles).
      - V(absent) drops the schema (with the function) and the owner role.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode; nothing is changed and RV(statements) shows what would run.
seealso:
  - module: dataplane.postgresql.terminate_sessions
  - module: dataplane.postgresql.fence
"""

EXAMPLES = r"""
- name: Install the fence helper for two Deployments
  dataplane.postgresql.fence_helper:
    login_user: postgres
    killer_roles:
      - airflow_conn_killer_a
      - airflow_conn_killer_b

- name: Remove the helper
  dataplane.postgresql.fence_helper:
    login_user: postgres
    state: absent
"""

RETURN = r"""
changed:
  description: Whether anything was (or in check mode would be) changed.
  returned: always
  type: bool
statements:
  description: The statements run (or that would run in check mode).
  returned: always
  type: list
  elements: str
queries:
  description: The statements run (empty in check mode).
  returned: always
  type: list
  elements: str
version:
  description: The helper version installed by this collection (null with O(state=absent)).
  returned: always
  type: str
  sample: "2"
missing_roles:
  description: Killer roles that do not exist (only in check mode; otherwise the module fails).
  returned: always
  type: list
  elements: str
timings:
  description: Whole milliseconds per phase (V(connect_ms), V(ensure_ms), V(status_and_commit_ms)) and
    V(total_ms), the module's whole run.
  returned: always
  type: dict
  contains:
    total_ms:
      description: Milliseconds of the whole run.
      type: int
unregistered:
  description: Roles removed from the registry by this run (dropped, renamed, not allowed as killer
    roles, or, with O(exact_killer_roles), not in O(killer_roles)).
  returned: always
  type: list
  elements: str
status:
  description: The helper as found after the run (before it in check mode).
  returned: always
  type: dict
  contains:
    installed:
      description: Whether the function exists.
      type: bool
    version:
      description: The version recorded on the function.
      type: str
    current:
      description: Whether the installed body, owner and settings are this collection's.
      type: bool
    owner_role:
      description: Owner of the function.
      type: str
    owner_can_signal:
      description: Whether the owner has the privileges of C(pg_signal_backend).
      type: bool
    usable_by:
      description: For each killer role, whether it may call the helper.
      type: dict
    function:
      description: The function's qualified signature.
      type: str
    owner_members:
      description: Non-superuser roles that could act as the owner role (and so redefine the function).
        Should be empty.
      type: list
      elements: str
    registered:
      description: For each killer role, whether it is in the registry (null when the registry cannot be
        read by the login).
      type: dict
    registry_readable:
      description: Whether the login could read the registry.
      type: bool
    problems:
      description: Every part of the helper that differs from what this module installs for
        O(killer_roles), each naming what is wrong. Empty after a successful run.
      type: list
      elements: str
    killer_problems:
      description: Per killer role, the problems of RV(status.problems) that concern only that role
        (not registered, may not be a killer role).
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dataplane.postgresql.plugins.module_utils.helper.run import (  # this module's entry point
    DEFAULT_OWNER_ROLE,
    DEFAULT_SCHEMA,
    connection_argument_spec,
    run_fence_helper,
)


def argument_spec():
    """The module's options: ``schema`` and ``owner_role`` are the contract's names; their aliases
    are the names the other modules give the same things (``helper_schema``, ``helper_owner_role``)."""
    spec = connection_argument_spec()
    spec.update(
        killer_roles=dict(type="list", elements="str", default=[]),
        schema=dict(type="str", default=DEFAULT_SCHEMA, aliases=["helper_schema"]),
        owner_role=dict(type="str", default=DEFAULT_OWNER_ROLE, aliases=["helper_owner_role"]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        exact_killer_roles=dict(type="bool", default=False),
    )
    return spec


def main():
    run_fence_helper(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True))


if __name__ == "__main__":
    main()
