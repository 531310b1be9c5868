//! The WHERE clause of a listing (`list`'s filters) as placeholders and bound values.

use backlog_core::list::ListQuery;
use backlog_core::store::StoreError;

use super::Value;
use super::params::{pg_date, text};

/// What one item of `backlog_items i` costs a page, in bytes of text: its large fields plus a
/// fixed allowance for the small ones (the measure of the `list` page budget).
pub(super) const ITEM_TEXT_BYTES: &str = "octet_length(i.meta::text) + octet_length(i.evidence_refs::text) \
     + octet_length(i.description) + octet_length(i.title) + 512";
/// "Not terminal", as SQL.
pub(super) const LIVE: &str = "status NOT IN ('done', 'canceled')";

/// The WHERE clause and parameters of a listing. Only placeholders are generated; values go
/// into `params`.
pub(super) struct Filter {
    conds: Vec<String>,
    pub(super) params: Vec<Value>,
    /// A filter value no stored row can equal (it holds NUL): the page is empty.
    pub(super) impossible: bool,
}

impl Filter {
    pub(super) fn bind(&mut self, v: Value) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }

    fn eq(&mut self, column: &str, want: Option<&str>) {
        if let Some(w) = want {
            if w.contains('\0') {
                self.impossible = true;
                return;
            }
            let p = self.bind(text(w));
            self.conds.push(format!("{column} = {p}"));
        }
    }

    pub(super) fn of(q: &ListQuery, today: &str) -> Result<Filter, StoreError> {
        let mut f = Filter {
            conds: Vec::new(),
            params: Vec::new(),
            impossible: false,
        };
        f.eq("env", q.env.as_deref());
        if !q.status.is_empty() {
            let ps: Vec<String> = q.status.iter().map(|s| f.bind(text(s.as_str()))).collect();
            f.conds.push(format!("status IN ({})", ps.join(", ")));
        }
        f.eq("priority", q.priority.map(|p| p.as_str()));
        f.eq("service", q.service.as_deref());
        f.eq("owner", q.owner.as_deref());
        f.eq("category", q.category.as_deref());
        if let Some(d) = q.due_before.as_deref() {
            // The rule is a string comparison of `YYYY-MM-DD` texts: for a real date that is
            // the date comparison (indexed); anything else (which `list` params never pass)
            // compares as text in byte order (exact for due dates of years 0001..9999).
            let cond = match pg_date(d) {
                Some(v) => format!("due_date < {}", f.bind(v)),
                None => match d.split_once('\0') {
                    // t < p + NUL + … ⟺ t <= p, for texts t without NUL.
                    Some((p, _)) => format!(
                        r#"to_char(due_date, 'YYYY-MM-DD') COLLATE "C" <= {}"#,
                        f.bind(text(p))
                    ),
                    None => format!(
                        r#"to_char(due_date, 'YYYY-MM-DD') COLLATE "C" < {}"#,
                        f.bind(text(d))
                    ),
                },
            };
            f.conds.push(cond);
        }
        if let Some(overdue) = q.overdue {
            let day = pg_date(today).ok_or_else(|| {
                StoreError::Internal(format!("today {today:?} is not a YYYY-MM-DD date"))
            })?;
            let p = f.bind(day);
            f.conds.push(match overdue {
                true => format!("({LIVE} AND due_date < {p})"),
                false => format!("NOT ({LIVE} AND due_date < {p})"),
            });
        }
        Ok(f)
    }

    pub(super) fn where_clause(&self) -> String {
        match self.conds.is_empty() {
            true => String::new(),
            false => format!(" WHERE {}", self.conds.join(" AND ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_bind_values_and_never_splice_them() {
        let q = ListQuery {
            env: Some("prod' OR 1=1 --".into()),
            status: vec![backlog_core::model::Status::Open],
            owner: Some("x'; DROP TABLE backlog_items; --".into()),
            due_before: Some("'; DELETE".into()),
            overdue: Some(false),
            ..ListQuery::default()
        };
        let f = Filter::of(&q, "2026-03-02").unwrap_or_else(|e| panic!("{e}"));
        let w = f.where_clause();
        assert!(!w.contains("OR 1=1"), "{w}");
        assert!(!w.contains("DROP") && !w.contains("DELETE"), "{w}");
        assert_eq!(f.params.len(), 5);
        assert!(f.params.contains(&Value::Text("prod' OR 1=1 --".into())));
        let nul = ListQuery {
            service: Some("a\0b".into()),
            ..ListQuery::default()
        };
        assert!(
            Filter::of(&nul, "2026-03-02")
                .map(|f| f.impossible)
                .unwrap_or(false)
        );
    }
}
