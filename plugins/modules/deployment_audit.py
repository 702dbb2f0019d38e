#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: deployment_audit
short_description: Compare Airflow Deployments on a PostgreSQL server with the model, read-only
version_added: 0.1.0
description:
  - Reads the catalog of the server for every Deployment given (in a fixed number of queries,
    whatever the number of Deployments) inside a C(READ ONLY) transaction that is rolled back,
    plus one read-only query inside each metadata database (C(code_objects)), and compares it
    with the Deployment model. It never changes anything; RV(ignore:changed)
    is always C(false).
  - "Checks per Deployment (the C(check) names of RV(deployments[].findings)):
    C(database_exists); C(database_owner) (the owner role owns the database);
    C(public_connect) (PUBLIC has no CONNECT); C(connect_grantees) (exactly the login roles
    hold CONNECT, granted by the database owner; other grantees are listed with their grantors);
    C(owner_role) (NOLOGIN); C(killer_role) (NOLOGIN, NOINHERIT); C(killer_memberships)
    (the killer role holds exactly the login roles, each C(INHERIT FALSE, SET FALSE), no ADMIN);
    C(commander_owner_membership) and C(commander_killer_membership) (C(commander_user) is a
    member of the owner and killer roles, with their privileges); C(other_members) (no other
    role gets the owner's or the killer's privileges through INHERIT or SET); C(login_roles) (they exist, can
    log in, are not superusers and not members of the owner role); C(fence_capability);
    C(fence_state); C(fence_helper) (every part of an installed fence helper is what
    M(dataplane.postgresql.fence_helper) installs, see below)."
  - "C(fence_helper) compares the function (owner with O(helper_owner_role), body, language,
    C(SECURITY DEFINER), exact settings, arguments, result), every ACL entry of the function, its
    schema and its registry of killer roles (only the present Deployments' killer roles hold
    C(EXECUTE) and C(USAGE); nobody holds anything on the registry), overloads and other objects in
    the schema, the owner role's attributes and memberships in both directions, and the registry
    entries (dropped or renamed roles, roles that may not be killer roles, roles that are not the
    killer role of any present Deployment given: pass every Deployment of the server). The
    registry's entries are only read when the login may read it (an admin); as C(commander_user)
    the finding says they were not checked."
  - "C(fence_state) reads the fence state record a failover writes into the database's comment
    (see C(docs/fence-state.md)) and names the admitted and the fenced plane; without a record,
    one plane that cannot connect while another can is taken as fenced (inferred, no record).
    It is drift when the record cannot be read, when it is in phase C(fencing) (an interrupted
    failover), when a fenced login role can connect again (for example CONNECT granted back by
    hand) or has sessions in the database, when a login role the record admits cannot connect,
    and when no plane can connect at all."
  - "C(fence_capability) evaluates, for the Deployment's C(commander_user) (whoever the module
    connects as), whether a fence would work: switching CONNECT needs the owner role's
    privileges; terminating the login roles' sessions works either directly (C(commander_user)
    is a superuser, has the privileges of each login role, or of C(pg_signal_backend)) or through
    the fence helper (installed in O(helper_schema) of the database connected to, current,
    usable by the killer role, C(commander_user) has the killer role's privileges, and the login
    roles are granted to the killer role). With the vendor's reference grants alone the direct
    route fails, and the finding says so in those words."
  - On PostgreSQL older than 16 (no C(INHERIT)/C(SET) membership options) the audit still runs
    and reports a C(server_version) finding for every Deployment.
  - Deployments with C(state=absent) are checked for absence of their owner and killer roles
    (and of the database and login roles when C(drop_database) or C(drop_login_roles) is set).
  - "C(code_objects) (per present Deployment whose database exists): code that runs in other
    sessions. The module connects to each metadata database (one connection each, also used to
    name parity's objects) and lists, in one query, every trigger, rule, event trigger, operator,
    cast, function, procedure and aggregate that PostgreSQL did not create itself and that no
    extension owns, and every C(SECURITY DEFINER) function, each with its owner and why it matters
    (a trigger fires in the session that writes its table, an operator or a cast is chosen by name
    resolution in any session, ...: after a failover that is the admitted plane's session, or an
    admin's). Any such object not in O(allowed_objects) fails the finding; the result lists them
    all in RV(deployments[].code_objects). A database it cannot connect to fails the finding too,
    except one on which the login holds no C(CONNECT) privilege (a managed service's admin): the
    finding then says it was not checked, and the module warns."
  - "C(login_passwords) (only for records that carry C(passwords), and only when the login may
    read C(pg_authid), that is a superuser): each login role's stored SCRAM-SHA-256 (or md5)
    verifier is compared with the password given, on the managed node; a role whose password was
    changed outside the collection fails the finding. Without read access the finding says that
    nothing was compared. No password or verifier is ever returned."
  - Runs as C(commander_user) or as an admin; it needs no write privilege.
  - Of the records it uses C(id), C(state), the names, C(drop_database), C(drop_login_roles), and
    C(passwords) only for C(login_passwords) (never returned).
author:
  - dataplane.postgresql contributors (@dataplane)
attributes:
  check_mode:
    support: full
    description: The module never changes anything; check mode gives the same result.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
extends_documentation_fragment:
  - dataplane.postgresql.connection
  - dataplane.postgresql.deployment_record
options:
  helper_schema:
    description:
      - Schema of the fence helper, in the database the module connects to (O(login_db)); the same
        option as O(dataplane.postgresql.fence_helper#module:schema).
    type: str
    default: dataplane_fence
  helper_owner_role:
    description:
      - The role that should own the fence helper (its function, schema and registry); the same
        option as O(dataplane.postgresql.fence_helper#module:owner_role). Not a Deployment's owner
        role, which is O(deployments[].owner_role).
    version_added: 0.2.0
    type: str
    default: dataplane_fence_signaler
  parity:
    description:
      - "Also check plane parity (whether every plane can use and migrate Airflow's objects), with
        the checks C(schema_role) (it exists, C(NOLOGIN) without attributes, a member of no role,
        its members exactly the login roles, with C(SET)), C(role_settings) (each login role
        starts as the schema role in the database), C(object_owners) (every object in the
        database is owned by the schema role; without a schema role, none by a login role) and
        C(plane_privileges) (no login role holds privileges on objects, or memberships, that
        another lacks)."
      - The checks use the records' C(schema_role). It is V(null) when C(dataplane_object_privileges) is
        false, and then only C(object_owners) and C(plane_privileges) run, for the login roles.
      - They read shared catalogs (C(pg_shdepend), C(pg_db_role_setting)) over the same connection;
        the objects of a database that drifted are named over the connection that C(code_objects)
        opens to it.
      - Whether to check; what a failed check does to a fence is
        O(dataplane.postgresql.fence#module:parity_policy) of M(dataplane.postgresql.fence).
    version_added: 0.2.0
    type: bool
    default: true
  allowed_objects:
    description:
      - Code objects the user accepts in a metadata database (C(code_objects) does not report them).
      - "Each entry is a string C(<kind> <name>), the kind one of C(trigger), C(rule),
        C(event_trigger), C(operator), C(cast), C(function), C(procedure), C(aggregate), and the name
        as the finding prints it - C(trigger public.my_table.my_trigger), C(rule public.my_table.my_rule),
        C(function public.my_function(integer,text)), C(operator public.=(oid,regclass)),
        C(cast (text AS public.my_type)), C(event_trigger my_event_trigger). Letter case and white space
        outside double quotes do not matter."
      - Or a dict C({object, database, deployment}) - C(object) is such a string, C(database) and
        C(deployment) (a Deployment id) limit the entry to that metadata database or Deployment.
      - A trigger's function is an object of its own; accept both.
      - An entry that cannot be read fails the module before it connects.
    version_added: 0.2.0
    type: list
    elements: raw
    default: []
  standbys:
    description:
      - Hot standbys of the server (C(dataplane_standbys)). The module connects to each one with the same login
        options (O(login_user), O(login_password), O(login_db), SSL), read-only, and reads what it has flushed
        and replayed, its system identifier, and the sessions of the fenced login roles there.
      - "Check C(standby_sessions) (per present Deployment): every listed standby can be read, is in recovery,
        is a standby of this server (same system identifier), and holds no session of the Deployment's fenced
        login roles (in any database). The fence's REVOKE reaches a standby through WAL; its terminations do
        not, and such sessions survive a promotion."
      - C(name) is the standby's C(application_name), as C(pg_stat_replication) and C(synchronous_standby_names)
        call it (or its replication slot's name); the server's view of that standby and the standby's own are
        then one entry of C(standbys) in RV(replication).
    version_added: 0.2.0
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The standby's C(application_name) (or slot name).
        type: str
        required: true
      host:
        description: Host name or address of the standby.
        type: str
        required: true
      port:
        description: Port of the standby.
        type: int
        default: 5432
  last_report:
    description:
      - The last failover's report of this server, as the audit role reads it from C(dataplane_audit_last_report)
        (its filter C(dataplane.postgresql.audit_last_report) takes these keys from the file) -
        C(run_id), C(host), C(finished_at), C(check_mode), C(file), C(wal) (the fence's C(revoke_lsn),
        C(final_lsn), C(timeline), C(system_identifier)), C(standbys) (as the fence saw them) and
        C(deployments), a list of C({name, database, record}), C(record) being the fence state record the run
        left (or null).
      - "Check C(last_failover) (per present Deployment of the report): the server still shows the run's fence.
        It fails with I(the fence was probably lost in a promotion: run the failover again) when the database's
        fence record is missing or older than the report's (generation, then time), when the server is another
        one (its system identifier is not the report's), or when the report holds no record and the timeline
        changed. The timeline (read from the current WAL file's name; in recovery from
        C(pg_control_checkpoint()), which lags a promotion until its checkpoint) is only noted when the record is
        the report's: that record is written in the fence's own transactions, so it proves the fence is in this
        server's history."
      - "Check C(standby_positions) (when the report gives C(wal), on the report's server and timeline): every
        standby the server knows (C(pg_stat_replication), physical replication slots), every listed one and every
        one the report names has flushed the fence's last position. A standby behind the REVOKE would lose the
        fence if promoted; one between the REVOKE and the last commit would admit neither plane; one the report
        named as behind and that the server no longer knows is reported too. A position the login may not read
        (C(pg_stat_replication) without C(pg_monitor), no slot, not listed) is reported as unknown and warned
        about, not guessed."
    version_added: 0.2.0
    type: dict
notes:
  - Supports PostgreSQL 16, 17 and 18; older servers are audited with a C(server_version) finding.
seealso:
  - module: dataplane.postgresql.fence_helper
  - module: dataplane.postgresql.fence
"""

EXAMPLES = r"""
- name: Audit every Deployment as commander_user
  dataplane.postgresql.deployment_audit:
    login_host: db.example.internal
    login_user: commander_user
    login_password: "{{ vault_commander_password }}"
    deployments: "{{ dataplane_deployments | dataplane.postgresql.deployment_model }}"
  register: audit

- name: Show the Deployments that drifted
  ansible.builtin.debug:
    msg: "{{ audit.deployments | selectattr('drift') | map(attribute='summary') | list }}"

- name: Audit with a fence helper installed in another schema
  dataplane.postgresql.deployment_audit:
    login_user: postgres
    helper_schema: ops_fence
    deployments: "{{ [{'id': 'a'}] | dataplane.postgresql.deployment_model }}"
"""

RETURN = r"""
deployments:
  description: One result per Deployment, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The Deployment id.
      type: str
      sample: a
    state:
      description: The state in the model (V(present) or V(absent)).
      type: str
      sample: present
    database:
      description: The metadata database.
      type: str
      sample: airflow_db_a
    findings:
      description: Every check, C({check, ok, detail}).
      type: list
      elements: dict
      sample:
        - check: public_connect
          ok: true
          detail: PUBLIC has no CONNECT
        - check: fence_capability
          ok: false
          detail: >-
            a vendor-style fence would fail: commander_user lacks the privileges of dp1_user_a,
            dp2_user_a; install the fence helper (provision with dataplane_fence_helper: true)
    drift:
      description: Whether any finding is not ok.
      type: bool
      sample: true
    fence_capable:
      description: Whether a fence of this Deployment would work (null for absent Deployments).
      type: bool
      sample: false
    fence_route:
      description: How the sessions would be terminated, V(direct), V(helper), or null when the fence would fail.
      type: str
      sample: helper
    code_objects:
      description:
        - The code objects of the Deployment's database (see C(code_objects) above), each with
          C(kind), C(name), C(owner), C(security_definer), C(runs) (the function a trigger, event
          trigger, operator or cast calls), C(extension) (for an extension's C(SECURITY DEFINER)
          function), C(why) (where it runs, and as whom) and C(allowed) (on O(allowed_objects)).
      type: list
      elements: dict
      returned: for present Deployments whose database exists
      version_added: 0.2.0
      sample:
        - kind: trigger
          name: public.dag_run.keep_me
          owner: airflow_db_a_schema
          security_definer: false
          runs: public.keep_me()
          extension: null
          why: "fires BEFORE UPDATE, FOR EACH ROW on public.dag_run in every session that writes the table
            (the admitted plane's sessions after a failover, or an admin's); it runs public.keep_me() (owner
            airflow_db_a_schema)"
          allowed: false
    fence:
      description:
        - The fence state of a present Deployment whose database exists - C(state) (V(open),
          V(fenced), V(unknown), V(damaged) or V(interrupted)), C(source) (V(record), V(inferred)
          or null), C(fenced) and C(admitted) (plane names), C(fenced_roles) and
          C(admitted_roles), C(phase), C(generation), C(by), C(at), C(run) from the record,
          C(notes), and C(text), the one-line description the summary ends with.
      type: dict
      returned: for present Deployments whose database exists
      sample:
        state: fenced
        source: record
        fenced: [dp1]
        admitted: [dp2]
        text: "fenced: dp1, admitted: dp2 (recorded by commander_user at 2026-11-27T17:02:11Z, run 118)"
    summary:
      description: One line a person can read, ending with the fence state (the admitted plane).
      type: str
      sample: "a: OK, fence capable (helper); fenced: dp1, admitted: dp2 (recorded by commander_user at 2026-11-27T17:02:11Z)"
drift:
  description: Whether any Deployment drifted.
  returned: always
  type: bool
  sample: false
drifted:
  description: Ids of the Deployments that drifted.
  returned: always
  type: list
  elements: str
  sample: []
fence_capable:
  description: Whether a fence would work for every present Deployment.
  returned: always
  type: bool
  sample: true
fence_incapable:
  description: Ids of the present Deployments whose fence would fail.
  returned: always
  type: list
  elements: str
  sample: []
summary:
  description: One line per Deployment.
  returned: always
  type: list
  elements: str
  sample:
    - "a: OK, fence capable (helper); admitted: dp1, dp2"
server_version:
  description: The server's version (major.minor).
  returned: always
  type: str
  sample: "16.15"
connected_as:
  description: The role the audit ran as.
  returned: always
  type: str
  sample: commander_user
helper:
  description: The fence helper's status in O(helper_schema) (installed, version, current, owner_role, owner_can_signal,
    usable_by, owner_members, registered, registry_readable, problems).
  returned: always
  type: dict
  sample:
    installed: true
    version: "2"
    current: true
    owner_role: dataplane_fence_signaler
    owner_can_signal: true
    usable_by:
      airflow_conn_killer_a: true
replication:
  description:
    - The server's place in replication and its standbys, read without any grant beyond the login.
    - C(server) - C(in_recovery), C(current_lsn), C(receive_lsn) and C(replay_lsn) (in recovery), C(timeline),
      C(checkpoint_timeline), C(system_identifier).
    - C(last_report) - C(file), C(host), C(run_id), C(finished_at), C(check_mode) of O(last_report), or null.
    - C(fence_position) - C(run_id), C(revoke_lsn), C(final_lsn), C(timeline), C(system_identifier) from the
      report, or null; C(compared) and C(not_compared) (why not).
    - C(standbys) - one entry per standby - C(name), C(source) (V(replication) connected, V(slot) only a
      physical slot, V(listed) only in O(standbys), V(report) only in the report), C(slot), C(listed), C(host),
      C(port), C(reachable), C(error), C(in_recovery), C(system_identifier), C(flush_lsn), C(replay_lsn),
      C(position_from) (V(pg_stat_replication), V(slot), V(standby), V(report)), C(gap_bytes) (behind the
      fence's last position), C(state) (V(flushed), V(revoke_only), V(behind), V(unknown), V(unreachable), V(not_compared),
      V(not_seen), V(not_seen_behind)), C(sessions) (on a listed standby, C({role, database, pid}) of the
      fenced login roles).
  returned: always
  type: dict
  version_added: 0.2.0
  sample:
    server: {in_recovery: false, current_lsn: 0/3000148, timeline: 1, system_identifier: "7716191371620663027"}
    fence_position: {run_id: "118", revoke_lsn: 0/3000060, final_lsn: 0/3000148, timeline: 1}
    compared: true
    standbys:
      - name: standby1
        source: slot
        slot: standby1
        flush_lsn: 0/2000000
        gap_bytes: 16777544
        state: behind
timings:
  description:
    - Wall time in milliseconds - C(read_ms) (connecting, reading the catalog), C(compare_ms) (the reads
      inside each metadata database, and comparing), C(total_ms).
  returned: always
  type: dict
  version_added: 0.2.0
  sample: {read_ms: 70, compare_ms: 15, total_ms: 85}
elapsed_ms:
  description: The same as C(total_ms) of RV(timings) (the name of version 0.1).
  returned: always
  type: int
  sample: 85
queries:
  description: The read-only statements run (without their parameter values); nothing is ever written.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dataplane.postgresql.plugins.module_utils.audit.run import (  # this module's entry point
    DEFAULT_OWNER_ROLE,
    DEFAULT_SCHEMA,
    connection_argument_spec,
    records_argument_spec,
    run,
)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        deployments=records_argument_spec(),
        helper_schema=dict(type="str", default=DEFAULT_SCHEMA),
        helper_owner_role=dict(type="str", default=DEFAULT_OWNER_ROLE),
        parity=dict(type="bool", default=True),
        allowed_objects=dict(type="list", elements="raw", default=[]),
        standbys=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True), host=dict(type="str", required=True),
            port=dict(type="int", default=5432))),
        last_report=dict(type="dict"),
    )
    return spec


def main():
    run(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True))


if __name__ == "__main__":
    main()
