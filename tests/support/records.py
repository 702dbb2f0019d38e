"""The fence state record in a metadata database's comment (docs/fence-state.md), read and
written by the tests directly in the catalog."""

import json

from psycopg2 import sql

RECORD_PREFIX = "dataplane.postgresql fence state: "


def database_comment(server, database):
    """The comment of DATABASE (None when it has none)."""
    return server.sql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                      (database,))[0][0]


def record_of(server, database):
    """The fence state record in the database's comment, read as JSON here (not through the
    collection's parser); None when there is none."""
    for line in (database_comment(server, database) or "").split("\n"):
        if line.startswith(RECORD_PREFIX):
            return json.loads(line[len(RECORD_PREFIX):])
    return None


def parsed_record(server, database):
    """The record as the collection's own parser (module_utils/model/fence_record.py) reads it."""
    from ansible_collections.dataplane.postgresql.plugins.module_utils.model import fence_record
    return fence_record.parse_record(database_comment(server, database))


def set_comment(server, database, text):
    """COMMENT ON DATABASE (NULL for None)."""
    server.sql(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(database), sql.Literal(text) if text is not None else sql.SQL("NULL")))
