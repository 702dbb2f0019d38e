# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compatibility name for code written against 0.1.0: the Deployment model lives in
``module_utils/deployment.py``; nothing in this collection imports this file."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dataplane.postgresql.plugins.module_utils import deployment as _deployment

DEFAULT_AIRFLOW_SCHEMA = _deployment.DEFAULT_AIRFLOW_SCHEMA
DEFAULT_COMMANDER = _deployment.DEFAULT_COMMANDER
DEFAULT_PLANES = _deployment.DEFAULT_PLANES
DEFAULT_TEMPLATES = _deployment.DEFAULT_TEMPLATES
ITEM_KEYS = _deployment.ITEM_KEYS
DeploymentModelError = _deployment.DeploymentModelError
expand_deployments = _deployment.expand_deployments
render_template = _deployment.render_template
