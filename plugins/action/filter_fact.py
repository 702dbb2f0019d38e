# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ``dataplane.postgresql.filter_fact``: one of the roles' filters, as a fact, on the controller.

An internal helper of the deployments and failover roles (no module file, no connection
option). It calls one of this collection's filters and sets its value as a fact, as
``set_fact: {FACT: "{{ VAR | FILTER(...) }}"}`` would, with two differences, which are why it
exists: the arguments named in ``stored`` are read from variables as Ansible stores them (a
registered module result, or a fact that an earlier task set), not templated; and the filter's
value is not passed through the template engine. Templating a registered result of 200
Deployments (a lazy copy of every dict and list in it), and then the filter's value (every
item of it checked for templates and copied), took most of a second, and that several times
per run (issue 23); the filters themselves take milliseconds.

Options:

- ``filter``: the filter's name (one of ``FILTERS``);
- ``fact``: the fact to set (an internal ``_dataplane_*`` name);
- ``input``: the keyword (of ``stored`` or ``args``) passed as the filter's first argument;
- ``stored``: ``{keyword: variable}``, where ``variable`` may go down into dicts with dots
  (``_dataplane_failover.model``); a variable or key that is not defined gives ``None``. Only
  for variables that a task of the role registered or set: they hold data, never templates;
- ``args``: ``{keyword: value}``, templated as usual (the small arguments).

The fact is set as ``set_fact`` sets one (not cacheable: never written to a fact cache) where
ansible-core lets an action do that (``register_host_variables``, 2.21 and later); the task's
result then does not repeat it (verbose output shows the task without the fact; the roles show
what matters of it in their summary and report). With an older ansible-core it is returned as
``ansible_facts``, which Ansible keeps as a host fact (as for ``check_variables``' run id): with
a persistent fact cache configured, it is stored there too. Each run sets these facts before
it reads them.

``publish_report`` takes the same specification for what it publishes (``stats_from``,
``data_from``; ``filter_value`` here). The task never reports a change and never fails on what
the filter returns.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:  # ansible-core 2.21 and later: an action may set variables at set_fact's layer
    from ansible.plugins.action import VariableLayer
except ImportError:  # pragma: no cover - older ansible-core
    VariableLayer = None

from ansible_collections.dataplane.postgresql.plugins.filter import failover_report as _failover
from ansible_collections.dataplane.postgresql.plugins.filter import provision_report as _provision

FILTERS = {
    "failover_plan": _failover.failover_plan,
    "failover_report": _failover.failover_report,
    "provision_report": _provision.provision_report,
    "provision_stats": _provision.provision_stats,
}

# the options of a filter call (here, and publish_report's stats_from and data_from)
FILTER_SPEC = dict(
    filter=dict(type="str", required=True, choices=sorted(FILTERS)),
    input=dict(type="str", required=True),
    stored=dict(type="dict", default={}),
    args=dict(type="dict", default={}),
)

ARGUMENT_SPEC = dict(FILTER_SPEC, fact=dict(type="str", required=True))

_MISSING = object()


def stored_value(task_vars, path):
    """The value of PATH (``name`` or ``name.key.key``) in TASK_VARS as stored, or None."""
    names = str(path).split(".")
    value = task_vars.get(names[0], _MISSING)
    for key in names[1:]:
        if not isinstance(value, dict):
            return None
        value = value.get(key, _MISSING)
    return None if value is _MISSING else value


def filter_value(spec, task_vars):
    """Call the filter SPEC describes (``filter``, ``input``, ``stored``, ``args``) and return its value."""
    stored = spec.get("stored") or {}
    kwargs = dict(spec.get("args") or {})
    if spec["input"] not in stored and spec["input"] not in kwargs:
        raise AnsibleActionFail("%s: input must name a key of stored or args" % spec["filter"])
    for keyword, path in stored.items():
        kwargs[keyword] = stored_value(task_vars, path)
    return FILTERS[spec["filter"]](kwargs.pop(spec["input"]), **kwargs)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        result["changed"] = False
        facts = {args["fact"]: filter_value(args, task_vars or {})}
        if VariableLayer is not None and hasattr(self, "register_host_variables"):
            # as set_fact without cacheable: not a host fact, so no legacy ansible_facts either
            self.register_host_variables({}, VariableLayer.CACHEABLE_FACT)
            self.register_host_variables(facts, VariableLayer.EPHEMERAL_FACT)
        else:
            result["ansible_facts"] = facts
        return result
