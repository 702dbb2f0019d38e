"""The fence helper's terminating function as this collection installed it in versions 3 and 4
(one named killer role per call; version 4 added standby_positions() next to it), frozen here so
that the fence's use of such a helper and the upgrade to version 5 can be tested without the old
code.

``install_v3_body(conn, schema, owner, version="3")`` replaces the body of the terminating
function of a helper installed by this collection with that body and the comment of VERSION
("3" or "4"), as a superuser (the owner stays)."""

from psycopg2 import sql

V3_FUNCTION_BODY = """
DECLARE
  v_killer oid;
  v_login boolean;
  v_members oid[];
BEGIN
  SELECT r.oid, r.rolcanlogin INTO v_killer, v_login
    FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) p_killer;
  IF v_killer IS NULL THEN
    RAISE EXCEPTION 'fence helper: role % does not exist', pg_catalog.quote_ident(p_killer)
      USING ERRCODE = '42704';
  END IF;
  IF v_login OR NOT EXISTS (SELECT 1 FROM {registry} k
                             WHERE k.role_oid OPERATOR(pg_catalog.=) v_killer
                               AND k.role_name OPERATOR(pg_catalog.=) p_killer) THEN
    RAISE EXCEPTION 'fence helper: permission denied: role % is not a registered killer role',
      pg_catalog.quote_ident(p_killer)
      USING ERRCODE = '42501';
  END IF;
  IF NOT pg_catalog.pg_has_role(SESSION_USER, v_killer, 'USAGE') THEN
    RAISE EXCEPTION 'fence helper: permission denied: % does not have the privileges of role %',
      pg_catalog.quote_ident(SESSION_USER), pg_catalog.quote_ident(p_killer)
      USING ERRCODE = '42501';
  END IF;
  SELECT pg_catalog.array_agg(DISTINCT r.oid) INTO v_members
    FROM pg_catalog.pg_auth_members m
    JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.roleid
   WHERE m.member OPERATOR(pg_catalog.=) v_killer
     AND NOT r.rolsuper
     AND (p_roles IS NULL OR r.rolname OPERATOR(pg_catalog.=) ANY (p_roles));
  IF v_members IS NULL THEN
    RETURN;
  END IF;
  PERFORM pg_catalog.pg_stat_clear_snapshot();
  RETURN QUERY
    SELECT a.pid, t.rolname, d.datname, a.application_name, a.client_addr, a.backend_start,
           CASE WHEN p_signal THEN pg_catalog.pg_terminate_backend(a.pid) ELSE false END
      FROM (SELECT b.id, pg_catalog.pg_stat_get_backend_pid(b.id) AS pid
              FROM pg_catalog.pg_stat_get_backend_idset() AS b(id)
             WHERE pg_catalog.pg_stat_get_backend_userid(b.id) OPERATOR(pg_catalog.=) ANY (v_members)) AS c
      CROSS JOIN LATERAL pg_catalog.pg_stat_get_activity(c.pid) AS a
      JOIN pg_catalog.pg_roles t ON t.oid OPERATOR(pg_catalog.=) a.usesysid
      LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) a.datid
     WHERE NOT t.rolsuper
       AND a.pid OPERATOR(pg_catalog.=) c.pid
       AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                    WHERE m.roleid OPERATOR(pg_catalog.=) a.usesysid
                      AND m.member OPERATOR(pg_catalog.=) v_killer)
       AND (p_roles IS NULL OR t.rolname OPERATOR(pg_catalog.=) ANY (p_roles))
       AND (p_databases IS NULL OR d.datname OPERATOR(pg_catalog.=) ANY (p_databases))
     ORDER BY a.pid;
END
"""


def install_v3_body(conn, schema, owner, version="3"):
    conn.autocommit = True
    cur = conn.cursor()
    ident = sql.Identifier
    cur.execute(sql.SQL("SET ROLE {}").format(ident(owner)))
    cur.execute(sql.SQL(
        "CREATE OR REPLACE FUNCTION {s}.terminate_member_sessions(p_killer name, p_roles name[] DEFAULT NULL,"
        " p_databases name[] DEFAULT NULL, p_signal boolean DEFAULT true)"
        " RETURNS TABLE(pid integer, usename name, datname name, application_name text, client_addr inet,"
        " backend_start timestamp with time zone, terminated boolean)"
        " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {body}").format(
            s=ident(schema), body=sql.Literal(V3_FUNCTION_BODY.replace(
                "{registry}", sql.SQL("{}.{}").format(ident(schema), ident("killer_roles")).as_string(conn)))))
    cur.execute(sql.SQL("COMMENT ON FUNCTION {}.terminate_member_sessions(name, name[], name[], boolean) IS {}")
                .format(ident(schema), sql.Literal("dataplane.postgresql fence helper version " + version)))
    cur.execute("RESET ROLE")
    cur.close()
