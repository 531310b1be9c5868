//! The data model (see `docs/data-model.md`): items, events and their closed vocabularies.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `P0` (most urgent) .. `P3`. Ordered so that sorting puts `P0` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    P0,
    P1,
    P2,
    P3,
}

/// Lifecycle status; `done` and `canceled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    InProgress,
    Blocked,
    Done,
    Canceled,
}

/// Where an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Digest,
    Risk,
    Pressure,
    Manual,
}

/// Kind of an event in an item's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Created,
    Updated,
    StatusChanged,
    Commented,
    OwnerChanged,
}

/// A backlog item exactly as stored and returned: 17 keys, all always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    #[serde(deserialize_with = "stored_ts")]
    pub created_at: String,
    #[serde(deserialize_with = "stored_ts")]
    pub updated_at: String,
    pub env: String,
    pub service: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub priority: Priority,
    pub status: Status,
    pub owner: String,
    pub due_date: String,
    pub source: Source,
    pub dedupe_key: String,
    pub evidence_refs: BTreeMap<String, Vec<String>>,
    pub tags: Vec<String>,
    pub meta: Map<String, Value>,
}

/// One entry of an item's append-only history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: String,
    pub item_id: String,
    #[serde(deserialize_with = "stored_ts")]
    pub ts: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub actor: String,
    pub message: String,
    pub meta: Map<String, Value>,
}

/// A stored timestamp as it is returned: every accepted form (the legacy naive
/// `2026-03-02T06:20:01.123456`, other offsets) in the fixed-width UTC form
/// ([`crate::time::format_ts`]), whatever wrote it; text that is no timestamp stays as stored.
fn stored_ts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    Ok(crate::time::normalize_ts(&s).unwrap_or(s))
}

impl Status {
    /// `done` and `canceled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Done | Status::Canceled)
    }
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Open,
        Status::InProgress,
        Status::Blocked,
        Status::Done,
        Status::Canceled,
    ];

    /// The wire name (`in_progress`, `canceled`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::InProgress => "in_progress",
            Status::Blocked => "blocked",
            Status::Done => "done",
            Status::Canceled => "canceled",
        }
    }
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 4] = [Priority::P0, Priority::P1, Priority::P2, Priority::P3];

    /// The wire name (`P0` … `P3`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P0 => "P0",
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
        }
    }

    /// One level more urgent, never above `P0`.
    pub fn raised(self) -> Priority {
        match self {
            Priority::P0 | Priority::P1 => Priority::P0,
            Priority::P2 => Priority::P1,
            Priority::P3 => Priority::P2,
        }
    }
}

impl Source {
    /// The wire name (`digest`, `manual`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Digest => "digest",
            Source::Risk => "risk",
            Source::Pressure => "pressure",
            Source::Manual => "manual",
        }
    }
}

impl EventType {
    /// The wire name (`status_changed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "created",
            EventType::Updated => "updated",
            EventType::StatusChanged => "status_changed",
            EventType::Commented => "commented",
            EventType::OwnerChanged => "owner_changed",
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(Status, Priority, Source, EventType);

#[cfg(test)]
mod tests {
    #[test]
    fn stored_timestamps_read_back_in_the_fixed_width_utc_form() {
        let item = serde_json::json!({
            "id": "bl_0123456789ab", "created_at": "2026-03-02T06:20:01.123456",
            "updated_at": "2026-03-02T08:20:01+02:00", "env": "prod", "service": "api",
            "category": "refactor", "title": "t", "description": "", "priority": "P1",
            "status": "open", "owner": "", "due_date": "", "source": "manual",
            "dedupe_key": "k", "evidence_refs": {}, "tags": [], "meta": {}
        });
        let item: super::Item = serde_json::from_value(item).unwrap();
        assert_eq!(item.created_at, "2026-03-02T06:20:01.123456Z");
        assert_eq!(item.updated_at, "2026-03-02T06:20:01.000000Z");
        let ev = serde_json::json!({
            "id": "ev_1", "item_id": "bl_0123456789ab", "ts": "2026-03-02T06:20:01",
            "type": "created", "actor": "a", "message": "", "meta": {}
        });
        let ev: super::Event = serde_json::from_value(ev).unwrap();
        assert_eq!(ev.ts, "2026-03-02T06:20:01.000000Z");
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn wire_names_match_serde() {
        for s in Status::ALL {
            assert_eq!(serde_json::to_value(s).ok(), Some(json!(s.as_str())));
        }
        for p in Priority::ALL {
            assert_eq!(serde_json::to_value(p).ok(), Some(json!(p.to_string())));
        }
        for s in [
            Source::Digest,
            Source::Risk,
            Source::Pressure,
            Source::Manual,
        ] {
            assert_eq!(serde_json::to_value(s).ok(), Some(json!(s.as_str())));
        }
        for e in [
            EventType::Created,
            EventType::Updated,
            EventType::StatusChanged,
            EventType::Commented,
            EventType::OwnerChanged,
        ] {
            assert_eq!(serde_json::to_value(e).ok(), Some(json!(e.as_str())));
        }
        assert_eq!(Priority::P2.raised(), Priority::P1);
        assert_eq!(Priority::P0.raised(), Priority::P0);
    }
}
