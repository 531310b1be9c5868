use super::{Checked, check};

#[track_caller]
fn allowed(sql: &str) {
    if let Err(e) = check(sql) {
        panic!("{sql:?} should be allowed, was refused: {e}");
    }
}

#[track_caller]
fn refused(sql: &str, why: &str) {
    match check(sql) {
        Ok(_) => panic!("{sql:?} should be refused"),
        Err(e) => assert!(e.contains(why), "{sql:?}: {e:?} should mention {why:?}"),
    }
}

#[test]
fn data_statements_are_allowed() {
    for sql in [
        "SELECT 1",
        "select * from backlog_items where id = $1",
        "INSERT INTO backlog_items (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id",
        "UPDATE backlog_items SET status = $1 WHERE id = $2",
        "DELETE FROM backlog_items WHERE id = $1",
        "WITH x AS (INSERT INTO backlog_events (id) VALUES ($1) RETURNING id) SELECT id FROM x",
        "WITH item AS (INSERT INTO backlog_items (id) VALUES ($1) RETURNING 1) \
         INSERT INTO backlog_events (id) VALUES ($2) ON CONFLICT (id) DO NOTHING",
        "(SELECT 1) UNION (SELECT 2)",
        "  -- leading comment\n  /* and /* nested */ one */ SELECT 1",
        "SELECT 1;",
        "SELECT 1;  -- trailing comment\n ;",
        "SELECT 'a;b', \"odd;name\", $$x; COMMIT$$, $t$ ; $t$ FROM backlog_items",
        "SELECT 'it''s; fine', E'esc\\'; still'",
        "SELECT offset_value, set_configuration, a$b FROM backlog_items",
        "SELECT status FROM backlog_items WHERE note = 'set_config('",
        "SELECT 1 FROM public.backlog_items WHERE title = 'query_to_xml(''x'', true)'",
        "VALUES (1), (2)",
        "SELECT now() AT TIME ZONE 'UTC'",
        "SELECT to_char(ts, 'YYYY-MM-DD\"T\"HH24') FROM backlog_events",
        "SELECT pg_catalog.count(*) FROM backlog_items",
        "SELECT e->>'id' FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n)",
        "WITH a AS (SELECT 1 AS n), b AS (SELECT n FROM a) SELECT n FROM b",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
         SELECT n FROM r",
        "SELECT (SELECT count(*) FROM backlog_events e WHERE e.item_id = i.id) \
         FROM backlog_items i",
        "SELECT current_user = session_user, current_setting('role'), pg_backend_pid()",
        // A write call's read-modify-write: the store locks the rows it reads.
        "SELECT id, title FROM backlog_items WHERE id = $1 FOR UPDATE",
        "SELECT id FROM backlog_items WHERE dedupe_key IN ($1, $2) FOR UPDATE",
        "SELECT id FROM backlog_items WHERE id = $1 FOR UPDATE OF backlog_items",
        // The dashboard reads the counts the schema's triggers keep, and whether anything
        // committed since its last answer.
        "SELECT pg_current_snapshot()::text",
        "SELECT service, sum(n)::int8 FROM backlog_counts WHERE env = $1 GROUP BY service",
        r#"WITH per AS (SELECT service, count(*) FILTER (WHERE status = 'open') AS open
             FROM backlog_items WHERE env = $1 GROUP BY service)
           SELECT coalesce(sum(open), 0)::int8,
                  (SELECT coalesce(json_agg(json_build_array(service, open) ORDER BY open
                          DESC, service COLLATE "C"), '[]')::text
                     FROM (SELECT service, open FROM per ORDER BY open DESC LIMIT $2) top)
             FROM per"#,
        "WITH page AS (SELECT id, priority, due_date, count(*) OVER () AS total \
         FROM backlog_items ORDER BY priority COLLATE \"C\" LIMIT $1 OFFSET $2) \
         SELECT i.id, page.total FROM page JOIN backlog_items i ON i.id = page.id",
        "WITH page AS (SELECT id, priority, due_date, count(*) OVER () AS total \
         FROM backlog_items ORDER BY priority COLLATE \"C\" LIMIT $1 OFFSET $2), \
         sized AS (SELECT page.id, page.total, sum(octet_length(i.meta::text) + 512) OVER \
         (ORDER BY page.priority COLLATE \"C\", page.id COLLATE \"C\" ROWS UNBOUNDED \
         PRECEDING) - (octet_length(i.meta::text) + 512) AS bytes_before \
         FROM page JOIN backlog_items i ON i.id = page.id) \
         SELECT i.id, sized.total FROM sized JOIN backlog_items i ON i.id = sized.id \
         WHERE sized.bytes_before < 8388608 ORDER BY i.priority COLLATE \"C\"",
    ] {
        allowed(sql);
    }
}

#[test]
fn transaction_and_session_control_is_refused_in_any_case_and_after_comments() {
    let keywords = [
        "BEGIN",
        "START TRANSACTION",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT s",
        "RELEASE SAVEPOINT s",
        "PREPARE TRANSACTION 'x'",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "DEALLOCATE ALL",
        "SET transaction_read_only = off",
        "SET TRANSACTION READ WRITE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "RESET ALL",
        "DISCARD ALL",
        "SHOW transaction_read_only",
        "LOAD 'x'",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "FETCH ALL c",
        "MOVE c",
        "CLOSE c",
        "DO $$ BEGIN COMMIT; END $$",
        "CALL p()",
        "COPY t FROM STDIN",
        "LISTEN ch",
        "NOTIFY ch",
        "UNLISTEN *",
        "LOCK TABLE t",
        "VACUUM t",
        "CHECKPOINT",
    ];
    for sql in keywords {
        let first = sql.split(' ').next().unwrap();
        let why = format!("`{first}` is refused");
        refused(sql, &why);
        refused(&sql.to_lowercase(), &why);
        refused(
            &format!("  /* hi */ -- there\n\t{}", sql.to_lowercase()),
            &why,
        );
        refused(&format!("((/**/{sql}"), &why);
        let mixed: String = sql
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect();
        refused(&mixed, &why);
    }
}

#[test]
fn several_statements_are_refused() {
    for sql in [
        "SELECT 1; INSERT INTO t VALUES (1)",
        "SELECT 1;COMMIT",
        "SELECT 1; /* c */ ; BEGIN",
        "SELECT ';' ; SELECT 2",
        "SELECT $$;$$; SELECT 2",
        "SELECT 1 -- c\n; x",
    ] {
        refused(sql, "more than one statement");
    }
    refused("BEGIN; INSERT INTO t VALUES (1)", "`BEGIN` is refused");
}

#[test]
fn session_settings_are_refused_anywhere() {
    for sql in [
        "SELECT set_config('transaction_read_only', 'off', false)",
        "SELECT pg_catalog.SET_CONFIG ('statement_timeout', '0', false)",
        "SELECT \"set_config\"('a', 'b', false)",
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'transaction_read_only'",
        "WITH x AS (SELECT 1) SELECT set_config/**/('a','b',true) FROM x",
    ] {
        refused(sql, "is refused: the session");
    }
    refused(
        "SELECT U&\"\\0073et_config\"('a','b',false)",
        "Unicode-escaped",
    );
}

#[test]
fn functions_that_run_sql_text_switch_roles_or_lock_are_refused_anywhere() {
    let switch = "select set_config(''role'',''auditor'',false)";
    for sql in [
        format!("SELECT query_to_xml('{switch}', true, true, '')"),
        format!("SELECT * FROM query_to_xml('{switch}', true, true, '') AS x"),
        format!("SELECT ts_stat('{switch}')"),
        format!("SELECT * FROM ts_stat('{switch}')"),
        "SELECT cursor_to_xml('c', 1, false, true, '')".to_owned(),
        "SELECT database_to_xml(true, true, '')".to_owned(),
        "SELECT table_to_xml('backlog_items', true, true, '')".to_owned(),
        "SELECT dblink_exec('dbname=x', 'SET ROLE auditor')".to_owned(),
        "SELECT * FROM dblink('dbname=x', 'select 1') AS t(x int)".to_owned(),
        "SELECT pg_advisory_lock(7089056601489762081)".to_owned(),
        "SELECT pg_try_advisory_lock(1)".to_owned(),
        "SELECT pg_catalog.pg_advisory_xact_lock(1)".to_owned(),
        "SELECT lo_import('/etc/passwd')".to_owned(),
        "SELECT pg_read_file('/etc/passwd')".to_owned(),
        "SELECT count(*) FROM backlog_items WHERE EXISTS \
         (SELECT 1 FROM (SELECT pg_advisory_lock(1)) x)"
            .to_owned(),
    ] {
        refused(&sql, "is refused");
    }
}

#[test]
fn only_allowlisted_functions_and_tables_pass_the_parser() {
    for (sql, why) in [
        ("SELECT pg_sleep(1)", "function `pg_sleep`"),
        (
            "SELECT nextval('backlog_events_seq_seq')",
            "function `nextval`",
        ),
        ("SELECT public.count(*)", "function `public.count`"),
        (
            "SELECT x FROM generate_series(1, 3) x",
            "function `generate_series`",
        ),
        (
            "SELECT (SELECT max(x) FROM (SELECT pg_terminate_backend(1) AS x) y)",
            "function `pg_terminate_backend`",
        ),
        (
            "SELECT 1 FROM backlog_items WHERE id IN (SELECT xmlagg(x) FROM backlog_events)",
            "function `xmlagg`",
        ),
        ("SELECT * FROM pg_authid", "table `pg_authid`"),
        (
            "SELECT * FROM pg_catalog.pg_roles",
            "table `pg_catalog.pg_roles`",
        ),
        (
            "SELECT * FROM other.backlog_items",
            "table `other.backlog_items`",
        ),
        ("SELECT * FROM scheduler_runs", "table `scheduler_runs`"),
        (
            "WITH x AS (SELECT * FROM pg_user) SELECT * FROM x",
            "table `pg_user`",
        ),
        (
            "SELECT (WITH pg_user AS (SELECT 1) SELECT 1), (SELECT 1 FROM pg_user)",
            "table `pg_user`",
        ),
        (
            "WITH x AS (SELECT * FROM pg_shadow), pg_shadow AS (SELECT 1) SELECT * FROM x",
            "not defined before",
        ),
        (
            "INSERT INTO backlog_schema_version VALUES (2)",
            "writes go only",
        ),
        ("DELETE FROM scheduler_runs", "writes go only"),
        // The dashboard's counts are the schema triggers' to keep, not a guest's to write.
        ("UPDATE backlog_counts SET n = 0", "writes go only"),
        (
            "INSERT INTO backlog_counts VALUES ('prod', 'api', 'open', 'P0', 1000)",
            "writes go only",
        ),
        ("DELETE FROM backlog_counts", "writes go only"),
        (
            "SELECT * FROM backlog_items FOR UPDATE OF pg_class",
            "table `pg_class`",
        ),
        (
            "UPDATE backlog_items SET title = (SELECT rolname FROM pg_roles LIMIT 1)",
            "table `pg_roles`",
        ),
        ("SELECT * INTO evil FROM backlog_items", "SELECT … INTO"),
        ("CREATE TABLE evil (x int)", "is refused"),
        ("CREATE INDEX i ON backlog_items (title)", "is refused"),
        ("DROP TABLE backlog_items", "is refused"),
        ("ALTER ROLE bridge SET role = 'auditor'", "is refused"),
        ("TRUNCATE backlog_items", "is refused"),
        ("GRANT auditor TO bridge", "is refused"),
        ("EXPLAIN ANALYZE DELETE FROM backlog_items", "is refused"),
        ("SET ROLE auditor", "`SET` is refused"),
        ("SET SESSION AUTHORIZATION auditor", "`SET` is refused"),
        ("RESET ROLE", "`RESET` is refused"),
        ("SELECT 1 +", "does not parse"),
    ] {
        refused(sql, why);
    }
}

#[test]
fn row_returning_statements_are_told_apart() {
    let rows_only = |sql: &str| check(sql).map(|c: Checked| c.rows_only);
    assert_eq!(rows_only("select 1"), Ok(true));
    assert_eq!(rows_only("/* c */ (VALUES (1))"), Ok(true));
    assert_eq!(
        rows_only("INSERT INTO backlog_events VALUES (1) RETURNING id"),
        Ok(false)
    );
    assert_eq!(
        rows_only("WITH d AS (DELETE FROM backlog_items RETURNING 1) SELECT 1"),
        Ok(false)
    );
}

#[test]
fn unlexable_and_empty_text_is_refused() {
    refused("SELECT 'open", "unterminated string");
    refused("SELECT E'\\'", "unterminated string");
    refused("SELECT 1 /* open", "unterminated /*");
    refused("SELECT \"open", "unterminated quoted");
    refused("SELECT $x$ open", "unterminated dollar");
    refused("", "empty");
    refused("  -- only a comment", "empty");
    refused(";", "empty");
}
