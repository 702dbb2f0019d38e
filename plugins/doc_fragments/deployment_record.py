# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the ``deployments`` option: the Deployment records.

The argument spec is ``deployment.RECORD_OPTIONS`` (module_utils/model/deployment.py), shared by
``deployment_setup`` and ``deployment_audit``; ansible-test sanity (validate-modules) compares
the two, so keep them in step.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  deployments:
    description:
      - The Deployment records, as returned by the P(dataplane.postgresql.deployment_model#filter) filter.
      - Every record is checked before the module connects; all problems are reported at once, each
        naming the Deployment (a name PostgreSQL would truncate or refuse, a missing name, a duplicate id,
        a name two Deployments share, a password for an unknown plane, ...), and nothing is changed.
    type: list
    elements: dict
    required: true
    suboptions:
      id:
        description: The Deployment id (used in messages and results).
        type: str
        required: true
      state:
        description: V(present) - the Deployment is set up; V(absent) - it is decommissioned.
        type: str
        choices:
          - present
          - absent
        default: present
      database:
        description: The metadata database (required in every record).
        type: str
      owner_role:
        description: The database owner role (required in every record).
        type: str
      killer_role:
        description: The connection-terminator role (required in every record).
        type: str
      login_roles:
        description: Plane name to login role name (required in every record).
        type: dict
      passwords:
        description:
          - Plane name to password, for the login roles to create (or to update with
            O(deployments[].update_password)). Never returned.
        type: dict
        default: {}
      commander_user:
        description: The orchestrator login, granted the owner and killer roles.
        type: str
        default: commander_user
      update_password:
        description:
          - Set an existing login role's password when it differs from the one given.
          - The comparison reads C(pg_authid) (superuser only); a login that cannot read it sets
            the password on every run.
        type: bool
        default: false
      drop_database:
        description: With V(absent), drop the metadata database too.
        type: bool
        default: false
      drop_login_roles:
        description: With V(absent), drop the login roles too.
        type: bool
        default: false
      schema_role:
        description:
          - The shared schema role (NOLOGIN) that owns Airflow's objects; both login roles are its
            members and have it as their role in the database.
          - Omitted or V(null) (C(dataplane_object_privileges=false)) - no schema role is managed.
        type: str
      airflow_schema:
        description: The schema that holds Airflow's tables; the schema role gets C(USAGE) and C(CREATE) on it.
        type: str
        default: public
"""
