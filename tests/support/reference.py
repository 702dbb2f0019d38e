"""The vendor's reference SQL for one Deployment ("Customer-created database users", PostgreSQL
example), the setup the collection reproduces.

``SEED_EXAMPLE`` is the vendor's text as published (``<deployment>`` and ``commander_user``
as placeholders). Everything else is derived from it: each statement's names become
``psycopg2.sql.Identifier``s, so no identifier is ever formatted into SQL text.
"""

from psycopg2 import sql

from ansible_collections.dataplane.postgresql.plugins.module_utils.base.database import MIN_SERVER_VERSION_NUM

SEED_EXAMPLE = """\
CREATE ROLE airflow_db_<deployment>_owner NOLOGIN;
CREATE ROLE airflow_conn_killer_<deployment> NOLOGIN NOINHERIT;

ALTER DATABASE airflow_db_<deployment> OWNER TO airflow_db_<deployment>_owner;

REVOKE CONNECT ON DATABASE airflow_db_<deployment> FROM PUBLIC;
GRANT CONNECT ON DATABASE airflow_db_<deployment> TO dp1_user_<deployment>;
GRANT CONNECT ON DATABASE airflow_db_<deployment> TO dp2_user_<deployment>;

GRANT dp1_user_<deployment> TO airflow_conn_killer_<deployment> WITH INHERIT FALSE, SET FALSE;
GRANT dp2_user_<deployment> TO airflow_conn_killer_<deployment> WITH INHERIT FALSE, SET FALSE;

GRANT airflow_db_<deployment>_owner TO commander_user;
GRANT airflow_conn_killer_<deployment> TO commander_user;
"""

# The vendor's names -> the keys of a Deployment dict (longest first: one contains another).
NAME_KEYS = (
    ("airflow_db_<deployment>_owner", "owner"),
    ("airflow_conn_killer_<deployment>", "killer"),
    ("airflow_db_<deployment>", "database"),
    ("dp1_user_<deployment>", "dp1"),
    ("dp2_user_<deployment>", "dp2"),
    ("commander_user", "commander"),
)
MEMBER_OPTIONS = " WITH INHERIT FALSE, SET FALSE"


def _templates():
    """The seed's statements with ``{owner}``, ``{killer}``, ... placeholders."""
    out = []
    for line in SEED_EXAMPLE.splitlines():
        line = line.strip().rstrip(";")
        if not line:
            continue
        for name, key in NAME_KEYS:
            line = line.replace(name, "{%s}" % key)
        out.append(line)
    return out


TEMPLATES = _templates()


def deployment_names(ident, names=None):
    """The seed's names for the Deployment IDENT, as a dict with the keys ``id``, ``database``,
    ``owner``, ``killer``, ``dp1``, ``dp2``; ``names`` (the tests' per-test name maker) makes
    each one unique."""
    made = dict((key, name.replace("<deployment>", ident)) for name, key in NAME_KEYS if key != "commander")
    if names is not None:
        made = dict((key, names(value)) for key, value in made.items())
    made["id"] = ident
    return made


def reference_statements(dep, commander, member_options=True):
    """The seed's statements for the Deployment DEP (a dict as ``deployment_names`` makes) and
    the orchestrator login COMMANDER, as composed SQL.

    ``member_options``: True, the killer's grants as the seed has them (WITH INHERIT FALSE,
    SET FALSE: PostgreSQL 16 and later); False, the same grants without the options (what
    PostgreSQL 15 can take); None, the killer's grants left out.
    """
    idents = dict((key, sql.Identifier(dep[key])) for _name, key in NAME_KEYS if key != "commander")
    idents["commander"] = sql.Identifier(commander)
    out = []
    for template in TEMPLATES:
        if template.endswith(MEMBER_OPTIONS):
            if member_options is None:
                continue
            if not member_options:
                template = template[:-len(MEMBER_OPTIONS)]
        out.append(sql.SQL(template).format(**idents))
    return out


def reference_script(dep, commander, member_options=True):
    """``reference_statements`` as one composed script (statements joined by ``;``)."""
    return sql.SQL(";\n").join(reference_statements(dep, commander, member_options))


def setup_deployments(server, deps, commander, with_helper=True, helper_schema="dataplane_fence",
                      helper_owner="dataplane_fence_signaler", create_commander=True):
    """As postgres on SERVER (a ``tests.support.server.PgServer``): the orchestrator login
    COMMANDER (unless ``create_commander`` is false), then for each Deployment of DEPS (dicts as
    ``deployment_names`` makes) its database and two login roles and the seed's statements
    (without the killer's grants before PostgreSQL 16, which cannot take their options); last,
    in each database, tables ``t`` and ``lockme`` owned by the owner role, open to both logins.
    The other arguments are accepted for the callers' sake and unused."""
    conn = server.connect()
    cur = conn.cursor()
    version = server.sql("SELECT current_setting('server_version_num')::int")[0][0]
    member_options = True if version >= MIN_SERVER_VERSION_NUM else None
    if create_commander:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(commander)))
    for dep in deps:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dep["database"])))
        cur.execute(sql.SQL("; ").join(
            [sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(dep[plane])) for plane in ("dp1", "dp2")]
            + reference_statements(dep, commander, member_options)))
    conn.close()
    for dep in deps:  # a table the sessions can write to, owned by the owner role
        db = server.connect(dbname=dep["database"])
        db.cursor().execute(sql.SQL("; ").join(
            sql.SQL("CREATE TABLE {t} (src text); ALTER TABLE {t} OWNER TO {o}; GRANT ALL ON {t} TO {a}, {b}").format(
                t=sql.Identifier(table), o=sql.Identifier(dep["owner"]), a=sql.Identifier(dep["dp1"]),
                b=sql.Identifier(dep["dp2"])) for table in ("t", "lockme")))
        db.close()
