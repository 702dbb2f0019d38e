# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``membership`` module does with its parameters (the module only declares them).

The module takes community.postgresql.postgresql_membership's options (``groups`` x
``target_roles`` with one set of options, ``state: present|absent|exact``, ``fail_on_role``,
``session_role``, ``trust_input``) or a list of ``grants``. This file turns them into grants
for ``memberships.converge_grants`` and its result into upstream's return values
(``groups``, ``target_roles``, ``granted``, ``revoked``) plus this collection's
(``memberships``, ``remaining``, ``acting_grantor``, diff, ``timings``).

Pure helpers (unit-tested without a module or a server): ``argument_spec``,
``request_problems``, ``requested_grants``, ``by_group``, ``upstream_view``, ``diff_view``,
``names_to_check``. ``run(module)`` does the whole call.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.text.converters import to_native
from ansible_collections.community.postgresql.plugins.module_utils.database import check_input
from ansible_collections.dataplane.postgresql.plugins.module_utils.database import (
    Session,
    connect,
    connection_argument_spec,
    version_label,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.identifiers import identifier_problem
from ansible_collections.dataplane.postgresql.plugins.module_utils.memberships import (
    OPTION_NAMES,
    REFUSED,
    converge_grants,
    grant_problems,
    normalize_grant,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.results import Timings, refuse

# Keys a ``grants`` item takes from the top-level option of the same name when it omits them.
DEFAULTED_KEYS = OPTION_NAMES + ("granted_by", "state")
# Action kinds (memberships._plan) that upstream reports as granted, and as revoked.
GRANT_KINDS, REVOKE_KINDS = ("grant", "revoke_admin"), ("revoke",)
# The AnsibleModule constraints between the options.
CONSTRAINTS = dict(
    mutually_exclusive=[["groups", "grants"], ["target_roles", "grants"]],
    required_together=[["groups", "target_roles"]],
    required_one_of=[["groups", "grants"]],
)


def argument_spec():
    """The module's options: community.postgresql.postgresql_membership's, with its aliases,
    plus the PostgreSQL 16 options, ``granted_by`` and ``grants``."""
    spec = connection_argument_spec()
    # community.postgresql.postgresql_membership's name for it; kept here for drop-in use
    # whatever the shared connection options do with the alias.
    spec["login_db"] = dict(type="str", default="postgres", aliases=["db"])
    options = dict((name, dict(type="bool")) for name in OPTION_NAMES)
    spec.update(options)
    spec.update(
        groups=dict(type="list", elements="str", aliases=["group", "source_role", "source_roles"]),
        target_roles=dict(type="list", elements="str", aliases=["target_role", "user", "users"]),
        fail_on_role=dict(type="bool", default=True),
        session_role=dict(type="str"),
        trust_input=dict(type="bool", default=True),
        granted_by=dict(type="str"),
        state=dict(type="str", choices=["present", "absent", "exact"], default="present"),
        grants=dict(type="list", elements="dict", options=dict(
            options,
            group=dict(type="str", required=True),
            target_role=dict(type="str", required=True),
            granted_by=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"]),
        )),
    )
    return spec


def _stripped(names):
    return [name.strip() for name in names or []]


def _unique(names):
    out = []
    for name in names:
        if name not in out:
            out.append(name)
    return out


def request_problems(params):
    """What is wrong with the shape of the request (before any name is looked at)."""
    problems = []
    if params.get("grants") is None:
        # required_one_of counts a key given as null: refuse it here, as upstream does
        for name in ("groups", "target_roles"):
            if params.get(name) is None:
                problems.append("%s must be a list of role names (an empty list is allowed), not null" % name)
    elif params.get("state") == "exact":
        problems.append("state=exact works with groups and target_roles, not with grants")
    return problems


def requested_grants(params):
    """The grant dicts the module's parameters ask for (state exact asks for present)."""
    defaults = dict((key, params.get(key)) for key in DEFAULTED_KEYS)
    if defaults["state"] == "exact":
        defaults["state"] = "present"
    if params.get("grants") is not None:
        return [normalize_grant(item, defaults) for item in params["grants"]]
    out = []
    for group in _unique(_stripped(params.get("groups"))):
        for member in _unique(_stripped(params.get("target_roles"))):
            out.append(normalize_grant({"group": group, "target_role": member}, defaults))
    return out


def requested_roles(params, grants):
    """(groups, target roles) of the request as upstream returns them, before missing roles
    are left out: stripped, in the order given (with ``grants``, each name once)."""
    if params.get("grants") is not None:
        return _unique(g["group"] for g in grants), _unique(g["target_role"] for g in grants)
    return _stripped(params["groups"]), _stripped(params["target_roles"])


def names_to_check(params):
    """Every name community.postgresql's ``check_input`` looks at (trust_input false)."""
    names = list(params.get("groups") or []) + list(params.get("target_roles") or [])
    for value in [params.get("session_role"), params.get("granted_by")]:
        if value is not None:
            names.append(value)
    for grant in params.get("grants") or []:
        names.extend(grant[key] for key in ("group", "target_role", "granted_by") if grant.get(key) is not None)
    return names


def by_group(actions, kinds, groups=None):
    """{group: [target roles]} of ACTIONS of KINDS, each member once, in order; GROUPS
    pre-seeds keys (community.postgresql reports every group for present/absent)."""
    out = dict((group, []) for group in groups or [])
    for group, member, kind in actions:
        if kind in kinds:
            members = out.setdefault(group, [])
            if member not in members:
                members.append(member)
    return out


def upstream_view(state, with_grants, actions, groups):
    """``granted`` and/or ``revoked`` as community.postgresql returns them for STATE."""
    if with_grants or state == "exact":
        return dict(granted=by_group(actions, GRANT_KINDS), revoked=by_group(actions, REVOKE_KINDS))
    if state == "present":
        return dict(granted=by_group(actions, GRANT_KINDS, groups))
    return dict(revoked=by_group(actions, REVOKE_KINDS, groups))


def diff_view(rows):
    """{"member in group": {grantor: options}} for diff mode."""
    view = {}
    for row in rows:
        key = "%s in %s" % (row["member"], row["group"])
        view.setdefault(key, {})[row["grantor"] or ""] = dict((name, row[name]) for name in OPTION_NAMES)
    return view


def skipped_roles(result):
    """Roles that do not exist and made ``fail_on_role: false`` leave grants out."""
    return sorted(set(n for n in result["missing_roles"]
                      if any(n in (g["group"], g["target_role"]) for g in result["skipped"])))


def _validate(module):
    """Refuse (nothing changed, nothing connected) what is wrong with the request itself;
    return the requested grants."""
    params = module.params
    problems = request_problems(params)
    if problems:
        refuse(module, REFUSED, problems)
    grants = requested_grants(params)
    if not params["trust_input"]:
        # community.postgresql's check and message, before anything else, as upstream does
        check_input(module, names_to_check(params))
    # Names and option types first: a bad name fails without even connecting.
    problems = grant_problems(grants, None, allow_predefined_groups=True)
    if params.get("session_role") is not None:
        problem = identifier_problem(params["session_role"], "session_role")
        if problem:
            problems.append(problem)
    if problems:
        refuse(module, REFUSED, problems)
    return grants


def _open_session(module):
    """Connect and switch to ``session_role`` (quoted: community.postgresql's connect_to_db
    would paste the name into its SET ROLE, so it does not see it)."""
    params = module.params
    session_role = params.get("session_role")
    params["session_role"] = None
    conn = connect(module, autocommit=False)
    params["session_role"] = session_role
    session = Session(module, conn)
    if session_role is not None:
        try:
            session.set_role(session_role)
        except Exception as exc:  # psycopg error: the server's reason
            session.fail("Could not switch role: %s" % to_native(getattr(exc, "pgerror", None) or exc).strip(),
                         queries=[])
    return session


def _warnings(module, params, result):
    state = params["state"]
    if state == "absent" and any(params.get(n) is not None for n in OPTION_NAMES):
        module.warn("inherit_option, set_option and admin_option have no effect with state=absent")
    if result["unconverged"]:
        module.warn("These memberships do not have the requested options after the run, because of "
                    "rows of other grantors or because PostgreSQL recorded another grantor (set granted_by "
                    "to manage one grantor's rows; see the memberships return value): %s"
                    % ", ".join("%s -> %s" % (g["group"], g["target_role"]) for g in result["unconverged"]))


def run(module):
    """The whole ``membership`` call: validate, connect, converge in one transaction (rolled
    back in check mode), exit with upstream's return values and this collection's."""
    timings = Timings()
    params = module.params
    state = params["state"]
    exact = state == "exact"
    grants = _validate(module)
    session = _open_session(module)
    timings.mark("connect")
    group_list, member_list = requested_roles(params, grants)
    result = converge_grants(session, grants, module.check_mode, any_grantor=True,
                             skip_missing=not params["fail_on_role"],
                             exact_members=_unique(member_list) if exact else None,
                             exact_granted_by=params.get("granted_by") if exact else None,
                             allow_predefined_groups=True)
    session.end_transaction(module.check_mode)
    session.close()
    timings.mark("converge")

    skipped = skipped_roles(result)
    for name in skipped:
        module.warn("Role %s does not exist, pass" % name)
    group_list = [g for g in group_list if g not in skipped]
    output = dict(
        changed=result["changed"],
        queries=result["statements"],
        state=state,
        groups=group_list,
        target_roles=[m for m in member_list if m not in skipped],
        memberships=result["memberships"],
        remaining=result["remaining"],
        server_version=version_label(result["server_version_num"]),
        acting_grantor=result["acting_grantor"],
    )
    output.update(upstream_view(state, params.get("grants") is not None, result["actions"], group_list))
    _warnings(module, params, result)
    if module._diff:
        output["diff"] = dict(before=diff_view(result["before"]), after=diff_view(result["after"]))
    output["timings"] = timings.as_dict()
    module.exit_json(**output)
