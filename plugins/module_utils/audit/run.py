# Copyright: dataplane.postgresql contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of the ``deployment_audit`` module: read the catalog in one read-only snapshot,
compare it with the Deployment records (``audit.py``, ``parity.py``), never change anything."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import code_objects as _code
from ..model import deployment as _deployment
from . import login_passwords as _passwords
from . import replication as _replication
from ..server import parity as _parity
from .checks import audit_deployments, overall_summary, read_catalog, summary_line
from ..base.database import MIN_SERVER_VERSION_NUM, Session, connect, connect_database, version_label
from ..server.helper import helper_status
from ..base.results import Timings

# What plugins/modules/ takes from this entry point (a module imports its action's entry point
# only; see docs/architecture.md).
from ..base.database import connection_argument_spec
from ..model.deployment import records_argument_spec
from ..server.helper import DEFAULT_OWNER_ROLE, DEFAULT_SCHEMA

__all__ = ["run", "connection_argument_spec", "records_argument_spec", "DEFAULT_OWNER_ROLE", "DEFAULT_SCHEMA"]

READ_ONLY_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


def input_problems(records, params):
    """The records' problems (deployment.record_problems), the helper options' and the
    allow-list's. Pure."""
    problems = _deployment.record_problems(records) + _deployment.name_problems([
        ("identifier", params.get("helper_schema"), "helper_schema"),
        ("role", params.get("helper_owner_role"), "helper_owner_role")])
    try:
        _code.parse_allowed(params.get("allowed_objects"))
    except _code.AllowedObjectError as exc:
        problems.append(str(exc))
    return problems + _replication.input_problems(params)


def read(module, session, records):
    """Catalog facts (and parity facts) in one consistent snapshot that refuses any write."""
    parity_facts = None
    try:
        session.run(READ_ONLY_SNAPSHOT)
        session.queries.append(READ_ONLY_SNAPSHOT)
        facts = read_catalog(session, records, module.params["helper_schema"], helper_status,
                             helper_owner_role=module.params["helper_owner_role"])
        if module.params["parity"]:
            parity_facts = _parity.read_facts(session, records, facts["server_version_num"])
            session.queries.extend(q.strip() for q in (_parity.ROLES_QUERY, _parity.MEMBERSHIPS_QUERY_16,
                                                       _parity.SETTINGS_QUERY, _parity.SHDEPEND_QUERY))
        # The metadata databases the login may connect to, for code_objects.
        metadata_databases = sorted(set(r["database"] for r in records
                                        if r["state"] == "present" and r["database"] in facts["databases"]))
        facts["replication"] = _replication.read_server_facts(session)
        facts["code_connect"] = _code.read_connect_privileges(session, metadata_databases)
        if metadata_databases:
            session.queries.append(_code.CONNECT_QUERY)
        # Only when passwords were given; the verifiers never leave read_facts.
        facts["login_passwords"] = _passwords.read_facts(session, records)
        if facts["login_passwords"] is not None:
            session.queries.append(_passwords.READABLE_QUERY)
            if facts["login_passwords"]["readable"]:
                session.queries.append(_passwords.VERIFIERS_QUERY)
    except Exception as exc:  # a driver error: report it with what ran
        session.fail("audit failed while reading the catalog: %s" % exc)
    finally:
        try:
            session.conn.rollback()
        except Exception:
            pass
    return facts, parity_facts


def _inside_databases(module, session, records, facts, parity_facts):
    """The reads inside the metadata databases: one short connection to each one the login may
    connect to (at most code_objects.WORKERS at a time) for its code objects and, on the same
    connection, parity's object names there (only where something drifted). Returns (code
    objects found, errors, databases skipped for lack of CONNECT, parity facts without
    temporary objects, names)."""
    readable = sorted(db for db, can in facts["code_connect"].items() if can)
    skipped = sorted(db for db, can in facts["code_connect"].items() if not can)
    if skipped:
        module.warn("code objects not checked in %s: %s holds no CONNECT privilege there (audit as "
                    "commander_user or a superuser to check them)" % (", ".join(skipped), facts["connected_as"]))
    present = [r for r in records if r["state"] == "present"]
    wanted = _parity.flagged_objects(parity_facts, present) if parity_facts is not None else {}

    def name_objects(database, db_session):
        if database not in wanted:
            return {}, set()
        return _parity.describe_objects(lambda dummy: db_session, {database: wanted[database]})

    found, errors, described = _code.read_databases(module, readable, name_objects)
    session.queries.extend(_code.CODE_OBJECTS_QUERY.strip() for dummy in readable)
    names, temporary = {}, set()
    if parity_facts is not None:
        session.queries.extend(_parity.DESCRIBE_QUERY.strip() for dummy in wanted)
        for database_names, database_temporary in described.values():
            names.update(database_names)
            temporary |= database_temporary
        rest = dict((db, items) for db, items in wanted.items() if db not in described)
        if rest:  # not reached above (no CONNECT, or an error): one connection each, as before
            more_names, more_temporary = _parity.describe_objects(
                lambda db: connect_database(module, db, fail=False), rest)
            names.update(more_names)
            temporary |= more_temporary
        # Temporary objects of live sessions are left out (they end with their session).
        parity_facts = _parity.without_temporary(parity_facts, temporary)
    return found, errors, skipped, parity_facts, names


def run(module):
    """The whole deployment_audit run; exits the module."""
    problems = input_problems(module.params["deployments"], module.params)
    if problems:
        _deployment.refuse_records(module, problems)
    records = [_deployment.normalise(r) for r in module.params["deployments"]]

    timings = Timings()
    session = Session(module, connect(module))
    facts, parity_facts = read(module, session, records)
    session.close()
    timings.mark("read")

    results, overall = audit_deployments(records, facts)
    results, overall = _passwords.merge_findings(results, records, facts.get("login_passwords"), summary_line,
                                                 overall_summary, facts["connected_as"])
    found, errors, skipped, parity_facts, names = _inside_databases(module, session, records, facts, parity_facts)
    if parity_facts is not None:
        results, overall = _parity.merge_findings(results, records, parity_facts, names, summary_line,
                                                  overall_summary)
    results, overall = _code.merge_findings(results, records, found, errors,
                                            _code.parse_allowed(module.params.get("allowed_objects")),
                                            summary_line, overall_summary, facts["connected_as"], skipped)
    results, overall, replication = _replication.merge_findings(module, results, records, facts, summary_line,
                                                                overall_summary)
    timings.mark("compare")
    version = facts["server_version_num"]
    if version < MIN_SERVER_VERSION_NUM:
        module.warn("PostgreSQL %s cannot record the INHERIT/SET membership options the model needs "
                    "(PostgreSQL %s or newer); every Deployment reports a server_version finding"
                    % (version_label(version), version_label(MIN_SERVER_VERSION_NUM).split(".")[0]))
    helper = dict((k, v) for k, v in (facts.get("helper") or {}).items() if k != "function")
    timing_dict = timings.as_dict()
    _deployment.exit_json(
        module,
        changed=False,
        deployments=results,
        drift=overall["drift"],
        drifted=overall["drifted"],
        fence_capable=overall["fence_capable"],
        fence_incapable=overall["fence_incapable"],
        summary=[r["summary"] for r in results],
        server_version=version_label(version),
        connected_as=facts["connected_as"],
        helper=helper,
        replication=replication,
        queries=session.queries,
        timings=timing_dict,
        elapsed_ms=timing_dict["total_ms"],
    )
