//! The statement guard: which guest statements the host sends at all. Pure and table-tested.
//!
//! Security: the host opens every call's transaction itself (`BEGIN READ ONLY` for a read
//! grant) and ends it itself. A read grant stays read-only only if the guest can neither end
//! that transaction nor change its session, so the guard refuses, before anything reaches the
//! server: transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `PREPARE
//! TRANSACTION`, …), session control (`SET`, `RESET`, `DISCARD`, `set_config(…)`, writes to
//! `pg_settings`), procedural and out-of-band statements (`DO`, `CALL`, `COPY`, `LISTEN`,
//! cursors, `LOCK`, `VACUUM`, …) and any string holding a second statement. It is one layer:
//! statements also go through the extended protocol (which runs exactly one statement) inside
//! the read-only transaction (which the server enforces, SQLSTATE 25006).
//!
//! The lexer knows comments (nested `/* */`, `--`), string literals (`'…'`, `E'…'` with
//! backslash escapes, `$tag$…$tag$`) and quoted identifiers, so a `;` or a keyword inside them
//! is not mistaken for code. Text it cannot lex (an unterminated literal) is refused.

/// First keywords the host refuses, with why. Compared case-insensitively after leading
/// whitespace, comments and parentheses.
const REFUSED: &[(&str, &str)] = &[
    ("begin", TX),
    ("start", TX),
    ("commit", TX),
    ("end", TX),
    ("rollback", TX),
    ("abort", TX),
    ("savepoint", TX),
    ("release", TX),
    ("prepare", TX),
    ("execute", SESSION),
    ("deallocate", SESSION),
    ("set", SESSION),
    ("reset", SESSION),
    ("discard", SESSION),
    ("show", SESSION),
    ("load", SESSION),
    ("declare", CURSOR),
    ("fetch", CURSOR),
    ("move", CURSOR),
    ("close", CURSOR),
    ("do", PROCEDURAL),
    ("call", PROCEDURAL),
    ("copy", OUT_OF_BAND),
    ("listen", OUT_OF_BAND),
    ("notify", OUT_OF_BAND),
    ("unlisten", OUT_OF_BAND),
    ("lock", OUT_OF_BAND),
    ("vacuum", OUT_OF_BAND),
    ("checkpoint", OUT_OF_BAND),
];

const TX: &str = "transactions are the host's: it opens one per call and commits it when the call \
                  succeeds (rolls it back otherwise)";
const SESSION: &str = "the session and its settings are the host's";
const CURSOR: &str = "cursors are not available: each statement returns all its rows";
const PROCEDURAL: &str = "procedures and anonymous code blocks can end or change the transaction";
const OUT_OF_BAND: &str = "the statement works outside one call's transaction";

/// Identifiers refused anywhere in a statement: they change session settings, which include
/// `transaction_read_only`.
const REFUSED_NAMES: &[&str] = &["set_config", "pg_settings"];

/// What the guard learned about a statement it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// A `SELECT`, `VALUES`, `TABLE` or `EXPLAIN`: it changes no rows (its command tag counts
    /// the rows it returned).
    pub rows_only: bool,
}

/// Checks one guest statement; `Err` says why the host refuses it.
pub fn check(statement: &str) -> Result<Checked, String> {
    let tokens = lex(statement)?;
    let mut code = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Open | Token::Semicolon));
    let Some(first) = code.next() else {
        return Err("the statement is empty".into());
    };
    if let Token::Word(word) = first
        && let Some((_, why)) = REFUSED.iter().find(|(k, _)| k == word)
    {
        return Err(format!("`{}` is refused: {why}", word.to_uppercase()));
    }
    if let Some(end) = tokens.iter().position(|t| *t == Token::Semicolon)
        && tokens[end..].iter().any(|t| *t != Token::Semicolon)
    {
        return Err("the string holds more than one statement; send each on its own".into());
    }
    for t in &tokens {
        match t {
            Token::Word(w) | Token::Quoted(w) if REFUSED_NAMES.contains(&w.as_str()) => {
                return Err(format!("`{w}` is refused: {SESSION}"));
            }
            Token::UnicodeQuoted => {
                return Err("Unicode-escaped identifiers (U&\"…\") are refused".into());
            }
            _ => {}
        }
    }
    let rows_only = matches!(first, Token::Word(w) if matches!(w.as_str(), "select" | "values" | "table" | "explain"));
    Ok(Checked { rows_only })
}

/// What the guard looks at; literals, comments, numbers and operators are dropped.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// An unquoted word, ASCII-lowercased.
    Word(String),
    /// A quoted identifier's text, ASCII-lowercased (refusal is conservative).
    Quoted(String),
    /// `U&"…"`: an identifier the guard cannot read without decoding escapes.
    UnicodeQuoted,
    Semicolon,
    /// `(`, skipped before the first keyword (`(SELECT …)`).
    Open,
    /// Anything else that is code (operators, numbers, parameters, literals).
    Other,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while let Some(c) = at(i) {
        match c {
            _ if c.is_whitespace() => i += 1,
            '-' if at(i + 1) == Some('-') => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                let mut depth = 0usize;
                loop {
                    match (at(i), at(i + 1)) {
                        (Some('/'), Some('*')) => {
                            depth += 1;
                            i += 2;
                        }
                        (Some('*'), Some('/')) => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        (Some(_), _) => i += 1,
                        (None, _) => return Err("unterminated /* comment".into()),
                    }
                }
            }
            '\'' => {
                i = skip_string(&chars, i, false)?;
                tokens.push(Token::Other);
            }
            '"' => {
                let (text, next) = quoted_ident(&chars, i)?;
                tokens.push(Token::Quoted(text.to_ascii_lowercase()));
                i = next;
            }
            '$' => {
                i = match dollar_tag(&chars, i) {
                    Some(tag) => skip_dollar_string(&chars, i, &tag)?,
                    None => i + 1, // `$1` and friends
                };
                tokens.push(Token::Other);
            }
            ';' => {
                tokens.push(Token::Semicolon);
                i += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            _ if is_ident_start(c) => {
                let start = i;
                while at(i).is_some_and(is_ident_char) {
                    i += 1;
                }
                let word: String = chars[start..i]
                    .iter()
                    .collect::<String>()
                    .to_ascii_lowercase();
                match (word.as_str(), at(i), at(i + 1)) {
                    // E'…' (backslash escapes); U&'…', B'…', X'…', N'…' need no special care.
                    ("e", Some('\''), _) => {
                        i = skip_string(&chars, i, true)?;
                        tokens.push(Token::Other);
                    }
                    ("u", Some('&'), Some('"')) => {
                        i = quoted_ident(&chars, i + 1)?.1;
                        tokens.push(Token::UnicodeQuoted);
                    }
                    _ => tokens.push(Token::Word(word)),
                }
            }
            _ => {
                tokens.push(Token::Other);
                i += 1;
            }
        }
    }
    Ok(tokens)
}

/// Skips the `'…'` literal at `i` (`''` doubles a quote; with `backslash`, `\` escapes).
fn skip_string(chars: &[char], mut i: usize, backslash: bool) -> Result<usize, String> {
    i += 1;
    loop {
        match chars.get(i) {
            None => return Err("unterminated string literal".into()),
            Some('\\') if backslash => i += 2,
            Some('\'') if chars.get(i + 1) == Some(&'\'') => i += 2,
            Some('\'') => return Ok(i + 1),
            Some(_) => i += 1,
        }
    }
}

/// The text of the `"…"` identifier at `i` and the index after it.
fn quoted_ident(chars: &[char], mut i: usize) -> Result<(String, usize), String> {
    let mut text = String::new();
    i += 1;
    loop {
        match chars.get(i) {
            None => return Err("unterminated quoted identifier".into()),
            Some('"') if chars.get(i + 1) == Some(&'"') => {
                text.push('"');
                i += 2;
            }
            Some('"') => return Ok((text, i + 1)),
            Some(c) => {
                text.push(*c);
                i += 1;
            }
        }
    }
}

/// The `$tag$` opening a dollar-quoted string at `i`, if it is one (not `$1`).
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    let mut j = i + 1;
    if chars.get(j).is_some_and(|c| is_ident_start(*c)) {
        while chars.get(j).is_some_and(|c| is_ident_char(*c) && *c != '$') {
            j += 1;
        }
    }
    (chars.get(j) == Some(&'$')).then(|| chars[i..=j].iter().collect())
}

fn skip_dollar_string(chars: &[char], i: usize, tag: &str) -> Result<usize, String> {
    let tag: Vec<char> = tag.chars().collect();
    let mut j = i + tag.len();
    while j + tag.len() <= chars.len() {
        if chars[j..j + tag.len()] == tag[..] {
            return Ok(j + tag.len());
        }
        j += 1;
    }
    Err("unterminated dollar-quoted string".into())
}

#[cfg(test)]
mod tests {
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
            "WITH x AS (INSERT INTO t VALUES ($1) RETURNING id) SELECT id FROM x",
            "(SELECT 1) UNION (SELECT 2)",
            "  -- leading comment\n  /* and /* nested */ one */ SELECT 1",
            "SELECT 1;",
            "SELECT 1;  -- trailing comment\n ;",
            "SELECT 'a;b', \"odd;name\", $$x; COMMIT$$, $t$ ; $t$ FROM t",
            "SELECT 'it''s; fine', E'esc\\'; still', U&'\\0041;'",
            "SELECT offset_value, set_configuration, a$b FROM t",
            "SELECT status FROM t WHERE note = 'set_config('",
            "EXPLAIN SELECT 1",
            "VALUES (1), (2)",
            "SELECT now() AT TIME ZONE 'UTC'",
            "SELECT to_char(ts, 'YYYY-MM-DD\"T\"HH24') FROM t",
            "CREATE INDEX IF NOT EXISTS i ON t (c)",
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
    fn row_returning_statements_are_told_apart() {
        let rows_only = |sql: &str| check(sql).map(|c: Checked| c.rows_only);
        assert_eq!(rows_only("select 1"), Ok(true));
        assert_eq!(rows_only("/* c */ (VALUES (1))"), Ok(true));
        assert_eq!(
            rows_only("INSERT INTO t VALUES (1) RETURNING id"),
            Ok(false)
        );
        assert_eq!(
            rows_only("WITH d AS (DELETE FROM t RETURNING 1) SELECT 1"),
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
}
