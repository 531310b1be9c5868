//! The index against `list::select`, and a lazily opened snapshot against the full index.

use super::pages::{Pages, in_memory};
use super::*;
use backlog_core::model::{Priority, Status};
use std::collections::HashMap;

fn keys(id: &str) -> ItemKeys {
    ItemKeys {
        id: id.into(),
        env: "prod".into(),
        service: "api".into(),
        owner: "o".into(),
        category: "c".into(),
        priority: Priority::P1,
        status: Status::Open,
        due_date: "2026-01-01".into(),
    }
}

/// Index::list must answer exactly what list::select answers, across incremental moves,
/// invalidation (many moves) and re-sorts.
#[test]
fn list_matches_select_through_incremental_changes() {
    let mut x: u64 = 99;
    let mut r = move |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let mut ix = Index::default();
    let mut reference: HashMap<String, ItemKeys> = HashMap::new();
    let queries = [
        ListQuery::default(),
        ListQuery {
            limit: 5,
            offset: 7,
            ..ListQuery::default()
        },
        ListQuery {
            env: Some("e1".into()),
            limit: 3,
            ..ListQuery::default()
        },
        ListQuery {
            status: vec![Status::Done],
            limit: 1000,
            ..ListQuery::default()
        },
        ListQuery {
            limit: 0,
            ..ListQuery::default()
        },
        ListQuery {
            offset: 10_000,
            ..ListQuery::default()
        },
    ];
    for round in 0..40 {
        // Big rounds exceed MAX_MOVES and invalidate the order; small ones move in place.
        let changes = if round % 10 == 3 { 3000 } else { 1 + r(20) };
        for _ in 0..changes {
            let id = format!("bl_{:012x}", r(400));
            if r(7) == 0 {
                ix.put_event(&format!("bl_{:012x}", 1000 + r(50)), loc(0))
                    .unwrap();
            }
            let k = ItemKeys {
                id: id.clone(),
                env: format!("e{}", r(3)),
                service: "s".into(),
                owner: "o".into(),
                category: "c".into(),
                priority: [Priority::P0, Priority::P1, Priority::P2, Priority::P3][r(4) as usize],
                status: [Status::Open, Status::Done][r(2) as usize],
                due_date: format!("2026-01-{:02}", 1 + r(5)),
            };
            ix.put_item(k.clone(), &id, loc(r(1000))).unwrap();
            reference.insert(id, k);
        }
        for q in &queries {
            let (want, want_total) = list::select(q, reference.values(), "2026-01-03");
            let want: Vec<&str> = want.iter().map(|k| k.id.as_str()).collect();
            let (got, total) = ix.list(q, "2026-01-03");
            let got: Vec<&str> = got.iter().map(|(id, _)| *id).collect();
            assert_eq!((got, total), (want, want_total), "round {round}, {q:?}");
        }
    }
}

fn loc(off: u64) -> Loc {
    Loc { off, len: 1 }
}

#[test]
fn events_before_their_item_attach_when_it_arrives() {
    let mut ix = Index::default();
    ix.put_event("bl_a", loc(0)).unwrap();
    assert_eq!(ix.item("bl_a"), None);
    assert!(ix.events_of("bl_a", 10).is_empty());
    assert_eq!(ix.item_count(), 0);
    ix.put_item(keys("bl_a"), "k", loc(5)).unwrap();
    ix.put_event("bl_a", loc(1)).unwrap();
    ix.put_event("bl_b", loc(2)).unwrap();
    ix.put_event("bl_a", loc(3)).unwrap();
    assert_eq!(ix.events_of("bl_a", 10), vec![loc(0), loc(1), loc(3)]);
    assert_eq!(ix.events_of("bl_a", 2), vec![loc(0), loc(1)]);
    assert_eq!(ix.item_count(), 1);
    assert_eq!(ix.list(&ListQuery::default(), "2026-01-01").1, 1);
    assert_eq!(ix.event_count(), 4);
    ix.clear_events();
    assert!(ix.events_of("bl_a", 10).is_empty());
    assert_eq!(ix.item("bl_a"), Some(loc(5)));
    assert_eq!(ix.by_dedupe("k"), Some(loc(5)));
}

/// One random change: an item line (id, dedupe key, env) or an event line (item id).
fn change() -> impl proptest::strategy::Strategy<Value = (bool, u8, u8, u8)> {
    use proptest::prelude::*;
    (any::<bool>(), 0u8..40, 0u8..12, 0u8..3)
}

fn apply(ix: &mut Index, (is_item, id, key, env): (bool, u8, u8, u8), off: u64) {
    let id_s = format!("bl_{id:02}");
    if is_item {
        let mut k = keys(&id_s);
        k.env = format!("e{env}");
        ix.put_item(k, &format!("k{key}"), loc(off)).unwrap();
    } else {
        ix.put_event(&id_s, loc(off)).unwrap();
    }
}

/// Everything a lazy index answers without decoding, for every id and key.
fn lookups(ix: &Index) -> Vec<String> {
    let mut out = vec![format!("{} {}", ix.item_count(), ix.event_count())];
    for id in 0..42u8 {
        let id = format!("bl_{id:02}");
        out.push(format!(
            "{id} {:?} {:?} {:?}",
            ix.item(&id),
            ix.events_of(&id, 100),
            ix.events_of(&id, 2)
        ));
    }
    for key in 0..13 {
        out.push(format!("k{key} {:?}", ix.by_dedupe(&format!("k{key}"))));
    }
    out
}

proptest::proptest! {
    /// A snapshot opened lazily answers lookups like the index it was taken from, keeps
    /// answering like it as changes follow, and decodes (`materialize`) into the same
    /// index with the changes replayed — the same listing too.
    #[test]
    fn a_lazy_snapshot_answers_like_the_full_index(
        before in proptest::collection::vec(change(), 0..120),
        after in proptest::collection::vec(change(), 0..40),
    ) {
        let mut full = Index::default();
        for (i, c) in before.iter().enumerate() {
            apply(&mut full, *c, i as u64);
        }
        let mut bytes = Vec::new();
        full.encode(&mut bytes);
        // Small blocks: lookups read and cross many of them.
        let mut lazy = Index::open_lazy(in_memory(&bytes, bytes.clone(), 64)).expect("opens");
        proptest::prop_assert_eq!(lookups(&lazy), lookups(&full));
        for (i, c) in after.iter().enumerate() {
            apply(&mut full, *c, 1000 + i as u64);
            apply(&mut lazy, *c, 1000 + i as u64);
        }
        proptest::prop_assert!(lazy.is_lazy());
        proptest::prop_assert_eq!(lookups(&lazy), lookups(&full));
        let q = ListQuery { limit: 1000, ..ListQuery::default() };
        let want: Vec<(String, Loc)> = full.list(&q, "2026-01-01").0.into_iter()
            .map(|(id, l)| (id.to_owned(), l)).collect();
        let got: Vec<(String, Loc)> = lazy.list(&q, "2026-01-01").0.into_iter()
            .map(|(id, l)| (id.to_owned(), l)).collect();
        proptest::prop_assert!(!lazy.is_lazy());
        proptest::prop_assert_eq!(got, want);
        proptest::prop_assert_eq!(lookups(&lazy), lookups(&full));
    }

    /// Damaged bytes (which the checkpoint's hash would normally refuse) never panic or
    /// loop: a lazy open, its lookups and its decode each answer or refuse.
    #[test]
    fn a_damaged_snapshot_never_panics(
        before in proptest::collection::vec(change(), 1..60),
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
    ) {
        let mut full = Index::default();
        for (i, c) in before.iter().enumerate() {
            apply(&mut full, *c, i as u64);
        }
        let mut bytes = Vec::new();
        full.encode(&mut bytes);
        let mut damaged = bytes.clone();
        for (at, b) in &flips {
            let n = damaged.len();
            damaged[at % n] ^= b | 1;
        }
        // Unchecked (given whole): every read answers or refuses.
        if let Some(mut lazy) = Index::open_lazy(Pages::whole(damaged.clone())) {
            let _ = lookups(&lazy);
            let _ = lazy.materialize();
        }
        // Checked against the good bytes' hashes: an answer that read no damaged block is
        // the full index's answer, and a damaged block is reported, never used.
        if let Some(mut lazy) = Index::open_lazy(in_memory(&bytes, damaged, 64)) {
            let got = lookups(&lazy);
            if !lazy.damaged() {
                proptest::prop_assert_eq!(got, lookups(&full));
            }
            if lazy.materialize() {
                proptest::prop_assert_eq!(lookups(&lazy), lookups(&full));
            }
        }
    }
}

/// One random item line for the listing test: id, priority, status, due day, env.
fn listed() -> impl proptest::strategy::Strategy<Value = (u8, u8, u8, u8, u8)> {
    (0u8..60, 0u8..4, 0u8..5, 0u8..6, 0u8..3)
}

fn put_listed(ix: &mut Index, (id, p, st, due, env): (u8, u8, u8, u8, u8), off: u64) {
    let id = format!("bl_{id:02}");
    let k = ItemKeys {
        env: format!("e{env}"),
        priority: [Priority::P0, Priority::P1, Priority::P2, Priority::P3][p as usize],
        status: [
            Status::Open,
            Status::InProgress,
            Status::Blocked,
            Status::Done,
            Status::Canceled,
        ][st as usize],
        due_date: format!("2026-01-{:02}", 1 + due),
        service: format!("s{}", (p + st) % 2),
        owner: format!("o{}", (due + env) % 2),
        ..keys(&id)
    };
    ix.put_item(k, &id, loc(off)).unwrap();
}

fn owned(page: (Vec<(&str, Loc)>, usize)) -> (Vec<(String, Loc)>, usize) {
    let ids = page.0.into_iter().map(|(id, l)| (id.to_owned(), l));
    (ids.collect(), page.1)
}

proptest::proptest! {
    /// A listing from a lazily opened snapshot (with changes after it) answers what the full
    /// index answers, for filters, offsets and limits, and leaves the index lazy.
    #[test]
    fn a_lazy_snapshot_lists_like_the_full_index(
        before in proptest::collection::vec(listed(), 0..120),
        after in proptest::collection::vec(listed(), 0..30),
        env in proptest::option::of(0u8..3),
        status in proptest::collection::vec(0u8..5, 0..3),
        overdue in proptest::option::of(proptest::prelude::any::<bool>()),
        (priority, due_before, service, owner) in (
            proptest::option::of(0usize..4),
            proptest::option::of(1u8..8),
            proptest::option::of(0u8..2),
            proptest::option::of(0u8..2),
        ),
        offset in 0usize..40,
        limit in 0usize..30,
    ) {
        let mut full = Index::default();
        for (i, c) in before.iter().enumerate() {
            put_listed(&mut full, *c, i as u64);
        }
        let mut bytes = Vec::new();
        full.encode(&mut bytes);
        let mut lazy = Index::open_lazy(in_memory(&bytes, bytes.clone(), 64)).expect("opens");
        for (i, c) in after.iter().enumerate() {
            put_listed(&mut full, *c, 1000 + i as u64);
            put_listed(&mut lazy, *c, 1000 + i as u64);
        }
        let all = [Status::Open, Status::InProgress, Status::Blocked, Status::Done, Status::Canceled];
        let q = ListQuery {
            env: env.map(|e| format!("e{e}")),
            status: status.iter().map(|&s| all[s as usize]).collect(),
            overdue,
            priority: priority.map(|p| [Priority::P0, Priority::P1, Priority::P2, Priority::P3][p]),
            due_before: due_before.map(|d| format!("2026-01-{d:02}")),
            service: service.map(|s| format!("s{s}")),
            owner: owner.map(|o| format!("o{o}")),
            category: None,
            offset,
            limit,
        };
        let got = lazy.list_lazy(&q, "2026-01-03").expect("lists lazily");
        proptest::prop_assert!(lazy.is_lazy());
        proptest::prop_assert_eq!(got, owned(full.list(&q, "2026-01-03")));
    }
}
