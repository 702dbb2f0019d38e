# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding, signalling and waiting for sessions (used by terminate_sessions and fence).

Two routes to terminate a role's sessions:

- ``direct``: ``pg_terminate_backend`` as the login, when PostgreSQL allows it (the login
  is a superuser, or the target is not a superuser and the login has the privileges of the
  target role or of ``pg_signal_backend``);
- ``helper``: the fence helper function (module_utils/server/helper.py), called for a killer
  role the login has the privileges of, for roles directly granted to that killer role; a
  helper of version 5 or later is called once for every killer role (``helper_one_call``).

Every session is signalled first (without the timeout form of ``pg_terminate_backend``,
which costs up to 100 ms per session), then ``pg_stat_activity`` is polled by role,
which every login can read. Modules run these with an autocommit connection so each poll
sees a fresh activity snapshot; in a transaction the snapshot is cleared explicitly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ..base.database import sql
from .helper import DEFAULT_SCHEMA, FUNCTION_NAME, takes_null_killer

SESSION_COLUMNS = "pid, usename, datname, application_name, client_addr, backend_start"


def session_record(row):
    """A pg_stat_activity-like row as the modules return it."""
    start = row.get("backend_start")
    addr = row.get("client_addr")
    return {
        "pid": row["pid"],
        "role": row.get("usename"),
        "database": row.get("datname"),
        "application": row.get("application_name"),
        "client_addr": None if addr is None else str(addr),
        "backend_start": None if start is None else start.isoformat(),
    }


def _rows_logged(session, statement, params, log):
    """Run a statement and return its rows; when LOG, add it to session.queries if it
    returned (that is, signalled) any session."""
    return session.execute_rows(statement, params, log=log)


def _fresh(session):
    """Make the next read of pg_stat_activity current (only needed inside a transaction)."""
    if not session.conn.autocommit:
        session.rows("SELECT pg_catalog.pg_stat_clear_snapshot()")


def termination_routes(session, pairs, schema=DEFAULT_SCHEMA, helper=None):
    """For each (role, killer_role_or_None) pair: how the login can terminate its sessions.

    One query. Returns a list (same order) of dicts: role, killer, exists, superuser,
    route ("direct", "helper" or None) and problem (why no route, else None). HELPER is a
    fence_helper.helper_status() result for the killers (read here when None).
    """
    roles = [p[0] for p in pairs]
    killers = [p[1] for p in pairs]
    rows = session.rows(
        "SELECT u.ord, r.oid IS NOT NULL AS role_exists, COALESCE(r.rolsuper, false) AS role_super,"
        " me.rolsuper AS login_super,"
        " pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'USAGE') AS usage_target,"
        " pg_catalog.pg_has_role(CURRENT_USER, 'pg_signal_backend', 'USAGE') AS usage_signal,"
        " k.oid IS NOT NULL AS killer_exists,"
        " pg_catalog.pg_has_role(SESSION_USER, k.oid, 'USAGE') AS usage_killer,"
        " EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m"
        "          WHERE m.roleid OPERATOR(pg_catalog.=) r.oid AND m.member OPERATOR(pg_catalog.=) k.oid) AS granted_to_killer"
        " FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) WITH ORDINALITY AS u(role, killer, ord)"
        " LEFT JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) u.role"
        " LEFT JOIN pg_catalog.pg_roles k ON k.rolname OPERATOR(pg_catalog.=) u.killer"
        " LEFT JOIN pg_catalog.pg_roles me ON me.rolname OPERATOR(pg_catalog.=) CURRENT_USER"
        " ORDER BY u.ord", (roles, killers))
    wanted_killers = sorted(set(k for k in killers if k))
    if helper is None and wanted_killers:
        from .helper import helper_status
        helper = helper_status(session, schema, wanted_killers)
    out = []
    for (role, killer), row in zip(pairs, rows):
        item = {"role": role, "killer": killer, "exists": bool(row["role_exists"]),
                "superuser": bool(row["role_super"]), "route": None, "problem": None}
        out.append(item)
        if not row["role_exists"]:
            item["problem"] = "role %s does not exist" % role
            continue
        if row["login_super"] or (not row["role_super"] and (row["usage_target"] or row["usage_signal"])):
            item["route"] = "direct"
            continue
        if row["role_super"]:
            item["problem"] = ("role %s is a superuser: only a superuser login can terminate its sessions"
                               % role)
            continue
        if not killer:
            item["problem"] = ("the login has neither the privileges of role %s nor of pg_signal_backend, "
                               "and no killer role was given to go through the fence helper" % role)
            continue
        problems = []
        if not row["killer_exists"]:
            problems.append("killer role %s does not exist" % killer)
        else:
            if not row["usage_killer"]:
                problems.append("the login (session user) does not have the privileges of killer role %s "
                                "(GRANT %s TO <login> WITH INHERIT TRUE)" % (killer, killer))
            if not row["granted_to_killer"]:
                problems.append("role %s is not granted to killer role %s (GRANT %s TO %s)"
                                % (role, killer, role, killer))
            if helper is None or not helper.get("installed"):
                problems.append("the fence helper is not installed in schema %s of this database "
                                "(dataplane.postgresql.fence_helper)" % schema)
            elif not helper.get("owner_can_signal"):
                problems.append("the fence helper's owner role %s lacks pg_signal_backend"
                                % helper.get("owner_role"))
            elif not helper.get("usable_by", {}).get(killer):
                problems.append("killer role %s may not use the fence helper (EXECUTE on %s and USAGE on "
                                "schema %s; dataplane.postgresql.fence_helper killer_roles)"
                                % (killer, FUNCTION_NAME, schema))
        if problems:
            item["problem"] = "; ".join(problems)
        else:
            item["route"] = "helper"
            item["helper_version"] = helper.get("version")
    # A login that is not an admin cannot read the helper's registry (helper_status says
    # "registered": null): ask the helper itself, list-only, so that an unregistered killer
    # role fails the preflight instead of the termination step after the REVOKE.
    unknown = sorted(set(i["killer"] for i in out if i["route"] == "helper"
                         and (helper or {}).get("registered", {}).get(i["killer"]) is None))
    for killer, problem in probe_helper(session, unknown, schema).items():
        for item in out:
            if item["route"] == "helper" and item["killer"] == killer:
                item["route"], item["problem"] = None, problem
    return out


def _helper_probe_statement(killers, schema):
    # p_roles = '{}' lists nothing, p_signal = false signals nothing: only the helper's own
    # checks (killer exists, registered, not LOGIN, caller has its privileges) run.
    return sql.SQL(
        "SELECT pg_catalog.count(t.pid) FROM pg_catalog.unnest({killers}::name[]) AS k(killer)"
        " CROSS JOIN LATERAL {schema}.{fn}(k.killer, ARRAY[]::name[], NULL::name[], false) AS t").format(
            killers=sql.Literal(list(killers)), schema=sql.Identifier(schema), fn=sql.Identifier(FUNCTION_NAME))


def probe_helper(session, killers, schema=DEFAULT_SCHEMA):
    """{killer: problem} for the KILLERS the fence helper refuses (empty when it accepts all).

    One list-only call for all of them; only when it fails, one call per killer to tell which.
    Changes nothing. In a transaction, each call runs under a savepoint so a refusal does not
    abort the caller's transaction."""
    if not killers:
        return {}

    def attempt(names):
        in_tx = not session.conn.autocommit
        if in_tx:
            session.execute("SAVEPOINT dataplane_helper_probe", log=False)
        try:
            session.rows(_helper_probe_statement(names, schema))
        except Exception as exc:  # the helper's refusal, in the database's own words
            if in_tx:
                session.execute("ROLLBACK TO SAVEPOINT dataplane_helper_probe", log=False)
            return str(getattr(exc, "diag", None) and exc.diag.message_primary or exc).strip()
        if in_tx:
            session.execute("RELEASE SAVEPOINT dataplane_helper_probe", log=False)
        return None

    if attempt(killers) is None:
        return {}
    out = {}
    for killer in killers:
        problem = attempt([killer])
        if problem:
            out[killer] = "the fence helper refuses killer role %s: %s" % (killer, problem)
    return out


def signal_direct(session, roles, databases=None, signal=True, log=True):
    """List (and, when SIGNAL, terminate without waiting) the sessions of ROLES."""
    if not roles:
        return []
    _fresh(session)
    rows = _rows_logged(
        session,
        "SELECT " + SESSION_COLUMNS + ","
        " CASE WHEN %s THEN pg_catalog.pg_terminate_backend(pid) ELSE false END AS terminated"
        " FROM pg_catalog.pg_stat_activity"
        " WHERE usename OPERATOR(pg_catalog.=) ANY (%s::name[]) AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
        " AND (%s::name[] IS NULL OR datname OPERATOR(pg_catalog.=) ANY (%s::name[]))"
        " ORDER BY pid",
        (bool(signal), list(roles), databases, databases), log and signal)
    return rows


def helper_one_call(routes):
    """Whether the helper ROUTES go through serves them all in one call (version 5 or later)."""
    versions = [r.get("helper_version") for r in routes if r and r.get("route") == "helper"]
    return bool(versions) and all(takes_null_killer(v) for v in versions)


def signal_via_helper(session, pairs, databases=None, signal=True, schema=DEFAULT_SCHEMA, log=True,
                      one_call=False):
    """One statement for all (killer, role) PAIRS through the fence helper.

    With ONE_CALL (a helper of version 5 or later, see ``helper_one_call``) the statement calls the
    helper once, naming the roles and no killer role: it serves every registered killer role of
    theirs that the login has the privileges of, which the preflight checked for each pair
    (termination_routes). Otherwise it calls the helper once per pair; each call then reads
    every backend again, which at 800 Deployments made this statement take seconds."""
    if not pairs:
        return []
    # Literals, not parameters: a '%' in the schema name must not meet parameter interpolation.
    if one_call:
        killer_of = {}
        for killer, role in pairs:
            killer_of.setdefault(role, killer)
        statement = sql.SQL(
            "SELECT t.pid, t.usename, t.datname, t.application_name, t.client_addr, t.backend_start, t.terminated"
            " FROM {schema}.{fn}(NULL, {roles}::name[], {dbs}::name[], {signal}) AS t ORDER BY t.pid").format(
                roles=sql.Literal(sorted(killer_of)), schema=sql.Identifier(schema), fn=sql.Identifier(FUNCTION_NAME),
                dbs=sql.Literal(list(databases) if databases else None), signal=sql.Literal(bool(signal)))
        rows = _rows_logged(session, statement, None, log and signal)
        for row in rows:
            row["killer"] = killer_of.get(row["usename"])
        return rows
    statement = sql.SQL(
        "SELECT t.pid, t.usename, t.datname, t.application_name, t.client_addr, t.backend_start,"
        " t.terminated, k.killer"
        " FROM ROWS FROM (pg_catalog.unnest({killers}::name[]), pg_catalog.unnest({roles}::name[])) AS k(killer, role)"
        " CROSS JOIN LATERAL {schema}.{fn}(k.killer, ARRAY[k.role], {dbs}::name[], {signal}) AS t"
        " ORDER BY t.pid").format(
            killers=sql.Literal([p[0] for p in pairs]), roles=sql.Literal([p[1] for p in pairs]),
            schema=sql.Identifier(schema), fn=sql.Identifier(FUNCTION_NAME),
            dbs=sql.Literal(list(databases) if databases else None), signal=sql.Literal(bool(signal)))
    rows = _rows_logged(session, statement, None, log and signal)
    seen = set()
    out = []
    for row in rows:  # a session can only be listed once even if two killers cover its role
        if row["pid"] not in seen:
            seen.add(row["pid"])
            out.append(row)
    return out


def current_sessions(session, roles, databases=None):
    """Sessions of ROLES now (any database unless DATABASES), excluding our own."""
    if not roles:
        return []
    _fresh(session)
    return session.rows(
        "SELECT " + SESSION_COLUMNS + " FROM pg_catalog.pg_stat_activity"
        " WHERE usename OPERATOR(pg_catalog.=) ANY (%s::name[]) AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
        " AND (%s::name[] IS NULL OR datname OPERATOR(pg_catalog.=) ANY (%s::name[])) ORDER BY pid",
        (list(roles), databases, databases))


def wait_until_gone(session, roles, databases=None, timeout=10.0, on_new=None, seen_pids=(),
                    on_poll=None, stop=None):
    """Poll pg_stat_activity (one query per poll) until no session of ROLES remains.

    ON_NEW(rows) is called with sessions whose pid was not in SEEN_PIDS (for example a client
    that reconnected to another database), so the caller can signal them too. ON_POLL(rows,
    now) sees every poll's rows. STOP() true ends the wait early (as if TIMEOUT expired).
    Returns the sessions that remain when TIMEOUT expires (empty when all are gone).
    """
    deadline = time.monotonic() + max(0.0, float(timeout))
    seen = set(seen_pids)
    delay = 0.002
    while True:
        rows = current_sessions(session, roles, databases)
        now = time.monotonic()
        if on_poll is not None:
            on_poll(rows, now)
        if not rows:
            return []
        fresh = [r for r in rows if r["pid"] not in seen]
        if fresh and on_new is not None:
            on_new(fresh)
            seen.update(r["pid"] for r in fresh)
        if now >= deadline or (stop is not None and stop()):
            return rows
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 2, 0.05)


# --- the terminate_sessions module ---------------------------------------------------------------
