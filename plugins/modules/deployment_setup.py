#!/usr/bin/python
# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: deployment_setup
short_description: Reference PostgreSQL set-up of many Airflow Deployments in one call
version_added: 0.1.0
description:
  - Brings a PostgreSQL 16+ server to the state the vendor's reference SQL produces, for every
    Deployment record given in O(deployments) (the output of the
    C(dataplane.postgresql.deployment_model) filter), in one connection.
  - Per present Deployment, the owner role (C(NOLOGIN), C(INHERIT)) and the connection-terminator
    (killer) role (C(NOLOGIN NOINHERIT)) exist; the metadata database exists and is owned by the
    owner role; C(CONNECT) is revoked from C(PUBLIC) and granted to every login role (grantor the
    owner role, as after the reference C(ALTER DATABASE ... OWNER TO)); every login role is granted
    to the killer role C(WITH INHERIT FALSE, SET FALSE); the owner and killer roles are granted to
    C(commander_user) with PostgreSQL's defaults (what a plain C(GRANT) gives).
  - Missing databases are created (C(CREATE DATABASE) runs in autocommit, one statement each, over
    up to three connections when there are many);
    missing login roles are created with their passwords (sent as SCRAM-SHA-256 secrets computed
    on the managed node, never in clear text). Everything else runs in one transaction, in a few
    round trips, and is rolled back entirely on any error.
  - With O(fence_helper=true) the fence helper is installed in the database the module connects
    to and its use granted to every present Deployment's killer role.
  - A Deployment with O(deployments[].state=absent) loses its killer and owner roles (and with them
    their memberships). The database stays unless O(deployments[].drop_database) is set; its
    ownership then goes to O(decommission_owner) (default the connecting role). The login roles
    stay unless O(deployments[].drop_login_roles) is set; their C(CONNECT) on a kept database is
    revoked first.
  - "A fence is kept. Before granting C(CONNECT) the module reads the fence state of every existing
    metadata database (the record a failover writes into the database's comment, see
    C(docs/fence-state.md)). When a login role is recorded as fenced, or, without a record, when
    exactly one login role lacks the owner's C(CONNECT) while another holds it (a fence made by
    version 0.1 or by hand, reported as C(inferred, no record)), or when no login role holds it
    and C(PUBLIC) has none either, no C(CONNECT) is granted to any of the Deployment's login
    roles; RV(deployments[].summary) says for example C(fenced: dp1, admitted: dp2). A record
    that cannot be read refuses the run before any change. New databases get the reference
    set-up. Only O(readmit_fenced_planes=true) grants C(CONNECT) to every login role of such a
    Deployment, and it rewrites the record (nobody fenced) in the same transaction."
  - B(Shared schema role.) For every present Deployment with O(deployments[].schema_role) set
    (the default of the C(deployment_model) filter, C(dataplane_object_privileges)), a C(NOLOGIN)
    role without attributes exists, every login role is its member C(WITH INHERIT FALSE, SET TRUE,
    ADMIN FALSE) and has it as its role in the metadata database
    (C(ALTER ROLE <login> IN DATABASE <db> SET role = '<schema role>')), and it holds C(USAGE) and
    C(CREATE) on O(deployments[].airflow_schema). So Airflow's objects belong to the schema role,
    whichever plane created them. It is never a member of the owner or killer role and never
    granted to C(commander_user) (such grants are revoked). The schema privileges need one short
    connection to each metadata database; roles, memberships and role settings are converged in
    one transaction after the reference set-up. Objects owned by a login role are only reported
    (a warning), unless O(reassign_owned) hands them to the schema role. With V(absent) its
    objects in a kept database go to O(decommission_owner), the login roles' role setting is reset
    and the schema role dropped.
  - Every input problem (bad names, missing passwords for roles to create, a missing
    C(commander_user) without O(commander_password), missing databases with
    O(create_databases=false), ...) is reported at once, naming the Deployment, before any change.
  - Changes are detected from the catalog (roles, memberships per grantor, database owner, database
    ACL compared as a set); a second run reports no change. Check mode plans every change and
    makes none; diff mode shows each Deployment's state before and after.
author:
  - dataplane.postgresql contributors (@dataplane)
requirements:
  - psycopg2 on the managed node
  - PostgreSQL 16 or newer (the C(INHERIT) and C(SET) membership options)
  - a superuser login, or a managed-service admin (C(CREATEROLE CREATEDB), ADMIN OPTION on
    C(pg_signal_backend) and C(pg_read_all_stats) for the fence helper); see docs/managed-postgresql.md
extends_documentation_fragment:
  - dataplane.postgresql.connection
attributes:
  check_mode:
    support: full
    description: Plans and reports every change, makes none.
  diff_mode:
    support: full
    description: Shows each changed Deployment's roles, memberships, database owner and ACL before and after.
options:
  deployments:
    description:
      - The Deployment records, as returned by the C(dataplane.postgresql.deployment_model) filter.
    type: list
    elements: dict
    required: true
    suboptions:
      id:
        description: The Deployment id (used in messages and results).
        type: str
        required: true
      state:
        description: V(present) sets the Deployment up, V(absent) decommissions it.
        type: str
        choices:
          - present
          - absent
        default: present
      database:
        description: The metadata database.
        type: str
        required: true
      owner_role:
        description: The database owner role.
        type: str
        required: true
      killer_role:
        description: The connection-terminator role.
        type: str
        required: true
      login_roles:
        description: Plane name to login role name.
        type: dict
        required: true
      passwords:
        description:
          - Plane name to password, for the login roles to create (or to update with
            O(deployments[].update_password)).
        type: dict
        default: {}
      commander_user:
        description: The orchestrator login, granted the owner and killer roles.
        type: str
        default: commander_user
      update_password:
        description:
          - Set an existing login role's password when it differs from the one given.
          - The comparison reads C(pg_authid) (superuser only); a login that cannot read it sets
            the password on every run.
        type: bool
        default: false
      drop_database:
        description: With V(absent), drop the metadata database too.
        type: bool
        default: false
      drop_login_roles:
        description: With V(absent), drop the login roles too.
        type: bool
        default: false
      schema_role:
        description:
          - The shared schema role (NOLOGIN) that owns Airflow's objects; both login roles are its
            members and have it as their role in the database.
          - Omitted or V(null) (C(dataplane_object_privileges=false)) - no schema role is managed.
        type: str
      airflow_schema:
        description: The schema that holds Airflow's tables; the schema role gets C(USAGE) and C(CREATE) on it.
        type: str
        default: public
  create_databases:
    description: Create missing metadata databases; if false a missing database is an error.
    type: bool
    default: true
  create_login_roles:
    description: Create missing login roles; if false a missing login role is an error.
    type: bool
    default: true
  commander_password:
    description:
      - Password for C(commander_user). If given and the role does not exist, it is created
        (C(LOGIN)); an existing role is left unchanged. If omitted, a missing C(commander_user)
        is an error.
    type: str
  fence_helper:
    description:
      - Install or update the fence helper in the database the module connects to and grant its
        use to the killer role of every present Deployment.
      - V(false) leaves any installed helper alone.
    type: bool
    default: true
  fence_helper_schema:
    description: Schema of the fence helper.
    type: str
    default: dataplane_fence
  fence_helper_owner_role:
    description: NOLOGIN role owning the fence helper function (it holds C(pg_signal_backend)).
    type: str
    default: dataplane_fence_signaler
  reassign_owned:
    description:
      - Hand the objects a login role owns in its metadata database to the schema role
        (C(REASSIGN OWNED BY <login roles> TO <schema role>), in that database only).
      - Refused, with nothing changed in that database, when a login role also owns a database
        or tablespace (C(REASSIGN OWNED) would move it too).
      - V(false) only warns, naming the objects.
    version_added: 0.2.0
    type: bool
    default: false
  decommission_owner:
    description:
      - New owner of the database of an V(absent) Deployment that is kept (the owner role is dropped).
      - Default the role the module connects as.
    type: str
  readmit_fenced_planes:
    description:
      - Grant C(CONNECT) to every login role of the Deployments whose fence keeps it withheld
        (a fenced plane, an interrupted failover, an unknown or damaged fence state), and record
        in each database's fence state record that no plane is fenced any more.
      - Waits for a fence of the same database that is running (its advisory lock, up to 60 s)
        and refuses when the fence state changed since it was read.
      - The failover playbook's failback is the normal way to move a Deployment back; this is for
        returning to the both-planes-admitted reference state on purpose.
    version_added: 0.2.0
    type: bool
    default: false
  run_id:
    description:
      - An id of this run (for example the AWX job id), written into a fence state record that
        O(readmit_fenced_planes) rewrites.
    version_added: 0.2.0
    type: str
notes:
  - Run as a superuser or as a managed-service admin (Amazon RDS/Aurora, Cloud SQL, Azure Flexible
    Server). A superuser's C(GRANT)s are recorded with grantor C(postgres) (PostgreSQL records any
    superuser that way), exactly as when the reference SQL is run by a superuser; a non-superuser
    admin's with itself as grantor. Where PostgreSQL 16 requires C(SET ROLE) on a role (new database
    or helper owner), a non-superuser admin grants itself that role for the transaction and
    revokes it before C(COMMIT).
  - Every name is checked against the server before any change - a superuser, C(CREATEROLE),
    C(BYPASSRLS) or C(REPLICATION) role, a member of one or of a predefined role, the fence
    helper's owner role, C(commander_user), or a role or database visibly belonging to another
    Deployment is refused, naming the Deployment, the name and why. What the admin lacks is
    named too (C(CREATEDB), ADMIN OPTION on a role, ...).
  - C(CREATE DATABASE) cannot run in a transaction - if a later step fails, the message lists the
    databases that stayed (also in RV(created_databases)).
  - Objects owned by the owner role inside a kept database (or by a login role to drop) make
    C(DROP ROLE) fail; the whole transaction is then rolled back. Reassign them first, or drop
    the database.
seealso:
  - module: dataplane.postgresql.membership
  - module: dataplane.postgresql.fence_helper
"""

EXAMPLES = r"""
- name: Set up every Deployment in one call
  dataplane.postgresql.deployment_setup:
    login_host: db.example.internal
    login_user: postgres
    login_password: "{{ vault_pg_admin }}"
    deployments: >-
      {{ dataplane_deployments | dataplane.postgresql.deployment_model(planes=['dp1', 'dp2']) }}

- name: Decommission one Deployment, dropping its database and login roles
  dataplane.postgresql.deployment_setup:
    deployments: >-
      {{ [{'id': 'old', 'state': 'absent', 'drop_database': true, 'drop_login_roles': true}]
         | dataplane.postgresql.deployment_model }}
"""

RETURN = r"""
changed:
  description: Whether the catalog changed (or would, in check mode).
  returned: always
  type: bool
deployments:
  description: One entry per Deployment, in input order.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The Deployment id.
      type: str
    state:
      description: V(present) or V(absent).
      type: str
    changed:
      description: Whether this Deployment's roles, memberships, database owner or ACL changed.
      type: bool
    actions:
      description: The statements run for this Deployment (passwords masked).
      type: list
      elements: str
    before:
      description:
        - Roles, memberships, database owner and ACL before; with O(deployments[].schema_role),
          also C(schema_role) (whether it exists, forbidden attributes, its members with their
          options, each login role's role setting in the database, the schema privileges).
      type: dict
    after:
      description:
        - The same after (predicted in check mode); C(passwords_set) lists login roles whose
          password was set. Present Deployments also show C(fence) (state, fenced and admitted
          planes, and a one-line text), before and after.
      type: dict
    summary:
      description:
        - One line a person can read - what changed (or would, in check mode), then the fence state.
      type: str
      sample: "a: unchanged | fenced: dp1, admitted: dp2 (recorded by commander_user at 2026-11-27T17:02:11Z)"
    fence:
      description:
        - The fence state of a present Deployment after the run (predicted in check mode).
        - C(state) is V(new), V(open) (no plane fenced), V(fenced), V(unknown) (no plane admitted, no
          record), V(damaged) (the record cannot be read) or V(interrupted) (the record is in phase
          C(fencing)); C(source) is V(record), V(inferred) or null; C(fenced) and C(admitted) name
          planes, C(fenced_roles) and C(admitted_roles) login roles; C(phase), C(generation),
          C(by), C(at) and C(run) come from the record; C(notes) lists where the record and the
          catalog disagree; C(text) is the one-line description.
      type: dict
      returned: for present Deployments
    connect_withheld:
      description: Login roles that the reference set-up would grant C(CONNECT) but the fence keeps out.
      type: list
      elements: str
    readmitted:
      description: Whether O(readmit_fenced_planes) re-admitted the planes of this Deployment.
      type: bool
  sample:
    - id: a
      state: present
      changed: true
      actions:
        - CREATE ROLE "airflow_db_a_owner" NOLOGIN
created_databases:
  description: Databases created (or that would be).
  returned: always
  type: list
  elements: str
dropped_databases:
  description: Databases dropped (or that would be).
  returned: always
  type: list
  elements: str
memberships:
  description:
    - What the membership convergence returned - C(changed), C(statements) and C(unconverged)
      (grants the catalog does not show afterwards, also reported as warnings).
  returned: always
  type: dict
fence_helper:
  description: What the fence helper installation returned, empty when O(fence_helper=false).
  returned: always
  type: dict
time_ms:
  description:
    - Wall time in milliseconds - C(databases_ms) (reading the catalog and C(CREATE)/C(DROP DATABASE)),
      C(transaction_ms) (everything else), C(total_ms) (from connecting to the result).
  returned: always
  type: dict
  sample:
    databases_ms: 9120
    transaction_ms: 640
    total_ms: 9810
queries:
  description: Every statement that changed something (or would, in check mode), passwords masked.
  returned: always
  type: list
  elements: str
  sample:
    - CREATE ROLE "airflow_conn_killer_a" NOLOGIN NOINHERIT
warnings:
  description: Things left as they are that may surprise, such as C(CONNECT) granted by a third role.
  returned: when any
  type: list
  elements: str
"""

import base64
import hashlib
import hmac
import os
import stringprep
import threading
import time
import unicodedata

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.dataplane.postgresql.plugins.module_utils.database import (
    MIN_SERVER_VERSION_NUM,
    Session,
    connect,
    connection_argument_spec,
    sql,
)
from ansible_collections.dataplane.postgresql.plugins.module_utils.identifiers import (
    identifier_problem,
    role_name_problem,
)

try:
    from ansible_collections.dataplane.postgresql.plugins.module_utils import memberships as _memberships
except ImportError:  # pragma: no cover - reported when needed
    _memberships = None
try:
    from ansible_collections.dataplane.postgresql.plugins.module_utils import fence_helper as _fence_helper
except ImportError:  # pragma: no cover - reported when needed
    _fence_helper = None
from ansible_collections.dataplane.postgresql.plugins.module_utils import fence_state as _fence_state
from ansible_collections.dataplane.postgresql.plugins.module_utils.fence import ADVISORY_LOCK_CLASS
from ansible_collections.dataplane.postgresql.plugins.module_utils import fence_view as _fence_view
try:
    from ansible_collections.dataplane.postgresql.plugins.module_utils import role_checks as _role_checks
except ImportError:  # pragma: no cover - reported when needed
    _role_checks = None
try:
    from ansible_collections.dataplane.postgresql.plugins.module_utils import schema_role as _schema_role
except ImportError:  # pragma: no cover - reported when needed
    _schema_role = None

PUBLIC = ""  # grantee of PUBLIC ACL entries
PRIVILEGE_LETTERS = {"CONNECT": "c", "CREATE": "C", "TEMPORARY": "T"}
OWNER_ATTRS = {"login": False, "inherit": True}
KILLER_ATTRS = {"login": False, "inherit": False}
LOGIN_ATTRS = {"login": True, "inherit": True}
BATCH = 400  # statements sent per round trip
DATABASE_WORKERS = 3  # connections for CREATE/DROP DATABASE (at least 4 statements each)
MASK = "********"


# ---------------------------------------------------------------------------------------------
# Passwords: SCRAM-SHA-256 secrets computed here, so no clear text reaches the server's logs.

def saslprep(password):
    """PostgreSQL's pg_saslprep(): ASCII is kept as is; otherwise RFC 4013, or the raw
    password when the result would be prohibited (PostgreSQL then uses the raw bytes)."""
    if all(ord(ch) < 128 for ch in password):
        return password
    mapped = []
    for ch in password:
        if stringprep.in_table_c12(ch):
            mapped.append(" ")
        elif not stringprep.in_table_b1(ch):
            mapped.append(ch)
    prepared = unicodedata.normalize("NFKC", "".join(mapped))
    if not prepared:
        return password
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
                  stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
                  stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
                  stringprep.in_table_c9, stringprep.in_table_a1)
    if any(check(ch) for ch in prepared for check in prohibited):
        return password
    if any(stringprep.in_table_d1(ch) for ch in prepared):
        if (any(stringprep.in_table_d2(ch) for ch in prepared)
                or not stringprep.in_table_d1(prepared[0]) or not stringprep.in_table_d1(prepared[-1])):
            return password
    return prepared


def scram_secret(password, salt=None, iterations=4096):
    """The rolpassword value PostgreSQL would store for PASSWORD under scram-sha-256."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data):
        return base64.b64encode(data).decode("ascii")
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored_key), b64(server_key))


def password_matches(stored, password, role):
    """Whether the stored rolpassword is PASSWORD (None when it cannot be told)."""
    if stored is None:
        return False
    if stored.startswith("SCRAM-SHA-256$"):
        try:
            head = stored.split("$")[1]
            iterations, salt = head.split(":")
            return hmac.compare_digest(scram_secret(password, base64.b64decode(salt), int(iterations)), stored)
        except (IndexError, ValueError, TypeError):
            return None
    if stored.startswith("md5") and len(stored) == 35:
        return hmac.compare_digest("md5" + hashlib.md5((password + role).encode("utf-8")).hexdigest(), stored)
    return None


# ---------------------------------------------------------------------------------------------
# Input validation (pure): every problem, naming the Deployment.

def input_problems(records, params):
    problems = []
    seen = {}
    for index, rec in enumerate(records):
        label = "deployments[%d] (id %r)" % (index, rec.get("id"))
        checks = [(identifier_problem, rec.get("database"), "database name"),
                  (role_name_problem, rec.get("owner_role"), "owner role name"),
                  (role_name_problem, rec.get("killer_role"), "killer role name"),
                  (role_name_problem, rec.get("commander_user"), "commander_user")]
        logins = rec.get("login_roles") or {}
        if not logins:
            problems.append("%s: login_roles must name at least one plane's login role" % label)
        for plane, name in sorted(logins.items()):
            checks.append((role_name_problem, name, "%s login role name" % plane))
        for plane in sorted(set(rec.get("passwords") or {}) - set(logins)):
            problems.append("%s: a password is given for unknown plane %r" % (label, plane))
        for checker, name, kind in checks:
            problem = checker(name, kind)
            if problem:
                problems.append("%s: %s" % (label, problem))
        if rec.get("id") in seen:
            problems.append("%s: duplicate id, already used by deployments[%d]" % (label, seen[rec.get("id")]))
        seen.setdefault(rec.get("id"), index)
        names = [rec.get("owner_role"), rec.get("killer_role")] + list(logins.values())
        if len(set(names)) != len(names):
            problems.append("%s: a role name is used twice in this Deployment" % label)
    # Names must not be shared between Deployments (a decommission would destroy another's).
    owner = {}
    for index, rec in enumerate(records):
        for kind, name in ([("database", rec.get("database")), ("role", rec.get("owner_role")),
                            ("role", rec.get("killer_role"))]
                           + [("role", n) for n in (rec.get("login_roles") or {}).values()]):
            other = owner.setdefault((kind, name), index)
            if other != index:
                problems.append("deployments[%d] (id %r): %s %r is also used by deployments[%d]"
                                % (index, rec.get("id"), kind, name, other))
    for key, kind in (("fence_helper_schema", "fence helper schema"),
                      ("fence_helper_owner_role", "fence helper owner role")):
        checker = role_name_problem if key.endswith("role") else identifier_problem
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
    def __init__(self):
        self.problems = []
        self.warnings = []
        self.autocommit = []     # (dep index, action) CREATE/DROP DATABASE
        self.roles = []          # (dep index, action) role creation / attributes / passwords
        self.databases = []      # (dep index, action) owner and CONNECT
        self.decommission = []   # (dep index, action) run after memberships and helper
        self.grants = []         # (dep index, grant dict) for memberships.converge_grants
        self.helper_killers = []
        self.helper_unregister = []  # killer roles of decommissioned Deployments (fence helper registry)
        self.predicted_roles = {}
        self.predicted_databases = {}
        self.new_roles = set()
        self.fence_views = {}    # dep index -> fence_view.fence_view() before the run
        self.withheld = {}       # dep index -> login roles whose CONNECT the fence keeps withheld
        self.record_actions = {}  # dep index -> [set_fence_record action] (explicit re-admission)
        self.readmits = []       # (dep index, database, comment read when planning)

    def actions(self):
        return self.autocommit + self.roles + self.databases + self.decommission


def plan_deployments(records, catalog, options):
    """Plan the set-up of RECORDS against CATALOG.

    catalog: {"acting_user": str, "roles": {name: {"login", "inherit", "password"}},
              "databases": {name: {"owner": str, "acl": set of (grantee, grantor, priv, grantable)}},
              "helper_schema_exists": bool, "helper_grantees": set of role names}
    options: create_databases, create_login_roles, commander_password, decommission_owner, fence_helper.
    Actions are tuples: (create_role, name, attrs, secret|None), (alter_role, name, attrs),
    (set_password, name, secret), (create_database, db), (drop_database, db),
    (alter_database_owner, db, owner), (revoke_connect, db, grantee|''), (grant_connect, db, grantee),
    (revoke_helper, schema, role), (drop_role, name).
    """
    plan = Plan()
    roles = dict((k, dict(v)) for k, v in catalog["roles"].items())
    dbs = dict((k, {"owner": v["owner"], "acl": set(v["acl"])}) for k, v in catalog["databases"].items())
    acting = catalog["acting_user"]
    secret = options.get("secret") or scram_secret

    def label(rec):
        return "Deployment %r" % rec["id"]

    def ensure_role(index, name, attrs, password=None):
        current = roles.get(name)
        if current is None:
            roles[name] = dict(attrs, password=None)
            plan.new_roles.add(name)
            plan.roles.append((index, ("create_role", name, dict(attrs),
                                       secret(password) if password is not None else None)))
        elif any(current.get(k) != v for k, v in attrs.items()):
            current.update(attrs)
            plan.roles.append((index, ("alter_role", name, dict(attrs))))

    commanders_done = set()
    for index, rec in enumerate(records):
        if rec["state"] != "present":
            continue
        commander = rec["commander_user"]
        if commander not in roles and commander not in commanders_done:
            if options.get("commander_password"):
                ensure_role(index, commander, LOGIN_ATTRS, options["commander_password"])
            else:
                plan.problems.append(
                    "%s: commander_user %r does not exist; create it first or give its password "
                    "(dataplane_commander_password / commander_password) to have it created"
                    % (label(rec), commander))
        elif commander in roles and commander not in commanders_done and not roles[commander].get("inherit", True):
            plan.warnings.append(
                "%s: commander_user %r is NOINHERIT: its plain grant of the owner role gets INHERIT FALSE, "
                "so it cannot switch CONNECT during a failover (PostgreSQL only warns)" % (label(rec), commander))
        commanders_done.add(commander)
        ensure_role(index, rec["owner_role"], OWNER_ATTRS)
        ensure_role(index, rec["killer_role"], KILLER_ATTRS)
        for plane, login in sorted(rec["login_roles"].items()):
            password = (rec.get("passwords") or {}).get(plane)
            current = roles.get(login)
            if current is None:
                if not options.get("create_login_roles", True):
                    plan.problems.append("%s: login role %r (plane %s) does not exist and creating login "
                                         "roles is disabled" % (label(rec), login, plane))
                elif password in (None, ""):
                    plan.problems.append("%s: login role %r (plane %s) does not exist and no password is "
                                         "given for it (passwords.%s)" % (label(rec), login, plane, plane))
                else:
                    ensure_role(index, login, LOGIN_ATTRS, password)
                continue
            if not current.get("login"):
                plan.warnings.append("%s: login role %r exists but cannot log in (NOLOGIN); left as is"
                                     % (label(rec), login))
            if rec.get("update_password") and password not in (None, ""):
                if not password_matches(current.get("password"), password, login):
                    plan.roles.append((index, ("set_password", login, secret(password))))
                    current["password"] = None

        db_name = rec["database"]
        db = dbs.get(db_name)
        withhold = plan_fence(plan, index, rec, db, options)  # never re-admit a fenced plane
        if db is None:
            if not options.get("create_databases", True):
                plan.problems.append("%s: database %r does not exist and creating databases is disabled"
                                     % (label(rec), db_name))
                continue
            plan.autocommit.append((index, ("create_database", db_name)))
            db = dbs[db_name] = {"owner": acting, "acl": default_acl(acting), "new": True}
        owner = rec["owner_role"]
        if db["owner"] != owner:
            plan.databases.append((index, ("alter_database_owner", db_name, owner)))
            db["acl"] = acl_new_owner(db["acl"], db["owner"], owner)
            db["owner"] = owner
        public_connect = [e for e in db["acl"] if e[0] == PUBLIC and e[2] == "CONNECT"]
        if any(e[1] == owner for e in public_connect):
            plan.databases.append((index, ("revoke_connect", db_name, PUBLIC)))
            db["acl"] = set(e for e in db["acl"] if not (e[0] == PUBLIC and e[1] == owner and e[2] == "CONNECT"))
        for entry in public_connect:
            if entry[1] != owner:
                plan.warnings.append("%s: PUBLIC keeps CONNECT on %r granted by %r (not the owner); "
                                     "revoke it as that role" % (label(rec), db_name, entry[1]))
        for plane, login in sorted(rec["login_roles"].items()):
            if not any(e[0] == login and e[1] == owner and e[2] == "CONNECT" for e in db["acl"]):
                if withhold:
                    plan.withheld.setdefault(index, []).append(login)
                    continue
                plan.databases.append((index, ("grant_connect", db_name, login)))
                db["acl"].add((login, owner, "CONNECT", False))
        plan.databases.extend((index, a) for a in plan.record_actions.pop(index, []))
        for plane, login in sorted(rec["login_roles"].items()):
            plan.grants.append((index, {"group": login, "target_role": rec["killer_role"],
                                        "inherit_option": False, "set_option": False, "admin_option": None,
                                        "granted_by": None, "state": "present"}))
        for group in (owner, rec["killer_role"]):
            plan.grants.append((index, {"group": group, "target_role": commander,
                                        "inherit_option": None, "set_option": None, "admin_option": None,
                                        "granted_by": None, "state": "present"}))
        plan.helper_killers.append(rec["killer_role"])

    new_owner = options.get("decommission_owner") or acting
    for index, rec in enumerate(records):
        if rec["state"] != "absent":
            continue
        db_name = rec["database"]
        db = dbs.get(db_name)
        if db is not None and rec.get("drop_database"):
            plan.autocommit.append((index, ("drop_database", db_name)))
            del dbs[db_name]
            db = None
        if db is not None and db["owner"] == rec["owner_role"] and rec["owner_role"] in roles:
            plan.decommission.append((index, ("alter_database_owner", db_name, new_owner)))
            db["acl"] = acl_new_owner(db["acl"], db["owner"], new_owner)
            db["owner"] = new_owner
        if rec["killer_role"] in roles:
            if catalog.get("helper_schema_exists"):
                if rec["killer_role"] in catalog.get("helper_grantees", (rec["killer_role"],)):
                    plan.decommission.append((index, ("revoke_helper", options.get("fence_helper_schema"),
                                                      rec["killer_role"])))
                plan.helper_unregister.append(rec["killer_role"])
            plan.decommission.append((index, ("drop_role", rec["killer_role"])))
            del roles[rec["killer_role"]]
        if rec["owner_role"] in roles:
            plan.decommission.append((index, ("drop_role", rec["owner_role"])))
            del roles[rec["owner_role"]]
        if rec.get("drop_login_roles"):
            for plane, login in sorted(rec["login_roles"].items()):
                if login not in roles:
                    continue
                if db is not None and any(e[0] == login for e in db["acl"]):
                    plan.decommission.append((index, ("revoke_connect", db_name, login)))
                    db["acl"] = set(e for e in db["acl"] if not (e[0] == login and e[1] == db["owner"]))
                plan.decommission.append((index, ("drop_role", login)))
                del roles[login]

    plan.predicted_roles = roles
    plan.predicted_databases = dbs
    return plan


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
        plan.record_actions[index] = [("set_fence_record", rec["database"], entry.get("comment"), record)]
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


def change_phrases(actions, memberships):
    """Short phrases of what changed for one Deployment, in the order the kinds first appear."""
    order, names = [], {}
    for action in actions:
        kind = action[0]
        if kind in ("alter_database_owner", "revoke_helper", "grant_connect"):
            name = action[2]
        elif kind == "revoke_connect":
            name = "PUBLIC" if action[2] == PUBLIC else action[2]
        else:
            name = action[1]
        if kind not in names:
            order.append(kind)
            names[kind] = []
        if name not in names[kind]:
            names[kind].append(name)
    phrases = [CHANGE_WORDS.get(kind, kind + " %s") % ", ".join(names[kind]) for kind in order]
    if memberships:
        phrases.append("%d membership statement%s" % (memberships, "" if memberships == 1 else "s"))
    return phrases


def provision_outcome(rec, index, plan, texts, fence_after, check):
    """summary, fence, connect_withheld, readmitted and warnings of one Deployment's result."""
    actions = [a for i, a in plan.actions() if i == index]
    phrases = change_phrases(actions, max(0, len(texts) - len(actions)))
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


def read_fence_states(session, records, params):
    """The fence state of every Deployment's database, and who/when/which run would write one."""
    databases = sorted(set(rec["database"] for rec in records))
    states = _fence_state.read_states(session, databases)
    row = session.rows(WRITER_QUERY)[0]
    writer = {"by": row["who"], "at": row["at_utc"], "application": row["app"] or None, "run": params.get("run_id")}
    return states, writer


def predict_fence_states(states, plan):
    """Check mode: the fence states after the planned re-admissions."""
    out = dict(states)
    for dummy, action in plan.actions():
        if action[0] == "set_fence_record":
            out[action[1]] = {"comment": _fence_state.render_comment(action[2], action[3]),
                              "record": action[3], "error": None}
    return out


def lock_readmitted(session, plan, check):
    """Before re-admitting: wait for any fence of those databases (its advisory lock, for this
    transaction), then make sure their fence state is still the one the plan was made from."""
    if check or not plan.readmits:
        return
    databases = sorted(set(db for dummy, db, dummy2 in plan.readmits))
    session.rows("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (str(READMIT_LOCK_TIMEOUT_MS),))
    session.rows("SELECT pg_catalog.pg_advisory_xact_lock(%s, k)::text FROM"
                 " (SELECT DISTINCT pg_catalog.hashtext(d) AS k FROM unnest(%s::text[]) AS d ORDER BY 1) AS keys",
                 (ADVISORY_LOCK_CLASS, databases))
    now = _fence_state.read_comments(session, databases)
    moved = sorted(set(db for dummy, db, comment in plan.readmits if now.get(db) != comment))
    if moved:
        raise RuntimeError("the fence state of %s changed while this run was planning (another failover or "
                           "provision ran meanwhile); nothing was re-admitted, rerun provision to see the new state"
                           % ", ".join(moved))


# ---------------------------------------------------------------------------------------------
# SQL for actions (sql.Identifier for every name, sql.Literal for secrets).

def action_sql(action):
    """(composed statement, text for the log with secrets masked or None to render as is)."""
    kind = action[0]
    ident = sql.Identifier
    if kind == "create_role":
        name, attrs, secret = action[1], action[2], action[3]
        words = ("LOGIN" if attrs["login"] else "NOLOGIN") + ("" if attrs["inherit"] else " NOINHERIT")
        stmt = sql.SQL("CREATE ROLE {} " + words).format(ident(name))
        if secret is not None:
            return stmt + sql.SQL(" PASSWORD {}").format(sql.Literal(secret)), secret
        return stmt, None
    if kind == "alter_role":
        attrs = action[2]
        words = ("LOGIN" if attrs["login"] else "NOLOGIN") + (" INHERIT" if attrs["inherit"] else " NOINHERIT")
        return sql.SQL("ALTER ROLE {} " + words).format(ident(action[1])), None
    if kind == "set_password":
        return sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident(action[1]), sql.Literal(action[2])), action[2]
    if kind == "create_database":
        return sql.SQL("CREATE DATABASE {}").format(ident(action[1])), None
    if kind == "drop_database":
        return sql.SQL("DROP DATABASE {}").format(ident(action[1])), None
    if kind == "alter_database_owner":
        return sql.SQL("ALTER DATABASE {} OWNER TO {}").format(ident(action[1]), ident(action[2])), None
    if kind == "revoke_connect":
        grantee = sql.SQL("PUBLIC") if action[2] == PUBLIC else ident(action[2])
        return sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(ident(action[1]), grantee), None
    if kind == "grant_connect":
        return sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(action[1]), ident(action[2])), None
    if kind == "revoke_helper":
        return sql.SQL("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {0} FROM {1}; "
                       "REVOKE ALL ON SCHEMA {0} FROM {1}").format(ident(action[1]), ident(action[2])), None
    if kind == "drop_role":
        return sql.SQL("DROP ROLE {}").format(ident(action[1])), None
    if kind == "set_fence_record":
        return _fence_state.comment_statement(action[1], action[2], action[3]), None
    if kind == "sql":
        return action[1], None
    raise ValueError("unknown action %r" % (kind,))


# ---------------------------------------------------------------------------------------------
# Catalog access: one query per kind for all Deployments.

ROLE_QUERY = """
SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolsuper
  FROM pg_catalog.pg_roles r
 WHERE r.rolname = ANY(%s)
"""
WRITER_QUERY = ("SELECT session_user AS who, pg_catalog.current_setting('application_name') AS app,"
                " pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at_utc")
READMIT_LOCK_TIMEOUT_MS = 60000
PASSWORD_QUERY = "SELECT a.rolname, a.rolpassword FROM pg_catalog.pg_authid a WHERE a.rolname = ANY(%s)"
DATABASE_QUERY = """
SELECT d.datname, pg_catalog.pg_get_userbyid(d.datdba) AS owner,
       COALESCE((SELECT pg_catalog.array_agg(ARRAY[
                   CASE WHEN a.grantee = 0 THEN '' ELSE COALESCE(ge.rolname, a.grantee::text) END,
                   COALESCE(gr.rolname, a.grantor::text), a.privilege_type,
                   CASE WHEN a.is_grantable THEN 't' ELSE 'f' END])
                   FROM pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) a
                   LEFT JOIN pg_catalog.pg_roles ge ON ge.oid = a.grantee
                   LEFT JOIN pg_catalog.pg_roles gr ON gr.oid = a.grantor), '{}') AS acl
  FROM pg_catalog.pg_database d
 WHERE d.datname = ANY(%s)
"""
INFO_QUERY = """
SELECT current_user AS acting_user, r.rolsuper AS superuser,
       (SELECT b.rolname FROM pg_catalog.pg_roles b WHERE b.oid = 10) AS bootstrap_superuser,
       EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = %(schema)s) AS helper_schema_exists,
       -- roles holding a privilege on the helper's schema or its functions (a killer role that
       -- holds none needs no REVOKE before it is dropped, which a managed admin may not run)
       ARRAY(SELECT DISTINCT ge.rolname
               FROM pg_catalog.pg_namespace n
               LEFT JOIN pg_catalog.pg_proc p ON p.pronamespace = n.oid
               CROSS JOIN LATERAL (SELECT x.grantee FROM pg_catalog.aclexplode(n.nspacl) x
                                   UNION SELECT y.grantee FROM pg_catalog.aclexplode(p.proacl) y) g
               JOIN pg_catalog.pg_roles ge ON ge.oid = g.grantee
              WHERE n.nspname = %(schema)s)::text[] AS helper_grantees
  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""


def record_role_names(rec):
    return [rec["owner_role"], rec["killer_role"], rec["commander_user"]] + list(rec["login_roles"].values())


def read_catalog(session, records, params):
    role_names = sorted(set(n for rec in records for n in record_role_names(rec)))
    info = session.rows(INFO_QUERY, {"schema": params["fence_helper_schema"]})[0]
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


def read_memberships(session, records):
    names = sorted(set(n for rec in records for n in (rec["owner_role"], rec["killer_role"])))
    rows = _memberships.read_memberships(session, names)
    return [dict(r) for r in rows]


def run_batched(session, statements):
    """Execute [(composed, secret)] in a few round trips; log each statement (secrets masked)."""
    texts = []
    for index in range(0, len(statements), BATCH):
        chunk = statements[index:index + BATCH]
        combined = sql.SQL(";\n").join([stmt for stmt, dummy in chunk])
        session.cursor.execute(combined)
        for stmt, secret in chunk:
            text = session.render(stmt)
            if secret is not None:
                text = text.replace(secret, MASK)
            texts.append(text)
    session.queries.extend(texts)
    return texts


def run_autocommit(module, session, statements, done):
    """Run STATEMENTS (CREATE/DROP DATABASE) in autocommit, over up to DATABASE_WORKERS
    connections; mark DONE[i] for each that succeeded; return error messages."""
    workers = min(DATABASE_WORKERS, (len(statements) + 3) // 4)
    conns = [session.conn] + [connect(module, autocommit=True) for dummy in range(workers - 1)]
    errors = []

    def work(conn, indexes):
        cursor = conn.cursor()
        for i in indexes:
            try:
                cursor.execute(statements[i])
            except Exception as exc:  # report every failure after all workers stop
                errors.append("%s failed: %s" % (session.render(statements[i]),
                                                 to_native(getattr(exc, "pgerror", None) or exc).strip()))
                return
            done[i] = True
        cursor.close()

    if workers <= 1:
        work(session.conn, range(len(statements)))
    else:
        threads = [threading.Thread(target=work, args=(conn, range(k, len(statements), workers)))
                   for k, conn in enumerate(conns)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for conn in conns[1:]:
            conn.close()
    return errors


def main():
    spec = connection_argument_spec()
    spec.update(
        deployments=dict(type="list", elements="dict", required=True, options=dict(
            id=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            database=dict(type="str", required=True),
            owner_role=dict(type="str", required=True),
            killer_role=dict(type="str", required=True),
            login_roles=dict(type="dict", required=True),
            passwords=dict(type="dict", default={}, no_log=True),
            commander_user=dict(type="str", default="commander_user"),
            update_password=dict(type="bool", default=False, no_log=False),
            drop_database=dict(type="bool", default=False),
            drop_login_roles=dict(type="bool", default=False),
            schema_role=dict(type="str"),
            airflow_schema=dict(type="str", default="public"),
        )),
        reassign_owned=dict(type="bool", default=False),
        create_databases=dict(type="bool", default=True),
        create_login_roles=dict(type="bool", default=True),
        commander_password=dict(type="str", no_log=True),
        fence_helper=dict(type="bool", default=True),
        fence_helper_schema=dict(type="str", default="dataplane_fence"),
        fence_helper_owner_role=dict(type="str", default="dataplane_fence_signaler"),
        decommission_owner=dict(type="str"),
        readmit_fenced_planes=dict(type="bool", default=False),
        run_id=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    check = module.check_mode
    records = []
    for rec in params["deployments"]:
        rec = dict(rec)
        rec["login_roles"] = dict((str(k), str(v)) for k, v in (rec.get("login_roles") or {}).items())
        rec["passwords"] = dict((str(k), str(v)) for k, v in (rec.get("passwords") or {}).items() if v is not None)
        records.append(rec)

    problems = input_problems(records, params)
    if _schema_role is not None:
        problems.extend(_schema_role.record_problems(records))
    if problems:
        module.fail_json(msg="invalid deployments, nothing changed:\n- " + "\n- ".join(problems),
                         problems=problems, queries=[])
    if _memberships is None:
        module.fail_json(msg="module_utils memberships is missing from this collection", queries=[])
    if _role_checks is None:
        module.fail_json(msg="module_utils role_checks is missing from this collection", queries=[])
    if params["fence_helper"] and _fence_helper is None:
        module.fail_json(msg="module_utils fence_helper is missing from this collection", queries=[])

    started = time.monotonic()
    timings = {}
    conn = connect(module, autocommit=True)
    session = Session(module, conn)
    session.require_version(MIN_SERVER_VERSION_NUM,
                            "the reference grants (GRANT ... WITH INHERIT FALSE, SET FALSE)")
    catalog = read_catalog(session, records, params)
    before_members = read_memberships(session, records)
    fence_states, fence_writer = read_fence_states(session, records, params)
    plan = plan_deployments(records, catalog, dict(
        create_databases=params["create_databases"], create_login_roles=params["create_login_roles"],
        commander_password=params["commander_password"], decommission_owner=params["decommission_owner"],
        fence_helper_schema=params["fence_helper_schema"], fence_states=fence_states,
        fence_writer=fence_writer, readmit_fenced_planes=params["readmit_fenced_planes"]))
    # Least privilege: every name the model resolves, and what a non-superuser admin needs,
    # checked against the server before anything changes (role_checks).
    facts = _role_checks.read_facts(session, records, params["fence_helper_owner_role"])
    problems = _role_checks.name_problems(records, facts, {"helper_owner": params["fence_helper_owner_role"]})
    problems += plan.problems
    borrowed = _borrowed_owners(records, plan, params["decommission_owner"])
    needs = _role_checks.plan_needs(plan.actions(), [g for dummy, g in plan.grants], before_members,
                                    catalog["grantor"], plan.new_roles, params["fence_helper"],
                                    params["fence_helper_owner_role"] in facts["roles"])
    for role in borrowed:
        if role not in plan.new_roles:
            needs["admin_on"].setdefault(role, "act as it for the database's owner and CONNECT changes "
                                               "(SET and INHERIT borrowed for the transaction)")
    needs["helper_schema"] = bool(params["fence_helper"] and plan.helper_killers and not catalog["helper_schema_exists"])
    needs["borrowed"] = borrowed
    # A non-superuser admin may DROP only a database it owns: one it cannot act as the owner of
    # is handed to it first, in a short transaction borrowing the owner role (handover).
    handover = [] if facts["acting"]["superuser"] else [
        (a[1], facts["databases"][a[1]]["owner"]) for dummy, a in plan.autocommit
        if a[0] == "drop_database" and a[1] in facts["databases"] and not facts["databases"][a[1]]["acting_owns"]]
    for db, owner in handover:
        needs["admin_on"].setdefault(owner, "hand database %s to the connecting role before DROP DATABASE" % db)
    problems += _role_checks.admin_problems(facts, needs)
    if problems:
        session.fail("nothing changed, the Deployments cannot be set up:\n- " + "\n- ".join(problems),
                     problems=problems)
    if params["fence_helper"] and plan.helper_killers:
        # The helper's own refusals (owner role a superuser or with members, foreign objects in
        # its schema, ...) come before CREATE DATABASE too: a dry run plans it and changes nothing.
        _ensure_helper(session, params, plan, True)
    for warning in plan.warnings + _role_checks.commander_warnings(records, facts):
        module.warn(warning)

    created, dropped, handed = [], [], []
    plain_fail = session.fail

    def fail_naming_what_stayed(msg, **extra):
        # Any failure from here on: CREATE/DROP DATABASE cannot be rolled back, so say what stayed.
        extra.setdefault("created_databases", created)
        extra.setdefault("dropped_databases", dropped)
        if (created or dropped or handed) and _what_stayed(created, dropped, handed) not in msg:
            msg = "%s\n%s" % (msg, _what_stayed(created, dropped, handed))
        plain_fail(msg, **extra)
    session.fail = fail_naming_what_stayed

    per_dep = dict((i, []) for i in range(len(records)))
    membership_result = {}
    helper_result = {}
    try:
        if handover:
            _hand_over_databases(session, handover, check)
            handed.extend(db for db, dummy in handover if not check)
        # 1. CREATE/DROP DATABASE cannot run in a transaction block: one statement each,
        #    spread over a few connections when there are many (the server does the work).
        texts = [session.render(action_sql(a)[0]) for dummy, a in plan.autocommit]
        done = [False] * len(plan.autocommit)
        if check:
            session.queries.extend(texts)
            done = [True] * len(done)
        elif plan.autocommit:
            errors = run_autocommit(module, session, [action_sql(a)[0] for dummy, a in plan.autocommit], done)
            session.queries.extend(t for t, ok in zip(texts, done) if ok)
            for (index, action), ok in zip(plan.autocommit, done):
                if ok:
                    (created if action[0] == "create_database" else dropped).append(action[1])
            if errors:
                session.fail("%s; nothing else changed: %s" % (_what_stayed(created, dropped, handed), "; ".join(errors)),
                             created_databases=created, dropped_databases=dropped)
        for (index, action), text, ok in zip(plan.autocommit, texts, done):
            if check:
                (created if action[0] == "create_database" else dropped).append(action[1])
            if ok:
                per_dep[index].append(text)

        timings["databases_ms"] = int((time.monotonic() - started) * 1000)
        # 2. Everything else in one transaction.
        conn.autocommit = False
        lock_readmitted(session, plan, check)
        batch = plan.roles + plan.databases
        conn.cursor().execute("SET LOCAL createrole_self_grant = ''")  # only ADMIN on roles we create
        borrows = _role_checks.borrow_statements(session, borrowed, plan.new_roles)
        batch = plan.roles + [(None, ("sql", grant)) for dummy, grant, dummy2 in borrows] + plan.databases
        if batch:
            statements = [action_sql(a) for dummy, a in batch]
            if check:
                texts = []
                for stmt, secret in statements:
                    text = session.render(stmt)
                    texts.append(text.replace(secret, MASK) if secret else text)
                session.queries.extend(texts)
            else:
                texts = run_batched(session, statements)
            for (index, dummy), text in zip(batch, texts):
                if index is not None:
                    per_dep[index].append(text)

        grants = [g for dummy, g in plan.grants]
        first = len(session.queries)
        if grants:
            # In check mode the roles planned above do not exist yet: they count as having
            # no memberships (every grant to them is planned).
            membership_result = _memberships.converge_grants(session, grants, check, fail_on_missing=not check)
            if check:
                session.queries.extend(membership_result.get("statements") or [])
        _attribute_statements(session.queries[first:], records, per_dep)

        if params["fence_helper"] and (plan.helper_killers or plan.helper_unregister):
            first = len(session.queries)
            helper_result = _ensure_helper(session, params, plan, check)
            for text in helper_result.get("statements") or []:
                if text not in session.queries[first:]:
                    session.queries.append(text)

        if plan.decommission:
            statements = [action_sql(a) for dummy, a in plan.decommission]
            if check:
                texts = [session.render(s) for s, dummy in statements]
                session.queries.extend(texts)
            else:
                texts = run_batched(session, statements)
            for (index, dummy), text in zip(plan.decommission, texts):
                per_dep[index].append(text)
        dropped_roles = set(a[1] for dummy, a in plan.decommission if a[0] == "drop_role")
        restore = [back for role, dummy, back in borrows if role not in dropped_roles]
        if restore:
            if check:
                session.queries.extend(session.render(s) for s in restore)
            else:
                run_batched(session, [(s, None) for s in restore])

        if check:
            conn.rollback()
        else:
            conn.commit()
        timings["transaction_ms"] = int((time.monotonic() - started) * 1000) - timings["databases_ms"]
    except Exception as exc:  # roll back and report what was attempted
        session.fail("deployment set-up failed, transaction rolled back; %s: %s"
                     % (_what_stayed(created, dropped, handed), to_native(exc).strip()),
                     created_databases=created, dropped_databases=dropped)

    for grant in membership_result.get("unconverged") or []:
        module.warn("membership %s -> %s did not converge (another grantor recorded?)"
                    % (grant.get("group"), grant.get("target_role")))

    # The shared schema role (Airflow's objects), after the reference set-up.
    conn.autocommit = True
    schema_result = {}
    if _schema_role is not None and any(_schema_role.wanted(r) for r in records):
        schema_result = _schema_role.converge(
            module, session, records, dict(reassign_owned=params["reassign_owned"], dropped_databases=dropped,
                                           decommission_owner=params["decommission_owner"]), check, sql, _memberships)
        for warning in schema_result["warnings"]:
            module.warn(warning)
        for index, texts in schema_result["per_deployment"].items():
            per_dep[index].extend(texts)

    # Results from the catalog: before/after per Deployment.
    if check:
        after_roles, after_dbs = plan.predicted_roles, plan.predicted_databases
        after_members = _predict_members(before_members, plan, catalog["grantor"])
        after_states = predict_fence_states(fence_states, plan)
    else:
        after = read_catalog(session, records, params)
        after_roles, after_dbs = after["roles"], after["databases"]
        after_members = read_memberships(session, records)
        after_states, dummy = read_fence_states(session, records, params)
    session.close()

    results = []
    diff_before, diff_after = {}, {}
    any_changed = False
    for index, rec in enumerate(records):
        before_state = deployment_state(rec, catalog["roles"], catalog["databases"], before_members)
        after_state = deployment_state(rec, after_roles, after_dbs, after_members)
        # Passwords are not part of the compared state: a password set shows in the diff as such.
        if index in (schema_result.get("before") or {}):
            before_state["schema_role"] = schema_result["before"][index]
            after_state["schema_role"] = schema_result["after"][index]
        passwords_set = sorted(a[1] for i, a in plan.roles if i == index and a[0] == "set_password")
        if passwords_set:
            before_state["passwords_set"], after_state["passwords_set"] = [], passwords_set
        fence_after = None
        if rec["state"] == "present":
            before_state["fence"] = fence_summary(plan.fence_views.get(index))
            fence_after = fence_view_of(rec, after_dbs, after_states)
            after_state["fence"] = fence_summary(fence_after)
        changed = before_state != after_state or bool(per_dep[index])
        any_changed = any_changed or changed
        if changed:
            diff_before[rec["id"]] = before_state
            diff_after[rec["id"]] = after_state
        entry = {"id": rec["id"], "state": rec["state"], "changed": changed,
                 "actions": per_dep[index], "before": before_state, "after": after_state}
        entry.update(provision_outcome(rec, index, plan, per_dep[index], fence_after, check))
        for warning in entry.get("fence_warnings") or []:
            module.warn(warning)
        results.append(entry)
    helper_changed = bool(helper_result.get("changed"))
    if helper_changed:
        diff_before["fence_helper"] = {"statements": []}
        diff_after["fence_helper"] = {"statements": [
            text.splitlines()[0][:160] for text in helper_result.get("statements") or [] if text]}
    any_changed = any_changed or helper_changed or (check and bool(session.queries))
    result = dict(changed=any_changed, deployments=results, created_databases=created,
                  dropped_databases=dropped,
                  memberships=_plain(dict((k, membership_result.get(k)) for k in ("changed", "statements", "unconverged")
                                          if k in membership_result)),
                  fence_helper=_plain(helper_result), queries=session.queries,
                  time_ms=dict(timings, total_ms=int((time.monotonic() - started) * 1000)))
    if module._diff:
        result["diff"] = {"before": diff_before, "after": diff_after}
    module.exit_json(**result)


def _what_stayed(created, dropped, handed=()):
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


def _hand_over_databases(session, handover, check):
    """Managed PostgreSQL: make the connecting admin the owner of each database it is to drop,
    borrowing the current owner role for one committed transaction (given back inside it)."""
    borrows = _role_checks.borrow_statements(session, [owner for dummy, owner in handover])
    statements = [grant for dummy, grant, dummy2 in borrows]
    statements += [sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(db)) for db, dummy in handover]
    statements += [back for dummy, dummy2, back in borrows]
    if check:
        session.queries.extend(session.render(s) for s in statements)
        return
    session.conn.autocommit = False
    for statement in statements:
        session.execute(statement)
    session.conn.commit()
    session.conn.autocommit = True


def _borrowed_owners(records, plan, decommission_owner):
    """Roles a non-superuser admin must act as in the transaction: the owner role of every
    Deployment whose database changes owner (SET is needed for ALTER DATABASE ... OWNER TO) or
    CONNECT (the owner's privileges), and a decommission_owner that is not the admin itself."""
    roles = set()
    for index, action in plan.databases + plan.decommission:
        if action[0] in ("alter_database_owner", "revoke_connect", "grant_connect", "set_fence_record"):
            roles.add(records[index]["owner_role"])
            if action[0] == "alter_database_owner" and records[index]["state"] != "present" and decommission_owner:
                roles.add(decommission_owner)
    return sorted(roles)


def _ensure_helper(session, params, plan, check):
    # In check mode ensure_helper plans the grants for killer roles this run would create.
    # The killer roles of decommissioned Deployments leave the helper's registry in the same run.
    return _fence_helper.ensure_helper(session, params["fence_helper_schema"], params["fence_helper_owner_role"],
                                       plan.helper_killers, "present", check, unregister=plan.helper_unregister)


def _attribute_statements(texts, records, per_dep):
    """Give each membership statement to the Deployment whose roles it names."""
    for text in texts:
        for index, rec in enumerate(records):
            idents = set('"%s"' % n.replace('"', '""') for n in (rec["owner_role"], rec["killer_role"]))
            if any(i in text for i in idents):
                per_dep[index].append(text)
                break


def _predict_members(before_rows, plan, grantor):
    """Check mode: memberships after = current rows updated by the planned grants, minus
    the rows of dropped roles (DROP ROLE removes them)."""
    dropped = set(a[1] for dummy, a in plan.decommission if a[0] == "drop_role")
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
    return list(rows.values())


def _plain(value):
    """JSON-safe copy of a helper's result."""
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


if __name__ == "__main__":
    main()
