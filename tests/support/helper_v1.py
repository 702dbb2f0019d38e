"""The fence helper as version 0.1 of this collection installed it (helper version 1), frozen
here so the upgrade to the registry-based helper can be tested without the old code.

``install_v1(conn, schema, owner, killers)`` runs, as a superuser, the statements the 0.1
``fence_helper`` module ran on a fresh server (same order, same text)."""

from psycopg2 import sql

V1_FUNCTION_BODY = """
DECLARE
  v_killer oid;
BEGIN
  SELECT r.oid INTO v_killer FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) p_killer;
  IF v_killer IS NULL THEN
    RAISE EXCEPTION 'fence helper: role % does not exist', pg_catalog.quote_ident(p_killer)
      USING ERRCODE = '42704';
  END IF;
  IF NOT pg_catalog.pg_has_role(SESSION_USER, v_killer, 'USAGE') THEN
    RAISE EXCEPTION 'fence helper: permission denied: % does not have the privileges of role %',
      pg_catalog.quote_ident(SESSION_USER), pg_catalog.quote_ident(p_killer)
      USING ERRCODE = '42501';
  END IF;
  PERFORM pg_catalog.pg_stat_clear_snapshot();
  RETURN QUERY
    SELECT a.pid, a.usename, a.datname, a.application_name, a.client_addr, a.backend_start,
           CASE WHEN p_signal THEN pg_catalog.pg_terminate_backend(a.pid) ELSE false END
      FROM pg_catalog.pg_stat_activity a
      JOIN pg_catalog.pg_roles t ON t.oid OPERATOR(pg_catalog.=) a.usesysid
     WHERE NOT t.rolsuper
       AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                    WHERE m.roleid OPERATOR(pg_catalog.=) a.usesysid
                      AND m.member OPERATOR(pg_catalog.=) v_killer)
       AND (p_roles IS NULL OR a.usename OPERATOR(pg_catalog.=) ANY (p_roles))
       AND (p_databases IS NULL OR a.datname OPERATOR(pg_catalog.=) ANY (p_databases))
     ORDER BY a.pid;
END
"""


def install_v1(conn, schema, owner, killers):
    i = sql.Identifier
    fn = sql.SQL("{}.terminate_member_sessions").format(i(schema), )
    sig = sql.SQL("{}(name, name[], name[], boolean)").format(fn)
    grantees = sql.SQL(", ").join(i(k) for k in killers)
    cur = conn.cursor()
    for statement in [
            sql.SQL("CREATE ROLE {} NOLOGIN INHERIT NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS").format(i(owner)),
            sql.SQL("GRANT pg_signal_backend TO {} WITH INHERIT TRUE").format(i(owner)),
            sql.SQL("GRANT pg_read_all_stats TO {} WITH INHERIT TRUE").format(i(owner)),
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(i(schema), i(owner)),
            sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(i(schema)),
            sql.SQL("CREATE OR REPLACE FUNCTION {fn}(p_killer name, p_roles name[] DEFAULT NULL, "
                    "p_databases name[] DEFAULT NULL, p_signal boolean DEFAULT true) "
                    "RETURNS TABLE (pid integer, usename name, datname name, application_name text, "
                    "client_addr inet, backend_start timestamptz, terminated boolean) "
                    "LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
                    "AS {body}").format(fn=fn, body=sql.Literal(V1_FUNCTION_BODY)),
            sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sig, i(owner)),
            sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(sig),
            sql.SQL("COMMENT ON FUNCTION {} IS 'dataplane.postgresql fence helper version 1'").format(sig),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(i(schema), grantees),
            sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sig, grantees)]:
        cur.execute(statement)
