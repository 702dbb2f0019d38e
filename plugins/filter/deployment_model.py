# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: deployment_model
short_description: Resolve every name of each Airflow Deployment and validate them
version_added: 0.1.0
description:
  - Expands C(dataplane_deployments) items with the naming templates into one record per
    Deployment (database, owner role, killer role, one login role per plane, passwords).
  - Fails, naming the item, on a missing or duplicate id, an unknown plane, a name PostgreSQL
    would truncate (over 63 bytes) or reject (C(pg_) prefix, reserved names, NUL), and names
    shared by two Deployments. The resolved records go through the same check as the input of
    M(dataplane.postgresql.deployment_setup) and M(dataplane.postgresql.deployment_audit).
  - Every parameter defaults to the reference set-up (the roles' defaults); V(null) or an empty
    value means the default too.
options:
  _input:
    description: The C(dataplane_deployments) list.
    type: list
    elements: dict
    required: true
  planes:
    description: Plane names.
    type: list
    elements: str
    default: [dp1, dp2]
  templates:
    description:
      - Name templates with C({id}) and C({plane}) placeholders, keys C(database_name),
        C(owner_role_name), C(killer_role_name), C(login_role_name), C(schema_role_name).
      - A key left out (or V(null)) keeps its default - C(airflow_db_{id}), C(airflow_db_{id}_owner),
        C(airflow_conn_killer_{id}), C({plane}_user_{id}), C(airflow_db_{id}_schema).
    type: dict
  commander_user:
    description: The orchestrator login.
    type: str
    default: commander_user
  selected_ids:
    description: If set, return only these Deployment ids (each must exist).
    type: list
    elements: str
  object_privileges:
    description:
      - Whether the Deployments get the shared schema role (C(dataplane_object_privileges)).
      - V(false) sets C(schema_role) to V(null) in every record.
    type: bool
    default: true
  airflow_schema:
    description: The schema of Airflow's tables (C(dataplane_airflow_schema)); an item may say C(airflow_schema).
    type: str
    default: public
"""

EXAMPLES = r"""
- name: Resolve names
  ansible.builtin.set_fact:
    model: "{{ dataplane_deployments | dataplane.postgresql.deployment_model(planes=['dp1', 'dp2']) }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: One record per Deployment.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.dataplane.postgresql.plugins.module_utils.model.deployment import (
    DEFAULT_AIRFLOW_SCHEMA,
    DEFAULT_COMMANDER,
    DEFAULT_PLANES,
    DeploymentModelError,
    expand_deployments,
)


def deployment_model(deployments, planes=DEFAULT_PLANES, templates=None, commander_user=DEFAULT_COMMANDER,
                     selected_ids=None, object_privileges=True, airflow_schema=DEFAULT_AIRFLOW_SCHEMA):
    try:
        return expand_deployments(deployments, planes=planes, templates=templates,
                                  commander_user=commander_user, selected_ids=selected_ids,
                                  object_privileges=object_privileges, airflow_schema=airflow_schema)
    except DeploymentModelError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"deployment_model": deployment_model}
