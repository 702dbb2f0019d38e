# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Deployment model: from the playbook variables to every name, checked once.

``expand_deployments()`` turns the ``dataplane_deployments`` items plus the naming
variables into one record per Deployment with all names resolved::

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
``login_role_name``, ``schema_role_name``, and ``airflow_schema``) or give ``login_role_names: {dp1: ..., dp2: ...}`` outright.

All problems are collected and raised together (``DeploymentModelError``), naming the item,
before anything reaches a server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dataplane.postgresql.plugins.module_utils.identifiers import (
    identifier_problem,
    role_name_problem,
)

DEFAULT_TEMPLATES = {
    "database_name": "airflow_db_{id}",
    "owner_role_name": "airflow_db_{id}_owner",
    "killer_role_name": "airflow_conn_killer_{id}",
    "login_role_name": "{plane}_user_{id}",
    "schema_role_name": "airflow_db_{id}_schema",
}
DEFAULT_AIRFLOW_SCHEMA = "public"
DEFAULT_PLANES = ("dp1", "dp2")
DEFAULT_COMMANDER = "commander_user"
ITEM_KEYS = frozenset(["id", "state", "passwords", "login_role_names", "update_password",
                       "drop_database", "drop_login_roles", "commander_user",
                       "airflow_schema"]) | frozenset(DEFAULT_TEMPLATES)


class DeploymentModelError(ValueError):
    def __init__(self, problems):
        self.problems = list(problems)
        super(DeploymentModelError, self).__init__(
            "invalid dataplane_deployments:\n- " + "\n- ".join(self.problems))


def render_template(template, deployment_id, plane=None):
    text = str(template).replace("{id}", deployment_id)
    if plane is not None:
        text = text.replace("{plane}", plane)
    return text


def _label(index, item):
    if isinstance(item, dict) and item.get("id") not in (None, ""):
        return "dataplane_deployments[%d] (id %r)" % (index, str(item["id"]))
    return "dataplane_deployments[%d]" % index


def _as_bool(value, default=False):
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def expand_deployments(deployments, planes=DEFAULT_PLANES, templates=None,
                       commander_user=DEFAULT_COMMANDER, selected_ids=None,
                       object_privileges=True, airflow_schema=DEFAULT_AIRFLOW_SCHEMA):
    """Return the list of Deployment records; raise DeploymentModelError listing every problem.

    ``selected_ids``: if given, only those ids are returned (each must exist).
    ``object_privileges``: False leaves Airflow's objects to the platform: ``schema_role``
    is then None in every record.
    """
    object_privileges = _as_bool(object_privileges, True)
    airflow_schema = DEFAULT_AIRFLOW_SCHEMA if airflow_schema in (None, "") else str(airflow_schema)
    names = dict(DEFAULT_TEMPLATES)
    names.update(dict((k, v) for k, v in (templates or {}).items() if v not in (None, "")))
    planes = [str(p) for p in (planes or DEFAULT_PLANES)]
    problems = []
    records = []

    if len(planes) != len(set(planes)):
        problems.append("dataplane_planes has duplicates: %s" % planes)
    for plane in planes:
        if identifier_problem(plane, "plane name") or not plane.replace("_", "").isalnum():
            problems.append("dataplane_planes: %r is not a valid plane name (letters, digits, _)" % plane)
    commander_problem = role_name_problem(commander_user, "dataplane_commander_user")
    if commander_problem:
        problems.append(commander_problem)
    if not isinstance(deployments, list):
        raise DeploymentModelError(problems + ["dataplane_deployments must be a list, got %s"
                                               % type(deployments).__name__])

    seen_ids = {}
    owners_of_name = {}
    for index, item in enumerate(deployments):
        label = _label(index, item)
        if not isinstance(item, dict):
            problems.append("%s must be a mapping with at least an id" % label)
            continue
        unknown = sorted(set(item) - ITEM_KEYS)
        if unknown:
            problems.append("%s: unknown keys %s" % (label, ", ".join(unknown)))
        if item.get("id") in (None, ""):
            problems.append("%s: id is required" % label)
            continue
        dep_id = str(item["id"])
        if "\x00" in dep_id:
            problems.append("%s: id contains a NUL character" % label)
            continue
        if dep_id in seen_ids:
            problems.append("%s: duplicate id, already used by dataplane_deployments[%d]"
                            % (label, seen_ids[dep_id]))
            continue
        seen_ids[dep_id] = index

        state = item.get("state", "present")
        if state not in ("present", "absent"):
            problems.append("%s: state must be present or absent, got %r" % (label, state))

        def name_for(key, plane=None):
            return render_template(item.get(key, names[key]), dep_id, plane)

        record = {
            "id": dep_id,
            "state": state,
            "database": name_for("database_name"),
            "owner_role": name_for("owner_role_name"),
            "killer_role": name_for("killer_role_name"),
            "login_roles": {},
            "passwords": {},
            "commander_user": str(item.get("commander_user", commander_user)),
            "update_password": _as_bool(item.get("update_password")),
            "drop_database": _as_bool(item.get("drop_database")),
            "drop_login_roles": _as_bool(item.get("drop_login_roles")),
            "schema_role": name_for("schema_role_name") if object_privileges else None,
            "airflow_schema": str(item.get("airflow_schema") or airflow_schema),
        }
        explicit_logins = item.get("login_role_names") or {}
        if not isinstance(explicit_logins, dict):
            problems.append("%s: login_role_names must be a mapping plane -> role name" % label)
            explicit_logins = {}
        for plane in sorted(set(explicit_logins) - set(planes)):
            problems.append("%s: login_role_names names unknown plane %r (planes: %s)"
                            % (label, plane, ", ".join(planes)))
        for plane in planes:
            record["login_roles"][plane] = str(explicit_logins.get(plane) or name_for("login_role_name", plane))

        passwords = item.get("passwords") or {}
        if not isinstance(passwords, dict):
            problems.append("%s: passwords must be a mapping plane -> password" % label)
            passwords = {}
        for plane in sorted(set(passwords) - set(planes)):
            problems.append("%s: passwords names unknown plane %r (planes: %s)"
                            % (label, plane, ", ".join(planes)))
        record["passwords"] = dict((p, str(v)) for p, v in passwords.items() if p in planes and v is not None)

        problems.extend("%s: %s" % (label, p) for p in
                        [identifier_problem(record["database"], "database name")]
                        + [role_name_problem(record[k], k.replace("_", " ") + " name")
                           for k in ("owner_role", "killer_role")]
                        + [role_name_problem(n, "%s login role name" % p)
                           for p, n in sorted(record["login_roles"].items())]
                        + [role_name_problem(record["commander_user"], "commander_user")]
                        if p)
        if record["schema_role"] is not None:
            problem = role_name_problem(record["schema_role"], "schema role name")
            if problem:
                problems.append("%s: %s" % (label, problem))
        problem = identifier_problem(record["airflow_schema"], "airflow schema name")
        if problem or record["airflow_schema"].lower().startswith("pg_"):
            problems.append("%s: %s" % (label, problem or "airflow schema name %r starts with 'pg_', which "
                                        "PostgreSQL reserves for system schemas" % record["airflow_schema"]))
        if record["database"] == "postgres" or record["database"].startswith("template"):
            problems.append("%s: database %r is a system database" % (label, record["database"]))

        # A name must belong to one Deployment and one purpose only.
        for purpose, name in ([("database", record["database"])]
                              + [("role", record["owner_role"]), ("role", record["killer_role"])]
                              + [("role", n) for n in record["login_roles"].values()]
                              + ([("role", record["schema_role"])] if record["schema_role"] else [])):
            key = (purpose, name)
            if key in owners_of_name and owners_of_name[key] != dep_id:
                problems.append("%s: %s name %r is also used by id %r"
                                % (label, purpose, name, owners_of_name[key]))
            elif key in owners_of_name and purpose == "role":
                problems.append("%s: role name %r is used twice in this Deployment" % (label, name))
            owners_of_name[key] = dep_id
        if record["commander_user"] in ([record["owner_role"], record["killer_role"], record["schema_role"]]
                                        + list(record["login_roles"].values())):
            problems.append("%s: commander_user %r collides with a Deployment role" % (label, record["commander_user"]))
        records.append(record)

    if selected_ids is not None:
        wanted = [str(i) for i in selected_ids]
        missing = [i for i in wanted if i not in seen_ids]
        if missing:
            problems.append("unknown Deployment ids selected: %s" % ", ".join(repr(i) for i in missing))
        records = [r for r in records if r["id"] in wanted]

    if problems:
        raise DeploymentModelError(problems)
    return records
