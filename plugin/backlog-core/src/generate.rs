//! Backlog generation from digests: `auto_generate_weekly` (`docs/actions.md`, platform digest) and
//! `auto_generate_daily` (`docs/actions.md`, risk digest).
//!
//! Owns rule evaluation, the generated item (dedupe key, title, description, tags, meta,
//! priority escalation, owner), the previous-week link, the per-run cap and the result shape.
//! Writes go only through [`upsert::upsert`] in [`UpsertMode::Generation`], so the fields
//! humans own (`owner`, `status`, `priority`, `due_date`) survive regeneration.
//!
//! A run has two phases. Planning reads the store and builds and validates every item; a
//! malformed digest or an item that would break a field rule fails here, before anything is
//! written. Applying then upserts in plan order (services by score desc, then name;
//! categories in policy order) until `defaults.max_items_per_run` items have been created or
//! updated; the rest that would change are counted `capped`, and items that would not change
//! never use up the cap. So a run after one that finished with `capped: 0` writes nothing, and
//! a run after a capped run picks up where it stopped.

use chrono::NaiveDate;
use serde_json::{Map, Number, Value, json};

use crate::ctx::Ctx;
pub use crate::ctx::is_reserved_key;
use crate::digest::{self, PlatformService, Reports};
use crate::error::Error;
use crate::model::{Item, Priority, Source};
use crate::params::{DailyParams, Params, UpsertParams, WeeklyParams};
use crate::policy::{Band, Policy, Rule};
use crate::store::BacklogStore;
use crate::time;
use crate::upsert::{self, UpsertAction, UpsertMode};
use crate::validate::{DESCRIPTION_MAX, TITLE_MAX};

type Result<T> = std::result::Result<T, Error>;

/// Error message when no platform digest of the env exists (runbook §3.3).
pub const NO_PLATFORM_DIGEST: &str =
    "No platform digest found. Run architecture_pressure_tool.digest first.";
/// Error message when no risk digest of the env exists.
pub const NO_RISK_DIGEST: &str = "No risk digest found. Run risk_history_tool.digest first.";
/// Message of the `forbidden` error when the call has no reports grant.
pub const NO_REPORTS_GRANT: &str = "this call was granted no access to the reports directory";
/// The category daily generation creates.
pub const DAILY_CATEGORY: &str = "slo_hardening";

/// `meta` keys the weekly run owns on its items (replaced on every run; other keys, such as
/// the daily run's `risk` or keys a person added, are kept).
pub const WEEKLY_META_KEYS: &[&str] = &["score", "band", "signals", "digest", "previous_item_id"];
/// The `meta` key the daily run owns.
pub const DAILY_META_KEY: &str = "risk";

/// The outcome of a generation action.
#[derive(Debug, Clone, PartialEq)]
pub enum Generated {
    /// The policy switch is off: `{"skipped":true,"reason":"disabled by policy"}`.
    Skipped,
    /// The run happened.
    Ran(RunReport),
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunReport {
    /// `week` (weekly) or `date` (daily): the key the digest's period is reported under.
    pub period_key: &'static str,
    /// The digest's week (`2026-48`) or date (`2026-11-25`).
    pub period: String,
    /// The env generated for.
    pub env: String,
    /// Operator-relative path of the digest used.
    pub digest: String,
    /// Items created.
    pub created: usize,
    /// Existing items changed.
    pub updated: usize,
    /// Items that already said what this run would write.
    pub unchanged: usize,
    /// Items that would have been created or updated but for `max_items_per_run`.
    pub capped: usize,
    /// Ids created or updated, in processing order.
    pub items: Vec<String>,
    /// The digest is older than the current week (weekly) or today (daily).
    pub stale: bool,
    /// What the operator should know about this run: a stale digest names the period it used
    /// and the one it expected (also logged).
    pub warnings: Vec<String>,
}

impl Generated {
    /// `{"skipped":…}` or `{"week"|"date","env","digest","created","updated","unchanged",
    /// "capped","items","stale","warnings"}`.
    pub fn to_json(&self) -> Value {
        match self {
            Generated::Skipped => json!({"skipped": true, "reason": "disabled by policy"}),
            Generated::Ran(r) => {
                let mut m = Map::new();
                m.insert(r.period_key.into(), json!(r.period));
                m.insert("env".into(), json!(r.env));
                m.insert("digest".into(), json!(r.digest));
                m.insert("created".into(), json!(r.created));
                m.insert("updated".into(), json!(r.updated));
                m.insert("unchanged".into(), json!(r.unchanged));
                m.insert("capped".into(), json!(r.capped));
                m.insert("items".into(), json!(r.items));
                m.insert("stale".into(), json!(r.stale));
                m.insert("warnings".into(), json!(r.warnings));
                Value::Object(m)
            }
        }
    }
}

/// Whether `rule` matches a platform digest service entry (a missing signal counts as 0).
pub fn rule_matches(rule: &Rule, s: &PlatformService) -> bool {
    match rule {
        Rule::Signal { signal, gte } => s.signal(signal) >= *gte,
        Rule::RequiresArchReview => s.requires_arch_review,
        Rule::BandAtLeast(b) => s.band >= *b,
    }
}

/// The generated priority: the category's, raised one level (never above P0) when the band is
/// `critical` and `generation.escalate_on_critical_band` is on.
pub fn generated_priority(base: Priority, band: Band, policy: &Policy) -> Priority {
    if band == Band::Critical && policy.generation.escalate_on_critical_band {
        base.raised()
    } else {
        base
    }
}

/// `{key_prefix}:{week}:{env}:{service}:{category}`.
pub fn dedupe_key(policy: &Policy, week: &str, env: &str, service: &str, category: &str) -> String {
    format!(
        "{}:{week}:{env}:{service}:{category}",
        policy.dedupe.key_prefix
    )
}

/// `conflict` if `existing`, found under a generated key for `env`, lives in another env: a
/// generator never adopts it.
fn same_env(existing: Option<Item>, env: &str, key: &str) -> Result<Option<Item>> {
    match existing {
        Some(item) if item.env != env => Err(Error::conflict(format!(
            "item {} holds the generated dedupe_key {} but is in env {}, not {env}; generation does not adopt it (change its dedupe_key or env)",
            item.id,
            crate::validate::shown(key),
            item.env
        ))),
        other => Ok(other),
    }
}

/// The human phrase of a category in generated titles; the name itself for categories
/// without one.
pub fn category_phrase(category: &str) -> &str {
    match category {
        "arch_review" => "architecture review",
        "refactor" => "refactor recurring regressions",
        "slo_hardening" => "SLO hardening",
        "cleanup_followups" => "close overdue follow-ups",
        "security" => "fix high-severity dependencies",
        other => other,
    }
}

/// `s` cut to at most `max` chars (the last one `…` when cut).
fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn score_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(0.0)
}

/// Services by score desc, then name.
fn by_score<T>(items: &mut [&T], key: impl Fn(&T) -> (&Number, &str)) {
    items.sort_by(|a, b| {
        let (sa, na) = key(a);
        let (sb, nb) = key(b);
        score_f64(sb)
            .total_cmp(&score_f64(sa))
            .then_with(|| na.cmp(nb))
    });
}

fn due_in(ctx: &Ctx<'_>, days: u32) -> Result<String> {
    time::add_days(ctx.now.date_naive(), i64::from(days))
        .map(time::format_date)
        .ok_or_else(|| Error::internal("due date out of range"))
}

/// One planned upsert.
struct Planned {
    params: UpsertParams,
    would_change: bool,
}

/// Validates `params` (naming the digest and service on failure) and works out whether the
/// upsert would create or change anything.
fn plan(
    params: UpsertParams,
    existing: Option<&Item>,
    digest_path: &str,
    service: &str,
    policy: &Policy,
) -> Result<Planned> {
    let invalid = |e: Error| {
        Error::invalid_input(format!(
            "{digest_path}: service {service}: the generated item would be invalid: {}",
            e.message
        ))
    };
    params.validate(policy).map_err(invalid)?;
    let would_change = match existing {
        None => true,
        Some(old) => upsert::would_change(old, &params, UpsertMode::Generation).map_err(invalid)?,
    };
    Ok(Planned {
        params,
        would_change,
    })
}

/// Upserts the plan under the cap; fills the counts and ids of `report`.
fn apply(
    store: &mut dyn BacklogStore,
    planned: Vec<Planned>,
    report: &mut RunReport,
    ctx: &mut Ctx<'_>,
) -> Result<()> {
    let cap = usize::try_from(ctx.policy.defaults.max_items_per_run).unwrap_or(usize::MAX);
    for p in planned {
        if !p.would_change {
            report.unchanged += 1;
            continue;
        }
        if report.created + report.updated >= cap {
            report.capped += 1;
            continue;
        }
        let out = upsert::upsert(store, p.params, UpsertMode::Generation, ctx)?;
        match out.action {
            UpsertAction::Created => report.created += 1,
            UpsertAction::Updated => report.updated += 1,
            UpsertAction::Unchanged => {
                report.unchanged += 1;
                continue;
            }
        }
        report.items.push(out.item.id);
    }
    Ok(())
}

fn reports<'c>(ctx: &'c mut Ctx<'_>) -> Result<&'c mut dyn Reports> {
    match ctx.reports.as_deref_mut() {
        Some(r) => Ok(r),
        None => Err(Error::forbidden(NO_REPORTS_GRANT)),
    }
}

/// `auto_generate_weekly` (`docs/actions.md`).
pub fn auto_generate_weekly(
    store: &mut dyn BacklogStore,
    p: WeeklyParams,
    ctx: &mut Ctx<'_>,
) -> Result<Generated> {
    let policy = ctx.policy;
    p.validate(policy)?;
    if !policy.generation.weekly_from_pressure_digest {
        return Ok(Generated::Skipped);
    }
    let found = digest::find_platform(reports(ctx)?, &p.env)?
        .ok_or_else(|| Error::precondition_failed(NO_PLATFORM_DIGEST))?;
    let digest_path = found.operator_path();
    let d = &found.digest;
    let today = ctx.now.date_naive();
    let prev_week = time::previous_week(&d.week)
        .ok_or_else(|| Error::internal(format!("no week before {}", d.week)))?;

    let mut services: Vec<&PlatformService> = d.services.iter().collect();
    by_score(&mut services, |s| (&s.score, s.service.as_str()));
    // Every key the loop below looks up (this week's and last week's), fetched at once.
    let mut keys = Vec::new();
    for s in &services {
        for (category, cat) in policy.categories.iter() {
            if cat.when.iter().any(|r| rule_matches(r, s)) {
                for week in [&d.week, &prev_week] {
                    keys.push(dedupe_key(policy, week, &p.env, &s.service, category));
                }
            }
        }
    }
    store.prefetch_dedupe_keys(&keys)?;
    let mut planned = Vec::new();
    for s in services {
        for (category, cat) in policy.categories.iter() {
            let matched: Vec<&Rule> = cat.when.iter().filter(|r| rule_matches(r, s)).collect();
            if matched.is_empty() {
                continue;
            }
            let key = dedupe_key(policy, &d.week, &p.env, &s.service, category);
            let existing = same_env(store.find_by_dedupe_key(&key)?, &p.env, &key)?;
            let prev_key = dedupe_key(policy, &prev_week, &p.env, &s.service, category);
            let previous = store
                .find_by_dedupe_key(&prev_key)?
                .filter(|i| !i.status.is_terminal() && i.env == p.env);

            let mut meta = existing
                .as_ref()
                .map(|i| i.meta.clone())
                .unwrap_or_default();
            for k in WEEKLY_META_KEYS {
                meta.remove(*k);
            }
            meta.insert("score".into(), Value::Number(s.score.clone()));
            meta.insert("band".into(), json!(s.band.as_str()));
            meta.insert("signals".into(), json!(s.signals));
            meta.insert("digest".into(), json!(digest_path));
            if let Some(prev) = previous {
                meta.insert("previous_item_id".into(), json!(prev.id));
            }

            let mut lines: Vec<String> = Vec::new();
            for r in matched {
                let line = match r {
                    Rule::Signal { signal, .. } => format!("- {signal}: {}", s.signal(signal)),
                    Rule::RequiresArchReview => "- requires_arch_review: true".to_owned(),
                    Rule::BandAtLeast(_) => format!("- band: {}", s.band),
                };
                if !lines.contains(&line) {
                    lines.push(line);
                }
            }
            let title = format!(
                "[{category}] {}: {} (score {}, {})",
                s.service,
                category_phrase(category),
                s.score,
                s.band
            );
            let params = UpsertParams {
                id: None,
                env: Some(p.env.clone()),
                service: Some(s.service.clone()),
                category: Some(category.to_owned()),
                title: Some(clip(title, TITLE_MAX)),
                description: Some(clip(lines.join("\n"), DESCRIPTION_MAX)),
                priority: Some(generated_priority(cat.priority, s.band, policy)),
                owner: Some(policy.owner_for(&s.service, category)),
                due_date: Some(due_in(ctx, cat.due_days)?),
                dedupe_key: Some(key),
                evidence_refs: Some(s.evidence_refs.clone()),
                tags: Some(vec!["auto".into(), format!("week:{}", d.week)]),
                meta: Some(meta),
                source: Some(Source::Digest),
            };
            planned.push(plan(
                params,
                existing.as_ref(),
                &digest_path,
                &s.service,
                policy,
            )?);
        }
    }

    let expected = time::iso_week(today);
    let stale = d.week < expected;
    let mut report = RunReport {
        period_key: "week",
        period: d.week.clone(),
        env: p.env.clone(),
        stale,
        warnings: stale_warning(ctx, stale, "week", &d.week, &expected, &digest_path),
        digest: digest_path,
        ..RunReport::default()
    };
    apply(store, planned, &mut report, ctx)?;
    Ok(Generated::Ran(report))
}

/// The warning of a run from a stale digest (none when current), also sent to the log.
fn stale_warning(
    ctx: &mut Ctx<'_>,
    stale: bool,
    period: &str,
    used: &str,
    expected: &str,
    digest: &str,
) -> Vec<String> {
    if !stale {
        return Vec::new();
    }
    let line = format!(
        "warning: stale digest: generated from {period} {used} ({digest}), expected {period} {expected}"
    );
    if let Ok(r) = reports(ctx) {
        r.log(&line);
    }
    vec![line]
}

/// `auto_generate_daily` (`docs/actions.md`): an `slo_hardening` item for every service of the latest
/// risk digest whose band is in `generation.daily_risk_bands`, under the weekly dedupe key of
/// the current week (of the context's clock), so it merges with the weekly item.
///
/// A new item is created with `source: risk`, a risk title and description, tags
/// `["auto","week:<week>","risk"]` and `meta.risk = {date, score, band, digest}`. An existing
/// item (usually the weekly one) only gets `meta.risk` refreshed and those tags added: the
/// daily run never overwrites what the weekly run wrote, so the two do not flip-flop.
pub fn auto_generate_daily(
    store: &mut dyn BacklogStore,
    p: DailyParams,
    ctx: &mut Ctx<'_>,
) -> Result<Generated> {
    let policy = ctx.policy;
    p.validate(policy)?;
    if !policy.generation.daily_from_risk_digest {
        return Ok(Generated::Skipped);
    }
    let found = digest::find_risk(reports(ctx)?, &p.env)?
        .ok_or_else(|| Error::precondition_failed(NO_RISK_DIGEST))?;
    let cat = policy.category(DAILY_CATEGORY).ok_or_else(|| {
        Error::precondition_failed(format!(
            "daily generation creates `{DAILY_CATEGORY}` items, but the policy has no such category"
        ))
    })?;
    let digest_path = found.operator_path();
    let d = &found.digest;
    let today: NaiveDate = ctx.now.date_naive();
    let week = time::iso_week(today);
    let tags = vec!["auto".to_owned(), format!("week:{week}"), "risk".to_owned()];

    let mut services: Vec<&digest::RiskService> = d
        .services
        .iter()
        .filter(|s| policy.generation.daily_risk_bands.contains(&s.band))
        .collect();
    by_score(&mut services, |s| (&s.score, s.service.as_str()));
    let keys: Vec<String> = services
        .iter()
        .map(|s| dedupe_key(policy, &week, &p.env, &s.service, DAILY_CATEGORY))
        .collect();
    store.prefetch_dedupe_keys(&keys)?;
    let mut planned = Vec::new();
    for s in services {
        let key = dedupe_key(policy, &week, &p.env, &s.service, DAILY_CATEGORY);
        let existing = same_env(store.find_by_dedupe_key(&key)?, &p.env, &key)?;
        let risk = json!({
            "date": d.date, "score": Value::Number(s.score.clone()),
            "band": s.band.as_str(), "digest": digest_path,
        });
        let params = match &existing {
            Some(old) => {
                let mut meta = old.meta.clone();
                meta.insert(DAILY_META_KEY.into(), risk);
                UpsertParams {
                    dedupe_key: Some(key),
                    meta: Some(meta),
                    tags: Some(tags.clone()),
                    ..UpsertParams::default()
                }
            }
            None => {
                let mut meta = Map::new();
                meta.insert(DAILY_META_KEY.into(), risk);
                let title = format!(
                    "[{DAILY_CATEGORY}] {}: {} (risk score {}, {})",
                    s.service,
                    category_phrase(DAILY_CATEGORY),
                    s.score,
                    s.band
                );
                UpsertParams {
                    id: None,
                    env: Some(p.env.clone()),
                    service: Some(s.service.clone()),
                    category: Some(DAILY_CATEGORY.into()),
                    title: Some(clip(title, TITLE_MAX)),
                    description: Some(format!(
                        "- risk band: {}\n- risk score: {}\n- risk date: {}",
                        s.band, s.score, d.date
                    )),
                    priority: Some(generated_priority(cat.priority, s.band, policy)),
                    owner: Some(policy.owner_for(&s.service, DAILY_CATEGORY)),
                    due_date: Some(due_in(ctx, cat.due_days)?),
                    dedupe_key: Some(key),
                    evidence_refs: Some(Default::default()),
                    tags: Some(tags.clone()),
                    meta: Some(meta),
                    source: Some(Source::Risk),
                }
            }
        };
        planned.push(plan(
            params,
            existing.as_ref(),
            &digest_path,
            &s.service,
            policy,
        )?);
    }

    let expected = time::today(ctx.now);
    let stale = d.date < expected;
    let mut report = RunReport {
        period_key: "date",
        period: d.date.clone(),
        env: p.env.clone(),
        stale,
        warnings: stale_warning(ctx, stale, "date", &d.date, &expected, &digest_path),
        digest: digest_path,
        ..RunReport::default()
    };
    apply(store, planned, &mut report, ctx)?;
    Ok(Generated::Ran(report))
}

#[cfg(test)]
mod tests;
