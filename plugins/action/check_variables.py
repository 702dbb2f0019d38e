# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ``dataplane.postgresql.check_variables``: the roles' first task, on the controller.

An internal helper of the roles (the first task of ``dataplane.postgresql.common``, which
each of the deployments, failover and audit roles lists as a dependency, so it runs before
their own tasks and before their argument check). It has no module file and takes no
connection option. Before anything connects to a server, it:

- refuses every ``dataplane_*`` variable that no role of the collection knows (a typo such as
  ``dataplane_failover_deployment`` would otherwise be ignored and widen a failover), naming
  it and the closest known name. The known names are computed from the collection itself:
  the options of every role's ``meta/argument_specs.yml`` (every entry point), the keys of
  every role's ``defaults/main.yml``, the names the playbooks read, plus the public names
  that no role implements yet (``RESERVED``). The user adds their own names with
  ``dataplane_allowed_extra_vars``. Internal names (``_dataplane_*``) are not checked;
- checks the options of the roles that depend on this one (their ``meta/argument_specs.yml``
  entry point) and reports each problem (a missing required variable, a value not among the
  choices, a wrong type) in one line, instead of the argument check's dump;
- prints a deprecation warning for every old variable name that is set (the ``deprecated``
  section of ``roles/common/meta/shared_options.yml``: each names the one name now, and the
  roles that still read the old one); the old names are known, so they are not refused;
- returns, as facts, the run's id (``ansible_facts._dataplane_run_id``: ``dataplane_run_id``, else AWX's
  ``awx_job_id`` / ``tower_job_id``, else a fresh one, ``<UTC start>-<pid of ansible-playbook>``)
  and when the run started
  (``ansible_facts._dataplane_started_at``), for the reports;
- when it refuses and ``dataplane_report_dir`` is set, writes the refused run's report there
  (``<playbook>-<host>-<run id>.json``), as every run does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import difflib
import glob
import os
import random
import re

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

try:
    from ansible_collections.dataplane.postgresql.plugins.action.publish_report import write_json
except ImportError:  # pragma: no cover - only when loaded outside the collection
    write_json = None

import yaml

display = Display()

COLLECTION = "dataplane.postgresql"
PREFIX = "dataplane_"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Public names of the collection's contract that no role implements yet. A role that starts
# to read one adds it to its argument spec (it then counts twice, which is harmless); until
# then a user who already sets one is not refused.
RESERVED = (
    "dataplane_standbys",
    "dataplane_failover_standby_policy",
    "dataplane_failover_standby_timeout",
    "dataplane_audit_last_report",
    "dataplane_audit_allowed_objects",
)

# The options several roles share and the deprecated variable names (scripts/role_specs.py
# writes the shared options into every role's argument spec).
SHARED_OPTIONS = os.path.join("roles", "common", "meta", "shared_options.yml")

# The playbook each role is run by, for the refused run's report file name.
PLAYBOOK_OF = {"deployments": "provision", "failover": "failover", "audit": "audit"}

ARGUMENT_SPEC = dict(
    # the roles whose options to check; default: the collection's roles that depend on this task's role
    roles=dict(type="list", elements="str"),
)

_KNOWN = {}
_DEPRECATED = {}


def _load_yaml(path):
    with open(path, "rb") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def role_specs(root=ROOT):
    """{role: {entry point: options}} from every role's meta/argument_specs.yml."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "roles", "*", "meta", "argument_specs.y*ml"))):
        role = path.split(os.sep)[-3]
        specs = _load_yaml(path).get("argument_specs") or {}
        out[role] = dict((entry, (spec or {}).get("options") or {}) for entry, spec in specs.items())
    return out


def deprecated_names(root=ROOT):
    """{old name: {replacement, roles, version[, type, values]}}: the deprecated variable names."""
    if root not in _DEPRECATED:
        path = os.path.join(root, SHARED_OPTIONS)
        _DEPRECATED[root] = dict(_load_yaml(path).get("deprecated") or {}) if os.path.exists(path) else {}
    return _DEPRECATED[root]


def deprecation_message(name, entry):
    """The warning for a deprecated variable NAME that is set."""
    values = entry.get("values") or {}
    mapping = ", ".join("%s is %s" % (str(old).lower() if isinstance(old, bool) else old, new)
                        for old, new in values.items())
    roles = entry.get("roles") or []
    return ("%s is deprecated: set %s instead%s. Until then the %s role%s still read%s %s, and it wins over %s "
            "there." % (name, entry["replacement"], " (%s)" % mapping if mapping else "",
                        " and ".join(roles) or "collection's", "s" if len(roles) > 1 else "",
                        "" if len(roles) > 1 else "s", name, entry["replacement"]))


def known_names(root=ROOT):
    """Every dataplane_* name the collection knows: role options and defaults, playbook names,
    RESERVED, and the deprecated names (still read, with a warning)."""
    if root in _KNOWN:
        return _KNOWN[root]
    names = set(RESERVED)
    names.update(deprecated_names(root))
    for entries in role_specs(root).values():
        for options in entries.values():
            names.update(options)
    for path in glob.glob(os.path.join(root, "roles", "*", "defaults", "main.y*ml")):
        names.update(_load_yaml(path))
    for path in glob.glob(os.path.join(root, "playbooks", "*.y*ml")):
        with open(path, "rb") as handle:
            names.update(re.findall(r"(?<![\w.])dataplane_\w+(?=\s*[|}])", handle.read().decode("utf-8")))
    known = frozenset(n for n in names if n.startswith(PREFIX))
    _KNOWN[root] = known
    return known


def allowed_names(value):
    """dataplane_allowed_extra_vars: a list, or a string of names separated by commas or spaces."""
    if value is None:
        return []
    if isinstance(value, str):
        value = re.split(r"[\s,]+", value)
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise AnsibleActionFail("dataplane_allowed_extra_vars must be a list of variable names, got %s"
                                % type(value).__name__)
    return [str(v).strip() for v in value if str(v).strip()]


def unknown_problems(names, known, allowed):
    """One sentence per unknown dataplane_* name, with the closest known name when there is one."""
    problems = []
    for name in sorted(set(n for n in names if n.startswith(PREFIX)) - set(known) - set(allowed)):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        problems.append("%s is not a variable of %s%s." % (
            name, COLLECTION, " (did you mean %s?)" % close[0] if close else ""))
    return problems


def _plain(text):
    """An argument spec description without its markup: O(x), V(x), C(x), I(x) -> x."""
    if isinstance(text, (list, tuple)):
        text = " ".join(str(t) for t in text)
    return re.sub(r"\b[OVCIMBLU]\(([^()]*)\)", r"\1", str(text or "")).strip()


def option_problems(role, options, values):
    """One line per problem of VALUES (the variables that are set) against a role's OPTIONS."""
    problems = []
    for name in sorted(options):
        spec = options[name] or {}
        if spec.get("required") and name not in values:
            description = _plain(spec.get("description"))
            problems.append("%s is required by %s.%s%s: set it, for example with -e %s=<value>." % (
                name, COLLECTION, role, " (%s)" % description.rstrip(".") if description else "", name))
    present = dict((k, v) for k, v in values.items() if k in options)
    # the role's own argument check, with its messages one per line
    validator = ArgumentSpecValidator(dict((k, _spec_for_validation(v)) for k, v in options.items()))
    result = validator.validate(present)
    for message in result.error_messages:
        if message.startswith("missing required arguments"):
            continue  # reported above, with the description
        problems.append("%s (%s.%s)." % (message.rstrip("."), COLLECTION, role))
    return problems


def _spec_for_validation(spec):
    """An option of an argument spec file as ArgumentSpecValidator takes it (no documentation keys)."""
    spec = dict(spec or {})
    for key in ("description", "version_added", "version_added_collection"):
        spec.pop(key, None)
    spec.pop("required", None)  # reported separately, with the option's description
    spec.pop("default", None)   # only what is set is checked
    if isinstance(spec.get("options"), dict):
        spec["options"] = dict((k, _spec_for_validation(v)) for k, v in spec["options"].items())
    return spec


def _run_start():
    """(id part, started_at) for this ansible-playbook run, the same in every fork on Linux.

    The workers are children of the ansible-playbook process: its pid and start time (from
    /proc) give every host of the run the same fresh id and start time. Elsewhere: now, and a
    random number.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        ppid = os.getppid()
        with open("/proc/%d/stat" % ppid) as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as handle:
            boot = int(next(line for line in handle if line.startswith("btime")).split()[1])
        started = datetime.datetime.fromtimestamp(boot + ticks / float(os.sysconf("SC_CLK_TCK")),
                                                  datetime.timezone.utc)
        if abs((now - started).total_seconds()) > 7 * 86400:
            raise ValueError("not the playbook's process")
        return "%s-%d" % (started.strftime("%Y%m%dT%H%M%SZ"), ppid), started
    except (OSError, ValueError, IndexError, StopIteration):
        return "%s-%d" % (now.strftime("%Y%m%dT%H%M%SZ"), random.randint(0, 2147483647)), now


def timestamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def safe_file_part(text):
    """A run id or host name as part of a file name: anything but letters, digits, . _ - becomes _."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(text))[:100] or "_"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def _caller_roles(self):
        """The collection's roles that depend on this task's role (their short names)."""
        role = getattr(self._task, "_role", None)
        parents = role.get_parents() if role is not None else []
        out = []
        for parent in parents:
            name = parent.get_name()
            if name.startswith(COLLECTION + "."):
                out.append(name[len(COLLECTION) + 1:])
        return out

    def _value(self, task_vars, name, default=None):
        if name not in task_vars:
            return default
        return self._templar.template(task_vars[name])

    def _values(self, task_vars, names):
        """The values of the NAMES that are set; one that cannot be templated here is left to
        the role's own argument check."""
        out = {}
        for name in names:
            if name in task_vars:
                try:
                    out[name] = self._value(task_vars, name)
                except Exception:  # pylint: disable=broad-except
                    continue
        return out

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        roles = args["roles"] if args["roles"] is not None else self._caller_roles()
        host = task_vars.get("inventory_hostname")

        known = known_names()
        problems = []
        try:
            allowed = allowed_names(self._value(task_vars, "dataplane_allowed_extra_vars"))
        except AnsibleActionFail as exc:
            allowed = []
            problems.append(str(exc) + ".")
        problems.extend(unknown_problems([n for n in task_vars if isinstance(n, str)], known, allowed))

        specs = role_specs()
        for role in roles:
            options = specs.get(role, {}).get("main") or {}
            values = self._values(task_vars, options)
            problems.extend(option_problems(role, options, values))

        # Old names: still read by their roles, checked like an option, and warned about.
        for name, entry in sorted(deprecated_names().items()):
            if name not in task_vars:
                continue
            if entry.get("type"):
                values = self._values(task_vars, [name])
                problems.extend(option_problems("/".join(entry.get("roles") or ["common"]),
                                                {name: {"type": entry["type"]}}, values))
            display.deprecated(deprecation_message(name, entry), version=str(entry["version"]),
                               collection_name=COLLECTION)

        id_part, started = _run_start()
        run_id = self._value(task_vars, "dataplane_run_id") or task_vars.get("awx_job_id") \
            or task_vars.get("tower_job_id")
        playbook = PLAYBOOK_OF.get(roles[0], roles[0]) if roles else "dataplane"
        run_id = str(run_id) if run_id not in (None, "") else id_part
        result["changed"] = False
        result["ansible_facts"] = {"_dataplane_run_id": run_id, "_dataplane_started_at": timestamp(started)}
        result["run_id"] = run_id
        if not problems:
            result["msg"] = "every dataplane_* variable is known"
            return result

        del result["ansible_facts"]
        result["failed"] = True
        result["msg"] = "Refused before any connection to the server, nothing was changed:\n%s%s" % (
            "\n".join("- " + p for p in problems),
            "\nCorrect the name, or list your own variables in dataplane_allowed_extra_vars."
            if any(" is not a variable of " in p for p in problems) else "")
        report_dir = None
        try:
            report_dir = self._value(task_vars, "dataplane_report_dir")
        except Exception:  # pylint: disable=broad-except
            report_dir = None
        if report_dir and write_json is not None:
            finished = datetime.datetime.now(datetime.timezone.utc)
            data = {"playbook": playbook, "host": host, "run_id": run_id, "refused": True,
                    "check_mode": bool(self._task.check_mode), "changed": False,
                    "started_at": timestamp(started), "finished_at": timestamp(finished),
                    "verdict": "REFUSED before any connection, nothing was changed", "problems": problems,
                    "deployments": []}
            if playbook == "failover":
                data["safe_to_start_destination"] = False
            try:
                result["path"] = write_json(os.path.expanduser(str(report_dir)),
                                            "%s-%s-%s" % (playbook, safe_file_part(host), safe_file_part(run_id)),
                                            data, exclusive=True)
            except OSError as exc:
                display.warning("could not write the report into %s: %s" % (report_dir, exc))
        return result
