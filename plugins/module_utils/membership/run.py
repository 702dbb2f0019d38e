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
from ..base.database import MIN_SERVER_VERSION_NUM, Session, connect, connection_argument_spec, version_label
from ..base.identifiers import identifier_problem
from ..server.memberships import (
    OPTION_NAMES,
    REFUSED,
    converge_grants,
    foreign_warning,
    grant_problems,
    normalize_grant,
)
from ..base.results import Timings, refuse

# Keys a ``grants`` item takes from the top-level option of the same name when it omits them.
DEFAULTED_KEYS = OPTION_NAMES + ("granted_by", "state")
# Action kinds (memberships._plan) that upstream reports as granted, and as revoked.
GRANT_KINDS, REVOKE_KINDS = ("grant", "revoke_admin"), ("revoke",)
# The AnsibleModule constraints between the options.
CONSTRAINTS = dict(
    mutually_exclusive=[["groups", "grants"], ["target_roles", "grants"], ["groups", "memberships"],
                        ["grants", "memberships"], ["granted_by", "granted_by_any"]],
    required_by={"groups": "target_roles"},
    required_one_of=[["groups", "grants", "memberships"]],
)
# The community.postgresql release whose postgresql_membership this module matches.
UPSTREAM_VERSION = "5.0.0"


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
        memberships=dict(type="list", elements="dict", options=dict(
            options,
            groups=dict(type="list", elements="str", required=True),
            target_roles=dict(type="list", elements="str"),
            granted_by=dict(type="str"),
            granted_by_any=dict(type="bool"),
        )),
        granted_by_any=dict(type="bool", default=False),
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
    if params.get("memberships") is not None:
        rows = params["memberships"]
        top = params.get("target_roles")
        for index, row in enumerate(rows):
            if row.get("target_roles") is None and top is None:
                problems.append("memberships[%d] has no target_roles, and there is no top-level target_roles "
                                "to fall back on" % index)
            if row.get("granted_by_any"):
                named = [key for key in ("granted_by",) + OPTION_NAMES if row.get(key) is not None]
                if named:
                    problems.append("memberships[%d]: granted_by_any cannot be combined with %s, which describe "
                                    "one grant" % (index, ", ".join(named)))
        if not rows and params.get("state") == "exact" and top is None:
            problems.append("memberships: [] with state=exact needs target_roles (the roles to leave in no group)")
        if not problems:
            problems.extend(_duplicate_rows(rows, top))
        return problems
    if params.get("grants") is None:
        # required_one_of counts a key given as null: refuse it here, as upstream does
        for name in ("groups", "target_roles"):
            if params.get(name) is None:
                problems.append("%s must be a list of role names (an empty list is allowed), not null" % name)
    elif params.get("state") == "exact":
        problems.append("state=exact works with groups and target_roles, not with grants")
    return problems


def _row_pairs(row, top):
    """(group, target role) pairs of one ``memberships`` row, names stripped, each once."""
    members = row.get("target_roles")
    if members is None:
        members = top
    return [(group, member) for member in _unique(_stripped(members))
            for group in _unique(_stripped(row.get("groups")))]


def _duplicate_rows(rows, top):
    """Two ``memberships`` rows describing the same grant (group, target role, granted_by)."""
    seen = {}
    problems = []
    for index, row in enumerate(rows):
        grantor = row.get("granted_by")
        for group, member in _row_pairs(row, top):
            key = (group, member, grantor)
            if key in seen and seen[key] != index:
                problems.append('memberships[%d] and memberships[%d] both grant "%s" to "%s"%s: describe a grant '
                                'once, the second would only overwrite the options of the first'
                                % (seen[key], index, group, member,
                                   ' under "%s"' % grantor if grantor is not None else ""))
            seen.setdefault(key, index)
    return problems


def membership_row_labels(params):
    """``memberships[i]`` for each grant ``requested_grants`` makes of a ``memberships`` row;
    None for the other forms."""
    if params.get("memberships") is None:
        return None
    return ["memberships[%d]" % index for index, row in enumerate(params["memberships"])
            for dummy in _row_pairs(row, params.get("target_roles"))]


def requested_grants(params):
    """The grant dicts the module's parameters ask for (state exact asks for present)."""
    defaults = dict((key, params.get(key)) for key in DEFAULTED_KEYS)
    if defaults["state"] == "exact":
        defaults["state"] = "present"
    if params.get("grants") is not None:
        return [normalize_grant(item, defaults) for item in params["grants"]]
    if params.get("memberships") is not None:
        out = []
        for row in params["memberships"]:
            for group, member in _row_pairs(row, params.get("target_roles")):
                item = dict((key, row.get(key)) for key in OPTION_NAMES + ("granted_by", "granted_by_any"))
                item.update(group=group, target_role=member)
                out.append(normalize_grant(item, defaults))
        return out
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
    if params.get("memberships") is not None:
        members = _unique(g["target_role"] for g in grants)
        if not params["memberships"]:
            members = _unique(_stripped(params.get("target_roles")))
        return _unique(g["group"] for g in grants), members
    return _stripped(params["groups"]), _stripped(params["target_roles"])


def names_to_check(params):
    """Every name community.postgresql's ``check_input`` looks at (trust_input false)."""
    names = list(params.get("groups") or []) + list(params.get("target_roles") or [])
    for value in [params.get("session_role"), params.get("granted_by")]:
        if value is not None:
            names.append(value)
    for grant in params.get("grants") or []:
        names.extend(grant[key] for key in ("group", "target_role", "granted_by") if grant.get(key) is not None)
    for row in params.get("memberships") or []:
        names.extend(row.get("groups") or [])
        names.extend(row.get("target_roles") or [])
        if row.get("granted_by") is not None:
            names.append(row["granted_by"])
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
    if with_grants:
        return dict(granted=by_group(actions, GRANT_KINDS), revoked=by_group(actions, REVOKE_KINDS))
    if state == "exact":
        # community.postgresql 5.0: every requested group in granted, only revoked groups in revoked
        return dict(granted=by_group(actions, GRANT_KINDS, groups), revoked=by_group(actions, REVOKE_KINDS))
    if state == "present":
        return dict(granted=by_group(actions, GRANT_KINDS, groups))
    return dict(revoked=by_group(actions, REVOKE_KINDS, groups))


def upstream_grants(rows, pairs, server_version_num):
    """community.postgresql 5.0's ``grants`` and ``effective_options`` return values for the
    requested PAIRS from ROWS (pg_auth_members, after the call): ``{group: {target role:
    [{grantor, options}]}}`` and ``{group: {target role: {options OR-ed}}}``; pairs whose
    target role is not a member are left out; before 16 only ``admin_option``."""
    names = OPTION_NAMES if server_version_num >= MIN_SERVER_VERSION_NUM else ("admin_option",)
    grants, effective = {}, {}
    for group, member in pairs:
        mine = sorted((r for r in rows if r["group"] == group and r["member"] == member),
                      key=lambda r: r["grantor"] or "")
        if not mine:
            continue
        entries = []
        for row in mine:
            entry = dict(grantor=row["grantor"])
            entry.update((name, bool(row.get(name))) for name in names)
            entries.append(entry)
        grants.setdefault(group, {})[member] = entries
        effective.setdefault(group, {})[member] = dict((name, any(e[name] for e in entries)) for name in names)
    return grants, effective


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
    ignored = [n for n in ("admin_option", "inherit_option", "set_option") if params.get(n) is not None]
    ignored += [n for n in ("admin_option", "inherit_option", "set_option")
                if n not in ignored and any(row.get(n) is not None for row in params.get("memberships") or [])]
    if state == "absent" and ignored:
        module.warn("The %s parameter(s) have no effect with state=absent and are ignored" % ", ".join(ignored))
    for note in result.get("foreign") or []:
        module.warn(foreign_warning(note))
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
    any_grantor = params.get("granted_by_any", False)
    result = converge_grants(session, grants, module.check_mode, any_grantor=any_grantor,
                             skip_missing=not params["fail_on_role"],
                             exact_members=_unique(member_list) if exact else None,
                             exact_granted_by=params.get("granted_by") if exact else None,
                             allow_predefined_groups=True, name_grantor=True,
                             check_grantors=True, refuse_granted_by_before_16=True,
                             row_labels=membership_row_labels(params))
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
    requested = [(g["group"], g["target_role"]) for g in grants if g["group"] not in skipped
                 and g["target_role"] not in skipped]
    output["grants"], output["effective_options"] = upstream_grants(
        result["after"], _unique(requested), result["server_version_num"])
    _warnings(module, params, result)
    if module._diff:
        output["diff"] = dict(before=diff_view(result["before"]), after=diff_view(result["after"]))
    output["timings"] = timings.as_dict()
    module.exit_json(**output)
