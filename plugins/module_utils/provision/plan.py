# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provisioning plan (pure): a catalog snapshot and the Deployment records -> typed actions.

``plan_deployments()`` decides every change the ``deployment_setup`` module makes, and predicts
the catalog after them (check mode). Each change is an ``Action``: a small immutable object
with named fields that renders its own statement (``statement()``: names quoted with
``sql.Identifier``, secrets bound with ``sql.Literal``) and names what it changes
(``subject``). An action is also a tuple ``(kind, field, ...)`` in its fields' order, so code
that reads plans by position keeps working. ``provisioner.py`` runs a plan against a server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from ..base.database import sql
from ..model import fence_record as _fence_record
from ..model import fence_view as _fence_view
from ..base.identifiers import identifier_problem, role_name_problem
from ..base.scram import password_matches, scram_secret

PUBLIC = ""  # grantee of PUBLIC ACL entries
PRIVILEGE_LETTERS = {"CONNECT": "c", "CREATE": "C", "TEMPORARY": "T"}
OWNER_ATTRS = {"login": False, "inherit": True}
KILLER_ATTRS = {"login": False, "inherit": False}
LOGIN_ATTRS = {"login": True, "inherit": True}
MASK = "********"


# ---------------------------------------------------------------------------------------------
# Actions: one class per kind of change.


def _action(class_name, kind, fields, doc):
    """A namedtuple ``(kind, *fields)`` whose constructor takes the fields only."""
    base = namedtuple(class_name, ("kind",) + tuple(fields.split()))

    def __new__(cls, *args):
        return base.__new__(cls, kind, *args)

    return type(class_name, (base, Action), {"__slots__": (), "__new__": __new__, "__doc__": doc, "KIND": kind})


class Action(object):
    """What every action has: ``statement()`` -> (composed SQL, secret to mask or None),
    ``subject`` (the name a summary lists), ``log_text(session)`` (rendered, secret masked)."""
    __slots__ = ()

    @property
    def subject(self):
        return self[1]

    def statement(self):
        raise NotImplementedError

    def log_text(self, render):
        composed, secret = self.statement()
        text = render(composed)
        return text.replace(secret, MASK) if secret else text


def _role_words(attrs, explicit_inherit):
    login = "LOGIN" if attrs["login"] else "NOLOGIN"
    if attrs["inherit"]:
        return login + (" INHERIT" if explicit_inherit else "")
    return login + " NOINHERIT"


class CreateRole(_action("CreateRole", "create_role", "name attrs secret", "CREATE ROLE, with a SCRAM secret or none.")):
    __slots__ = ()

    def statement(self):
        stmt = sql.SQL("CREATE ROLE {} " + _role_words(self.attrs, False)).format(sql.Identifier(self.name))
        if self.secret is not None:
            return stmt + sql.SQL(" PASSWORD {}").format(sql.Literal(self.secret)), self.secret
        return stmt, None


class AlterRole(_action("AlterRole", "alter_role", "name attrs", "Reset LOGIN/INHERIT of an existing role.")):
    __slots__ = ()

    def statement(self):
        return sql.SQL("ALTER ROLE {} " + _role_words(self.attrs, True)).format(sql.Identifier(self.name)), None


class SetPassword(_action("SetPassword", "set_password", "name secret", "Set a login role's SCRAM secret.")):
    __slots__ = ()

    def statement(self):
        return (sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.name), sql.Literal(self.secret)),
                self.secret)


class CreateDatabase(_action("CreateDatabase", "create_database", "database", "CREATE DATABASE (autocommit).")):
    __slots__ = ()

    def statement(self):
        return sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)), None


class DropDatabase(_action("DropDatabase", "drop_database", "database", "DROP DATABASE (autocommit).")):
    __slots__ = ()

    def statement(self):
        return sql.SQL("DROP DATABASE {}").format(sql.Identifier(self.database)), None


class AlterDatabaseOwner(_action("AlterDatabaseOwner", "alter_database_owner", "database owner",
                                 "ALTER DATABASE ... OWNER TO.")):
    __slots__ = ()

    @property
    def subject(self):
        return self.owner

    def statement(self):
        return (sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(self.database), sql.Identifier(self.owner)),
                None)


class RevokeConnect(_action("RevokeConnect", "revoke_connect", "database grantee",
                            "REVOKE CONNECT from a role or from PUBLIC (grantee '').")):
    __slots__ = ()

    @property
    def subject(self):
        return "PUBLIC" if self.grantee == PUBLIC else self.grantee

    def statement(self):
        grantee = sql.SQL("PUBLIC") if self.grantee == PUBLIC else sql.Identifier(self.grantee)
        return sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(sql.Identifier(self.database), grantee), None


class GrantConnect(_action("GrantConnect", "grant_connect", "database grantee", "GRANT CONNECT to a login role.")):
    __slots__ = ()

    @property
    def subject(self):
        return self.grantee

    def statement(self):
        statement = sql.SQL("GRANT CONNECT ON DATABASE {} TO {}")
        return statement.format(sql.Identifier(self.database), sql.Identifier(self.grantee)), None


class RevokeHelper(_action("RevokeHelper", "revoke_helper", "schema role",
                           "Take the fence helper's use from a killer role about to be dropped.")):
    __slots__ = ()

    @property
    def subject(self):
        return self.role

    def statement(self):
        return (sql.SQL("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {0} FROM {1}; REVOKE ALL ON SCHEMA {0} FROM {1}")
                .format(sql.Identifier(self.schema), sql.Identifier(self.role)), None)


class DropRole(_action("DropRole", "drop_role", "name", "DROP ROLE.")):
    __slots__ = ()

    def statement(self):
        return sql.SQL("DROP ROLE {}").format(sql.Identifier(self.name)), None


class SetFenceRecord(_action("SetFenceRecord", "set_fence_record", "database comment record",
                             "Rewrite a database's fence state record (explicit re-admission).")):
    __slots__ = ()

    def statement(self):
        return _fence_record.comment_statement(self.database, self.comment, self.record), None


class RawStatement(_action("RawStatement", "sql", "composed", "A statement composed elsewhere (borrowing a role).")):
    __slots__ = ()

    def statement(self):
        return self.composed, None


def action_sql(action):
    """(composed statement, secret to mask or None) of ACTION."""
    return action.statement()


# (dep index, action): the index says which Deployment's result lists the statement (None: none).
Step = namedtuple("Step", "index action")


# ---------------------------------------------------------------------------------------------
# Input problems of the module's own options (the records are checked by deployment.py).


def option_problems(params):
    """Problems of the options that name the fence helper and the decommission owner. Pure."""
    problems = []
    for key, checker, kind in (("helper_schema", identifier_problem, "fence helper schema"),
                               ("helper_owner_role", role_name_problem, "fence helper owner role")):
        problem = checker(params.get(key), kind)
        if problem:
            problems.append(problem)
    if params.get("decommission_owner") is not None:
        problem = identifier_problem(params["decommission_owner"], "decommission_owner")
        if problem:
            problems.append(problem)
    return problems


# ---------------------------------------------------------------------------------------------
# Planning (pure): catalog snapshot + records -> actions, grants, predicted state.


def default_acl(owner):
    """acldefault('d', owner): PUBLIC has TEMPORARY and CONNECT, the owner everything."""
    return set([(PUBLIC, owner, "TEMPORARY", False), (PUBLIC, owner, "CONNECT", False),
                (owner, owner, "CREATE", False), (owner, owner, "TEMPORARY", False),
                (owner, owner, "CONNECT", False)])


def acl_new_owner(acl, old, new):
    """What ALTER DATABASE ... OWNER TO does to the ACL: the old owner becomes the new one."""
    def swap(name):
        return new if name == old else name
    return set((swap(grantee), swap(grantor), priv, grantable) for grantee, grantor, priv, grantable in acl)


def acl_text(acl):
    """Sorted aclitem-like strings: grantee=privs/grantor ('' grantee = PUBLIC)."""
    grouped = {}
    for grantee, grantor, priv, grantable in acl:
        letter = PRIVILEGE_LETTERS.get(priv, priv) + ("*" if grantable else "")
        grouped.setdefault((grantee, grantor), []).append(letter)
    order = "CTc"
    return sorted("%s=%s/%s" % (grantee, "".join(sorted(letters, key=lambda x: (order.find(x[0]), x))), grantor)
                  for (grantee, grantor), letters in grouped.items())


class Plan(object):
    """Every change of one run, in the order it runs, and the catalog predicted after it."""

    def __init__(self):
        self.problems = []
        self.warnings = []
        self.autocommit = []     # Steps: CREATE/DROP DATABASE
        self.roles = []          # Steps: role creation / attributes / passwords
        self.databases = []      # Steps: owner and CONNECT
        self.decommission = []   # Steps: run after memberships and helper
        self.grants = []         # Steps whose action is a grant dict for memberships.converge_grants
        self.helper_killers = []
        self.helper_unregister = []  # killer roles of decommissioned Deployments (fence helper registry)
        self.predicted_roles = {}
        self.predicted_databases = {}
        self.new_roles = set()
        self.fence_views = {}    # dep index -> fence_view.fence_view() before the run
        self.withheld = {}       # dep index -> login roles whose CONNECT the fence keeps withheld
        self.record_actions = {}  # dep index -> [SetFenceRecord] (explicit re-admission)
        self.readmits = []       # (dep index, database, comment read when planning)

    def actions(self):
        return self.autocommit + self.roles + self.databases + self.decommission

    def dropped_roles(self):
        return set(a.name for dummy, a in self.decommission if isinstance(a, DropRole))

    def passwords_set(self, index):
        return sorted(a.name for i, a in self.roles if i == index and isinstance(a, SetPassword))


def plan_deployments(records, catalog, options):
    """Plan the set-up of RECORDS against CATALOG.

    catalog: {"acting_user": str, "roles": {name: {"login", "inherit", "password"}},
              "databases": {name: {"owner": str, "acl": set of (grantee, grantor, priv, grantable)}},
              "helper_schema_exists": bool, "helper_grantees": set of role names}
    options: create_databases, create_login_roles, commander_password, decommission_owner, helper_schema,
             fence_states, fence_writer, readmit_fenced_planes (and secret, a stand-in for scram_secret).
    Every planned change is a Step(dep index, Action) in plan.autocommit, .roles, .databases or
    .decommission; plan.grants holds Step(dep index, grant dict) for memberships.converge_grants.
    """
    planner = _Planner(catalog, options)
    for index, rec in enumerate(records):
        if rec["state"] == "present":
            planner.present(index, rec)
    new_owner = options.get("decommission_owner") or planner.acting
    for index, rec in enumerate(records):
        if rec["state"] == "absent":
            planner.absent(index, rec, new_owner)
    plan = planner.plan
    plan.predicted_roles = planner.roles
    plan.predicted_databases = planner.dbs
    return plan


def _label(rec):
    return "Deployment %r" % rec["id"]


class _Planner(object):
    """One plan_deployments call: the Plan being built and the catalog as predicted so far
    (each step updates it, so a later step sees what an earlier one planned). Pure."""

    def __init__(self, catalog, options):
        self.plan = Plan()
        self.catalog = catalog
        self.options = options
        self.roles = dict((k, dict(v)) for k, v in catalog["roles"].items())
        self.dbs = dict((k, {"owner": v["owner"], "acl": set(v["acl"])}) for k, v in catalog["databases"].items())
        self.acting = catalog["acting_user"]
        self.secret = options.get("secret") or scram_secret
        self.commanders_done = set()

    def ensure_role(self, index, name, attrs, password=None):
        current = self.roles.get(name)
        if current is None:
            self.roles[name] = dict(attrs, password=None)
            self.plan.new_roles.add(name)
            secret_text = self.secret(password) if password is not None else None
            self.plan.roles.append(Step(index, CreateRole(name, dict(attrs), secret_text)))
        elif any(current.get(k) != v for k, v in attrs.items()):
            current.update(attrs)
            self.plan.roles.append(Step(index, AlterRole(name, dict(attrs))))

    def present(self, index, rec):
        """Everything a present Deployment needs, in the order it runs."""
        self.commander(rec)
        self.ensure_role(index, rec["owner_role"], OWNER_ATTRS)
        self.ensure_role(index, rec["killer_role"], KILLER_ATTRS)
        self.login_roles(index, rec)
        db = self.dbs.get(rec["database"])
        withhold = plan_fence(self.plan, index, rec, db, self.options)  # never re-admit a fenced plane
        db = self.database(index, rec, db)
        if db is None:
            return
        self.connect(index, rec, db, withhold)
        self.plan.databases.extend(Step(index, a) for a in self.plan.record_actions.pop(index, []))
        self.grants(index, rec)
        self.plan.helper_killers.append(rec["killer_role"])

    def commander(self, rec):
        """commander_user: created once when its password is given (shared by every Deployment:
        no Deployment's result lists it, commander_created does), else it must exist."""
        commander = rec["commander_user"]
        if commander in self.commanders_done:
            return
        self.commanders_done.add(commander)
        if commander not in self.roles:
            if self.options.get("commander_password"):
                self.ensure_role(None, commander, LOGIN_ATTRS, self.options["commander_password"])
            else:
                self.plan.problems.append(
                    "%s: commander_user %r does not exist; create it first or give its password "
                    "(dataplane_commander_password / commander_password) to have it created"
                    % (_label(rec), commander))
        elif not self.roles[commander].get("inherit", True):
            self.plan.warnings.append(
                "%s: commander_user %r is NOINHERIT: its plain grant of the owner role gets INHERIT FALSE, "
                "so it cannot switch CONNECT during a failover (PostgreSQL only warns)" % (_label(rec), commander))

    def login_roles(self, index, rec):
        """The login roles: created with their password, or their password updated when asked."""
        for plane, login in sorted(rec["login_roles"].items()):
            password = (rec.get("passwords") or {}).get(plane)
            current = self.roles.get(login)
            if current is None:
                if not self.options.get("create_login_roles", True):
                    self.plan.problems.append("%s: login role %r (plane %s) does not exist and creating login "
                                              "roles is disabled" % (_label(rec), login, plane))
                elif password in (None, ""):
                    self.plan.problems.append("%s: login role %r (plane %s) does not exist and no password is "
                                              "given for it (passwords.%s)" % (_label(rec), login, plane, plane))
                else:
                    self.ensure_role(index, login, LOGIN_ATTRS, password)
                continue
            if not current.get("login"):
                self.plan.warnings.append("%s: login role %r exists but cannot log in (NOLOGIN); left as is"
                                          % (_label(rec), login))
            if rec.get("update_password") and password not in (None, ""):
                if not password_matches(current.get("password"), password, login):
                    self.plan.roles.append(Step(index, SetPassword(login, self.secret(password))))
                    current["password"] = None

    def database(self, index, rec, db):
        """The database (created when missing) and its owner; None when it may not be created."""
        db_name = rec["database"]
        if db is None:
            if not self.options.get("create_databases", True):
                self.plan.problems.append("%s: database %r does not exist and creating databases is disabled"
                                          % (_label(rec), db_name))
                return None
            self.plan.autocommit.append(Step(index, CreateDatabase(db_name)))
            db = self.dbs[db_name] = {"owner": self.acting, "acl": default_acl(self.acting), "new": True}
        owner = rec["owner_role"]
        if db["owner"] != owner:
            self.plan.databases.append(Step(index, AlterDatabaseOwner(db_name, owner)))
            db["acl"] = acl_new_owner(db["acl"], db["owner"], owner)
            db["owner"] = owner
        return db

    def connect(self, index, rec, db, withhold):
        """CONNECT: taken from PUBLIC, granted by the owner to each login role (unless WITHHOLD:
        a fenced plane, or a fence state that is not known)."""
        db_name = rec["database"]
        owner = rec["owner_role"]
        public_connect = [e for e in db["acl"] if e[0] == PUBLIC and e[2] == "CONNECT"]
        if any(e[1] == owner for e in public_connect):
            self.plan.databases.append(Step(index, RevokeConnect(db_name, PUBLIC)))
            db["acl"] = set(e for e in db["acl"] if not (e[0] == PUBLIC and e[1] == owner and e[2] == "CONNECT"))
        for entry in public_connect:
            if entry[1] != owner:
                self.plan.warnings.append("%s: PUBLIC keeps CONNECT on %r granted by %r (not the owner); "
                                          "revoke it as that role" % (_label(rec), db_name, entry[1]))
        for plane, login in sorted(rec["login_roles"].items()):
            if not any(e[0] == login and e[1] == owner and e[2] == "CONNECT" for e in db["acl"]):
                if withhold:
                    self.plan.withheld.setdefault(index, []).append(login)
                    continue
                self.plan.databases.append(Step(index, GrantConnect(db_name, login)))
                db["acl"].add((login, owner, "CONNECT", False))

    def grants(self, index, rec):
        """The memberships (memberships.converge_grants): each login role to the killer role
        WITH INHERIT FALSE, SET FALSE; the owner and killer roles to commander_user."""
        for plane, login in sorted(rec["login_roles"].items()):
            self.plan.grants.append(Step(index, {"group": login, "target_role": rec["killer_role"],
                                                 "inherit_option": False, "set_option": False, "admin_option": None,
                                                 "granted_by": None, "state": "present"}))
        for group in (rec["owner_role"], rec["killer_role"]):
            self.plan.grants.append(Step(index, {"group": group, "target_role": rec["commander_user"],
                                                 "inherit_option": None, "set_option": None, "admin_option": None,
                                                 "granted_by": None, "state": "present"}))

    def absent(self, index, rec, new_owner):
        """Decommission: the database dropped or handed to NEW_OWNER, the roles dropped."""
        db_name = rec["database"]
        db = self.dbs.get(db_name)
        if db is not None and rec.get("drop_database"):
            self.plan.autocommit.append(Step(index, DropDatabase(db_name)))
            del self.dbs[db_name]
            db = None
        if db is not None and db["owner"] == rec["owner_role"] and rec["owner_role"] in self.roles:
            self.plan.decommission.append(Step(index, AlterDatabaseOwner(db_name, new_owner)))
            db["acl"] = acl_new_owner(db["acl"], db["owner"], new_owner)
            db["owner"] = new_owner
        self.drop_killer_and_owner(index, rec)
        if rec.get("drop_login_roles"):
            for plane, login in sorted(rec["login_roles"].items()):
                if login not in self.roles:
                    continue
                if db is not None and any(e[0] == login for e in db["acl"]):
                    self.plan.decommission.append(Step(index, RevokeConnect(db_name, login)))
                    db["acl"] = set(e for e in db["acl"] if not (e[0] == login and e[1] == db["owner"]))
                self.plan.decommission.append(Step(index, DropRole(login)))
                del self.roles[login]

    def drop_killer_and_owner(self, index, rec):
        """The killer role (its use of the fence helper revoked and unregistered first), then the owner role."""
        killer = rec["killer_role"]
        if killer in self.roles:
            if self.catalog.get("helper_schema_exists"):
                if killer in self.catalog.get("helper_grantees", (killer,)):
                    self.plan.decommission.append(Step(index, RevokeHelper(self.options.get("helper_schema"), killer)))
                self.plan.helper_unregister.append(killer)
            self.plan.decommission.append(Step(index, DropRole(killer)))
            del self.roles[killer]
        if rec["owner_role"] in self.roles:
            self.plan.decommission.append(Step(index, DropRole(rec["owner_role"])))
            del self.roles[rec["owner_role"]]


def plan_fence(plan, index, rec, db, options):
    """Read the fence state of REC's database (before any change) and decide about CONNECT.

    Returns True when no CONNECT may be granted to the Deployment's login roles (a plane is
    fenced, or the state is unknown); plans the record of an explicit re-admission. Pure.
    """
    states = options.get("fence_states") or {}
    entry = states.get(rec["database"]) or {}
    holders, public_connect = connect_holders(db)
    view = _fence_view.fence_view(rec["login_roles"], db is not None, entry.get("record"), entry.get("error"),
                                  holders, public_connect)
    plan.fence_views[index] = view
    withhold, problem, record = _fence_view.provision_policy(
        rec, view, entry.get("record"), options.get("readmit_fenced_planes"), options.get("fence_writer") or {})
    if problem:
        plan.problems.append(problem)
    if record is not None:
        plan.record_actions[index] = [SetFenceRecord(rec["database"], entry.get("comment"), record)]
        plan.readmits.append((index, rec["database"], entry.get("comment")))
    return withhold


def connect_holders(db):
    """(login roles holding the owner's CONNECT grant, whether PUBLIC holds CONNECT)."""
    if db is None:
        return set(), False
    holders = set(e[0] for e in db["acl"] if e[2] == "CONNECT" and e[1] == db["owner"] and e[0] != PUBLIC)
    return holders, any(e[0] == PUBLIC and e[2] == "CONNECT" for e in db["acl"])


def fence_view_of(rec, databases, states):
    """The fence view of REC from a catalog snapshot (after the run, or predicted)."""
    db = databases.get(rec["database"])
    entry = states.get(rec["database"]) or {}
    holders, public_connect = connect_holders(db)
    return _fence_view.fence_view(rec["login_roles"], db is not None, entry.get("record"), entry.get("error"),
                                  holders, public_connect)


def fence_summary(view):
    """The part of a fence view that diff and before/after show."""
    if view is None:
        return None
    return dict((k, view[k]) for k in ("state", "source", "fenced", "admitted", "text"))


CHANGE_WORDS = {
    "create_database": "database %s created", "drop_database": "database %s dropped",
    "create_role": "roles %s created", "alter_role": "attributes of roles %s reset",
    "set_password": "password of %s set", "alter_database_owner": "database owner set to %s",
    "grant_connect": "CONNECT granted to %s", "revoke_connect": "CONNECT revoked from %s",
    "set_fence_record": "fence state record of %s rewritten (planes re-admitted)",
    "revoke_helper": "fence helper revoked from %s", "drop_role": "roles %s dropped",
}


def change_phrases(actions, memberships, schema_role=None, schema_statements=0):
    """Short phrases of what changed for one Deployment, in the order the kinds first appear;
    the shared schema role's statements are named as such, not counted as memberships."""
    order, names = [], {}
    for action in actions:
        kind, name = action.kind, action.subject
        if kind not in names:
            order.append(kind)
            names[kind] = []
        if name not in names[kind]:
            names[kind].append(name)
    phrases = [CHANGE_WORDS.get(kind, kind + " %s") % ", ".join(names[kind]) for kind in order]
    if memberships:
        phrases.append("%d membership statement%s" % (memberships, "" if memberships == 1 else "s"))
    if schema_statements:
        phrases.append("schema role %s: %d statement%s"
                       % (schema_role or "?", schema_statements, "" if schema_statements == 1 else "s"))
    return phrases


def provision_outcome(rec, index, plan, texts, fence_after, check, schema_texts=()):
    """summary, fence, connect_withheld, readmitted and warnings of one Deployment's result."""
    actions = [a for i, a in plan.actions() if i == index]
    schema_count = len(schema_texts)
    phrases = change_phrases(actions, max(0, len(texts) - len(actions) - schema_count), rec.get("schema_role"),
                             schema_count)
    label = rec["id"] if rec["state"] == "present" else "%s (absent)" % rec["id"]
    what = "unchanged"
    if phrases:
        what = "%s: %s" % ("would change" if check else "changed", "; ".join(phrases))
    line = "%s: %s" % (label, what)
    out = {"connect_withheld": sorted(plan.withheld.get(index, [])),
           "readmitted": any(i == index for i, dummy, dummy2 in plan.readmits)}
    before = plan.fence_views.get(index)
    warnings = []
    if fence_after is not None:
        out["fence"] = fence_after
        line += " | " + fence_after["text"]
        if out["connect_withheld"]:
            line += "; CONNECT not granted to %s" % ", ".join(out["connect_withheld"])
    if before is not None and before["withhold"] and not out["readmitted"]:
        if before["notes"] or before["state"] in ("unknown", "interrupted"):
            warnings.append("Deployment %r (database %s): %s%s; CONNECT of its login roles left as it is. "
                            "Complete or repeat the failover with the failover playbook, or re-admit every "
                            "plane explicitly (dataplane_readmit_fenced_planes: true)"
                            % (rec["id"], rec["database"], before["text"],
                               "".join("; " + n for n in before["notes"])))
    out["summary"] = line
    out["fence_warnings"] = warnings
    return out


def predict_fence_states(states, plan):
    """Check mode: the fence states after the planned re-admissions."""
    out = dict(states)
    for dummy, action in plan.actions():
        if isinstance(action, SetFenceRecord):
            out[action.database] = {"comment": _fence_record.render_comment(action.comment, action.record),
                                    "record": action.record, "error": None}
    return out


def membership_key(row):
    return (row["group"], row["member"], row["grantor"])


def membership_text(row):
    return "%s -> %s (grantor %s, admin %s, inherit %s, set %s)" % (
        row["member"], row["group"], row["grantor"], _flag(row.get("admin_option")),
        _flag(row.get("inherit_option")), _flag(row.get("set_option")))


def _flag(value):
    return "?" if value is None else ("true" if value else "false")


def deployment_state(rec, roles, databases, membership_rows):
    """What diff and results show for one Deployment."""
    role_state = {}
    for name in [rec["owner_role"], rec["killer_role"]] + [rec["login_roles"][p] for p in sorted(rec["login_roles"])]:
        current = roles.get(name)
        role_state[name] = ({"exists": False} if current is None else
                            {"exists": True, "login": bool(current["login"]), "inherit": bool(current["inherit"])})
    db = databases.get(rec["database"])
    ours = set([rec["owner_role"], rec["killer_role"]])
    members = sorted(membership_text(r) for r in membership_rows if r["group"] in ours or r["member"] in ours)
    return {"roles": role_state,
            "database": ({"name": rec["database"], "exists": False} if db is None else
                         {"name": rec["database"], "exists": True, "owner": db["owner"], "acl": acl_text(db["acl"])}),
            "memberships": members}


def attribute_statements(texts, records, per_dep):
    """Give each membership statement to the Deployment whose roles it names."""
    for text in texts:
        for index, rec in enumerate(records):
            idents = set('"%s"' % n.replace('"', '""') for n in (rec["owner_role"], rec["killer_role"]))
            if any(i in text for i in idents):
                per_dep[index].append(text)
                break


def predict_members(before_rows, plan, grantor, all_grantors=False):
    """Check mode: memberships after = current rows updated by the planned grants, minus
    the rows of dropped roles (DROP ROLE removes them). ALL_GRANTORS: an option a grant
    wants false is cleared on every grantor's row of the pair too (memberships.converge_grants)."""
    dropped = plan.dropped_roles()
    rows = dict((membership_key(r), dict(r)) for r in before_rows
                if r["group"] not in dropped and r["member"] not in dropped)
    for dummy, grant in plan.grants:
        key = (grant["group"], grant["target_role"], grantor)
        row = rows.get(key)
        if row is None:
            member_attrs = plan.predicted_roles.get(grant["target_role"]) or {}
            row = rows[key] = {"group": grant["group"], "member": grant["target_role"], "grantor": grantor,
                               "admin_option": False, "inherit_option": bool(member_attrs.get("inherit", True)),
                               "set_option": True}
        for option in ("admin_option", "inherit_option", "set_option"):
            if grant.get(option) is not None:
                row[option] = grant[option]
        if all_grantors:
            for other in rows.values():
                if (other["group"], other["member"]) == key[:2] and other["grantor"] is not None:
                    for option in ("admin_option", "inherit_option", "set_option"):
                        if grant.get(option) is False and other.get(option) is not None:
                            other[option] = False
    return list(rows.values())


def plain(value):
    """JSON-safe copy of a helper's result."""
    if isinstance(value, dict):
        return dict((str(k), plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
