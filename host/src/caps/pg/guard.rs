//! The statement guard: which guest statements the host sends at all. Pure and table-tested.
//!
//! Security: the guard is one layer, not the boundary. The host opens every call's
//! transaction itself (`BEGIN READ ONLY` for a read grant, which the server enforces, SQLSTATE
//! 25006), sends each statement through the extended protocol (exactly one statement), and
//! resets and verifies the session between calls (`pool`). The guard narrows what reaches the
//! server to what the backlog store needs, as an ALLOWLIST checked on a real SQL parse
//! (`sqlparser`, PostgreSQL dialect) of the whole statement, every subquery and CTE included:
//!
//! - statements: `SELECT` (and `VALUES`, `TABLE`, `WITH …`), `INSERT`, `UPDATE`, `DELETE`;
//!   nothing else (no DDL, `SET`/`RESET`, `COPY`, `LOCK`, `EXPLAIN`, `SELECT … INTO`, …);
//! - tables: the backlog's own ([`TABLES`]; writes only to [`WRITABLE_TABLES`]) and the
//!   statement's own CTEs, in scope;
//! - functions: [`FUNCTIONS`] (aggregates, date, text and JSON functions that only compute);
//!   none that runs SQL text (`query_to_xml`, `ts_stat`, `cursor_to_xml`, `dblink`, …),
//!   changes the session (`set_config`) or takes locks (`pg_advisory_lock`, …).
//!
//! Text that does not parse is refused. Because a parser that is not the server's could read
//! some odd text differently from the server, a second, independent check runs first on the
//! server's lexical rules: the lexer below knows comments (nested `/* */`, `--`), string
//! literals (`'…'`, `E'…'` with backslash escapes, `$tag$…$tag$`) and quoted identifiers, and
//! refuses a first keyword of transaction, session or out-of-band control, a second
//! statement, and any code word naming a function that runs SQL text, changes the session or
//! takes an advisory lock ([`REFUSED_NAMES`], [`REFUSED_PREFIXES`]).

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FromTable, ObjectName, ObjectNamePart, Query, Select, Statement, TableFactor,
    TableObject, Visit, Visitor, visit_relations,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

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
const NOT_ALLOWED: &str = "only SELECT, INSERT, UPDATE and DELETE on the backlog's tables are \
                           allowed";

/// Code words refused anywhere in a statement (the lexer's check): they change session
/// settings (which include `transaction_read_only` and `role`), or run SQL text they are given.
const REFUSED_NAMES: &[&str] = &[
    "set_config",
    "pg_settings",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "ts_stat",
    "ts_rewrite",
];

/// Prefixes of code words refused anywhere: SQL-text runners, remote links, advisory locks,
/// large objects, files.
const REFUSED_PREFIXES: &[&str] = &[
    "database_to_xml",
    "schema_to_xml",
    "table_to_xml",
    "dblink",
    "pg_advisory",
    "pg_try_advisory",
    "lo_",
    "pg_read_",
    "pg_ls_",
];

/// The tables a guest statement may name (unqualified, or qualified `public.`).
pub const TABLES: &[&str] = &[
    "backlog_items",
    "backlog_events",
    "backlog_counts",
    "backlog_due_counts",
    "backlog_schema_version",
];

/// The tables a guest statement may INSERT into, UPDATE or DELETE from. The scheduler's
/// `scheduler_runs` is not here: only the host writes it, through its own connection.
pub const WRITABLE_TABLES: &[&str] = &["backlog_items", "backlog_events"];

/// The functions a guest statement may call (unqualified, or qualified `pg_catalog.`): what
/// the backlog store uses, and functions of the same kinds that only compute a value from
/// their arguments or read the call's own session (`current_setting`, `pg_backend_pid`) or
/// which transactions have committed (`pg_current_snapshot`).
#[rustfmt::skip]
pub const FUNCTIONS: &[&str] = &[
    // aggregates and window functions
    "count", "sum", "min", "max", "avg", "json_agg", "jsonb_agg", "json_object_agg",
    "jsonb_object_agg", "string_agg", "array_agg", "bool_and", "bool_or", "every",
    "row_number", "rank", "dense_rank", "lag", "lead", "first_value", "last_value",
    // conditionals
    "coalesce", "nullif", "greatest", "least",
    // time
    "now", "current_timestamp", "current_date", "localtimestamp", "statement_timestamp",
    "transaction_timestamp", "date_trunc", "date_part", "extract", "to_char", "to_date",
    "to_timestamp", "age", "make_date", "make_interval",
    // text
    "lower", "upper", "length", "char_length", "octet_length", "btrim", "ltrim", "rtrim", "trim", "substr",
    "substring", "replace", "position", "strpos", "concat", "concat_ws", "left", "right",
    "split_part", "starts_with",
    // numbers
    "abs", "round", "floor", "ceil", "ceiling", "mod",
    // JSON that reads or builds values
    "json_build_array", "json_build_object", "jsonb_build_array", "jsonb_build_object",
    "to_json", "to_jsonb", "json_array_length", "jsonb_array_length", "json_array_elements",
    "json_array_elements_text", "jsonb_array_elements", "jsonb_array_elements_text",
    "json_each", "json_each_text", "jsonb_each", "jsonb_each_text", "json_object_keys",
    "jsonb_object_keys", "json_typeof", "jsonb_typeof", "json_extract_path",
    "json_extract_path_text", "jsonb_extract_path", "jsonb_extract_path_text",
    "jsonb_strip_nulls", "jsonb_pretty",
    // arrays
    "unnest", "array_length", "cardinality", "array_position",
    // the call's own session, read only
    "current_setting", "pg_backend_pid", "current_user", "session_user", "current_role",
    // which transactions have committed (the dashboard's reuse of its last answer)
    "pg_current_snapshot",
];

/// What the guard learned about a statement it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// A `SELECT`, `VALUES` or `TABLE` without a data-modifying CTE: it changes no rows (its
    /// command tag counts the rows it returned).
    pub rows_only: bool,
}

/// Checks one guest statement; `Err` says why the host refuses it.
pub fn check(statement: &str) -> Result<Checked, String> {
    lexical(statement)?;
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, statement)
        .map_err(|e| format!("the statement does not parse, so it is refused: {e}"))?;
    let [statement] = parsed.as_slice() else {
        return Err("the string holds more than one statement; send each on its own".into());
    };
    let mut allow = Allowlist::default();
    if let ControlFlow::Break(why) = statement.visit(&mut allow) {
        return Err(why);
    }
    let rows_only = matches!(statement, Statement::Query(_)) && allow.writes == 0;
    Ok(Checked { rows_only })
}

/// The lexical layer: first keyword, one statement, refused code words.
fn lexical(statement: &str) -> Result<(), String> {
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
            Token::Word(w) | Token::Quoted(w)
                if REFUSED_NAMES.contains(&w.as_str())
                    || REFUSED_PREFIXES.iter().any(|p| w.starts_with(p)) =>
            {
                return Err(format!(
                    "`{w}` is refused: {SESSION}, and functions that run SQL text or take \
                     locks are not available"
                ));
            }
            Token::UnicodeQuoted => {
                return Err("Unicode-escaped identifiers (U&\"…\") are refused".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The parse-tree layer: walks every node of the statement (subqueries, CTEs, expressions).
#[derive(Default)]
struct Allowlist {
    /// The CTE names in scope, one frame per enclosing query.
    scopes: Vec<HashSet<String>>,
    /// The next relation visited is a table function's name (checked as a function).
    function_relation: bool,
    /// Data-modifying statements seen (top level and in CTEs).
    writes: usize,
}

/// An identifier as the server folds it: unquoted → lowercase.
fn folded(part: &ObjectNamePart) -> Option<String> {
    match part {
        ObjectNamePart::Identifier(i) if i.quote_style.is_none() => Some(i.value.to_lowercase()),
        ObjectNamePart::Identifier(i) => Some(i.value.clone()),
        ObjectNamePart::Function(_) => None,
    }
}

/// `name` as one allowed word: unqualified, or qualified by `schema`.
fn simple_name(name: &ObjectName, schema: &str) -> Option<String> {
    match name.0.as_slice() {
        [one] => folded(one),
        [s, one] if folded(s).as_deref() == Some(schema) => folded(one),
        _ => None,
    }
}

fn refuse(why: String) -> ControlFlow<String> {
    ControlFlow::Break(why)
}

impl Allowlist {
    fn function(&self, name: &ObjectName) -> ControlFlow<String> {
        match simple_name(name, "pg_catalog") {
            Some(f) if FUNCTIONS.contains(&f.as_str()) => ControlFlow::Continue(()),
            _ => refuse(format!(
                "function `{name}` is not allowed: guests may call only computing functions \
                 (count, coalesce, now, jsonb_…); none that runs SQL text, changes the session \
                 or takes locks"
            )),
        }
    }

    fn table(&self, name: &ObjectName) -> ControlFlow<String> {
        if let [one] = name.0.as_slice()
            && let Some(n) = folded(one)
            && self.scopes.iter().any(|s| s.contains(&n))
        {
            return ControlFlow::Continue(());
        }
        match simple_name(name, "public") {
            Some(t) if TABLES.contains(&t.as_str()) => ControlFlow::Continue(()),
            _ => refuse(format!(
                "table `{name}` is not allowed: guests may use only the backlog's tables ({})",
                TABLES.join(", ")
            )),
        }
    }

    fn target(&mut self, name: Option<&ObjectName>) -> ControlFlow<String> {
        self.writes += 1;
        match name.and_then(|n| simple_name(n, "public")) {
            Some(t) if WRITABLE_TABLES.contains(&t.as_str()) => ControlFlow::Continue(()),
            _ => refuse(format!(
                "writes go only to the backlog's tables ({})",
                WRITABLE_TABLES.join(", ")
            )),
        }
    }
}

fn table_name(factor: &TableFactor) -> Option<&ObjectName> {
    match factor {
        TableFactor::Table {
            name, args: None, ..
        } => Some(name),
        _ => None,
    }
}

impl Visitor for Allowlist {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            Statement::Insert(insert) => match &insert.table {
                TableObject::TableName(name) => self.target(Some(name)),
                _ => self.target(None),
            },
            Statement::Update(update) => self.target(table_name(&update.table.relation)),
            Statement::Delete(delete) => {
                let from = match &delete.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                match (delete.tables.as_slice(), from.as_slice()) {
                    ([], [one]) if one.joins.is_empty() => self.target(table_name(&one.relation)),
                    _ => self.target(None),
                }
            }
            other => {
                let kind = other.to_string();
                let kind: String = kind
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                refuse(format!("`{kind} …` is refused: {NOT_ALLOWED}"))
            }
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        let mut scope = HashSet::new();
        if let Some(with) = &query.with {
            for (i, cte) in with.cte_tables.iter().enumerate() {
                let name = if cte.alias.name.quote_style.is_none() {
                    cte.alias.name.value.to_lowercase()
                } else {
                    cte.alias.name.value.clone()
                };
                if !with.recursive {
                    // A plain WITH query sees only the ones before it: a later (or its own)
                    // name there is a real table, which the scope below would wrongly allow.
                    let later: HashSet<String> = with.cte_tables[i..]
                        .iter()
                        .map(|c| c.alias.name.value.to_lowercase())
                        .collect();
                    let mut hit = None;
                    let _ = visit_relations(&*cte.query, |r| {
                        if let Some(n) = r.0.last().and_then(folded)
                            && later.contains(&n.to_lowercase())
                        {
                            hit = Some(n);
                            return ControlFlow::Break(());
                        }
                        ControlFlow::Continue(())
                    });
                    if let Some(n) = hit {
                        return refuse(format!(
                            "the WITH query `{name}` names `{n}`, which is not defined before \
                             it (write WITH RECURSIVE to refer to itself)"
                        ));
                    }
                }
                scope.insert(name);
            }
        }
        self.scopes.push(scope);
        // `FOR UPDATE OF name`: the parser does not visit the name as a relation. Row locks
        // are for the backlog's own tables (a write call's read-modify-write of one item).
        for lock in &query.locks {
            if let Some(of) = &lock.of {
                self.table(of)?;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<String> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        if select.into.is_some() {
            return refuse(format!("`SELECT … INTO` creates a table: {NOT_ALLOWED}"));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        match factor {
            TableFactor::Table { name, args, .. } => {
                self.function_relation = args.is_some();
                match args {
                    Some(_) => self.function(name),
                    None => self.table(name),
                }
            }
            TableFactor::Function { name, .. } => self.function(name),
            TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. } => ControlFlow::Continue(()),
            other => refuse(format!("`{other}` is not allowed in FROM: {NOT_ALLOWED}")),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<String> {
        if std::mem::take(&mut self.function_relation) {
            return ControlFlow::Continue(());
        }
        // Targets of INSERT/UPDATE/DELETE and FROM tables: both checked as tables.
        self.table(relation)
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        match expr {
            Expr::Function(f) => self.function(&f.name),
            _ => ControlFlow::Continue(()),
        }
    }
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
mod tests;
