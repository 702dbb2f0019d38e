# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provisioning against a server: what the ``deployment_setup`` module runs.

``run(module)`` reads the catalog (a fixed number of queries for any number of Deployments),
plans with ``provisioning.plan_deployments``, checks the plan against the server
(``role_checks``), then changes the server in three steps: ``CREATE``/``DROP DATABASE`` in
autocommit over up to ``DATABASE_WORKERS`` connections, everything else in one transaction
sent in batches, then the shared schema role (``schema_role``). In check mode the same
statements are rendered and none is run. Results come from the catalog read again (or from
the plan's prediction in check mode).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.text.converters import to_native

from ..model import deployment as _deployment
from ..server import helper_install as _helper_install
from ..model import fence_record as _fence_record
from ..server import memberships as _memberships
from . import plan as _p
from ..server import role_checks as _role_checks
from . import schema_role as _schema_role
from ..base import workers as _workers
from ..base.database import MIN_SERVER_VERSION_NUM, Session, connect, sql
from ..model.fence_record import ADVISORY_LOCK_CLASS
from ..base.results import Timings

# What plugins/modules/ takes from this entry point (a module imports its action's entry point
# only; see docs/architecture.md).
from ..base.database import connection_argument_spec
from ..model.deployment import records_argument_spec
from ..server.helper import DEFAULT_OWNER_ROLE, DEFAULT_SCHEMA

__all__ = ["run", "connection_argument_spec", "records_argument_spec", "DEFAULT_OWNER_ROLE", "DEFAULT_SCHEMA"]

BATCH = 400  # statements sent per round trip
DATABASE_WORKERS = 3  # connections for CREATE/DROP DATABASE (at least 4 statements each)
READMIT_LOCK_TIMEOUT_MS = 60000

# ---------------------------------------------------------------------------------------------
# Catalog access: one query per kind for all Deployments.

ROLE_QUERY = """
SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolsuper
  FROM pg_catalog.pg_roles r
 WHERE r.rolname OPERATOR(pg_catalog.=) ANY(%s)
"""
WRITER_QUERY = ("SELECT session_user AS who, pg_catalog.current_setting('application_name') AS app,"
                " pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at_utc")
PASSWORD_QUERY = "SELECT a.rolname, a.rolpassword FROM pg_catalog.pg_authid a WHERE a.rolname OPERATOR(pg_catalog.=) ANY(%s)"
# The role names of each ACL entry by oid lookups (a join with pg_roles would scan every role
# once per database: 40 ms instead of 3 at 200 Deployments and 1,000 roles).
DATABASE_QUERY = """
SELECT d.datname, pg_catalog.pg_get_userbyid(d.datdba) AS owner,
       COALESCE((SELECT pg_catalog.array_agg(ARRAY[
                   CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN ''
                        ELSE COALESCE((SELECT ge.rolname FROM pg_catalog.pg_roles ge WHERE ge.oid OPERATOR(pg_catalog.=) a.grantee),
                                      a.grantee::text) END,
                   COALESCE((SELECT gr.rolname FROM pg_catalog.pg_roles gr WHERE gr.oid OPERATOR(pg_catalog.=) a.grantor), a.grantor::text),
                   a.privilege_type, CASE WHEN a.is_grantable THEN 't' ELSE 'f' END])
                   FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a), '{}') AS acl
  FROM pg_catalog.pg_database d
 WHERE d.datname OPERATOR(pg_catalog.=) ANY(%s)
"""
INFO_QUERY = """
SELECT current_user AS acting_user, r.rolsuper AS superuser,
       (SELECT b.rolname FROM pg_catalog.pg_roles b WHERE b.oid OPERATOR(pg_catalog.=) 10) AS bootstrap_superuser,
       EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) %(schema)s) AS helper_schema_exists,
       -- roles holding a privilege on the helper's schema or its functions (a killer role that
       -- holds none needs no REVOKE before it is dropped, which a managed admin may not run)
       ARRAY(SELECT DISTINCT ge.rolname
               FROM pg_catalog.pg_namespace n
               LEFT JOIN pg_catalog.pg_proc p ON p.pronamespace OPERATOR(pg_catalog.=) n.oid
               CROSS JOIN LATERAL (SELECT x.grantee FROM pg_catalog.aclexplode(n.nspacl) x
                                   UNION SELECT y.grantee FROM pg_catalog.aclexplode(p.proacl) y) g
               JOIN pg_catalog.pg_roles ge ON ge.oid OPERATOR(pg_catalog.=) g.grantee
              WHERE n.nspname OPERATOR(pg_catalog.=) %(schema)s)::text[] AS helper_grantees
  FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user
"""


def record_role_names(rec):
    return [rec["owner_role"], rec["killer_role"], rec["commander_user"]] + list(rec["login_roles"].values())


def read_catalog(session, records, params):
    role_names = sorted(set(n for rec in records for n in record_role_names(rec)))
    info = session.rows(INFO_QUERY, {"schema": params["helper_schema"]})[0]
    roles = {}
    for row in session.rows(ROLE_QUERY, (role_names,)):
        roles[row["rolname"]] = {"login": row["rolcanlogin"], "inherit": row["rolinherit"],
                                 "superuser": row["rolsuper"], "password": None}
    wanted = sorted(set(n for rec in records if rec.get("update_password") and rec["state"] == "present"
                        for n in rec["login_roles"].values() if n in roles))
    if wanted and info["superuser"]:
        for row in session.rows(PASSWORD_QUERY, (wanted,)):
            roles[row["rolname"]]["password"] = row["rolpassword"]
    databases = {}
    for row in session.rows(DATABASE_QUERY, (sorted(set(rec["database"] for rec in records)),)):
        databases[row["datname"]] = {"owner": row["owner"],
                                     "acl": set((e[0], e[1], e[2], e[3] == "t") for e in (row["acl"] or []))}
    return {"acting_user": info["acting_user"], "superuser": info["superuser"],
            # PostgreSQL records a superuser's GRANT of a role as granted by the bootstrap superuser.
            "grantor": info["bootstrap_superuser"] if info["superuser"] else info["acting_user"],
            "roles": roles,
            "databases": databases, "helper_schema_exists": info["helper_schema_exists"],
            "helper_grantees": set(info["helper_grantees"] or ())}


def read_memberships(session, records):
    names = sorted(set(n for rec in records for n in (rec["owner_role"], rec["killer_role"])))
    return [dict(r) for r in _memberships.read_memberships(session, names)]


def read_fence_states(session, records, params):
    """The fence state of every Deployment's database, and who/when/which run would write one."""
    databases = sorted(set(rec["database"] for rec in records))
    states = _fence_record.read_states(session, databases)
    row = session.rows(WRITER_QUERY)[0]
    writer = {"by": row["who"], "at": row["at_utc"], "application": row["app"] or None, "run": params.get("run_id")}
    return states, writer


def lock_readmitted(session, plan, check):
    """Before re-admitting: wait for any fence of those databases (its advisory lock, for this
    transaction), then make sure their fence state is still the one the plan was made from."""
    if check or not plan.readmits:
        return
    databases = sorted(set(db for dummy, db, dummy2 in plan.readmits))
    session.rows("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (str(READMIT_LOCK_TIMEOUT_MS),))
    session.rows("SELECT pg_catalog.pg_advisory_xact_lock(%s, k)::text FROM"
                 " (SELECT DISTINCT pg_catalog.hashtext(d) AS k FROM pg_catalog.unnest(%s::text[]) AS d ORDER BY 1) AS keys",
                 (ADVISORY_LOCK_CLASS, databases))
    now = _fence_record.read_comments(session, databases)
    moved = sorted(set(db for dummy, db, comment in plan.readmits if now.get(db) != comment))
    if moved:
        raise RuntimeError("the fence state of %s changed while this run was planning (another failover or "
                           "provision ran meanwhile); nothing was re-admitted, rerun provision to see the new state"
                           % ", ".join(moved))


# ---------------------------------------------------------------------------------------------
# Running actions.


def run_batched(session, actions, check):
    """Run ACTIONS in a few round trips (rendered only in check mode); log each statement with
    its secret masked. Returns the logged texts."""
    texts = [action.log_text(session.render) for action in actions]
    if not check:
        for index in range(0, len(actions), BATCH):
            session.run(sql.SQL(";\n").join([a.statement()[0] for a in actions[index:index + BATCH]]))
    session.queries.extend(texts)
    return texts


def run_autocommit(session, statements, done):
    """Run STATEMENTS (CREATE/DROP DATABASE) in autocommit, over up to DATABASE_WORKERS
    connections (at least 4 statements each); mark DONE[i] for each that succeeded; return
    error messages (in statement order). A connection stops at its first error."""
    workers = _workers.thread_count(len(statements), DATABASE_WORKERS, per_thread=4)
    sessions = [session] + [session.sibling(autocommit=True) for dummy in range(workers - 1)]
    try:
        outcomes = _workers.run_jobs([lambda worker, s=statement: worker.run(s) for statement in statements],
                                     sessions, stop_after_error=True)
    finally:
        for worker in sessions[1:]:
            worker.close()
    errors = []
    for i, outcome in enumerate(outcomes):
        if outcome.ok:
            done[i] = True
        elif outcome.error is not None:
            exc = outcome.error
            errors.append("%s failed: %s" % (session.render(statements[i]),
                                             to_native(getattr(exc, "pgerror", None) or exc).strip()))
    return errors


def what_stayed(created, dropped, handed=()):
    """The exact changes that stay after a failure (CREATE/DROP DATABASE cannot be rolled back)."""
    parts = []
    if handed:
        parts.append("database(s) handed to the connecting role for DROP DATABASE: %s" % ", ".join(handed))
    if created:
        parts.append("database(s) created and left in place: %s (owned by the connecting role; rerun to finish, "
                     "or DROP them)" % ", ".join(created))
    if dropped:
        parts.append("database(s) dropped: %s" % ", ".join(dropped))
    return "; ".join(parts) if parts else "nothing stayed changed"


def statement_head(text, limit=160):
    """The first line of a statement, for the diff; a longer one is cut at a space outside any
    quoted literal or identifier, and marked, so the diff never shows half a string."""
    line = text.splitlines()[0]
    if len(line) <= limit:
        return line
    quote, cut = None, None
    for pos, char in enumerate(line[:limit]):
        if quote:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == " ":
            cut = pos
    return (line[:cut] if cut else line.split(" ", 1)[0]) + " ... (%d characters in all)" % len(line)


def borrowed_owners(records, plan, decommission_owner):
    """Roles a non-superuser admin must act as in the transaction: the owner role of every
    Deployment whose database changes owner (SET is needed for ALTER DATABASE ... OWNER TO) or
    CONNECT (the owner's privileges), and a decommission_owner that is not the admin itself."""
    roles = set()
    for index, action in plan.databases + plan.decommission:
        if isinstance(action, (_p.AlterDatabaseOwner, _p.RevokeConnect, _p.GrantConnect, _p.SetFenceRecord)):
            roles.add(records[index]["owner_role"])
            if (isinstance(action, _p.AlterDatabaseOwner) and records[index]["state"] != "present"
                    and decommission_owner):
                roles.add(decommission_owner)
    return sorted(roles)


# ---------------------------------------------------------------------------------------------
# One run of the module.


class Provisioning(object):
    """The state of one deployment_setup run, from the module's parameters to its result."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check = module.check_mode
        self.records = [_deployment.normalise(r) for r in self.params["deployments"]]
        self.timings = Timings()
        self.session = None
        self.plan = None
        self.created, self.dropped, self.handed = [], [], []
        self.per_dep = dict((i, []) for i in range(len(self.records)))
        self.membership_result = {}
        self.helper_result = {}
        self.schema_result = {}

    # -- before any change ------------------------------------------------------------------

    def refuse_bad_input(self):
        problems = _deployment.record_problems(self.records) + _p.option_problems(self.params)
        if problems:
            _deployment.refuse_records(self.module, problems)

    def read(self):
        self.session = Session(self.module, connect(self.module, autocommit=True))
        self.session.require_version(MIN_SERVER_VERSION_NUM,
                                     "the reference grants (GRANT ... WITH INHERIT FALSE, SET FALSE)")
        self.catalog = read_catalog(self.session, self.records, self.params)
        self.before_members = read_memberships(self.session, self.records)
        self.fence_states, fence_writer = read_fence_states(self.session, self.records, self.params)
        params = self.params
        self.plan = _p.plan_deployments(self.records, self.catalog, dict(
            create_databases=params["create_databases"], create_login_roles=params["create_login_roles"],
            commander_password=params["commander_password"], decommission_owner=params["decommission_owner"],
            helper_schema=params["helper_schema"], fence_states=self.fence_states,
            fence_writer=fence_writer, readmit_fenced_planes=params["readmit_fenced_planes"]))

    def preflight(self):
        """Least privilege: every name the model resolves, and what a non-superuser admin needs,
        checked against the server before anything changes (role_checks)."""
        params, plan, records = self.params, self.plan, self.records
        owner_role = params["helper_owner_role"]
        facts = _role_checks.read_facts(self.session, records, owner_role)
        problems = _role_checks.name_problems(records, facts, {"helper_owner": owner_role})
        problems += plan.problems
        self.borrowed = borrowed_owners(records, plan, params["decommission_owner"])
        needs = _role_checks.plan_needs(plan.actions(), [g for dummy, g in plan.grants], self.before_members,
                                        self.catalog["grantor"], plan.new_roles, params["fence_helper"],
                                        owner_role in facts["roles"])
        for role in self.borrowed:
            if role not in plan.new_roles:
                needs["admin_on"].setdefault(role, "act as it for the database's owner and CONNECT changes "
                                                   "(SET and INHERIT borrowed for the transaction)")
        needs["helper_schema"] = bool(params["fence_helper"] and plan.helper_killers
                                      and not self.catalog["helper_schema_exists"])
        needs["borrowed"] = self.borrowed
        # A non-superuser admin may DROP only a database it owns: one it cannot act as the owner
        # of is handed to it first, in a short transaction borrowing the owner role (handover).
        self.handover = [] if facts["acting"]["superuser"] else [
            (a.database, facts["databases"][a.database]["owner"]) for dummy, a in plan.autocommit
            if isinstance(a, _p.DropDatabase) and a.database in facts["databases"]
            and not facts["databases"][a.database]["acting_owns"]]
        for db, owner in self.handover:
            needs["admin_on"].setdefault(owner, "hand database %s to the connecting role before DROP DATABASE" % db)
        problems += _role_checks.admin_problems(facts, needs)
        if problems:
            self.session.fail("nothing changed, the Deployments cannot be set up:\n- " + "\n- ".join(problems),
                              problems=problems)
        if params["fence_helper"] and plan.helper_killers:
            # The helper's own refusals (owner role a superuser or with members, foreign objects in
            # its schema, ...) come before CREATE DATABASE too: a dry run plans it and changes nothing.
            self.ensure_helper(True)
        for warning in plan.warnings + _role_checks.commander_warnings(records, facts):
            self.module.warn(warning)

    def ensure_helper(self, check):
        # In check mode ensure_helper plans the grants for killer roles this run would create.
        # The killer roles of decommissioned Deployments leave the helper's registry in the same run.
        return _helper_install.ensure_helper(self.session, self.params["helper_schema"], self.params["helper_owner_role"],
                                             self.plan.helper_killers, "present", check,
                                             unregister=self.plan.helper_unregister)

    # -- changes ------------------------------------------------------------------------------

    def fail_naming_what_stayed(self, msg, **extra):
        # Any failure once changes began: CREATE/DROP DATABASE cannot be rolled back, so say what stayed.
        extra.setdefault("created_databases", self.created)
        extra.setdefault("dropped_databases", self.dropped)
        stayed = what_stayed(self.created, self.dropped, self.handed)
        if (self.created or self.dropped or self.handed) and stayed not in msg:
            msg = "%s\n%s" % (msg, stayed)
        Session.fail(self.session, msg, **extra)

    def hand_over_databases(self):
        """Managed PostgreSQL: make the connecting admin the owner of each database it is to drop,
        borrowing the current owner role for one committed transaction (given back inside it)."""
        session = self.session
        borrows = _role_checks.borrow_statements(session, [owner for dummy, owner in self.handover])
        statements = [grant for dummy, grant, dummy2 in borrows]
        statements += [sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(db))
                       for db, dummy in self.handover]
        statements += [back for dummy, dummy2, back in borrows]
        if self.check:
            session.queries.extend(session.render(s) for s in statements)
            return
        session.conn.autocommit = False
        for statement in statements:
            session.execute(statement)
        session.conn.commit()
        session.conn.autocommit = True
        self.handed.extend(db for db, dummy in self.handover)

    def databases(self):
        """CREATE/DROP DATABASE cannot run in a transaction block: one statement each, spread
        over a few connections when there are many (the server does the work)."""
        session, steps = self.session, self.plan.autocommit
        texts = [session.render(a.statement()[0]) for dummy, a in steps]
        done = [True] * len(steps)
        if self.check:
            session.queries.extend(texts)
        elif steps:
            done = [False] * len(steps)
            errors = run_autocommit(session, [a.statement()[0] for dummy, a in steps], done)
            session.queries.extend(t for t, ok in zip(texts, done) if ok)
            if errors:
                self.note_databases(steps, done)
                session.fail("%s; nothing else changed: %s" % (what_stayed(self.created, self.dropped, self.handed),
                                                               "; ".join(errors)),
                             created_databases=self.created, dropped_databases=self.dropped)
        self.note_databases(steps, done)
        for (index, dummy), text, ok in zip(steps, texts, done):
            if ok:
                self.per_dep[index].append(text)

    def note_databases(self, steps, done):
        for (dummy, action), ok in zip(steps, done):
            if ok:
                (self.created if isinstance(action, _p.CreateDatabase) else self.dropped).append(action.database)

    def transaction(self):
        """Everything else in one transaction (rolled back in check mode)."""
        session, plan, check = self.session, self.plan, self.check
        session.conn.autocommit = False
        lock_readmitted(session, plan, check)
        session.run("SET LOCAL createrole_self_grant = ''")  # only ADMIN on roles we create
        borrows = _role_checks.borrow_statements(session, self.borrowed, plan.new_roles)
        batch = plan.roles + [_p.Step(None, _p.RawStatement(grant)) for dummy, grant, dummy2 in borrows] + plan.databases
        self.run_steps(batch)

        first = len(session.queries)
        if plan.grants:
            # In check mode the roles planned above do not exist yet: they count as having
            # no memberships (every grant to them is planned).
            self.membership_result = _memberships.converge_grants(
                session, [g for dummy, g in plan.grants], check, fail_on_missing=not check,
                all_grantors=self.params.get("all_grantors", False))
            if check:
                session.queries.extend(self.membership_result.get("statements") or [])
        _p.attribute_statements(session.queries[first:], self.records, self.per_dep)

        if self.params["fence_helper"] and (plan.helper_killers or plan.helper_unregister):
            first = len(session.queries)
            self.helper_result = self.ensure_helper(check)
            for text in self.helper_result.get("statements") or []:
                if text not in session.queries[first:]:
                    session.queries.append(text)

        self.run_steps(self.lend_helper_owner(plan.decommission))
        dropped_roles = plan.dropped_roles()
        restore = [back for role, dummy, back in borrows if role not in dropped_roles]
        if restore:
            run_batched(session, [_p.RawStatement(s) for s in restore], check)
        if check:
            session.conn.rollback()
        else:
            session.conn.commit()

    def lend_helper_owner(self, steps):
        """STEPS, with a borrow of the fence helper's owner role around them when one of them
        takes the helper's use from a killer role: that changes ACLs the owner holds, and a
        non-superuser admin has the owner's privileges only while it borrows the role (as
        ensure_helper does for its own statements; nothing is added for a superuser)."""
        if not any(isinstance(action, _p.RevokeHelper) for dummy, action in steps):
            return steps
        lend = _role_checks.borrow_statements(self.session, [self.params["helper_owner_role"]])
        return ([_p.Step(None, _p.RawStatement(grant)) for dummy, grant, dummy2 in lend] + list(steps)
                + [_p.Step(None, _p.RawStatement(back)) for dummy, dummy2, back in lend])

    def run_steps(self, steps):
        if steps:
            texts = run_batched(self.session, [a for dummy, a in steps], self.check)
            for (index, dummy), text in zip(steps, texts):
                if index is not None:
                    self.per_dep[index].append(text)

    def schema_roles(self):
        """The shared schema role (Airflow's objects), after the reference set-up."""
        self.session.conn.autocommit = True
        if any(_schema_role.wanted(r) for r in self.records):
            self.schema_result = _schema_role.converge(
                self.module, self.session, self.records,
                dict(reassign_owned=self.params["reassign_owned"], dropped_databases=self.dropped,
                     all_grantors=self.params.get("all_grantors", False),
                     decommission_owner=self.params["decommission_owner"]), self.check, sql, _memberships)
            for warning in self.schema_result["warnings"]:
                self.module.warn(warning)
            for index, texts in self.schema_result["per_deployment"].items():
                self.per_dep[index].extend(texts)

    def change(self):
        self.session.fail = self.fail_naming_what_stayed
        try:
            if self.handover:
                self.hand_over_databases()
            self.databases()
            self.timings.mark("databases")
            self.transaction()
            self.timings.mark("transaction")
        except Exception as exc:  # roll back and report what was attempted
            self.session.fail("deployment set-up failed, transaction rolled back; %s: %s"
                              % (what_stayed(self.created, self.dropped, self.handed), to_native(exc).strip()),
                              created_databases=self.created, dropped_databases=self.dropped)
        for grant in self.membership_result.get("unconverged") or []:
            self.module.warn("membership %s -> %s did not converge (another grantor recorded?)"
                             % (grant.get("group"), grant.get("target_role")))
        self.schema_roles()
        self.timings.mark("schema_roles")

    # -- result -------------------------------------------------------------------------------

    def result(self):
        """Before/after per Deployment, from the catalog (predicted in check mode)."""
        plan, catalog, session = self.plan, self.catalog, self.session
        if self.check:
            after_roles, after_dbs = plan.predicted_roles, plan.predicted_databases
            after_members = _p.predict_members(self.before_members, plan, catalog["grantor"],
                                               self.params.get("all_grantors", False))
            after_states = _p.predict_fence_states(self.fence_states, plan)
        elif not session.queries:
            # Nothing ran (a rerun with nothing to do): the catalog read before is the state after.
            after_roles, after_dbs = catalog["roles"], catalog["databases"]
            after_members, after_states = self.before_members, self.fence_states
        else:
            after = read_catalog(session, self.records, self.params)
            after_roles, after_dbs = after["roles"], after["databases"]
            after_members = read_memberships(session, self.records)
            after_states, dummy = read_fence_states(session, self.records, self.params)
        session.close()

        results, diff_before, diff_after = [], {}, {}
        any_changed = False
        unchanged_states = self.module.params.get("unchanged_states", True)
        for index, rec in enumerate(self.records):
            entry = self.deployment_result(index, rec, after_roles, after_dbs, after_members, after_states)
            any_changed = any_changed or entry["changed"]
            if entry["changed"]:
                diff_before[rec["id"]], diff_after[rec["id"]] = entry["before"], entry["after"]
            elif not unchanged_states:  # the state after is the state before: a smaller result
                del entry["before"], entry["after"]
            results.append(entry)
        helper = self.helper_result
        if helper.get("changed"):
            diff_before["fence_helper"] = {"statements": []}
            diff_after["fence_helper"] = {"statements": [
                statement_head(text) for text in helper.get("statements") or [] if text]}
        commander_created = [a.name for i, a in plan.roles if i is None and isinstance(a, _p.CreateRole)]
        out = dict(changed=any_changed or bool(helper.get("changed")) or (self.check and bool(session.queries)),
                   commander_created=commander_created[0] if commander_created else None,
                   deployments=results, created_databases=self.created, dropped_databases=self.dropped,
                   memberships=_p.plain(dict((k, self.membership_result.get(k))
                                             for k in ("changed", "statements", "unconverged")
                                             if k in self.membership_result)),
                   fence_helper=_p.plain(helper), queries=session.queries)
        if self.module._diff:
            out["diff"] = {"before": diff_before, "after": diff_after}
        return out

    def deployment_result(self, index, rec, after_roles, after_dbs, after_members, after_states):
        plan = self.plan
        before_state = _p.deployment_state(rec, self.catalog["roles"], self.catalog["databases"], self.before_members)
        after_state = _p.deployment_state(rec, after_roles, after_dbs, after_members)
        # Passwords are not part of the compared state: a password set shows in the diff as such.
        if index in (self.schema_result.get("before") or {}):
            before_state["schema_role"] = self.schema_result["before"][index]
            after_state["schema_role"] = self.schema_result["after"][index]
        passwords_set = plan.passwords_set(index)
        if passwords_set:
            before_state["passwords_set"], after_state["passwords_set"] = [], passwords_set
        fence_after = None
        if rec["state"] == "present":
            before_state["fence"] = _p.fence_summary(plan.fence_views.get(index))
            fence_after = _p.fence_view_of(rec, after_dbs, after_states)
            after_state["fence"] = _p.fence_summary(fence_after)
        texts = self.per_dep[index]
        entry = {"id": rec["id"], "state": rec["state"], "changed": before_state != after_state or bool(texts),
                 "actions": texts, "before": before_state, "after": after_state}
        schema_texts = (self.schema_result.get("per_deployment") or {}).get(index) or []
        entry.update(_p.provision_outcome(rec, index, plan, texts, fence_after, self.check, schema_texts))
        for warning in entry.get("fence_warnings") or []:
            self.module.warn(warning)
        return entry


def run(module):
    """The whole deployment_setup run; exits the module."""
    provisioning = Provisioning(module)
    provisioning.refuse_bad_input()
    provisioning.read()
    provisioning.preflight()
    provisioning.change()
    result = provisioning.result()
    provisioning.timings.mark("results")
    result["timings"] = provisioning.timings.as_dict()
    result["time_ms"] = dict(result["timings"])  # the 0.1 name of the same figures
    _deployment.exit_json(module, **result)
