#!/usr/bin/python
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: deployment_setup
short_description: Reference PostgreSQL set-up of many Airflow Deployments in one call
version_added: 0.1.0
description:
  - Brings a PostgreSQL 16+ server to the state the vendor's reference SQL produces, for every
    Deployment record given in O(deployments) (the output of the
    C(dataplane.postgresql.deployment_model) filter), in one connection.
  - Per present Deployment, the owner role (C(NOLOGIN), C(INHERIT)) and the connection-terminator
    (killer) role (C(NOLOGIN NOINHERIT)) exist; the metadata database exists and is owned by the
    owner role; C(CONNECT) is revoked from C(PUBLIC) and granted to every login role (grantor the
    owner role, as after the reference C(ALTER DATABASE ... OWNER TO)); every login role is granted
    to the killer role C(WITH INHERIT FALSE, SET FALSE); the owner and killer roles are granted to
    C(commander_user) with PostgreSQL's defaults (what a plain C(GRANT) gives).
  - Missing databases are created (C(CREATE DATABASE) runs in autocommit, one statement each, over
    up to three connections when there are many);
    missing login roles are created with their passwords (sent as SCRAM-SHA-256 secrets computed
    on the managed node, never in clear text). Everything else runs in one transaction, in a few
    round trips, and is rolled back entirely on any error.
  - With O(fence_helper=true) the fence helper is installed in the database the module connects
    to and its use granted to every present Deployment's killer role.
  - A Deployment with O(deployments[].state=absent) loses its killer and owner roles (and with them
    their memberships). The database stays unless O(deployments[].drop_database) is set; its
    ownership then goes to O(decommission_owner) (default the connecting role). The login roles
    stay unless O(deployments[].drop_login_roles) is set; their C(CONNECT) on a kept database is
    revoked first.
  - "A fence is kept. Before granting C(CONNECT) the module reads the fence state of every existing
    metadata database (the record a failover writes into the database's comment, see
    C(docs/fence-state.md)). When a login role is recorded as fenced, or, without a record, when
    exactly one login role lacks the owner's C(CONNECT) while another holds it (a fence made by
    version 0.1 or by hand, reported as C(inferred, no record)), or when no login role holds it
    and C(PUBLIC) has none either, no C(CONNECT) is granted to any of the Deployment's login
    roles; RV(deployments[].summary) says for example C(fenced: dp1, admitted: dp2). A record
    that cannot be read refuses the run before any change. New databases get the reference
    set-up. Only O(readmit_fenced_planes=true) grants C(CONNECT) to every login role of such a
    Deployment, and it rewrites the record (nobody fenced) in the same transaction."
  - B(Shared schema role.) For every present Deployment with O(deployments[].schema_role) set
    (the default of the C(deployment_model) filter, C(dataplane_object_privileges)), a C(NOLOGIN)
    role without attributes exists, every login role is its member C(WITH INHERIT FALSE, SET TRUE,
    ADMIN FALSE) and has it as its role in the metadata database
    (C(ALTER ROLE <login> IN DATABASE <db> SET role = '<schema role>')), and it holds C(USAGE) and
    C(CREATE) on O(deployments[].airflow_schema). So Airflow's objects belong to the schema role,
    whichever plane created them. It is never a member of the owner or killer role and never
    granted to C(commander_user) (such grants are revoked). The schema privileges need one short
    connection to each metadata database; roles, memberships and role settings are converged in
    one transaction after the reference set-up. Objects owned by a login role are only reported
    (a warning), unless O(reassign_owned) hands them to the schema role. With V(absent) its
    objects in a kept database go to O(decommission_owner), the login roles' role setting is reset
    and the schema role dropped.
  - Every input problem (bad names, missing passwords for roles to create, a missing
    C(commander_user) without O(commander_password), missing databases with
    O(create_databases=false), ...) is reported at once, naming the Deployment, before any change.
  - Changes are detected from the catalog (roles, memberships per grantor, database owner, database
    ACL compared as a set); a second run reports no change. Check mode plans every change and
    makes none; diff mode shows each Deployment's state before and after.
author:
  - dataplane.postgresql contributors (@dataplane)
requirements:
  - psycopg2 on the managed node
  - PostgreSQL 16 or newer (the C(INHERIT) and C(SET) membership options)
  - a superuser login, or a managed-service admin (C(CREATEROLE CREATEDB), ADMIN OPTION on
    C(pg_signal_backend) and C(pg_read_all_stats) for the fence helper); see docs/managed-postgresql.md
extends_documentation_fragment:
  - dataplane.postgresql.connection
  - dataplane.postgresql.deployment_record
attributes:
  check_mode:
    support: full
    description: Plans and reports every change, makes none.
  diff_mode:
    support: full
    description: Shows each changed Deployment's roles, memberships, database owner and ACL before and after.
options:
  create_databases:
    description: Create missing metadata databases; if false a missing database is an error.
    type: bool
    default: true
  create_login_roles:
    description: Create missing login roles; if false a missing login role is an error.
    type: bool
    default: true
  commander_password:
    description:
      - Password for C(commander_user). If given and the role does not exist, it is created
        (C(LOGIN)); an existing role is left unchanged. If omitted, a missing C(commander_user)
        is an error.
    type: str
  fence_helper:
    description:
      - Install or update the fence helper in the database the module connects to and grant its
        use to the killer role of every present Deployment.
      - V(false) leaves any installed helper alone.
    type: bool
    default: true
  helper_schema:
    description:
      - Schema of the fence helper, in the database the module connects to (O(login_db)); the same
        option as O(dataplane.postgresql.fence_helper#module:schema).
      - The alias C(fence_helper_schema) is deprecated and will be removed in version 1.0.0.
    type: str
    default: dataplane_fence
    aliases:
      - fence_helper_schema
  helper_owner_role:
    description:
      - NOLOGIN role owning the fence helper function (it holds C(pg_signal_backend)); the same
        option as O(dataplane.postgresql.fence_helper#module:owner_role). Not a Deployment's owner
        role, which is O(deployments[].owner_role).
      - The alias C(fence_helper_owner_role) is deprecated and will be removed in version 1.0.0.
    type: str
    default: dataplane_fence_signaler
    aliases:
      - fence_helper_owner_role
  unchanged_states:
    description:
      - Whether RV(deployments[].before) and RV(deployments[].after) are returned for a
        Deployment that did not change.
      - V(false) leaves them out for such a Deployment (its state after is its state before;
        RV(deployments[].summary) and RV(deployments[].fence) still describe it) and keeps the
        result small - at 200 Deployments with nothing to change about 100 KB instead of
        700 KB, which Ansible then handles in a fraction of the time. The C(deployments) role
        passes V(false). A changed Deployment always shows both, and the diff (C(--diff)) shows
        before and after of every changed Deployment either way.
    type: bool
    default: true
    version_added: 0.2.0
  reassign_owned:
    description:
      - Hand the objects a login role owns in its metadata database to the schema role
        (C(REASSIGN OWNED BY <login roles> TO <schema role>), in that database only).
      - Refused, with nothing changed in that database, when a login role also owns a database
        or tablespace (C(REASSIGN OWNED) would move it too).
      - V(false) only warns, naming the objects.
    version_added: 0.2.0
    type: bool
    default: false
  decommission_owner:
    description:
      - New owner of the database of an V(absent) Deployment that is kept (the owner role is dropped).
      - Default the role the module connects as.
    type: str
  readmit_fenced_planes:
    description:
      - Grant C(CONNECT) to every login role of the Deployments whose fence keeps it withheld
        (a fenced plane, an interrupted failover, an unknown or damaged fence state), and record
        in each database's fence state record that no plane is fenced any more.
      - Waits for a fence of the same database that is running (its advisory lock, up to 60 s)
        and refuses when the fence state changed since it was read.
      - The failover playbook's failback is the normal way to move a Deployment back; this is for
        returning to the both-planes-admitted reference state on purpose.
    version_added: 0.2.0
    type: bool
    default: false
  run_id:
    description:
      - An id of this run (for example the AWX job id), written into a fence state record that
        O(readmit_fenced_planes) rewrites.
    version_added: 0.2.0
    type: str
  all_grantors:
    description:
      - How memberships are judged on PostgreSQL 16+, where each grantor has its own row and a
        member holds the union (OR) of the options of all its rows.
      - V(true) converges the effective options. A membership the model requires with an option
        false (the killer role's C(INHERIT FALSE, SET FALSE) memberships of the login roles,
        the schema role's C(INHERIT FALSE)) has that option cleared on every grantor's row
        (C(GRANT ... WITH INHERIT FALSE GRANTED BY <that grantor>)), so no other grantor's row
        lets the killer role inherit a login role's privileges or C(SET ROLE) to it. A
        membership the model forbids loses every grantor's row (C(REVOKE ... GRANTED BY)
        each), so it is really gone. Acting as another grantor needs that role's privileges
        (a superuser has them); without them the run fails and changes nothing.
      - V(false) manages only the rows of the connecting role (the grantor PostgreSQL records
        for it), as C(dataplane.postgresql.membership) does without O(dataplane.postgresql.membership#module:granted_by_any);
        other grantors' rows are left alone and the audit reports them.
      - The C(deployments) role (the provision playbook) passes V(true).
    version_added: 0.3.0
    type: bool
    default: false
notes:
  - Run as a superuser or as a managed-service admin (Amazon RDS/Aurora, Cloud SQL, Azure Flexible
    Server). A superuser's C(GRANT)s are recorded with grantor C(postgres) (PostgreSQL records any
    superuser that way), exactly as when the reference SQL is run by a superuser; a non-superuser
    admin's with itself as grantor. Where PostgreSQL 16 requires C(SET ROLE) on a role (new database
    or helper owner), a non-superuser admin grants itself that role for the transaction and
    revokes it before C(COMMIT).
  - Every name is checked against the server before any change - a superuser, C(CREATEROLE),
    C(BYPASSRLS) or C(REPLICATION) role, a member of one or of a predefined role, the fence
    helper's owner role, C(commander_user), or a role or database visibly belonging to another
    Deployment is refused, naming the Deployment, the name and why. What the admin lacks is
    named too (C(CREATEDB), ADMIN OPTION on a role, ...).
  - C(CREATE DATABASE) cannot run in a transaction - if a later step fails, the message lists the
    databases that stayed (also in RV(created_databases)).
  - Objects owned by the owner role inside a kept database (or by a login role to drop) make
    C(DROP ROLE) fail; the whole transaction is then rolled back. Reassign them first, or drop
    the database.
seealso:
  - module: dataplane.postgresql.membership
  - module: dataplane.postgresql.fence_helper
"""

EXAMPLES = r"""
- name: Set up every Deployment in one call
  dataplane.postgresql.deployment_setup:
    login_host: db.example.internal
    login_user: postgres
    login_password: "{{ vault_pg_admin }}"
    deployments: >-
      {{ dataplane_deployments | dataplane.postgresql.deployment_model(planes=['dp1', 'dp2']) }}

- name: Decommission one Deployment, dropping its database and login roles
  dataplane.postgresql.deployment_setup:
    deployments: >-
      {{ [{'id': 'old', 'state': 'absent', 'drop_database': true, 'drop_login_roles': true}]
         | dataplane.postgresql.deployment_model }}
"""

RETURN = r"""
changed:
  description: Whether the catalog changed (or would, in check mode).
  returned: always
  type: bool
deployments:
  description: One entry per Deployment, in input order.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The Deployment id.
      type: str
    state:
      description: V(present) or V(absent).
      type: str
    changed:
      description: Whether this Deployment's roles, memberships, database owner or ACL changed.
      type: bool
    actions:
      description: The statements run for this Deployment (passwords masked).
      type: list
      elements: str
    before:
      description:
        - Roles, memberships, database owner and ACL before; with O(deployments[].schema_role),
          also C(schema_role) (whether it exists, forbidden attributes, its members with their
          options, each login role's role setting in the database, the schema privileges).
        - Left out for an unchanged Deployment when O(unchanged_states=false).
      type: dict
    after:
      description:
        - The same after (predicted in check mode); C(passwords_set) lists login roles whose
          password was set. Present Deployments also show C(fence) (state, fenced and admitted
          planes, and a one-line text), before and after.
        - Left out for an unchanged Deployment when O(unchanged_states=false).
      type: dict
    summary:
      description:
        - One line a person can read - what changed (or would, in check mode), then the fence state.
      type: str
      sample: "a: unchanged | fenced: dp1, admitted: dp2 (recorded by commander_user at 2026-11-27T17:02:11Z)"
    fence:
      description:
        - The fence state of a present Deployment after the run (predicted in check mode).
        - C(state) is V(new), V(open) (no plane fenced), V(fenced), V(unknown) (no plane admitted, no
          record), V(damaged) (the record cannot be read) or V(interrupted) (the record is in phase
          C(fencing)); C(source) is V(record), V(inferred) or null; C(fenced) and C(admitted) name
          planes, C(fenced_roles) and C(admitted_roles) login roles; C(phase), C(generation),
          C(by), C(at) and C(run) come from the record; C(notes) lists where the record and the
          catalog disagree; C(text) is the one-line description.
      type: dict
      returned: for present Deployments
    connect_withheld:
      description: Login roles that the reference set-up would grant C(CONNECT) but the fence keeps out.
      type: list
      elements: str
    readmitted:
      description: Whether O(readmit_fenced_planes) re-admitted the planes of this Deployment.
      type: bool
  sample:
    - id: a
      state: present
      changed: true
      actions:
        - CREATE ROLE "airflow_db_a_owner" NOLOGIN
commander_created:
  description:
    - The orchestrator login this run created (or would create) with O(commander_password), else
      null. It is shared by every Deployment, so no Deployment's C(summary) or C(actions) lists it.
  returned: always
  type: str
  version_added: 0.2.0
created_databases:
  description: Databases created (or that would be).
  returned: always
  type: list
  elements: str
dropped_databases:
  description: Databases dropped (or that would be).
  returned: always
  type: list
  elements: str
memberships:
  description:
    - What the membership convergence returned - C(changed), C(statements) and C(unconverged)
      (grants the catalog does not show afterwards, also reported as warnings).
  returned: always
  type: dict
fence_helper:
  description: What the fence helper installation returned, empty when O(fence_helper=false).
  returned: always
  type: dict
timings:
  description:
    - Wall time in milliseconds - C(databases_ms) (connecting, reading the catalog, the checks and
      C(CREATE)/C(DROP DATABASE)), C(transaction_ms) (everything else but the schema roles),
      C(schema_roles_ms) (the shared schema roles, one short connection per metadata database),
      C(results_ms) (reading the catalog again for the result), C(total_ms) (from connecting to the result).
  returned: always
  type: dict
  version_added: 0.2.0
  sample:
    databases_ms: 9120
    transaction_ms: 640
    schema_roles_ms: 800
    results_ms: 60
    total_ms: 10620
time_ms:
  description: The same figures as RV(timings) (the name of version 0.1).
  returned: always
  type: dict
queries:
  description: Every statement that changed something (or would, in check mode), passwords masked.
  returned: always
  type: list
  elements: str
  sample:
    - CREATE ROLE "airflow_conn_killer_a" NOLOGIN NOINHERIT
warnings:
  description: Things left as they are that may surprise, such as C(CONNECT) granted by a third role.
  returned: when any
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.dataplane.postgresql.plugins.module_utils.provision.run import (  # this module's entry point
    DEFAULT_OWNER_ROLE,
    DEFAULT_SCHEMA,
    connection_argument_spec,
    records_argument_spec,
    run,
)


def _deprecated(alias):
    return dict(name=alias, version="1.0.0", collection_name="dataplane.postgresql")


def argument_spec():
    """The module's options; the deprecated aliases are the fence helper options' names of 0.1."""
    spec = connection_argument_spec()
    spec.update(
        deployments=records_argument_spec(),
        reassign_owned=dict(type="bool", default=False),
        create_databases=dict(type="bool", default=True),
        create_login_roles=dict(type="bool", default=True),
        commander_password=dict(type="str", no_log=True),
        fence_helper=dict(type="bool", default=True),
        helper_schema=dict(type="str", default=DEFAULT_SCHEMA, aliases=["fence_helper_schema"],
                           deprecated_aliases=[_deprecated("fence_helper_schema")]),
        helper_owner_role=dict(type="str", default=DEFAULT_OWNER_ROLE, aliases=["fence_helper_owner_role"],
                               deprecated_aliases=[_deprecated("fence_helper_owner_role")]),
        decommission_owner=dict(type="str"),
        readmit_fenced_planes=dict(type="bool", default=False),
        run_id=dict(type="str"),
        all_grantors=dict(type="bool", default=False),
        unchanged_states=dict(type="bool", default=True),
    )
    return spec


def main():
    run(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True))


if __name__ == "__main__":
    main()
