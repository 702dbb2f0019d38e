# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role memberships with the PostgreSQL 16 options, idempotent per grantor.

Used by the ``membership`` module and by any module that converges memberships inside
its own transaction (``deployment_setup``).

Vocabulary
  grant  ``{group, target_role, inherit_option, set_option, admin_option, granted_by, state,
         granted_by_any}``: what is wanted (``granted_by_any`` None = the call's ANY_GRANTOR). Options are True/False/None (None = keep the current value; a new
         grant gets PostgreSQL's default). ``granted_by`` None = the connecting role, which
         PostgreSQL records as the bootstrap superuser when the connecting role is a
         superuser. ``state`` is ``present`` or ``absent``.
  row    ``{group, member, grantor, inherit_option, set_option, admin_option}``: one row of
         ``pg_auth_members`` (on PostgreSQL < 16 inherit/set are None).

PostgreSQL 16 keeps one row per (group, member, grantor); a GRANT from the same grantor
updates that row in place and changes only the options it names; REVOKE removes only the
row of its grantor. The effective options of a membership are the OR across its rows.
PostgreSQL 14/15 keep one row per (group, member) whoever granted it, and know only the
ADMIN option: plain membership and ``admin_option`` work there, INHERIT/SET do not.

Pure functions (no database): ``normalize_grant``, ``grant_problems``, ``plan_grants``,
``predict_rows``, ``effective_options``, ``statement_text``. Database functions take a
``database.Session``: ``read_memberships`` and ``converge_grants``; neither commits.

converge_grants' modes (the ``membership`` module's additions; the defaults keep the
per-grantor behaviour)
  ANY_GRANTOR: on 16+ a grant without ``granted_by`` is about the membership as a whole:
  ``present`` is satisfied when the options OR-ed across every grantor's rows equal the
  requested ones (else the acting grantor's row is converged), ``absent`` revokes every
  grantor's row. SKIP_MISSING: grants whose group or target role does not exist are
  dropped (``skipped``) instead of failing; a missing grantor still fails.
  EXACT_MEMBERS: these target roles lose every membership GRANTS do not ask for
  (only EXACT_GRANTED_BY's rows, if given). ALLOW_PREDEFINED_GROUPS: see grant_problems.

  The grantor models on 16+ (14/15 keep one row per group and member, so they coincide):
  by default a grant without ``granted_by`` is the connecting role's row (``acting_grantor``)
  and nothing else; NAME_GRANTOR also writes ``GRANTED BY`` it (community.postgresql 5.0's
  statements). ANY_GRANTOR (above) is the grantor-agnostic model. ALL_GRANTORS converges the
  effective options: ``absent`` revokes every grantor's row, an option wanted false is
  cleared on every grantor's row (provisioning). CHECK_GRANTORS refuses, before any
  statement, a grant its named grantor cannot make (``grantor_problems``).
  REFUSE_GRANTED_BY_BEFORE_16: see ``grant_problems``. The result's ``foreign`` lists
  ``foreign_notes`` (empty with ANY_GRANTOR or ALL_GRANTORS). ROW_LABELS (one label per
  grant, e.g. ``memberships[0]``): two grants of different rows that are the same grant once
  the acting grantor is filled in for a missing ``granted_by`` are refused (16+).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.text.converters import to_native
from ..base.database import MIN_SERVER_VERSION_NUM, sql, version_label
from ..base.identifiers import identifier_problem, name_listing, role_name_problem
from ..base.results import refusal_message

OPTION_NAMES = ("inherit_option", "set_option", "admin_option")
GRANT_KEYS = ("group", "target_role") + OPTION_NAMES + ("granted_by", "state", "granted_by_any")
STATES = ("present", "absent")
# What a refusal of membership input names (results.refusal_message).
REFUSED = "membership request"
# Option keyword in GRANT ... WITH <keyword> TRUE|FALSE (PostgreSQL 16+).
_OPTION_KEYWORDS = (("inherit_option", "INHERIT"), ("set_option", "SET"), ("admin_option", "ADMIN"))
# How many names a summary message lists before it says "and N more".
_LIST_LIMIT = 20


# ---------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------


def normalize_grant(grant, defaults=None):
    """Return a grant dict with every key; keys missing (or None) take DEFAULTS' value."""
    defaults = defaults or {}
    out = {}
    for key in GRANT_KEYS:
        value = grant.get(key)
        if value is None:
            value = defaults.get(key)
        out[key] = value
    if out["state"] is None:
        out["state"] = "present"
    return out


def _label(grant):
    return "%s -> %s" % (grant.get("group"), grant.get("target_role"))


def _listing(items):
    return name_listing(items, _LIST_LIMIT)


def grant_problems(grants, server_version_num, allow_predefined_groups=False,
                   refuse_granted_by_before_16=False):
    """Every problem with GRANTS as a list of messages; empty when they can be applied.

    Pure. Checks names (identifiers.role_name_problem: empty, NUL, > 63 bytes, ``pg_``
    prefix, reserved), states, option types, a role granted to itself, contradicting
    entries, and INHERIT/SET options on a server older than 16. SERVER_VERSION_NUM None
    skips the version check (names can be checked before connecting).
    ALLOW_PREDEFINED_GROUPS lets a group start with ``pg_``: PostgreSQL reserves that
    prefix for its predefined roles (``pg_monitor``, ``pg_signal_backend``...), which
    exist and may be granted; the name still has to exist, like any other.
    REFUSE_GRANTED_BY_BEFORE_16: ``granted_by`` on a server older than 16 is a problem
    (the ``membership`` module, as community.postgresql 5.0 does).
    """
    problems = []
    seen = {}
    needs_16 = []
    needs_grantor = []
    for index, raw in enumerate(grants):
        where = "grants[%d]" % index
        if not isinstance(raw, dict):
            problems.append("%s must be a dict, got %r" % (where, raw))
            continue
        grant = normalize_grant(raw)
        bad_name = False
        for key, kind in (("group", "group"), ("target_role", "target role"), ("granted_by", "granted_by role")):
            if key == "granted_by" and grant[key] is None:
                continue
            problem = role_name_problem(grant[key], kind)
            if (problem and key == "group" and allow_predefined_groups
                    and isinstance(grant[key], str) and grant[key].lower().startswith("pg_")):
                problem = identifier_problem(grant[key], kind)
            if problem:
                problems.append("%s (%s): %s" % (where, _label(grant), problem))
                bad_name = True
        if grant["state"] not in STATES:
            problems.append("%s (%s): state must be one of %s, got %r"
                            % (where, _label(grant), ", ".join(STATES), grant["state"]))
        for option in OPTION_NAMES:
            if grant[option] is not None and not isinstance(grant[option], bool):
                problems.append("%s (%s): %s must be true, false or omitted, got %r"
                                % (where, _label(grant), option, grant[option]))
        if bad_name:
            continue
        if grant["group"] == grant["target_role"]:
            problems.append("%s: role %r cannot be a member of itself" % (where, grant["group"]))
        key = (grant["group"], grant["target_role"], grant["granted_by"])
        if key in seen and seen[key][1] != grant:
            problems.append("%s (%s) contradicts grants[%d] for the same group, target role and grantor"
                            % (where, _label(grant), seen[key][0]))
        else:
            seen.setdefault(key, (index, grant))
        if grant["state"] == "present" and (grant["inherit_option"] is not None
                                            or grant["set_option"] is not None):
            needs_16.append(_label(grant))
        if grant["granted_by"] is not None:
            needs_grantor.append(_label(grant))
    if needs_16 and server_version_num is not None and server_version_num < MIN_SERVER_VERSION_NUM:
        problems.append(
            "The inherit_option, set_option parameter(s) require PostgreSQL 16 or later: "
            "PostgreSQL %s does not support the INHERIT and SET membership options, "
            "inherit_option and set_option need PostgreSQL 16 or newer (requested for %s). "
            "Omit them to manage plain membership (and admin_option) on this server."
            % (version_label(server_version_num), _listing(needs_16)))
    if (refuse_granted_by_before_16 and server_version_num is not None
            and server_version_num < MIN_SERVER_VERSION_NUM and needs_grantor):
        problems.append(
            "The granted_by parameter(s) require PostgreSQL 16 or later: PostgreSQL %s keeps one "
            "row per group and member whoever granted it (requested for %s)"
            % (version_label(server_version_num), _listing(needs_grantor)))
    return problems


def role_names(grants):
    """Every role name GRANTS mention (groups, target roles, grantors), sorted, unique."""
    found = set()
    for grant in grants:
        for key in ("group", "target_role", "granted_by"):
            if grant.get(key) is not None:
                found.add(grant[key])
    return sorted(found)


# ---------------------------------------------------------------------------------------
# Planning (pure)
# ---------------------------------------------------------------------------------------


def _grant_statement(grant, options, server_version_num):
    """GRANT group TO member [WITH ...] [GRANTED BY ...] for OPTIONS {name: bool}."""
    parts = [sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant["group"]),
                                              sql.Identifier(grant["target_role"]))]
    if server_version_num >= MIN_SERVER_VERSION_NUM:
        clauses = [sql.SQL(keyword) + sql.SQL(" TRUE" if options[name] else " FALSE")
                   for name, keyword in _OPTION_KEYWORDS if name in options]
        if clauses:
            parts.append(sql.SQL(" WITH ") + sql.SQL(", ").join(clauses))
    elif options.get("admin_option"):
        parts.append(sql.SQL(" WITH ADMIN OPTION"))
    if grant["granted_by"] is not None:
        parts.append(sql.SQL(" GRANTED BY {}").format(sql.Identifier(grant["granted_by"])))
    return sql.Composed(parts)


def _revoke_statement(grant, server_version_num, admin_only=False):
    head = "REVOKE ADMIN OPTION FOR {} FROM {}" if admin_only else "REVOKE {} FROM {}"
    parts = [sql.SQL(head).format(sql.Identifier(grant["group"]), sql.Identifier(grant["target_role"]))]
    # PostgreSQL < 16 keeps no per-grantor rows and refuses GRANTED BY from non-superusers.
    if grant["granted_by"] is not None and server_version_num >= MIN_SERVER_VERSION_NUM:
        parts.append(sql.SQL(" GRANTED BY {}").format(sql.Identifier(grant["granted_by"])))
    return sql.Composed(parts)


def _index(rows):
    """{(group, member): [row, ...]} keeping ROWS' order (copies of the rows)."""
    index = {}
    for row in rows:
        index.setdefault((row["group"], row["member"]), []).append(dict(row))
    return index


def _revoke_row_statement(grant, row, acting_grantor, server_version_num):
    """REVOKE removing ROW (any grantor's): GRANTED BY its grantor unless it is the acting one."""
    named = dict(grant)
    named["granted_by"] = None if row["grantor"] == acting_grantor else row["grantor"]
    return _revoke_statement(named, server_version_num)


def _whole(grant, any_grantor):
    """Whether GRANT is about the membership as a whole, whoever granted it: no
    ``granted_by``, and its ``granted_by_any`` (or the call's ANY_GRANTOR when it has none)."""
    flag = grant.get("granted_by_any")
    return grant.get("granted_by") is None and (any_grantor if flag is None else bool(flag))


def _satisfied(rows, wanted):
    """Whether the effective options of ROWS (OR across grantors) equal every WANTED option."""
    if not rows:
        return False
    effective = effective_options(rows)
    return all(effective.get(name) == value for name, value in wanted.items())


def _plan(current_rows, grants, server_version_num, acting_grantor, member_inherit=None,
          any_grantor=False, name_grantor=False, all_grantors=False):
    """(statements, predicted rows, actions) for GRANTS applied in order to CURRENT_ROWS.

    ACTIONS has one ``(group, member, kind)`` per statement, kind ``grant`` (a GRANT),
    ``revoke`` (a row removed) or ``revoke_admin`` (14/15: ADMIN OPTION lowered).
    On 16+ (see "converge_grants' modes" in this file's docstring):
    ANY_GRANTOR applies to grants without ``granted_by``: ``present`` is satisfied by the
    effective options of every grantor's rows, ``absent`` removes every grantor's row.
    NAME_GRANTOR writes ``GRANTED BY`` the acting grantor in statements for a grant that
    names none (the grantor-scoped model of community.postgresql 5.0).
    ALL_GRANTORS: ``absent`` removes every grantor's row, and an option that ``present``
    wants false is also cleared on the rows of the other grantors (GRANTED BY each), so the
    effective options (the OR across rows) are the requested ones.
    """
    member_inherit = member_inherit or {}
    per_grantor = server_version_num >= MIN_SERVER_VERSION_NUM
    index = _index(current_rows)
    statements = []
    actions = []
    named = []  # per statement: (kind, group, grantor named in GRANTED BY or None)

    def emit(statement, group, member, kind):
        statements.append(statement)
        actions.append((group, member, kind))
        named.append((kind, group, current[0]))

    current = [None]
    for raw in grants:
        grant = normalize_grant(raw)
        group, member = grant["group"], grant["target_role"]
        grantor = grant["granted_by"] if grant["granted_by"] is not None else acting_grantor
        whole = _whole(grant, any_grantor)
        if per_grantor and name_grantor and not whole and grant["granted_by"] is None:
            grant["granted_by"] = acting_grantor
        current[0] = grant["granted_by"] if per_grantor else None
        pair_rows = index.setdefault((group, member), [])
        if per_grantor:
            mine = [r for r in pair_rows if r["grantor"] == grantor]
        else:
            mine = list(pair_rows)
        if grant["state"] == "absent":
            if per_grantor and (whole or all_grantors):
                # Every grantor's row, the acting grantor's first (a plain REVOKE).
                doomed = sorted(pair_rows, key=lambda r: (r["grantor"] != acting_grantor, r["grantor"] or ""))
                for row in doomed:
                    if name_grantor and row["grantor"] is not None:
                        # community.postgresql names the grantor of each grant it revokes
                        current[0] = row["grantor"]
                        emit(_revoke_statement(dict(grant, granted_by=row["grantor"]), server_version_num),
                             group, member, "revoke")
                        continue
                    current[0] = None if row["grantor"] == acting_grantor else row["grantor"]
                    emit(_revoke_row_statement(grant, row, acting_grantor, server_version_num),
                         group, member, "revoke")
                pair_rows[:] = []
            elif mine:
                emit(_revoke_statement(grant, server_version_num), group, member, "revoke")
                pair_rows[:] = [r for r in pair_rows if not any(r is m for m in mine)]
            continue
        wanted = dict((name, grant[name]) for name in OPTION_NAMES if grant[name] is not None)
        if not per_grantor:
            wanted = dict((k, v) for k, v in wanted.items() if k == "admin_option")
        if per_grantor and whole and _satisfied(pair_rows, wanted):
            continue
        if not mine:
            emit(_grant_statement(grant, wanted, server_version_num), group, member, "grant")
            row = {"group": group, "member": member, "grantor": grantor,
                   "inherit_option": None, "set_option": None, "admin_option": wanted.get("admin_option", False)}
            if per_grantor:
                row["inherit_option"] = wanted.get("inherit_option", bool(member_inherit.get(member, True)))
                row["set_option"] = wanted.get("set_option", True)
            pair_rows.append(row)
        else:
            row = mine[0]
            differ = dict((name, value) for name, value in wanted.items() if row.get(name) != value)
            if differ:
                if per_grantor:
                    emit(_grant_statement(grant, differ, server_version_num), group, member, "grant")
                elif differ["admin_option"]:
                    emit(_grant_statement(grant, differ, server_version_num), group, member, "grant")
                    row["grantor"] = grantor  # 14/15 re-record the grantor of a re-GRANT
                else:
                    emit(_revoke_statement(grant, server_version_num, admin_only=True), group, member,
                         "revoke_admin")
                row.update(differ)
        if per_grantor and all_grantors:
            # The other grantors' rows must not keep an option this grant wants false.
            for other in sorted(pair_rows, key=_sort_key):
                if other["grantor"] in (grantor, None):
                    continue
                lower = dict((name, False) for name, value in wanted.items() if value is False and other.get(name))
                if lower:
                    current[0] = other["grantor"]
                    emit(_grant_statement(dict(grant, granted_by=other["grantor"]), lower, server_version_num),
                         group, member, "grant")
                    other.update(lower)
    predicted = [row for pair_rows in index.values() for row in pair_rows]
    return statements, sorted(predicted, key=_sort_key), actions, named


def plan_grants(current_rows, grants, server_version_num, acting_grantor, any_grantor=False,
                name_grantor=False, all_grantors=False):
    """The statements (``sql.Composed``) that turn CURRENT_ROWS into what GRANTS want. Pure.

    ``acting_grantor`` is the grantor PostgreSQL records when a grant names none (the
    bootstrap superuser's name for a superuser, else the connecting role). On 16+ rows
    are matched on (group, member, grantor); an existing row gets one GRANT naming only
    the options that differ (GRANT ... WITH x FALSE updates the row in place). On < 16
    rows are matched on (group, member) only and only ADMIN is managed.
    ANY_GRANTOR: see "converge_grants' modes" in this file's docstring.
    """
    return _plan(current_rows, grants, server_version_num, acting_grantor, any_grantor=any_grantor,
                 name_grantor=name_grantor, all_grantors=all_grantors)[0]


def predict_rows(current_rows, grants, server_version_num, acting_grantor, member_inherit=None,
                 any_grantor=False, name_grantor=False, all_grantors=False):
    """The rows after ``plan_grants``' statements would run (check mode). Pure.

    MEMBER_INHERIT maps a member to its ``rolinherit`` (PostgreSQL's default for an omitted
    INHERIT on a new grant); unknown members count as INHERIT.
    """
    return _plan(current_rows, grants, server_version_num, acting_grantor, member_inherit,
                 any_grantor=any_grantor, name_grantor=name_grantor, all_grantors=all_grantors)[1]


def effective_options(rows):
    """OR of each option across ROWS (one membership, several grantors); None if no rows."""
    if not rows:
        return None
    out = {}
    for name in OPTION_NAMES:
        values = [r.get(name) for r in rows]
        out[name] = None if all(v is None for v in values) else any(bool(v) for v in values)
    return out


def _sort_key(row):
    return (row["group"], row["member"], row["grantor"] or "")


def rows_for_pairs(rows, pairs):
    """ROWS whose (group, member) is in PAIRS, sorted."""
    pairs = set(pairs)
    return sorted((r for r in rows if (r["group"], r["member"]) in pairs), key=_sort_key)


def _canonical(rows):
    return sorted(tuple(r.get(k) for k in ("group", "member", "grantor") + OPTION_NAMES) for r in rows)


def statement_text(statement):
    """Render a ``sql.Composed`` without a connection (tests, messages). Identifiers are
    double-quoted the way PostgreSQL wants; use Session.render for the real thing."""
    if hasattr(statement, "seq"):
        return "".join(statement_text(part) for part in statement.seq)
    if isinstance(statement, sql.Identifier):
        strings = getattr(statement, "strings", None) or (statement.string,)
        return ".".join('"%s"' % s.replace('"', '""') for s in strings)
    if isinstance(statement, sql.SQL):
        return statement.string
    if isinstance(statement, sql.Literal):
        return repr(statement.wrapped)
    return str(statement)


def summarize(grants, before_rows, after_rows, acting_grantor):
    """One dict per grant: its grantor, and the pair's rows and effective options before
    and after. Pure."""
    out = []
    before_index, after_index = _index(before_rows), _index(after_rows)
    for raw in grants:
        grant = normalize_grant(raw)
        pair = (grant["group"], grant["target_role"])
        before = sorted(before_index.get(pair, []), key=_sort_key)
        after = sorted(after_index.get(pair, []), key=_sort_key)
        grantor = grant["granted_by"] if grant["granted_by"] is not None else acting_grantor
        item = {
            "group": grant["group"],
            "target_role": grant["target_role"],
            "state": grant["state"],
            "grantor": grantor,
            "changed": _canonical(before) != _canonical(after),
            "member_before": bool(before),
            "member_after": bool(after),
            "effective_before": effective_options(before),
            "effective_after": effective_options(after),
            "grants_before": [_grantor_view(r) for r in before],
            "grants_after": [_grantor_view(r) for r in after],
        }
        out.append(item)
    return out


def _grantor_view(row):
    return dict((k, row[k]) for k in ("grantor",) + OPTION_NAMES)


def unconverged(grants, after_rows, server_version_num, acting_grantor, any_grantor=False):
    """Grants the AFTER_ROWS do not satisfy (for a warning: e.g. PostgreSQL recorded another
    grantor than expected, or another grantor's row keeps an option true). Pure."""
    per_grantor = server_version_num >= MIN_SERVER_VERSION_NUM
    index = _index(after_rows)
    out = []
    for raw in grants:
        grant = normalize_grant(raw)
        if per_grantor and _whole(grant, any_grantor):
            rows = index.get((grant["group"], grant["target_role"]), [])
            wanted = dict((n, grant[n]) for n in OPTION_NAMES if grant[n] is not None)
            if (rows if grant["state"] == "absent" else not _satisfied(rows, wanted)):
                out.append(grant)
            continue
        grantor = grant["granted_by"] if grant["granted_by"] is not None else acting_grantor
        mine = [r for r in index.get((grant["group"], grant["target_role"]), [])
                if not per_grantor or r["grantor"] == grantor]
        if grant["state"] == "absent":
            if mine:
                out.append(grant)
            continue
        names = OPTION_NAMES if per_grantor else ("admin_option",)
        if not mine or any(grant[n] is not None and mine[0].get(n) != grant[n] for n in names):
            out.append(grant)
    return out


# ---------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------

_READ_QUERY = """
SELECT g.rolname AS "group", m.rolname AS member, gr.rolname AS grantor,
       (pg_catalog.to_jsonb(am) OPERATOR(pg_catalog.->>) 'inherit_option')::boolean AS inherit_option,
       (pg_catalog.to_jsonb(am) OPERATOR(pg_catalog.->>) 'set_option')::boolean AS set_option,
       am.admin_option
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid
  JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member
  LEFT JOIN pg_catalog.pg_roles gr ON gr.oid OPERATOR(pg_catalog.=) am.grantor
 WHERE g.rolname OPERATOR(pg_catalog.=) ANY(%(names)s::name[]) OR m.rolname OPERATOR(pg_catalog.=) ANY(%(names)s::name[])
 ORDER BY 1, 2, 3
"""

_CONTEXT_QUERY = """
SELECT pg_catalog.current_setting('server_version_num')::int AS version_num,
       CURRENT_USER::text AS login,
       (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) AS is_superuser,
       (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) 10) AS bootstrap_superuser,
       COALESCE((SELECT pg_catalog.json_object_agg(r.rolname, r.rolinherit)
                   FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(names)s::name[])),
                '{}'::json) AS roles
"""


def read_memberships(session, role_names):
    """Rows of pg_auth_members where a group or member is one of ROLE_NAMES (one query).
    On PostgreSQL < 16 inherit_option and set_option are None."""
    names = sorted(set(role_names))
    if not names:
        return []
    return session.rows(_READ_QUERY, {"names": names})


def server_context(session, role_names=()):
    """One query: version, login, superuser?, the bootstrap superuser's name (the
    grantor PostgreSQL records for a superuser) and {role: rolinherit} of ROLE_NAMES
    that exist."""
    row = session.rows(_CONTEXT_QUERY, {"names": sorted(set(role_names))})[0]
    roles = row["roles"]
    if isinstance(roles, str):  # a driver that does not decode json
        import json
        roles = json.loads(roles)
    row["roles"] = roles or {}
    row["acting_grantor"] = row["bootstrap_superuser"] if row["is_superuser"] else row["login"]
    return row


def missing_roles_message(missing):
    """The error for roles that do not exist, worded as community.postgresql words it for one."""
    if len(missing) == 1:
        return "Role %s does not exist" % missing[0]
    return "Roles %s do not exist (nothing was changed)" % _listing(missing)


def exact_revocations(current_rows, grants, exact_members, granted_by=None):
    """Absent grants for every membership of EXACT_MEMBERS in a group that GRANTS do not
    ask for (``state: exact``). Pure. Names come from the catalog, so they are not
    validated as input. With GRANTED_BY only that grantor's rows count."""
    wanted = set((g["group"], g["target_role"]) for g in grants if g["state"] != "absent")
    out = []
    seen = set()
    members = list(exact_members)
    for member in members:
        for row in sorted(current_rows, key=_sort_key):
            pair = (row["group"], row["member"])
            if row["member"] != member or pair in wanted or pair in seen:
                continue
            if granted_by is not None and row["grantor"] != granted_by:
                continue
            seen.add(pair)
            out.append(normalize_grant({"group": row["group"], "target_role": member,
                                        "granted_by": granted_by, "state": "absent"}))
    return out


_ADMIN_HOLDERS_QUERY = """
SELECT g.rolname AS "group", a.rolname AS holder,
       pg_catalog.pg_has_role(a.oid, 'USAGE') AS usable
  FROM pg_catalog.pg_auth_members am
  JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid
  JOIN pg_catalog.pg_roles a ON a.oid OPERATOR(pg_catalog.=) am.member
 WHERE am.admin_option AND g.rolname OPERATOR(pg_catalog.=) ANY(%(groups)s::name[])
 ORDER BY 1, 2
"""

_USABLE_QUERY = """
SELECT r.rolname AS name, pg_catalog.pg_has_role(r.oid, 'USAGE') AS usable
  FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%(names)s::name[])
"""


def grantor_problems(named, context, holders, usable):
    """Why the statements (``_plan``'s 4th value) cannot be run under the grantors they name,
    as messages; empty when they can. Pure.

    NAMED: ``(kind, group, grantor or None)`` per statement. CONTEXT: ``server_context``.
    HOLDERS: ``{group: [(role holding ADMIN OPTION on it, whether the connection has that
    role's privileges)]}``. USABLE: ``{grantor: whether the connection has its privileges}``.
    PostgreSQL records a grant under a named grantor only when the connection has that role's
    privileges (a superuser has every role's) and the grantor holds ADMIN OPTION on the group
    (the bootstrap superuser needs none). Checked before any statement runs, so a refusal
    leaves nothing half done.
    """
    problems = []
    grantors = sorted(set(g for dummy, dummy2, g in named if g is not None))
    if not context["is_superuser"]:
        for grantor in grantors:
            if grantor != context["login"] and not usable.get(grantor):
                problems.append('The connecting role cannot act as the granting role "%s", because it does not '
                                'have the privileges of that role. Set granted_by to a role it does have the '
                                'privileges of.' % grantor)
    lacking = {}
    for kind, group, grantor in named:
        if kind != "grant" or grantor is None or grantor == context["bootstrap_superuser"]:
            continue
        if grantor in [h for h, dummy in holders.get(group, [])]:
            continue
        lacking.setdefault(grantor, [])
        if group not in lacking[grantor]:
            lacking[grantor].append(group)
    for grantor in sorted(lacking):
        for group in lacking[grantor]:
            held = holders.get(group, [])
            reachable = [h for h, ok in held if ok or context["is_superuser"]]
            if reachable:
                problems.append('The granting role "%s" does not hold ADMIN OPTION on "%s". Set granted_by to a '
                                'role that does and whose privileges the connecting role has (%s: %s); groups '
                                'that need different granting roles need a grants or memberships item each (or '
                                'split into separate tasks).' % (grantor, group, group, ", ".join(reachable)))
            elif held:
                problems.append('The granting role "%s" does not hold ADMIN OPTION on "%s": ADMIN OPTION on "%s" '
                                'is held only by roles whose privileges the connecting role lacks (%s: %s), so '
                                'no granted_by can help.'
                                % (grantor, group, group, group, ", ".join(h for h, dummy in held)))
            else:
                problems.append('The granting role "%s" does not hold ADMIN OPTION on "%s", and no role does: only '
                                'the bootstrap superuser can grant it under a named granting role.' % (grantor, group))
    return problems


def derived_grantor_clashes(grants, labels, acting_grantor):
    """Grants of two rows (LABELS) that are one grant once a missing ``granted_by`` is the
    acting grantor, as messages. Pure."""
    seen = {}
    problems = []
    for grant, label in zip(grants, labels):
        grantor = grant["granted_by"] if grant["granted_by"] is not None else acting_grantor
        key = (grant["group"], grant["target_role"], grantor)
        first = seen.setdefault(key, (label, grant))
        if first[0] != label and (first[1]["granted_by"] is None) != (grant["granted_by"] is None):
            problems.append('%s and %s both grant "%s" to "%s" under "%s", the granting role derived for a row '
                            'that names no granted_by: describe a grant once'
                            % (first[0], label, grant["group"], grant["target_role"], grantor))
    return problems


def foreign_notes(grants, after_rows, acting_grantor, server_version_num, any_grantor=False):
    """Where another grantor's rows keep what a grant asked to remove (PostgreSQL 16+). Pure.

    One dict per case: ``{"kind": "member", group, target_role, grantor, others}`` for an
    ``absent`` grant whose pair is still held through OTHERS' rows, and ``{"kind": "option",
    group, target_role, grantor, others, option}`` for an option a ``present`` grant wants
    false that OTHERS' rows keep true. GRANTOR is the grant's own (``granted_by`` or the
    acting grantor)."""
    if server_version_num < MIN_SERVER_VERSION_NUM:
        return []
    index = _index(after_rows)
    out = []
    seen = set()
    for raw in grants:
        grant = normalize_grant(raw)
        if _whole(grant, any_grantor):
            continue
        grantor = grant["granted_by"] if grant["granted_by"] is not None else acting_grantor
        rows = [r for r in index.get((grant["group"], grant["target_role"]), []) if r["grantor"] != grantor]
        base = {"group": grant["group"], "target_role": grant["target_role"], "grantor": grantor}
        if grant["state"] == "absent":
            key = ("member", grant["group"], grant["target_role"])
            if rows and key not in seen:
                seen.add(key)
                out.append(dict(base, kind="member", others=sorted(r["grantor"] or "" for r in rows)))
            continue
        for option in OPTION_NAMES:
            if grant[option] is False:
                keeping = sorted(r["grantor"] or "" for r in rows if r.get(option))
                if keeping:
                    out.append(dict(base, kind="option", option=option, others=keeping))
    return out


def foreign_warning(note):
    """The warning for one ``foreign_notes`` entry."""
    others = ", ".join('"%s"' % g for g in note["others"])
    if note["kind"] == "member":
        return ('Role "%s" remains a member of "%s" through the grant(s) recorded under %s: only the grant '
                'recorded under "%s" is managed here. Set granted_by to one of those roles (or granted_by_any: '
                'true) to remove theirs, with the privileges of that role.'
                % (note["target_role"], note["group"], others, note["grantor"]))
    keyword = note["option"].split("_")[0].upper()
    return ('Role "%s" keeps the %s option on "%s" through the grant(s) recorded under %s: only the grant '
            'recorded under "%s" is managed here, so %s=false does not take it away (the effective_options '
            'return value shows what the role holds).'
            % (note["target_role"], keyword, note["group"], others, note["grantor"], note["option"]))


def converge_grants(session, grants, check_mode, fail_on_missing=True, any_grantor=False,
                    skip_missing=False, exact_members=None, exact_granted_by=None,
                    allow_predefined_groups=False, name_grantor=False, all_grantors=False,
                    check_grantors=False, refuse_granted_by_before_16=False, row_labels=None):
    """Make pg_auth_members match GRANTS inside the session's current transaction.

    Does not commit or roll back (except through session.fail, which rolls back and fails
    the module). Validates everything first: bad input or missing roles fail before any
    statement. All statements go to the server in one execute; unless CHECK_MODE they run
    and are logged to session.queries. With FAIL_ON_MISSING False (for callers whose check
    mode has not created the roles yet) missing roles are reported in ``missing_roles``
    and treated as having no memberships.

    The modes (ANY_GRANTOR, SKIP_MISSING, EXACT_MEMBERS and EXACT_GRANTED_BY,
    ALLOW_PREDEFINED_GROUPS, NAME_GRANTOR, ALL_GRANTORS, CHECK_GRANTORS,
    REFUSE_GRANTED_BY_BEFORE_16, ROW_LABELS) are described in this file's docstring
    ("converge_grants' modes"); the defaults keep the per-grantor behaviour.

    Returns {changed, statements (text), actions ((group, member, kind) per statement),
    before, after (rows of the requested pairs), missing_roles, skipped (grants dropped),
    remaining (absent pairs still held through other grantors), memberships (summarize()),
    unconverged, server_version_num, acting_grantor}.
    ``changed`` compares the catalog rows before and after (predicted in check mode).

    The steps: read (server_context), refuse (_refuse_grants, _without_missing), read the
    rows (read_memberships), plan (_plan: pure), refuse what a named grantor cannot grant
    (_refuse_grantors), apply (_apply_grants), report (_converge_result).
    """
    grants = [normalize_grant(g) for g in grants]
    exact_members = list(exact_members or [])
    names = sorted(set(role_names(grants)) | set(exact_members))
    context = server_context(session, names)
    version = context["version_num"]
    _refuse_grants(session, grants, context, allow_predefined_groups, refuse_granted_by_before_16, row_labels)
    missing = [name for name in names if name not in context["roles"]]
    skipped = []
    if missing and skip_missing:
        grants, exact_members, skipped = _without_missing(session, grants, exact_members, missing, exact_granted_by)
    elif missing and fail_on_missing:
        session.fail(missing_roles_message(missing), missing_roles=missing)
    acting = context["acting_grantor"]
    current = read_memberships(session, names)
    if exact_members:
        grants = exact_revocations(current, grants, exact_members, exact_granted_by) + grants
    statements, predicted, actions, named = _plan(current, grants, version, acting, context["roles"],
                                                  any_grantor=any_grantor, name_grantor=name_grantor,
                                                  all_grantors=all_grantors)
    if check_grantors and version >= MIN_SERVER_VERSION_NUM and named:
        _refuse_grantors(session, named, context)
    pairs = set((g["group"], g["target_role"]) for g in grants)
    before = rows_for_pairs(current, pairs)
    if not statements:
        texts, after = [], before
    elif check_mode:
        texts, after = [session.render(s) for s in statements], rows_for_pairs(predicted, pairs)
    else:
        texts = _apply_grants(session, statements, grants, actions, any_grantor)
        after = rows_for_pairs(read_memberships(session, names), pairs)
    return _converge_result(grants, before, after, texts, actions, missing, skipped, context, check_mode,
                            any_grantor, all_grantors)


def _refuse_grants(session, grants, context, allow_predefined_groups, refuse_granted_by_before_16, row_labels):
    """Fail (nothing changed) on bad input: grant_problems, and grants of different ROW_LABELS
    that are one grant once the acting grantor is filled in (16+)."""
    version = context["version_num"]
    problems = grant_problems(grants, version, allow_predefined_groups=allow_predefined_groups,
                              refuse_granted_by_before_16=refuse_granted_by_before_16)
    if row_labels is not None and version >= MIN_SERVER_VERSION_NUM:
        problems.extend(derived_grantor_clashes(grants, row_labels, context["acting_grantor"]))
    if problems:
        session.fail(refusal_message(REFUSED, problems), problems=problems, server_version=version_label(version))


def _without_missing(session, grants, exact_members, missing, exact_granted_by):
    """SKIP_MISSING: (grants, exact members, skipped grants) without the MISSING roles; a
    missing grantor still fails."""
    absent = set(missing)
    missing_grantors = sorted(set(g["granted_by"] for g in grants if g["granted_by"] in absent)
                              | (set([exact_granted_by]) & absent))
    if missing_grantors:
        session.fail("The granted_by role %s does not exist (nothing was changed)"
                     % _listing(missing_grantors), missing_roles=missing_grantors)
    skipped = [g for g in grants if g["group"] in absent or g["target_role"] in absent]
    grants = [g for g in grants if g["group"] not in absent and g["target_role"] not in absent]
    return grants, [m for m in exact_members if m not in absent], skipped


def _refuse_grantors(session, named, context):
    """CHECK_GRANTORS: read who holds ADMIN OPTION on the groups granted under a named grantor,
    and fail (nothing changed) on a grant that grantor cannot make (grantor_problems)."""
    groups = sorted(set(group for kind, group, grantor in named if kind == "grant" and grantor is not None))
    holders = {}
    if groups:
        for row in session.rows(_ADMIN_HOLDERS_QUERY, {"groups": groups}):
            holders.setdefault(row["group"], []).append((row["holder"], bool(row["usable"])))
    named_grantors = sorted(set(g for dummy, dummy2, g in named if g is not None and g != context["login"]))
    usable = {}
    if named_grantors and not context["is_superuser"]:  # a superuser has every role's privileges
        usable = dict((row["name"], bool(row["usable"]))
                      for row in session.rows(_USABLE_QUERY, {"names": named_grantors}))
    problems = grantor_problems(named, context, holders, usable)
    if problems:
        session.fail(" ".join(problems), problems=problems, queries=[],
                     server_version=version_label(context["version_num"]))


def _apply_grants(session, statements, grants, actions, any_grantor):
    """Run STATEMENTS in one round trip; their texts. On an error, fail with the statements
    tried and, for a revoke across grantors, what to do instead."""
    try:
        return session.execute_many(statements)
    except Exception as exc:  # psycopg error: report it with the statements tried
        texts = [session.render(s) for s in statements]
        hint = ""
        if any(_whole(g, any_grantor) for g in grants) and any(
                kind == "revoke" for dummy, dummy2, kind in actions) and any(
                " GRANTED BY " in text and text.startswith("REVOKE ") for text in texts):
            hint = (" (without granted_by, state absent revokes the rows of every grantor, which needs "
                    "the privileges of each grantor; set granted_by to revoke one grantor's rows only)")
        session.fail("Changing memberships failed, transaction rolled back: %s%s"
                     % (to_native(getattr(exc, "pgerror", None) or exc).strip(), hint),
                     statements=texts)


def remaining_memberships(grants, after):
    """The pairs an ``absent`` grant asked to remove that AFTER still holds (through other
    grantors' rows), once each: {group, target_role, grantors, effective}. Pure."""
    remaining = []
    reported = set()
    after_index = _index(after)
    for grant in grants:
        pair = (grant["group"], grant["target_role"])
        if grant["state"] != "absent" or pair in reported:
            continue
        reported.add(pair)
        left = sorted(after_index.get(pair, []), key=_sort_key)
        if left:
            remaining.append({"group": grant["group"], "target_role": grant["target_role"],
                              "grantors": [r["grantor"] for r in left],
                              "effective": effective_options(left)})
    return remaining


def _converge_result(grants, before, after, texts, actions, missing, skipped, context, check_mode, any_grantor,
                     all_grantors):
    """converge_grants' result. Pure."""
    version = context["version_num"]
    acting = context["acting_grantor"]
    return {
        "changed": _canonical(before) != _canonical(after),
        "statements": texts,
        "actions": actions,
        "grants": grants,
        "before": before,
        "after": after,
        "missing_roles": missing,
        "skipped": skipped,
        "remaining": remaining_memberships(grants, after),
        "memberships": summarize(grants, before, after, acting),
        "unconverged": [] if check_mode else unconverged(grants, after, version, acting, any_grantor),
        "foreign": [] if all_grantors else foreign_notes(grants, after, acting, version, any_grantor),
        "server_version_num": version,
        "acting_grantor": acting,
    }
