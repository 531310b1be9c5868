//! Weekly generation from the latest platform digest and daily generation from the latest risk
//! digest: rules, the generated item, the previous-week link (carry), the per-run cap, staleness.
//!
//! The digests are small and fixed ([`platform_variant`], [`risk_variant`]); the model keeps the
//! ones "in the reports directory" by week or date and always uses the latest, as the product
//! does. Signals are only `regressions_30d`, `escalations_30d` and `dependency_high_30d`.

use serde_json::{Map, Value, json};

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub struct PlatformService {
    pub service: &'static str,
    pub score: u32,
    pub band: &'static str,
    pub arch: bool,
    pub regressions: u32,
    pub escalations: u32,
    pub dependency_high: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlatformDigest {
    pub week: String,
    pub services: Vec<PlatformService>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RiskDigest {
    pub date: String,
    /// (service, score, band).
    pub services: Vec<(&'static str, u32, &'static str)>,
}

fn svc(service: &'static str, score: u32, band: &'static str) -> PlatformService {
    PlatformService {
        service,
        score,
        band,
        arch: false,
        regressions: 0,
        escalations: 0,
        dependency_high: 0,
    }
}

/// Platform digest number `v` (of 3) for `week`.
pub fn platform_variant(week: &str, v: usize) -> PlatformDigest {
    let services = match v % 3 {
        0 => vec![
            PlatformService {
                arch: true,
                regressions: 3,
                escalations: 2,
                dependency_high: 1,
                ..svc("api", 80, "critical")
            },
            PlatformService {
                regressions: 2,
                ..svc("db", 50, "high")
            },
        ],
        1 => vec![
            PlatformService {
                escalations: 3,
                ..svc("api", 30, "medium")
            },
            PlatformService {
                arch: true,
                dependency_high: 2,
                ..svc("web", 60, "high")
            },
        ],
        _ => vec![
            PlatformService {
                escalations: 2,
                ..svc("db", 90, "critical")
            },
            svc("web", 10, "low"),
        ],
    };
    PlatformDigest {
        week: week.to_owned(),
        services,
    }
}

/// Risk digest number `v` (of 2) for `date`.
pub fn risk_variant(date: &str, v: usize) -> RiskDigest {
    let services = match v % 2 {
        0 => vec![("api", 91, "critical"), ("db", 40, "medium")],
        _ => vec![("web", 95, "critical"), ("db", 88, "critical")],
    };
    RiskDigest {
        date: date.to_owned(),
        services,
    }
}

impl PlatformService {
    fn signals(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in [
            ("regressions_30d", self.regressions),
            ("escalations_30d", self.escalations),
            ("dependency_high_30d", self.dependency_high),
        ] {
            if v > 0 {
                m.insert(k.into(), json!(v));
            }
        }
        m
    }
}

impl PlatformDigest {
    /// The file's JSON text.
    pub fn to_json(&self) -> Value {
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                json!({"service": s.service, "score": s.score, "band": s.band,
                "requires_arch_review": s.arch, "signals": s.signals(), "evidence_refs": {}})
            })
            .collect();
        json!({"week": self.week, "env": "prod", "generated_at": "2026-11-23T06:00:04Z",
            "services": services})
    }
}

impl RiskDigest {
    pub fn to_json(&self) -> Value {
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|(s, score, band)| json!({"service": s, "score": score, "band": band}))
            .collect();
        json!({"date": self.date, "env": "prod", "services": services})
    }
}

/// The `when` rules of the shipped categories that `s` matches, as description lines.
fn matched(category: &str, s: &PlatformService) -> Vec<String> {
    match category {
        "arch_review" if s.arch => vec!["- requires_arch_review: true".into()],
        "refactor" if s.regressions >= 2 => vec![format!("- regressions_30d: {}", s.regressions)],
        "slo_hardening" if s.escalations >= 2 => {
            vec![format!("- escalations_30d: {}", s.escalations)]
        }
        "security" if s.dependency_high >= 1 => {
            vec![format!("- dependency_high_30d: {}", s.dependency_high)]
        }
        _ => Vec::new(),
    }
}

fn phrase(category: &str) -> &str {
    match category {
        "arch_review" => "architecture review",
        "refactor" => "refactor recurring regressions",
        "slo_hardening" => "SLO hardening",
        "cleanup_followups" => "close overdue follow-ups",
        "security" => "fix high-severity dependencies",
        other => other,
    }
}

/// A critical band raises the category's priority one level.
fn raised(priority: &str, band: &str) -> String {
    match (band, priority) {
        ("critical", "P1") | ("critical", "P0") => "P0".into(),
        ("critical", "P2") => "P1".into(),
        ("critical", "P3") => "P2".into(),
        (_, p) => p.into(),
    }
}

pub fn iso_week(d: chrono::NaiveDate) -> String {
    d.format("%G-%V").to_string()
}

fn key(week: &str, env: &str, service: &str, category: &str) -> String {
    format!("{KEY_PREFIX}:{week}:{env}:{service}:{category}")
}

/// What one run wants: the item (new or updated) under each key, in processing order.
struct Plan {
    existing: Option<usize>,
    item: Item,
}

impl Model {
    /// `auto_generate_weekly` (`env` default `prod`).
    pub fn weekly(&mut self, env: Option<&str>) -> Answer {
        let env = env.unwrap_or("prod");
        if !slug(env, "_-", 32) {
            return Err("invalid_input");
        }
        let Some(d) = self
            .platform
            .values()
            .last()
            .filter(|_| env == "prod")
            .cloned()
        else {
            return Err("precondition_failed");
        };
        let digest = format!("ops/reports/platform/{}.json", d.week);
        let monday = chrono::NaiveDate::from_isoywd_opt(
            d.week[..4].parse().expect("week"),
            d.week[5..].parse().expect("week"),
            chrono::Weekday::Mon,
        )
        .expect("week");
        let prev_week = iso_week(monday - Duration::days(7));
        let mut services = d.services.clone();
        services.sort_by_key(|s| (std::cmp::Reverse(s.score), s.service));
        let mut plans = Vec::new();
        for s in &services {
            for (cat, priority, due_days, owner) in CATEGORIES {
                let lines = matched(cat, s);
                if lines.is_empty() {
                    continue;
                }
                let k = key(&d.week, env, s.service, cat);
                let existing = self.by_key(&k);
                if existing.is_some_and(|n| self.items[&n].env != env) {
                    return Err("conflict"); // planning fails: nothing written
                }
                let previous = self
                    .by_key(&key(&prev_week, env, s.service, cat))
                    .map(|n| &self.items[&n])
                    .filter(|i| !terminal(&i.status) && i.env == env);
                let mut meta = existing
                    .map(|n| self.items[&n].meta.clone())
                    .unwrap_or_default();
                for k in ["score", "band", "signals", "digest", "previous_item_id"] {
                    meta.remove(k);
                }
                meta.insert("score".into(), json!(s.score));
                meta.insert("band".into(), json!(s.band));
                meta.insert("signals".into(), Value::Object(s.signals()));
                meta.insert("digest".into(), json!(digest));
                if let Some(p) = previous {
                    meta.insert("previous_item_id".into(), json!(p.id));
                }
                let title = format!(
                    "[{cat}] {}: {} (score {}, {})",
                    s.service,
                    phrase(cat),
                    s.score,
                    s.band
                );
                let mut item = match existing {
                    Some(n) => self.items[&n].clone(),
                    None => {
                        let mut i =
                            self.blank(env.into(), s.service.into(), (*cat).into(), title.clone());
                        i.priority = raised(priority, s.band);
                        i.owner = (*owner).into();
                        i.due_date = self.due_in(*due_days);
                        i.dedupe_key = k.clone();
                        i
                    }
                };
                // Generation refreshes these and keeps owner, status, priority, due date.
                item.env = env.into();
                item.service = s.service.into();
                item.category = (*cat).into();
                item.title = title;
                item.description = lines.join("\n");
                item.source = "digest".into();
                item.meta = meta;
                for t in ["auto".to_owned(), format!("week:{}", d.week)] {
                    if !item.tags.contains(&t) {
                        item.tags.push(t);
                    }
                }
                plans.push(Plan { existing, item });
            }
        }
        let expected = iso_week(self.now.date_naive());
        let stale = d.week < expected;
        let warning = format!(
            "warning: stale digest: generated from week {} ({digest}), expected week {expected}",
            d.week
        );
        self.apply(plans, "week", &d.week, env, &digest, stale, warning)
    }

    /// `auto_generate_daily` (`env` default `prod`): an `slo_hardening` item per critical
    /// service of the latest risk digest, under this week's weekly key.
    pub fn daily(&mut self, env: Option<&str>) -> Answer {
        let env = env.unwrap_or("prod");
        if !slug(env, "_-", 32) {
            return Err("invalid_input");
        }
        let Some(d) = self.risk.values().last().filter(|_| env == "prod").cloned() else {
            return Err("precondition_failed");
        };
        let digest = format!("ops/reports/risk/{}.json", d.date);
        let week = iso_week(self.now.date_naive());
        let tags = ["auto".to_owned(), format!("week:{week}"), "risk".to_owned()];
        let mut services: Vec<_> = d.services.iter().filter(|s| s.2 == "critical").collect();
        services.sort_by_key(|s| (std::cmp::Reverse(s.1), s.0));
        let mut plans = Vec::new();
        for (service, score, band) in services {
            let k = key(&week, env, service, "slo_hardening");
            let existing = self.by_key(&k);
            if existing.is_some_and(|n| self.items[&n].env != env) {
                return Err("conflict");
            }
            let risk = json!({"date": d.date, "score": score, "band": band, "digest": digest});
            let mut item = match existing {
                Some(n) => self.items[&n].clone(),
                None => {
                    let title = format!(
                        "[slo_hardening] {service}: SLO hardening (risk score {score}, {band})"
                    );
                    let mut i =
                        self.blank(env.into(), (*service).into(), "slo_hardening".into(), title);
                    i.description = format!(
                        "- risk band: {band}\n- risk score: {score}\n- risk date: {}",
                        d.date
                    );
                    i.priority = raised("P1", band);
                    i.owner = "oncall".into();
                    i.due_date = self.due_in(14);
                    i.dedupe_key = k.clone();
                    i.source = "risk".into();
                    i
                }
            };
            item.meta.insert("risk".into(), risk);
            for t in &tags {
                if !item.tags.contains(t) {
                    item.tags.push(t.clone());
                }
            }
            plans.push(Plan { existing, item });
        }
        let expected = self.today();
        let stale = d.date < expected;
        let warning = format!(
            "warning: stale digest: generated from date {} ({digest}), expected date {expected}",
            d.date
        );
        self.apply(plans, "date", &d.date, env, &digest, stale, warning)
    }

    /// Applies a run's plan in order until [`MAX_ITEMS_PER_RUN`] items were created or
    /// updated; the rest that would change are `capped`; unchanged ones never count.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        plans: Vec<Plan>,
        period_key: &str,
        period: &str,
        env: &str,
        digest: &str,
        stale: bool,
        warning: String,
    ) -> Answer {
        let (mut created, mut updated, mut unchanged, mut capped) = (0, 0, 0, 0);
        let mut ids = Vec::new();
        for Plan { existing, item } in plans {
            let would_change = existing.is_none_or(|n| {
                let old = &self.items[&n];
                let mut cmp = item.clone();
                cmp.events = old.events.clone();
                cmp.updated_at = old.updated_at.clone();
                cmp != *old
            });
            if !would_change {
                unchanged += 1;
                continue;
            }
            if created + updated >= MAX_ITEMS_PER_RUN {
                capped += 1;
                continue;
            }
            match existing {
                None => {
                    let n = self.insert(item);
                    ids.push(self.items[&n].id.clone());
                    created += 1;
                }
                Some(n) => {
                    self.update(n, item);
                    ids.push(self.items[&n].id.clone());
                    updated += 1;
                }
            }
        }
        let warnings: Vec<String> = if stale { vec![warning] } else { Vec::new() };
        let mut out = json!({"env": env, "digest": digest, "created": created,
            "updated": updated, "unchanged": unchanged, "capped": capped, "items": ids,
            "stale": stale, "warnings": warnings});
        out[period_key] = json!(period);
        Ok(out)
    }
}
