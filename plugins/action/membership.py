# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action of the ``dataplane.postgresql.membership`` module: the module itself, run in a process forked
from the worker when the connection is local with the controller's own Python, else as usual
(plugins/plugin_utils/local_module.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dataplane.postgresql.plugins.plugin_utils.local_module import ModuleAction


class ActionModule(ModuleAction):
    MODULE = "membership"
