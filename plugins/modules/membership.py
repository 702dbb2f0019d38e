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
  - B(Matches community.postgresql 5.0.0.) A drop-in superset of
    M(community.postgresql.postgresql_membership) as of community.postgresql 5.0.0 (and of
    its 4.x releases on PostgreSQL 15) - its options (O(groups), O(target_roles),
    O(memberships), O(admin_option), O(inherit_option), O(set_option), O(granted_by),
    O(granted_by_any), O(state), O(fail_on_role), O(session_role), O(trust_input)), aliases,
    return values (RV(queries), RV(granted), RV(revoked), RV(grants), RV(effective_options)...),
    warnings and the server state a task leaves mean the same; replacing the module name in a
    task is enough. O(grants), diff mode, RV(memberships), RV(remaining) and the other
    return values are additions.
  - B(Grantors, PostgreSQL 16+.) PostgreSQL keeps one row in C(pg_auth_members) per group,
    member and grantor; what a member may do is the union (OR) of the options across its
    rows. By default (as community.postgresql 5.0) a membership is B(one grantor's grant) -
    the grantor is O(granted_by), or else the connecting role (RV(acting_grantor), the
    bootstrap superuser for any superuser), and every statement names it in C(GRANTED BY).
    V(present) makes that grantor's own grant even when another role already granted the
    membership (so it no longer depends on that role) and sets the options on it only;
    V(absent) and V(exact) revoke only that grant. Where another grantor's grant keeps the
    member in the group, or keeps an option the task sets to V(false), the module warns
    (C(remains a member), C(keeps the ... option)) and RV(effective_options) shows what the
    member really holds.
  - Before any statement, the module checks that the grantor can make the grants it is
    about to make - it holds C(ADMIN OPTION) on the group (the bootstrap superuser needs
    none) and the connecting role has its privileges - and otherwise fails naming the roles
    that could be used in O(granted_by). A non-superuser that holds C(ADMIN OPTION) only
    through another role is refused this way (PostgreSQL would record the grant under that
    other role).
  - O(granted_by_any=true) is the grantor-agnostic model (this module's default before
    0.3.0) - V(present) is satisfied when the options of all grantors' rows together are the
    requested ones (else the connecting role's row is created or updated, its C(GRANT)
    naming no grantor); V(absent) and V(exact) revoke every grantor's row, so the member
    really leaves the group.
  - Whether something changed is decided by comparing C(pg_auth_members) before and after,
    never from command tags (PostgreSQL answers C(GRANT ROLE) for no-ops too).
  - All memberships of a call are converged over one connection, in one transaction.
    Everything is validated first (names, server version, that every role exists); on any
    problem nothing is changed.
  - On PostgreSQL 14 and 15 plain membership and O(state) work like community.postgresql 4.x
    (one row per group and member, whoever granted it; statements name no grantor), and
    O(admin_option) works too (an addition); O(inherit_option), O(set_option) and
    O(granted_by) fail before any change, naming the server version.
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
      - As in community.postgresql, leading and trailing spaces are removed from each name, so
        a comma-separated string such as C(read_only, audit) works.
      - An empty list is allowed (with O(state=exact) it removes every membership of the target
        roles); C(null) is an error.
      - A group may be one of PostgreSQL's predefined roles (C(pg_monitor), C(pg_read_all_data)...).
      - Mutually exclusive with O(grants) and O(memberships); requires O(target_roles).
    type: list
    elements: str
    aliases: [group, source_role, source_roles]
  target_roles:
    description:
      - Roles that become (or stop being) members of each of O(groups). Spaces are removed
        as for O(groups). An empty list changes nothing; C(null) is an error.
      - With O(memberships), the target roles of the rows that name none.
    type: list
    elements: str
    aliases: [target_role, user, users]
  fail_on_role:
    description:
      - If V(true), fail (changing nothing) when a group or target role does not exist. If
        V(false), warn, leave those roles out (also from RV(groups) and RV(target_roles)) and
        go on with the others.
      - A O(granted_by) role that does not exist always fails.
    version_added: 0.2.0
    type: bool
    default: true
  session_role:
    description:
      - Switch to this role (C(SET ROLE), the name quoted as an identifier) after connecting;
        the statements then run, and are recorded, as that role. The login role must be allowed
        to C(SET ROLE) to it.
      - The name is validated first (not empty, no NUL, at most 63 bytes).
    version_added: 0.2.0
    type: str
  trust_input:
    description:
      - If V(false), refuse values of O(groups), O(target_roles), O(session_role),
        O(granted_by) and the names in O(grants) that look like SQL injection, with
        community.postgresql's check and message.
      - Names are always passed to PostgreSQL as quoted identifiers, so V(true) (the default)
        is safe here; the option exists for compatibility.
    version_added: 0.2.0
    type: bool
    default: true
  login_db:
    description:
      - Name of the database to connect to.
      - C(db) is an alias kept for compatibility with community.postgresql.postgresql_membership.
    type: str
    default: postgres
    aliases: [db]
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
      - The grantor whose grant is managed (C(GRANTED BY)). It must exist, hold C(ADMIN
        OPTION) on the groups, and the connecting role must have its privileges (a superuser
        has every role's); the module checks this before any statement.
      - When omitted, the grantor is the connecting role (O(session_role) if set), or the
        bootstrap superuser (usually C(postgres)) when that role is a superuser, as PostgreSQL
        records it (RV(acting_grantor)). A non-superuser that holds C(ADMIN OPTION) only
        through another role names that role here.
      - Needs PostgreSQL 16 or newer (before 16 a membership has one row whoever granted it).
      - Mutually exclusive with O(granted_by_any).
    type: str
  granted_by_any:
    description:
      - V(true) handles each membership as a whole, whoever granted it (PostgreSQL 16+; on
        15 the two models coincide). V(present) is satisfied when the options OR-ed across
        every grantor's rows are the requested ones, else the connecting role's row is
        created or updated with a C(GRANT) that names no grantor (PostgreSQL picks it).
        V(absent), and V(exact) for the groups it removes, revoke every grantor's row (one
        C(REVOKE ... GRANTED BY) per grantor), so the member really leaves the group; that
        needs the privileges of each grantor (a superuser has them), checked before any
        statement.
      - V(false) (the default) is community.postgresql 5.0's grantor-scoped model (see the
        description). This collection's own provisioning (C(deployment_setup) with
        C(all_grantors), set by the C(deployments) role) judges memberships across every
        grantor's rows, too.
      - The default for the O(memberships) rows that set neither their own
        O(memberships[].granted_by_any) nor O(memberships[].granted_by), and what V(exact) uses
        for the groups no row names. A O(grants) or O(memberships) item that names its own
        C(granted_by) manages that grantor's grant.
    type: bool
    default: false
    version_added: 0.3.0
  state:
    description:
      - V(present) makes each target role a member of each group with the requested options.
      - V(absent) revokes the grant of the grantor (O(granted_by), or the connecting role's);
        options are ignored, with a warning. Other grantors' grants remain, the member still
        belongs to the group, the module warns (C(remains a member)) and RV(remaining) says
        through whom. With O(granted_by_any=true) every grantor's row is revoked.
      - V(exact) makes each target role a member of the requested groups (as V(present)) and
        of no other group the grantor granted; a membership another role granted is kept and
        warned about (with O(granted_by_any=true) it is revoked too). With O(memberships) it
        spans the rows - a target role keeps every group any row names for it. Not available
        with O(grants).
    type: str
    choices: [present, absent, exact]
    default: present
  memberships:
    description:
      - community.postgresql's list form - one row per set of memberships, each with its own
        grantor and options, converged in one call and one transaction. Mutually exclusive
        with O(groups) and O(grants).
      - A row's O(memberships[].target_roles) replaces the top-level O(target_roles), which is
        the fallback for rows that name none. A key omitted from a row takes the top-level
        option of the same name (O(inherit_option), O(set_option), O(admin_option),
        O(granted_by)).
      - Two rows describing the same grant (group, target role and O(memberships[].granted_by))
        are refused. An empty list with O(state=exact) leaves the top-level O(target_roles) in
        no group the grantor granted.
    type: list
    elements: dict
    version_added: 0.3.0
    suboptions:
      groups:
        description: Groups granted to (or revoked from) the target roles of this row.
        type: list
        elements: str
        required: true
      target_roles:
        description: The target roles of this row (default the top-level O(target_roles)).
        type: list
        elements: str
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
      granted_by_any:
        description:
          - As the top-level O(granted_by_any), for this row (default the top-level value).
          - Cannot be combined with O(memberships[].granted_by) or the option keys of the row,
            which describe one grant.
        type: bool
  grants:
    description:
      - Memberships to converge in one call, each with its own options. Mutually exclusive
        with O(groups), O(target_roles) and O(memberships).
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
        description: As the top-level O(state) (which it defaults to; V(exact) is not allowed here).
        type: str
        choices: [present, absent]
notes:
  - Deliberate differences from community.postgresql 5.0.0, none of which changes the server
    state a task leaves, are explained in C(docs/membership.md) of the collection - names are
    always quoted identifiers, a name given twice is handled once, check mode predicts instead
    of rolling back, C(null) O(groups) or O(target_roles) is an error, O(admin_option) also
    works on PostgreSQL 15, refusals use this collection's message format.
  - Refused input fails with C(membership request refused, nothing was changed) followed by
    one sentence per problem, also listed in C(problems).
  - Role names are used exactly as given in O(grants) (case and hyphens are kept; they are
    always quoted). Names that are empty, contain NUL, are longer than 63 bytes, start with
    C(pg_) (except existing predefined roles as groups) or are reserved (C(public)) are
    rejected before any change.
  - Roles are never created; a missing group, member or grantor fails the task listing every
    missing role (see O(fail_on_role)).
  - Revoking C(ADMIN) from a role that has granted the group onward fails in PostgreSQL
    (C(dependent privileges exist)); the module does not cascade.
seealso:
  - module: community.postgresql.postgresql_membership
  - name: GRANT (PostgreSQL documentation)
    description: Role membership options.
    link: https://www.postgresql.org/docs/current/sql-grant.html
"""

EXAMPLES = r"""
- name: Drop-in for community.postgresql.postgresql_membership (only the module name changed)
  dataplane.postgresql.membership:
    group: read_only
    target_roles: alice, bob
    db: postgres
    state: present
  register: ro

- name: Upstream's return values are there
  ansible.builtin.debug:
    msg: "newly granted read_only to {{ ro.granted['read_only'] | join(', ') }}"

- name: Make sure alice belongs to marketing and sales and to no other group
  dataplane.postgresql.membership:
    groups: [marketing, sales]
    target_role: alice
    state: exact

# alice is already a member of reporting, granted by team_admin. As in
# community.postgresql 5.0, this task makes the connecting role's own grant beside it.
- name: Alice is a member of reporting through our own grant
  dataplane.postgresql.membership:
    groups: reporting
    target_roles: alice
    inherit_option: true

# The grantor-agnostic model: any grant counts for present, absent revokes every grant.
- name: Alice leaves reporting, whoever granted it
  dataplane.postgresql.membership:
    groups: reporting
    target_roles: alice
    granted_by_any: true
    state: absent

- name: community.postgresql's list form, a grantor and options per row
  dataplane.postgresql.membership:
    target_roles: [alice, bob]
    memberships:
      - groups: read_only
      - groups: read_write
        granted_by: dba_team
        set_option: false

# With granted_by: the row of that grantor is converged, the others are left alone.
- name: The row granted by team_admin has SET FALSE
  dataplane.postgresql.membership:
    groups: reporting
    target_roles: alice
    granted_by: team_admin
    set_option: false

- name: Many memberships with their own options in one transaction
  dataplane.postgresql.membership:
    login_host: db.example.com
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
  description:
    - Statements run (in check mode, the statements that would run), in order.
    - On PostgreSQL 16+ each statement names its grantor in C(GRANTED BY), as in
      community.postgresql 5.0 (with O(granted_by_any=true) a C(GRANT) names none and
      PostgreSQL picks the grantor; each C(REVOKE) names the grantor of the row it removes).
      Before 16 no statement names a grantor.
  returned: always
  type: list
  elements: str
  sample: ['GRANT "dp1_user_a" TO "airflow_conn_killer_a" WITH INHERIT FALSE, SET FALSE GRANTED BY "postgres"']
state:
  description: The requested O(state) (as in community.postgresql).
  returned: success
  type: str
  sample: present
groups:
  description:
    - The groups of the task after removing spaces and, with O(fail_on_role=false), the roles
      that do not exist (as in community.postgresql). With O(grants), the groups named there.
  returned: success
  type: list
  elements: str
  sample: [read_only]
target_roles:
  description: The target roles, the same way as RV(groups).
  returned: success
  type: list
  elements: str
  sample: [alice, bob]
granted:
  description:
    - For each group, the target roles a C(GRANT) was (in check mode, would be) run for, as in
      community.postgresql. A new membership, or new options on an existing one.
    - With O(state=present) and O(state=exact) every group of the task has a key (an empty
      list when nothing was granted), as in community.postgresql 5.0.
  returned: when O(state) is V(present) or V(exact), and with O(grants)
  type: dict
  sample: {read_only: [alice, bob]}
revoked:
  description:
    - For each group, the target roles whose membership was (in check mode, would be) revoked.
    - With O(state=absent) every group of the task has a key; with O(state=exact) only the
      groups revoked from someone.
  returned: when O(state) is V(absent) or V(exact), and with O(grants)
  type: dict
  sample: {read_only: [alice]}
memberships:
  description:
    - One entry per requested grant, in request order, with the per-grantor detail. With
      O(state=exact) the memberships it revokes come first, with state V(absent).
  returned: success
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
      description: The requested state (V(present) or V(absent)).
      type: str
      sample: present
    grantor:
      description: O(granted_by), or the role PostgreSQL records for the connecting role.
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
  returned: success
  type: list
  elements: dict
  sample: [{group: reporting, target_role: Alice-Ops, grantors: [postgres],
            effective: {inherit_option: true, set_option: true, admin_option: false}}]
server_version:
  description: The server's version (major.minor).
  returned: success
  type: str
  sample: '16.15'
grants:
  description:
    - community.postgresql 5.0's view of the requested memberships after the call (predicted
      in check mode) - for each group and target role, every grantor's grant with its options,
      including grants the task does not manage.
    - Pairs whose target role is not a member are left out. Before PostgreSQL 16 only
      C(admin_option) is given.
    - Not to be confused with the O(grants) option.
  returned: success
  type: dict
  version_added: 0.3.0
  sample: {read_only: {alice: [{grantor: postgres, admin_option: false, inherit_option: true, set_option: true}]}}
effective_options:
  description:
    - What each target role really holds in each requested group after the call - the union
      (OR) of the options of all its grantors' grants. Only pairs where the target role is a
      member; before PostgreSQL 16 only C(admin_option).
  returned: success
  type: dict
  version_added: 0.3.0
  sample: {read_only: {alice: {admin_option: false, inherit_option: true, set_option: true}}}
acting_grantor:
  description: The grantor PostgreSQL records when O(granted_by) is omitted (the bootstrap
    superuser's name for a superuser login or O(session_role), else that role).
  returned: success
  type: str
  sample: postgres
timings:
  description: Wall milliseconds of the call (C(total_ms)) and of its phases (C(connect_ms),
    C(converge_ms)).
  returned: success
  type: dict
  version_added: 0.2.0
  sample: {total_ms: 48, connect_ms: 12, converge_ms: 35}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dataplane.postgresql.plugins.module_utils.membership import run as membership_run  # this module's entry point


def main():
    module = AnsibleModule(argument_spec=membership_run.argument_spec(), supports_check_mode=True,
                           **membership_run.CONSTRAINTS)
    membership_run.run(module)


if __name__ == "__main__":
    main()
