# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Deployment model: the one place that knows what a Deployment record is.

From the playbook variables to every name: ``expand_deployments()`` turns the
``dataplane_deployments`` items plus the naming variables into one record per Deployment
with all names resolved (the shape below is what the ``deployment_model`` filter returns and
what ``deployment_setup`` and ``deployment_audit`` take)::

    {"id": "a", "state": "present",
     "database": "airflow_db_a", "owner_role": "airflow_db_a_owner",
     "killer_role": "airflow_conn_killer_a",
     "login_roles": {"dp1": "dp1_user_a", "dp2": "dp2_user_a"},
     "passwords": {"dp1": "...", "dp2": "..."},          # only the planes given
     "commander_user": "commander_user",
     "update_password": False, "drop_database": False, "drop_login_roles": False,
     "schema_role": "airflow_db_a_schema",   # None with object_privileges=False
     "airflow_schema": "public"}

Name templates use ``{id}`` and ``{plane}`` placeholders (plain substitution, no format
mini-language). Every item may override any name with the variable's name without the
``dataplane_`` prefix (``database_name``, ``owner_role_name``, ``killer_role_name``,
``login_role_name``, ``schema_role_name``, and ``airflow_schema``) or give
``login_role_names: {dp1: ..., dp2: ...}`` outright.

One argument spec for a record (``RECORD_OPTIONS``, used by both modules), one validator of
records (``record_problems``, used by the filter through ``expand_deployments`` and by both
modules), one field validator for requests that carry Deployment names in other shapes
(``name_problems``), and one error format (``results.refusal_message``). Every problem is
collected and reported together, naming the item, before anything reaches a server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ..base.identifiers import identifier_problem, role_name_problem
from ..base.results import refusal_message, refuse

DEFAULT_TEMPLATES = {
    "database_name": "airflow_db_{id}",
    "owner_role_name": "airflow_db_{id}_owner",
    "killer_role_name": "airflow_conn_killer_{id}",
    "login_role_name": "{plane}_user_{id}",
    "schema_role_name": "airflow_db_{id}_schema",
}
DEFAULT_AIRFLOW_SCHEMA = "public"
# PostgreSQL's own databases and the maintenance databases of managed services (Amazon RDS,
# Cloud SQL, Azure): no Deployment may use one (role_checks says the same against the server).
SYSTEM_DATABASES = frozenset(["postgres", "template0", "template1", "rdsadmin", "cloudsqladmin",
                              "azure_maintenance", "azure_sys"])
DEFAULT_PLANES = ("dp1", "dp2")
DEFAULT_COMMANDER = "commander_user"
ITEM_KEYS = frozenset(["id", "state", "passwords", "login_role_names", "update_password",
                       "drop_database", "drop_login_roles", "commander_user",
                       "airflow_schema"]) | frozenset(DEFAULT_TEMPLATES)
STATES = ("present", "absent")

# The suboptions of one resolved record, as both modules take it (documented once, in the
# doc fragment dataplane.postgresql.deployment_record). The names the model resolves are not
# ``required`` here: a missing one is reported by record_problems() together with every other
# problem of the input, naming the Deployment.
RECORD_OPTIONS = dict(
    id=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=list(STATES)),
    database=dict(type="str"),
    owner_role=dict(type="str"),
    killer_role=dict(type="str"),
    login_roles=dict(type="dict"),
    passwords=dict(type="dict", default={}, no_log=True),
    commander_user=dict(type="str", default=DEFAULT_COMMANDER),
    update_password=dict(type="bool", default=False, no_log=False),
    drop_database=dict(type="bool", default=False),
    drop_login_roles=dict(type="bool", default=False),
    schema_role=dict(type="str"),
    airflow_schema=dict(type="str", default=DEFAULT_AIRFLOW_SCHEMA),
)
REQUIRED_NAMES = ("database", "owner_role", "killer_role", "login_roles")
REFUSED_SUBJECT = "Deployment records"


def records_argument_spec():
    """The ``deployments`` option of a module that takes resolved records."""
    return dict(type="list", elements="dict", required=True, options=copy.deepcopy(RECORD_OPTIONS))


class DeploymentModelError(ValueError):
    def __init__(self, problems):
        self.problems = list(problems)
        super(DeploymentModelError, self).__init__(refusal_message("dataplane_deployments", self.problems))


def render_template(template, deployment_id, plane=None):
    text = str(template).replace("{id}", deployment_id)
    if plane is not None:
        text = text.replace("{plane}", plane)
    return text


def as_bool(value, default=False):
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# Field validation: one rule per kind of name.


def name_problems(fields):
    """Problems of named fields: FIELDS is a list of (kind, value, label) with kind
    ``role`` (a role name), ``schema`` (no ``pg_`` prefix either) or any other word (a plain
    identifier, such as a database name); a value of None is skipped. Pure.

    For requests that carry Deployment names in another shape (the fence's
    ``{name, database, source_role, destination_role, killer_role}``).
    """
    problems = []
    for kind, value, label in fields:
        if value is None:
            continue
        if kind == "role":
            problem = role_name_problem(value, label)
        else:
            problem = identifier_problem(value, label)
            if not problem and kind == "schema" and value.lower().startswith("pg_"):
                problem = ("%s %r starts with 'pg_', which PostgreSQL reserves for system schemas"
                           % (label, value))
        if problem:
            problems.append(problem)
    return problems


def _record_fields(rec):
    fields = [("database", rec.get("database"), "database name"),
              ("role", rec.get("owner_role"), "owner role name"),
              ("role", rec.get("killer_role"), "killer role name")]
    fields += [("role", name, "%s login role name" % plane)
               for plane, name in sorted((rec.get("login_roles") or {}).items())]
    fields.append(("role", rec.get("commander_user"), "commander_user"))
    if rec.get("schema_role") is not None:
        fields.append(("role", rec["schema_role"], "schema role name"))
    if rec.get("airflow_schema") is not None:
        fields.append(("schema", rec["airflow_schema"], "airflow schema name"))
    return fields


def _index_label(source):
    return lambda index, rec: "%s[%d] (id %r)" % (source, index, str(rec.get("id")))


def record_problems(records, source="deployments", label=None, other=None):
    """Every problem of resolved RECORDS (a list of dicts), each naming its Deployment. Pure.

    SOURCE names the list in messages; LABEL(index, record) and OTHER(index, record) may
    say how a Deployment is named in a problem and when another one is referred to.
    """
    label = label or _index_label(source)
    other = other or (lambda index, rec: "%s[%d]" % (source, index))
    problems = []
    seen_ids = {}
    owners_of_name = {}
    for index, rec in enumerate(records):
        if not isinstance(rec, dict):
            problems.append("%s[%d] must be a mapping" % (source, index))
            continue
        missing = [k for k in ("id",) + REQUIRED_NAMES if rec.get(k) in (None, "", {})]
        if missing:
            problems.append("%s[%d]: missing %s (pass the records of the deployment_model filter)"
                            % (source, index, ", ".join(missing)))
            continue
        where = label(index, rec)
        dep_id = str(rec["id"])
        if dep_id in seen_ids:
            problems.append("%s: duplicate id, already used by %s"
                            % (where, other(seen_ids[dep_id], records[seen_ids[dep_id]])))
            continue
        seen_ids[dep_id] = index
        if rec.get("state", "present") not in STATES:
            problems.append("%s: state must be present or absent, got %r" % (where, rec.get("state")))
        logins = rec["login_roles"]
        if not isinstance(logins, dict):
            problems.append("%s: login_roles must be a mapping plane -> role name" % where)
            continue
        passwords = rec.get("passwords") or {}
        if not isinstance(passwords, dict):
            problems.append("%s: passwords must be a mapping plane -> password" % where)
            passwords = {}
        for plane in sorted(set(passwords) - set(logins)):
            problems.append("%s: a password is given for unknown plane %r" % (where, plane))
        problems.extend("%s: %s" % (where, p) for p in name_problems(_record_fields(rec)))
        database = rec["database"]

        # A name belongs to one Deployment and one purpose only (a decommission would
        # otherwise destroy another Deployment's roles or database).
        roles = [rec["owner_role"], rec["killer_role"]] + list(logins.values())
        if rec.get("schema_role"):
            roles.append(rec["schema_role"])
        for purpose, name in [("database", database)] + [("role", n) for n in roles]:
            key = (purpose, name)
            if key in owners_of_name and owners_of_name[key] != index:
                problems.append("%s: %s %r is also used by %s"
                                % (where, purpose, name, other(owners_of_name[key], records[owners_of_name[key]])))
            elif key in owners_of_name:
                problems.append("%s: role name %r is used twice in this Deployment" % (where, name))
            owners_of_name[key] = index
        if rec.get("schema_role") and rec["schema_role"] == rec.get("commander_user"):
            problems.append("%s: commander_user %r collides with a Deployment role (the schema role)"
                            % (where, rec["schema_role"]))
    return problems


def model_problems(records, label):
    """What the model refuses on top of record_problems (the modules leave these names to the
    server checks of role_checks, which say what the existing object is): a system database,
    and commander_user as one of the Deployment's roles. Pure."""
    problems = []
    for index, rec in enumerate(records):
        where = label(index, rec)
        if rec["database"] in SYSTEM_DATABASES or rec["database"].startswith("template"):
            problems.append("%s: database %r is a system database (PostgreSQL's own, or a managed service's "
                            "maintenance database)" % (where, rec["database"]))
        roles = [rec["owner_role"], rec["killer_role"]] + list(rec["login_roles"].values())
        if rec["commander_user"] in roles:
            problems.append("%s: commander_user %r collides with a Deployment role" % (where, rec["commander_user"]))
    return problems


def normalise(rec):
    """A record as the modules use it: id, plane names and role names as text."""
    out = dict(rec)
    out["id"] = str(rec["id"])
    out["state"] = rec.get("state") or "present"
    out["login_roles"] = dict((str(k), str(v)) for k, v in (rec.get("login_roles") or {}).items())
    out["passwords"] = dict((str(k), str(v)) for k, v in (rec.get("passwords") or {}).items() if v is not None)
    return out


def refuse_records(module, problems, **extra):
    """Fail MODULE with the one refusal format for Deployment input."""
    extra.setdefault("changed", False)
    refuse(module, REFUSED_SUBJECT, problems, **extra)


def _texts(value, out):
    """Every string (and number, as text) in a result, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            _texts(key, out)
            _texts(item, out)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _texts(item, out)
    elif isinstance(value, bytes):
        out.append(value.decode("utf-8", "replace"))
    elif value is not None and not isinstance(value, bool):
        out.append(str(value))


def exit_json(module, **result):
    """``module.exit_json(**result)`` for a result that describes many Deployments.

    Ansible masks every no_log value (each Deployment's passwords) in every string of the
    result: one ``str.replace`` per string and secret, over a second at 200 Deployments. Only
    a secret that occurs somewhere in the result (or in a warning) can need masking, so the
    others are left out of that pass; the ones that occur are masked exactly as before. With
    ``invocation`` injected (the module's arguments in the result) every secret stays.
    """
    if not getattr(module, "_inject_invocation", False):
        texts = []
        _texts(result, texts)
        try:
            from ansible.module_utils.common.warnings import get_deprecation_messages, get_warning_messages
            _texts(list(get_warning_messages()), texts)
            _texts(list(get_deprecation_messages()), texts)
        except ImportError:  # older ansible-core: keep every secret
            texts = None
        if texts is not None:
            blob = "\x00".join(texts)
            module.no_log_values = set(v for v in module.no_log_values if v in blob)
    module.exit_json(**result)


# ---------------------------------------------------------------------------------------------
# From playbook variables to records.


def _item_label(index, item):
    if isinstance(item, dict) and isinstance(item.get("id"), (str, int)) and item.get("id") not in ("", True, False):
        return "dataplane_deployments[%d] (id %r)" % (index, str(item["id"]))
    return "dataplane_deployments[%d]" % index


# The item keys that name something: a string each (an id may also be a whole number). Anything
# else would reach the SQL as Python's text for it (``id: [x]`` would name ``dp1_user_['x']``).
NAME_KEYS = ("database_name", "owner_role_name", "killer_role_name", "login_role_name", "schema_role_name",
             "commander_user", "airflow_schema")


def _is_text(value):
    return isinstance(value, str)


def _type_name(value):
    """The plain type name of VALUE (Ansible hands lists and dicts over in subclasses of its own)."""
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (list, "list"), (dict, "dict")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _item_type_problems(item):
    """Keys of a dataplane_deployments item whose value has the wrong type. Pure."""
    problems = []
    dep_id = item.get("id")
    if isinstance(dep_id, bool) or not isinstance(dep_id, (str, int)):
        problems.append("id must be a string (or a whole number), got %s %r" % (_type_name(dep_id), dep_id))
    for key in NAME_KEYS:
        if key in item and item[key] is not None and not _is_text(item[key]):
            problems.append("%s must be a string, got %s %r" % (key, _type_name(item[key]), item[key]))
    logins = item.get("login_role_names")
    if isinstance(logins, dict):
        for plane, name in sorted(logins.items(), key=lambda kv: str(kv[0])):
            if name is not None and not _is_text(name):
                problems.append("login_role_names.%s must be a string, got %s %r" % (plane, _type_name(name), name))
    return problems


def expand_deployments(deployments, planes=DEFAULT_PLANES, templates=None,
                       commander_user=DEFAULT_COMMANDER, selected_ids=None,
                       object_privileges=True, airflow_schema=DEFAULT_AIRFLOW_SCHEMA):
    """Return the list of Deployment records; raise DeploymentModelError listing every problem.

    ``selected_ids``: if given, only those ids are returned (each must exist).
    ``object_privileges``: False leaves Airflow's objects to the platform: ``schema_role``
    is then None in every record.
    """
    problems = _setting_type_problems(templates, commander_user, airflow_schema)
    if problems:
        raise DeploymentModelError(problems)
    settings = {
        "object_privileges": as_bool(object_privileges, True),
        "airflow_schema": DEFAULT_AIRFLOW_SCHEMA if airflow_schema in (None, "") else str(airflow_schema),
        "names": dict(DEFAULT_TEMPLATES),
        "planes": [str(p) for p in (planes or DEFAULT_PLANES)],
        "commander_user": DEFAULT_COMMANDER if commander_user in (None, "") else commander_user,
    }
    settings["names"].update(dict((k, v) for k, v in (templates or {}).items() if v not in (None, "")))
    problems = _setting_problems(settings)
    if not isinstance(deployments, list):
        raise DeploymentModelError(problems + ["dataplane_deployments must be a list, got %s"
                                               % type(deployments).__name__])
    records = []
    item_of_record = []
    seen_ids = {}
    for index, item in enumerate(deployments):
        label = _item_label(index, item)
        dep_id = _item_id(label, item, seen_ids, problems)
        if dep_id is None:
            continue
        seen_ids[dep_id] = index
        records.append(_record_of(label, item, dep_id, settings, problems))
        item_of_record.append(index)

    # The resolved names: the same validator the modules run on their input, and the model's own.
    def label(i, rec):
        return _item_label(item_of_record[i], rec)

    problems.extend(record_problems(records, "dataplane_deployments", label=label,
                                    other=lambda i, rec: "id %r" % rec["id"]))
    problems.extend(model_problems(records, label))
    if selected_ids is not None:
        wanted = [str(i) for i in selected_ids]
        missing = [i for i in wanted if i not in seen_ids]
        if missing:
            problems.append("unknown Deployment ids selected: %s" % ", ".join(repr(i) for i in missing))
        records = [r for r in records if r["id"] in wanted]
    if problems:
        raise DeploymentModelError(problems)
    return records


def _setting_type_problems(templates, commander_user, airflow_schema):
    """The dataplane_* settings that are not strings (checked before anything reads them)."""
    problems = ["dataplane_%s must be a string, got %s %r" % (key, _type_name(value), value)
                for key, value in sorted((templates or {}).items()) if value not in (None, "") and not _is_text(value)]
    if commander_user not in (None, "") and not _is_text(commander_user):
        problems.append("dataplane_commander_user must be a string, got %s %r"
                        % (_type_name(commander_user), commander_user))
    if airflow_schema not in (None, "") and not _is_text(airflow_schema):
        problems.append("dataplane_airflow_schema must be a string, got %s %r"
                        % (_type_name(airflow_schema), airflow_schema))
    return problems


def _setting_problems(settings):
    """Problems of the planes and commander_user of SETTINGS (expand_deployments' resolved settings)."""
    problems = []
    planes = settings["planes"]
    if len(planes) != len(set(planes)):
        problems.append("dataplane_planes has duplicates: %s" % planes)
    for plane in planes:
        if identifier_problem(plane, "plane name") or not plane.replace("_", "").isalnum():
            problems.append("dataplane_planes: %r is not a valid plane name (letters, digits, _)" % plane)
    commander_problem = role_name_problem(settings["commander_user"], "dataplane_commander_user")
    if commander_problem:
        problems.append(commander_problem)
    return problems


def _item_id(label, item, seen_ids, problems):
    """The id of a dataplane_deployments ITEM, or None (its problems added to PROBLEMS) when
    the item cannot become a record: not a mapping, no id, wrong types, a duplicate id."""
    if not isinstance(item, dict):
        problems.append("%s must be a mapping with at least an id" % label)
        return None
    unknown = sorted(set(item) - ITEM_KEYS)
    if unknown:
        problems.append("%s: unknown keys %s" % (label, ", ".join(unknown)))
    if item.get("id") in (None, ""):
        problems.append("%s: id is required" % label)
        return None
    typed = _item_type_problems(item)
    if typed:
        problems.extend("%s: %s" % (label, p) for p in typed)
        return None
    dep_id = str(item["id"])
    if "\x00" in dep_id:
        problems.append("%s: id contains a NUL character" % label)
        return None
    if dep_id in seen_ids:
        problems.append("%s: duplicate id, already used by dataplane_deployments[%d]"
                        % (label, seen_ids[dep_id]))
        return None
    return dep_id


def _record_of(label, item, dep_id, settings, problems):
    """The record of ITEM with every name resolved (problems of its planes added to PROBLEMS)."""
    names, planes = settings["names"], settings["planes"]

    def name_for(key, plane=None):
        return render_template(item.get(key, names[key]), dep_id, plane)

    record = {
        "id": dep_id,
        "state": item.get("state", "present"),
        "database": name_for("database_name"),
        "owner_role": name_for("owner_role_name"),
        "killer_role": name_for("killer_role_name"),
        "login_roles": {},
        "passwords": {},
        "commander_user": str(item.get("commander_user", settings["commander_user"])),
        "update_password": as_bool(item.get("update_password")),
        "drop_database": as_bool(item.get("drop_database")),
        "drop_login_roles": as_bool(item.get("drop_login_roles")),
        "schema_role": name_for("schema_role_name") if settings["object_privileges"] else None,
        "airflow_schema": str(item.get("airflow_schema") or settings["airflow_schema"]),
    }
    explicit_logins = _plane_mapping(label, item, "login_role_names", "role name", planes, problems)
    for plane in planes:
        record["login_roles"][plane] = str(explicit_logins.get(plane) or name_for("login_role_name", plane))
    passwords = _plane_mapping(label, item, "passwords", "password", planes, problems)
    record["passwords"] = dict((p, str(v)) for p, v in passwords.items() if p in planes and v is not None)
    return record


def _plane_mapping(label, item, key, what, planes, problems):
    """ITEM's mapping plane -> WHAT under KEY ({} when missing or not a mapping); a plane not in
    PLANES is a problem."""
    mapping = item.get(key) or {}
    if not isinstance(mapping, dict):
        problems.append("%s: %s must be a mapping plane -> %s" % (label, key, what))
        mapping = {}
    for plane in sorted(set(mapping) - set(planes)):
        problems.append("%s: %s names unknown plane %r (planes: %s)" % (label, key, plane, ", ".join(planes)))
    return mapping
