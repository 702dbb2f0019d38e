#!/usr/bin/python
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: membership
short_description: Role membership with the PostgreSQL 16 INHERIT, SET and ADMIN options, per grantor
version_added: 0.1.0
description:
  - Grants or revokes membership of roles (O(groups)) to other roles (O(target_roles)) and
    manages the membership options C(INHERIT), C(SET) and C(ADMIN) that PostgreSQL 16 added.
  - PostgreSQL 16 and newer keep one row in C(pg_auth_members) per group, member and
    B(grantor). The module compares and changes the row of one grantor (O(granted_by), or
    the connecting role) and leaves rows recorded by other grantors alone. The options a
    member effectively has are the OR across all its rows; the result reports them.
  - Whether something changed is decided by comparing C(pg_auth_members) before and after,
    never from command tags (PostgreSQL answers C(GRANT ROLE) for no-ops too).
  - Either O(groups) x O(target_roles) with one set of options, or a list of O(grants),
    each with its own options; all of them are converged in one call, over one connection,
    in one transaction. Everything is validated first (names, server version, that every
    role exists); on any problem nothing is changed.
  - On PostgreSQL 14 and 15 plain membership and O(admin_option) work, but the module fails
    before any change if O(inherit_option) or O(set_option) is requested, naming the server
    version. Those servers keep one row per group and member whoever granted it, so the
    grantor is not part of the comparison there.
author:
  - dataplane.postgresql contributors (@dataplane)
extends_documentation_fragment:
  - dataplane.postgresql.connection
attributes:
  check_mode:
    support: full
    details: Nothing is changed; RV(queries) lists the exact statements that would run.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows each affected membership's rows per grantor, with their options, before and after.
options:
  groups:
    description:
      - Roles to grant to (or revoke from) each of O(target_roles).
      - Mutually exclusive with O(grants); requires O(target_roles).
    type: list
    elements: str
    aliases: [group, source_role, source_roles]
  target_roles:
    description:
      - Roles that become (or stop being) members of each of O(groups).
    type: list
    elements: str
    aliases: [target_role, user, users]
  inherit_option:
    description:
      - The C(INHERIT) option of the membership (the member uses the group's privileges
        without C(SET ROLE)).
      - Omit it to keep the current value; a new membership then gets PostgreSQL's default
        (the member's C(INHERIT) attribute at grant time).
      - Needs PostgreSQL 16 or newer.
    type: bool
  set_option:
    description:
      - The C(SET) option of the membership (the member may C(SET ROLE) to the group).
      - Omit it to keep the current value; a new membership then gets PostgreSQL's default (true).
      - Needs PostgreSQL 16 or newer.
    type: bool
  admin_option:
    description:
      - The C(ADMIN) option of the membership (the member may grant the group to others).
      - Omit it to keep the current value; a new membership then gets PostgreSQL's default (false).
    type: bool
  granted_by:
    description:
      - The grantor whose row is managed (C(GRANTED BY)). The connecting role must be
        allowed to act as it (PostgreSQL requires that the grantor holds C(ADMIN) on the group).
      - When omitted, the connecting role. PostgreSQL records grants made by any superuser as
        granted by the bootstrap superuser (usually C(postgres)), and the module compares
        against that row. A non-superuser that holds C(ADMIN) only through another role
        should name that role here.
    type: str
  state:
    description:
      - V(present) creates the membership if this grantor has none and sets the options
        that are given and differ.
      - V(absent) removes this grantor's membership row (the options are ignored). Rows of
        other grantors remain, and then the member still belongs to the group; RV(remaining)
        says so.
    type: str
    choices: [present, absent]
    default: present
  grants:
    description:
      - Memberships to converge in one call, each with its own options. Mutually exclusive
        with O(groups) and O(target_roles).
      - A key omitted from an item takes the value of the top-level option of the same name
        (O(inherit_option), O(set_option), O(admin_option), O(granted_by), O(state)).
      - Entries are applied in order; contradicting entries for the same group, member and
        grantor are rejected.
    type: list
    elements: dict
    suboptions:
      group:
        description: Role granted.
        type: str
        required: true
      target_role:
        description: Member role.
        type: str
        required: true
      inherit_option:
        description: As the top-level O(inherit_option).
        type: bool
      set_option:
        description: As the top-level O(set_option).
        type: bool
      admin_option:
        description: As the top-level O(admin_option).
        type: bool
      granted_by:
        description: As the top-level O(granted_by).
        type: str
      state:
        description: As the top-level O(state) (which it defaults to).
        type: str
        choices: [present, absent]
notes:
  - Role names are used exactly as given (case and hyphens are kept; they are always quoted).
    Names that are empty, contain NUL, are longer than 63 bytes, start with C(pg_) or are
    reserved (C(public)) are rejected before any change.
  - Roles are never created; a missing group, member or grantor fails the task listing every
    missing role.
  - Revoking C(ADMIN) from a role that has granted the group onward fails in PostgreSQL
    (C(dependent privileges exist)); the module does not cascade.
seealso:
  - module: community.postgresql.postgresql_membership
  - name: GRANT (PostgreSQL documentation)
    description: Role membership options.
    link: https://www.postgresql.org/docs/current/sql-grant.html
"""

EXAMPLES = r"""
- name: Let the connection-terminator role be a bare member of both login roles
  dataplane.postgresql.membership:
    groups: [dp1_user_a, dp2_user_a]
    target_roles: airflow_conn_killer_a
    inherit_option: false
    set_option: false
    login_host: db.example.com
    login_user: postgres

- name: Many memberships with their own options in one transaction
  dataplane.postgresql.membership:
    grants:
      - {group: airflow_db_a_owner, target_role: commander_user}
      - {group: airflow_conn_killer_a, target_role: commander_user, inherit_option: true, set_option: true}
      - {group: dp1_user_a, target_role: airflow_conn_killer_a, inherit_option: false, set_option: false}

- name: Remove the membership granted by role team_admin, keep the others
  dataplane.postgresql.membership:
    groups: reporting
    target_roles: "Alice-Ops"
    granted_by: team_admin
    state: absent
  register: revoked

- name: Tell whether the member still belongs through another grantor
  ansible.builtin.debug:
    msg: "still a member through {{ revoked.remaining[0].grantors | join(', ') }}"
  when: revoked.remaining | length > 0
"""

RETURN = r"""
queries:
  description: Statements run (in check mode, the statements that would run), in order.
  returned: always
  type: list
  elements: str
  sample: ['GRANT "dp1_user_a" TO "airflow_conn_killer_a" WITH INHERIT FALSE, SET FALSE']
memberships:
  description: One entry per requested grant, in request order.
  returned: always
  type: list
  elements: dict
  contains:
    group:
      description: The group role.
      type: str
      sample: dp1_user_a
    target_role:
      description: The member role.
      type: str
      sample: airflow_conn_killer_a
    state:
      description: The requested state.
      type: str
      sample: present
    grantor:
      description: The grantor whose row was compared (O(granted_by) or the role PostgreSQL records for the connecting role).
      type: str
      sample: postgres
    changed:
      description: Whether this group and member's rows differ after the call (in check mode, would differ).
      type: bool
    member_before:
      description: Whether any grantor's row made the target role a member before the call.
      type: bool
    member_after:
      description: Whether any grantor's row makes the target role a member after the call.
      type: bool
    effective_before:
      description: Options OR-ed across all grantors' rows before the call; null if not a member.
        On PostgreSQL < 16 C(inherit_option) and C(set_option) are null.
      type: dict
      sample: {inherit_option: true, set_option: false, admin_option: false}
    effective_after:
      description: Options OR-ed across all grantors' rows after the call; null if not a member.
      type: dict
      sample: {inherit_option: false, set_option: false, admin_option: false}
    grants_before:
      description: The rows of C(pg_auth_members) for this group and member before the call, one per grantor.
      type: list
      elements: dict
      sample: [{grantor: postgres, inherit_option: true, set_option: false, admin_option: false}]
    grants_after:
      description: The rows after the call (predicted in check mode).
      type: list
      elements: dict
      sample: [{grantor: postgres, inherit_option: false, set_option: false, admin_option: false}]
remaining:
  description:
    - For each group and member requested V(absent) that is still a member through rows of
      other grantors, those grantors and the effective options left. Empty when none remain.
  returned: always
  type: list
  elements: dict
  sample: [{group: reporting, target_role: Alice-Ops, grantors: [postgres],
            effective: {inherit_option: true, set_option: true, admin_option: false}}]
server_version:
  description: The server's version (major.minor).
  returned: always
  type: str
  sample: '16.15'
acting_grantor:
  description: The grantor PostgreSQL records when O(granted_by) is omitted (the bootstrap
    superuser's name for a superuser login, else the login role).
  returned: always
  type: str
  sample: postgres
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dataplane.postgresql.plugins.module_utils.database import (
    Session,
    connect,
    connection_argument_spec,
    version_label,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.memberships import (
    converge_grants,
    grant_problems,
    normalize_grant,
)

_DEFAULTED_KEYS = ("inherit_option", "set_option", "admin_option", "granted_by", "state")


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        groups=dict(type="list", elements="str", aliases=["group", "source_role", "source_roles"]),
        target_roles=dict(type="list", elements="str", aliases=["target_role", "user", "users"]),
        inherit_option=dict(type="bool"),
        set_option=dict(type="bool"),
        admin_option=dict(type="bool"),
        granted_by=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        grants=dict(type="list", elements="dict", options=dict(
            group=dict(type="str", required=True),
            target_role=dict(type="str", required=True),
            inherit_option=dict(type="bool"),
            set_option=dict(type="bool"),
            admin_option=dict(type="bool"),
            granted_by=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"]),
        )),
    )
    return spec


def requested_grants(params):
    """The grant dicts the module's parameters ask for."""
    defaults = dict((key, params.get(key)) for key in _DEFAULTED_KEYS)
    if params.get("grants") is not None:
        return [normalize_grant(item, defaults) for item in params["grants"]]
    out = []
    for group in params.get("groups") or []:
        for member in params.get("target_roles") or []:
            out.append(normalize_grant({"group": group, "target_role": member}, defaults))
    return out


def _diff_view(rows):
    view = {}
    for row in rows:
        key = "%s in %s" % (row["member"], row["group"])
        view.setdefault(key, {})[row["grantor"] or ""] = dict(
            (name, row[name]) for name in ("inherit_option", "set_option", "admin_option"))
    return view


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[["groups", "grants"], ["target_roles", "grants"]],
        required_together=[["groups", "target_roles"]],
        required_one_of=[["groups", "grants"]],
    )
    grants = requested_grants(module.params)
    # Names and option types first: a bad name fails without even connecting.
    problems = grant_problems(grants, None)
    if problems:
        module.fail_json(msg="Invalid membership request: %s" % "; ".join(problems),
                         problems=problems, queries=[])

    conn = connect(module, autocommit=False)
    session = Session(module, conn)
    result = converge_grants(session, grants, module.check_mode)
    if module.check_mode:
        conn.rollback()
    else:
        conn.commit()
    session.close()

    output = dict(
        changed=result["changed"],
        queries=result["statements"],
        memberships=result["memberships"],
        remaining=result["remaining"],
        server_version=version_label(result["server_version_num"]),
        acting_grantor=result["acting_grantor"],
    )
    if result["unconverged"]:
        module.warn("PostgreSQL did not record these memberships as requested (another grantor "
                    "may have been chosen; set granted_by): %s"
                    % ", ".join("%s -> %s" % (g["group"], g["target_role"]) for g in result["unconverged"]))
    if module._diff:
        output["diff"] = dict(before=_diff_view(result["before"]), after=_diff_view(result["after"]))
    module.exit_json(**output)


if __name__ == "__main__":
    main()
