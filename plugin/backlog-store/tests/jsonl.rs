//! Native tests of the JSONL store: index correctness against a full scan, refresh across
//! "processes" (two store instances on one directory), rewrite detection, corrupt lines,
//! torn tails, read-only grants, and the null store.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use backlog_core::list::{self, ItemKeys, ListQuery};
use backlog_core::mem::MemStore;
use backlog_core::model::{Event, EventType, Item, Priority, Source, Status};
use backlog_core::store::{BacklogStore, StoreError};
use backlog_store::{
    Access, Durability, EVENTS_FILE, ITEMS_FILE, IndexStats, JsonlStore, NullStore,
};

type Warnings = Rc<RefCell<Vec<String>>>;

fn store(dir: &Path, access: Access) -> (JsonlStore, Warnings) {
    let warnings: Warnings = Rc::default();
    let w = warnings.clone();
    let s = JsonlStore::open(
        dir.to_path_buf(),
        access,
        Box::new(move |m| w.borrow_mut().push(m.to_owned())),
    );
    (s, warnings)
}

fn rw(dir: &Path) -> JsonlStore {
    store(dir, Access::ReadWrite).0
}

/// A deterministic pseudo-random generator (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() as usize) % from.len()]
    }
}

fn item(n: u64) -> Item {
    let id = format!("bl_{n:012x}");
    Item {
        id: id.clone(),
        created_at: "2026-03-02T06:20:01.123456Z".into(),
        updated_at: "2026-03-02T06:20:01.123456Z".into(),
        env: "prod".into(),
        service: "api".into(),
        category: "refactor".into(),
        title: format!("item {n}"),
        description: "- signal one\n- signal two".into(),
        priority: Priority::P2,
        status: Status::Open,
        owner: "oncall".into(),
        due_date: "2026-03-09".into(),
        source: Source::Manual,
        dedupe_key: format!("manual:{id}"),
        evidence_refs: BTreeMap::from([("alerts".to_string(), vec!["al_1".to_string()])]),
        tags: vec!["t".into()],
        meta: serde_json::Map::new(),
    }
}

fn random_item(rng: &mut Lcg, n: u64) -> Item {
    let mut it = item(n);
    it.env = rng.pick(&["prod", "staging", "dev"]).into();
    it.service = rng.pick(&["api", "web", "db", "queue", "auth"]).into();
    it.owner = rng.pick(&["oncall", "cto", "team-a", "team-b"]).into();
    it.category = rng
        .pick(&["arch_review", "refactor", "slo_hardening", "security"])
        .into();
    it.priority =
        [Priority::P0, Priority::P1, Priority::P2, Priority::P3][(rng.next() % 4) as usize];
    it.status = [
        Status::Open,
        Status::InProgress,
        Status::Blocked,
        Status::Done,
        Status::Canceled,
    ][(rng.next() % 5) as usize];
    it.due_date = format!("2026-{:02}-{:02}", 1 + rng.next() % 12, 1 + rng.next() % 28);
    it
}

fn event(n: u64, item_id: &str) -> Event {
    Event {
        id: format!("ev_{n:012x}"),
        item_id: item_id.into(),
        ts: "2026-03-02T06:20:01.123456Z".into(),
        kind: EventType::Commented,
        actor: "tester".into(),
        message: format!("event {n}"),
        meta: serde_json::Map::new(),
    }
}

fn line<T: serde::Serialize>(v: &T) -> String {
    format!("{}\n", serde_json::to_string(v).unwrap())
}

fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Replaces `path` the way cleanup does: temp file + rename (a new inode).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn all(query: ListQuery) -> ListQuery {
    ListQuery {
        limit: 1000,
        ..query
    }
}

/// The reference: parse every line, keep the last per id, filter, sort, page.
fn naive_list(dir: &Path, q: &ListQuery, today: &str) -> (Vec<Item>, usize) {
    let text = fs::read_to_string(dir.join(ITEMS_FILE)).unwrap_or_default();
    let mut latest: HashMap<String, Item> = HashMap::new();
    for l in text.split_terminator('\n') {
        if let Ok(it) = serde_json::from_str::<Item>(l) {
            latest.insert(it.id.clone(), it);
        }
    }
    let mut hits: Vec<Item> = latest
        .into_values()
        .filter(|it| q.matches(&ItemKeys::of(it), today))
        .collect();
    hits.sort_by(|a, b| list::compare(&ItemKeys::of(a), &ItemKeys::of(b)));
    let total = hits.len();
    (
        hits.into_iter().skip(q.offset).take(q.limit).collect(),
        total,
    )
}

#[test]
fn empty_and_missing_directory_read_as_empty_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backlog");
    for access in [Access::ReadOnly, Access::ReadWrite] {
        let (mut s, warnings) = store(&dir, access);
        assert_eq!(s.backend(), "jsonl");
        assert_eq!(s.get("bl_000000000001").unwrap(), None);
        assert_eq!(s.find_by_dedupe_key("k").unwrap(), None);
        let page = s.list(&ListQuery::default(), "2026-01-01").unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.total, 0);
        assert!(s.events("bl_000000000001", 10).unwrap().is_empty());
        assert_eq!(s.stats(), IndexStats::default());
        assert!(warnings.borrow().is_empty());
    }
    assert!(!dir.exists(), "reading must not create the directory");
}

#[test]
fn write_then_read_back_with_events_and_dedupe() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = rw(tmp.path());
    let a = item(1);
    s.write(Some(&a), &[event(1, &a.id)]).unwrap();
    assert_eq!(s.get(&a.id).unwrap(), Some(a.clone()));
    assert_eq!(
        s.find_by_dedupe_key(&a.dedupe_key).unwrap(),
        Some(a.clone())
    );
    assert_eq!(s.events(&a.id, 10).unwrap(), vec![event(1, &a.id)]);

    // Update: new key, more events; old key no longer finds it.
    let mut a2 = a.clone();
    a2.title = "renamed".into();
    a2.dedupe_key = "gen:2026-48:prod:api:refactor".into();
    s.write(Some(&a2), &[event(2, &a.id), event(3, &a.id)])
        .unwrap();
    assert_eq!(s.get(&a.id).unwrap(), Some(a2.clone()));
    assert_eq!(s.find_by_dedupe_key(&a.dedupe_key).unwrap(), None);
    assert_eq!(
        s.find_by_dedupe_key(&a2.dedupe_key).unwrap(),
        Some(a2.clone())
    );
    let evs = s.events(&a.id, 10).unwrap();
    assert_eq!(evs, vec![event(1, &a.id), event(2, &a.id), event(3, &a.id)]);
    assert_eq!(s.events(&a.id, 2).unwrap().len(), 2);
    assert_eq!(
        s.stats(),
        IndexStats {
            items: 1,
            events: 3,
            lines: 5,
            corrupt: 0,
            lazy: false
        }
    );

    // Events-only write (item None) and an empty write.
    s.write(None, &[event(4, &a.id)]).unwrap();
    s.write(None, &[]).unwrap();
    assert_eq!(s.events(&a.id, 10).unwrap().len(), 4);

    // A fresh instance reads the same from disk, and the lines are compact JSON.
    let mut fresh = rw(tmp.path());
    assert_eq!(fresh.get(&a.id).unwrap(), Some(a2.clone()));
    assert_eq!(fresh.events(&a.id, 10).unwrap().len(), 4);
    let text = fs::read_to_string(tmp.path().join(ITEMS_FILE)).unwrap();
    assert_eq!(text, format!("{}{}", line(&a), line(&a2)));
}

#[test]
fn last_line_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let mut v1 = item(7);
    v1.status = Status::Open;
    let mut v2 = v1.clone();
    v2.status = Status::InProgress;
    let mut v3 = v1.clone();
    v3.status = Status::Done;
    v3.priority = Priority::P0;
    let other = item(8);
    let text = [line(&v1), line(&other), line(&v2), line(&v3)].concat();
    fs::write(tmp.path().join(ITEMS_FILE), text).unwrap();
    let (mut s, _) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(s.get(&v1.id).unwrap(), Some(v3.clone()));
    let page = s.list(&all(ListQuery::default()), "2026-01-01").unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.items, vec![v3.clone(), other]);
    let done = ListQuery {
        status: vec![Status::Open],
        ..all(ListQuery::default())
    };
    assert_eq!(s.list(&done, "2026-01-01").unwrap().total, 1);
    assert_eq!(s.stats().items, 2);
    assert_eq!(s.stats().lines, 4);
}

#[test]
fn tail_refresh_sees_appends_by_another_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let mut writer = rw(tmp.path());
    let (mut reader, warnings) = store(tmp.path(), Access::ReadOnly);
    let a = item(1);
    writer.write(Some(&a), &[event(1, &a.id)]).unwrap();
    assert_eq!(reader.get(&a.id).unwrap(), Some(a.clone()));
    // `get` only needs (and only indexes) items.jsonl.
    assert_eq!(reader.stats().lines, 1);

    // New item, updated item (the index moves to its new line), new events.
    let b = item(2);
    let mut a2 = a.clone();
    a2.owner = "cto".into();
    writer.write(Some(&b), &[event(2, &b.id)]).unwrap();
    writer.write(Some(&a2), &[event(3, &a.id)]).unwrap();
    assert_eq!(reader.get(&b.id).unwrap(), Some(b.clone()));
    assert_eq!(reader.get(&a.id).unwrap(), Some(a2.clone()));
    let owners = ListQuery {
        owner: Some("cto".into()),
        ..ListQuery::default()
    };
    assert_eq!(
        reader.list(&owners, "2026-01-01").unwrap().items,
        vec![a2.clone()]
    );
    assert_eq!(
        reader.events(&a.id, 10).unwrap(),
        vec![event(1, &a.id), event(3, &a.id)]
    );
    assert_eq!(reader.events(&b.id, 10).unwrap(), vec![event(2, &b.id)]);
    assert_eq!(
        reader.stats(),
        IndexStats {
            items: 2,
            events: 3,
            lines: 6,
            corrupt: 0,
            lazy: false
        }
    );

    // A line appended in two halves (an append in progress) shows up only when complete.
    let c = item(3);
    let full = line(&c);
    let (first, second) = full.split_at(full.len() / 2);
    append(&tmp.path().join(ITEMS_FILE), first);
    assert_eq!(reader.get(&c.id).unwrap(), None);
    append(&tmp.path().join(ITEMS_FILE), second);
    assert_eq!(reader.get(&c.id).unwrap(), Some(c));
    // The writer sees the other "process" too.
    assert_eq!(writer.stats().items, 2);
    writer.refresh().unwrap();
    assert_eq!(writer.stats().items, 3);
    // A reader cannot tell a half-written line from a torn one: it says so, once.
    let w = warnings.borrow().clone();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("jsonl: skipping torn last line items.jsonl:4: ")
            && w[0].contains("in progress"),
        "{w:?}"
    );
}

#[test]
fn events_before_their_item_and_events_of_a_gone_item() {
    let tmp = tempfile::tempdir().unwrap();
    let a = item(1);
    // The events file already holds an event of `a` and of an item that does not exist.
    fs::write(
        tmp.path().join(EVENTS_FILE),
        [line(&event(1, &a.id)), line(&event(2, "bl_00000000dead"))].concat(),
    )
    .unwrap();
    let (mut s, _) = store(tmp.path(), Access::ReadWrite);
    assert!(s.events(&a.id, 10).unwrap().is_empty());
    assert!(s.events("bl_00000000dead", 10).unwrap().is_empty());
    append(&tmp.path().join(ITEMS_FILE), &line(&a));
    assert_eq!(s.events(&a.id, 10).unwrap(), vec![event(1, &a.id)]);
    s.write(Some(&a), &[event(3, &a.id)]).unwrap();
    assert_eq!(
        s.events(&a.id, 10).unwrap(),
        vec![event(1, &a.id), event(3, &a.id)]
    );
    assert!(s.events("bl_00000000dead", 10).unwrap().is_empty());
}

#[test]
fn rewrite_to_a_shorter_file_rebuilds_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = rw(tmp.path());
    let items: Vec<Item> = (1..=5).map(item).collect();
    for it in &items {
        s.write(Some(it), &[event(it.title.len() as u64, &it.id)])
            .unwrap();
    }
    let mut it3 = items[2].clone();
    it3.title = "updated".into();
    s.write(Some(&it3), &[]).unwrap();
    let (mut reader, _) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(
        reader
            .list(&ListQuery::default(), "2026-01-01")
            .unwrap()
            .total,
        5
    );

    // Cleanup: drop superseded lines and items 1 and 2, rewrite atomically.
    let kept = [line(&it3), line(&items[3]), line(&items[4])].concat();
    replace(&tmp.path().join(ITEMS_FILE), &kept);
    replace(&tmp.path().join(EVENTS_FILE), &line(&event(9, &it3.id)));
    for st in [&mut s, &mut reader] {
        assert_eq!(st.get(&items[0].id).unwrap(), None);
        assert_eq!(st.get(&it3.id).unwrap(), Some(it3.clone()));
        assert_eq!(
            st.list(&ListQuery::default(), "2026-01-01").unwrap().total,
            3
        );
        assert_eq!(st.events(&it3.id, 10).unwrap(), vec![event(9, &it3.id)]);
        assert_eq!(
            st.stats(),
            IndexStats {
                items: 3,
                events: 1,
                lines: 4,
                corrupt: 0,
                lazy: false
            }
        );
    }
    // Appends after the rewrite are picked up as a tail again.
    let six = item(6);
    s.write(Some(&six), &[]).unwrap();
    assert_eq!(reader.get(&six.id).unwrap(), Some(six));
}

#[test]
fn same_length_replacement_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(ITEMS_FILE);
    let (a, b) = (item(0xa), item(0xb));
    fs::write(&path, line(&a)).unwrap();
    let (mut s, _) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(s.get(&a.id).unwrap(), Some(a.clone()));
    // Same length, different content, via rename (a new inode).
    assert_eq!(line(&a).len(), line(&b).len());
    replace(&path, &line(&b));
    assert_eq!(s.get(&a.id).unwrap(), None);
    assert_eq!(s.get(&b.id).unwrap(), Some(b.clone()));
    // Same length, different content, rewritten in place (same inode): the tail check sees it.
    let mut b2 = b.clone();
    b2.title = "item xy".into();
    assert_eq!(line(&b).len(), line(&b2).len());
    fs::write(&path, line(&b2)).unwrap();
    assert_eq!(s.get(&b.id).unwrap(), Some(b2));
}

#[test]
fn removed_file_reads_as_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = rw(tmp.path());
    let a = item(1);
    s.write(Some(&a), &[event(1, &a.id)]).unwrap();
    fs::remove_file(tmp.path().join(ITEMS_FILE)).unwrap();
    fs::remove_file(tmp.path().join(EVENTS_FILE)).unwrap();
    assert_eq!(s.get(&a.id).unwrap(), None);
    assert!(s.events(&a.id, 10).unwrap().is_empty());
    assert_eq!(s.stats(), IndexStats::default());
    s.write(Some(&a), &[]).unwrap();
    assert_eq!(s.get(&a.id).unwrap(), Some(a));
}

#[test]
fn corrupt_lines_are_skipped_with_one_warning_each() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (item(1), item(2), item(3));
    let not_an_item = r#"{"id":"bl_000000000009","title":"missing fields"}"#;
    let text = [
        line(&a),
        "{not json\n".to_string(),
        line(&b),
        "\n".to_string(),
        format!("{not_an_item}\n"),
        line(&c),
    ]
    .concat();
    fs::write(tmp.path().join(ITEMS_FILE), text).unwrap();
    fs::write(tmp.path().join(EVENTS_FILE), "[1,2]\n").unwrap();
    let (mut s, warnings) = store(tmp.path(), Access::ReadWrite);
    for _ in 0..3 {
        assert_eq!(s.get(&b.id).unwrap(), Some(b.clone()));
        assert_eq!(
            s.list(&ListQuery::default(), "2026-01-01").unwrap().total,
            3
        );
        assert!(s.events(&b.id, 10).unwrap().is_empty());
    }
    let w = warnings.borrow().clone();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[0].starts_with("jsonl: skipping corrupt line items.jsonl:2: "),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("jsonl: skipping corrupt line items.jsonl:5: "),
        "{w:?}"
    );
    assert!(w[1].contains("missing field"), "{w:?}");
    assert!(
        w[2].starts_with("jsonl: skipping corrupt line events.jsonl:1: "),
        "{w:?}"
    );
    assert_eq!(s.stats().corrupt, 3);

    // Line numbers continue across tail reads.
    append(&tmp.path().join(ITEMS_FILE), "garbage\n");
    s.write(Some(&item(4)), &[]).unwrap();
    append(&tmp.path().join(ITEMS_FILE), "]\n");
    assert_eq!(
        s.list(&ListQuery::default(), "2026-01-01").unwrap().total,
        4
    );
    let w = warnings.borrow().clone();
    assert_eq!(w.len(), 5, "{w:?}");
    assert!(
        w[3].starts_with("jsonl: skipping corrupt line items.jsonl:7: "),
        "{w:?}"
    );
    assert!(
        w[4].starts_with("jsonl: skipping corrupt line items.jsonl:9: "),
        "{w:?}"
    );
}

#[test]
fn torn_tail_is_invisible_then_cut_by_the_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    let items_path = tmp.path().join(ITEMS_FILE);
    let events_path = tmp.path().join(EVENTS_FILE);
    let (a, b, c) = (item(1), item(2), item(3));
    let torn_b = line(&b);
    let torn_ev = line(&event(9, &a.id));
    fs::write(&items_path, format!("{}{}", line(&a), &torn_b[..40])).unwrap();
    fs::write(&events_path, &torn_ev[..20]).unwrap();

    let (mut reader, reader_warnings) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(reader.get(&a.id).unwrap(), Some(a.clone()));
    assert_eq!(reader.get(&b.id).unwrap(), None);
    assert_eq!(
        reader
            .list(&ListQuery::default(), "2026-01-01")
            .unwrap()
            .total,
        1
    );
    assert!(reader.events(&a.id, 10).unwrap().is_empty());
    // Skipped on read with one warning each, naming file and line (not one per look).
    assert_eq!(reader.get(&b.id).unwrap(), None);
    let w = reader_warnings.borrow().clone();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("jsonl: skipping torn last line items.jsonl:2: "),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("jsonl: skipping torn last line events.jsonl:1: "),
        "{w:?}"
    );

    let (mut writer, warnings) = store(tmp.path(), Access::ReadWrite);
    writer.write(Some(&c), &[event(1, &c.id)]).unwrap();
    let w = warnings.borrow().clone();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("torn") && w[0].contains(ITEMS_FILE), "{w:?}");
    assert!(w[1].contains("torn") && w[1].contains(EVENTS_FILE), "{w:?}");
    assert_eq!(
        fs::read_to_string(&items_path).unwrap(),
        format!("{}{}", line(&a), line(&c))
    );
    assert_eq!(
        fs::read_to_string(&events_path).unwrap(),
        line(&event(1, &c.id))
    );
    for s in [&mut writer, &mut reader] {
        assert_eq!(s.get(&c.id).unwrap(), Some(c.clone()));
        assert_eq!(s.get(&b.id).unwrap(), None);
        assert_eq!(s.events(&c.id, 10).unwrap(), vec![event(1, &c.id)]);
        assert_eq!(s.stats().corrupt, 0);
    }
    assert_eq!(reader_warnings.borrow().len(), 2);
}

/// Writes `a`, then a change of `a` with two events, and cuts `events.jsonl` inside the second
/// event line as a crash would (the write intent stays): the change was never acknowledged.
fn interrupted_change(dir: &Path) -> (Item, (u64, u64)) {
    let a = item(1);
    let mut w = rw(dir);
    w.write(Some(&a), &[event(1, &a.id)]).unwrap();
    let len = |f: &str| fs::metadata(dir.join(f)).unwrap().len();
    let before = (len(ITEMS_FILE), len(EVENTS_FILE));
    let mut changed = a.clone();
    changed.title = "never acknowledged".into();
    changed.status = Status::Blocked;
    w.write(Some(&changed), &[event(2, &a.id), event(3, &a.id)])
        .unwrap();
    let events = fs::OpenOptions::new()
        .write(true)
        .open(dir.join(EVENTS_FILE))
        .unwrap();
    events.set_len(len(EVENTS_FILE) - 5).unwrap();
    (a, before)
}

/// A crash inside a write (its intent synced first, each file holding a prefix of its lines):
/// readers see the store as it was before the write, with one warning, and cut nothing; the
/// next write cuts it off both files and lands whole.
#[test]
fn an_interrupted_write_is_invisible_then_cut_by_the_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, before) = interrupted_change(tmp.path());
    let lens = || {
        let len = |f: &str| fs::metadata(tmp.path().join(f)).unwrap().len();
        (len(ITEMS_FILE), len(EVENTS_FILE))
    };
    let crashed = lens();
    for access in [Access::ReadOnly, Access::ReadWrite] {
        let (mut s, warnings) = store(tmp.path(), access);
        assert_eq!(s.get(&a.id).unwrap(), Some(a.clone()));
        assert_eq!(s.events(&a.id, 10).unwrap(), vec![event(1, &a.id)]);
        let page = s.list(&ListQuery::default(), "2026-01-01").unwrap();
        assert_eq!(page.items, vec![a.clone()]);
        let w = warnings.borrow().clone();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "jsonl: debug: reading up to an unfinished write (items.jsonl after byte"
            ),
            "{w:?}"
        );
        assert_eq!(lens(), crashed, "a read cut something");
    }

    let (mut writer, warnings) = store(tmp.path(), Access::ReadWrite);
    let b = item(2);
    writer.write(Some(&b), &[event(4, &b.id)]).unwrap();
    let w = warnings.borrow().clone();
    assert!(
        w.iter()
            .any(|w| w.contains("cut an interrupted write off items.jsonl")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("cut an interrupted write off events.jsonl")),
        "{w:?}"
    );
    let after = lens();
    assert_eq!(
        after,
        (
            before.0 + line(&b).len() as u64,
            before.1 + line(&event(4, &b.id)).len() as u64
        )
    );
    let (mut fresh, warnings) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(fresh.get(&a.id).unwrap(), Some(a.clone()));
    assert_eq!(fresh.get(&b.id).unwrap(), Some(b.clone()));
    assert_eq!(fresh.events(&a.id, 10).unwrap(), vec![event(1, &a.id)]);
    assert_eq!(fresh.events(&b.id, 10).unwrap(), vec![event(4, &b.id)]);
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());
}

/// `cleanup` cuts an interrupted write off before it removes the write intent (which would
/// otherwise let the half write show).
#[test]
fn cleanup_cuts_an_interrupted_write_before_it_drops_the_intent() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = interrupted_change(tmp.path());
    let (mut s, _) = store(tmp.path(), Access::ReadWrite);
    assert_eq!(s.cleanup(CUTOFF, false).unwrap(), 0);
    assert!(!tmp.path().join(backlog_store::INTENT_FILE).exists());
    let (mut fresh, warnings) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(fresh.get(&a.id).unwrap(), Some(a.clone()));
    assert_eq!(fresh.events(&a.id, 10).unwrap(), vec![event(1, &a.id)]);
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());
}

/// Within calls whose syncs the host makes (as in the component), the write intent covers
/// the whole call: a call cut short (a trap: no `end_call`) shows none of its writes and the
/// next call cuts them off; a call that ended shows all of them.
#[test]
fn a_call_that_never_ended_shows_none_of_its_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (item(1), item(2), item(3));
    let deferred = |s: JsonlStore| s.with_durability(Durability::Deferred);
    let (w, _) = store(tmp.path(), Access::ReadWrite);
    let mut w = deferred(w);
    w.begin_call();
    w.write(Some(&a), &[event(1, &a.id)]).unwrap();
    w.end_call().unwrap();
    w.begin_call();
    w.write(Some(&b), &[event(2, &b.id)]).unwrap();
    w.write(Some(&c), &[event(3, &c.id)]).unwrap();
    // The call reads its own writes while it runs.
    assert_eq!(w.get(&c.id).unwrap(), Some(c.clone()));
    drop(w); // trapped: no end_call

    let (mut r, warnings) = store(tmp.path(), Access::ReadOnly);
    r.begin_call();
    let page = r.list(&ListQuery::default(), "2026-01-01").unwrap();
    assert_eq!(page.items, vec![a.clone()]);
    assert_eq!(r.events(&b.id, 10).unwrap(), vec![]);
    assert!(
        warnings.borrow()[0].starts_with("jsonl: debug: reading up to an unfinished write"),
        "{:?}",
        warnings.borrow()
    );

    let (w, warnings) = store(tmp.path(), Access::ReadWrite);
    let mut w = deferred(w);
    w.begin_call();
    let d = item(4);
    w.write(Some(&d), &[event(4, &d.id)]).unwrap();
    w.end_call().unwrap();
    assert!(
        warnings
            .borrow()
            .iter()
            .any(|w| w.contains("cut an interrupted write off items.jsonl")),
        "{:?}",
        warnings.borrow()
    );
    let (mut fresh, warnings) = store(tmp.path(), Access::ReadOnly);
    let ids: Vec<_> = fresh
        .list(&ListQuery::default(), "2026-01-01")
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&a.id) && ids.contains(&d.id), "{ids:?}");
    assert_eq!(fresh.events(&d.id, 10).unwrap(), vec![event(4, &d.id)]);
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());
}

#[test]
fn torn_tail_replaced_by_a_line_of_the_same_length_is_seen() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, c) = (item(1), item(3));
    let torn = "x".repeat(line(&c).len());
    fs::write(tmp.path().join(ITEMS_FILE), format!("{}{torn}", line(&a))).unwrap();
    let (mut reader, _) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(
        reader
            .list(&ListQuery::default(), "2026-01-01")
            .unwrap()
            .total,
        1
    );
    let mut writer = rw(tmp.path());
    writer.write(Some(&c), &[]).unwrap();
    assert_eq!(reader.get(&c.id).unwrap(), Some(c));
}

#[test]
fn overlong_line_is_skipped_as_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let a = item(1);
    let huge = format!("{{\"x\":\"{}\"}}\n", "y".repeat(9 << 20));
    fs::write(tmp.path().join(ITEMS_FILE), format!("{huge}{}", line(&a))).unwrap();
    let (mut s, warnings) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(s.get(&a.id).unwrap(), Some(a));
    let w = warnings.borrow().clone();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("jsonl: skipping corrupt line items.jsonl:1: line is longer than"));
}

#[test]
fn read_only_write_is_forbidden_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = item(1);
    let items_text = format!("{}{}", line(&a), "{\"torn");
    fs::write(tmp.path().join(ITEMS_FILE), &items_text).unwrap();
    let (mut s, warnings) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(s.access(), Access::ReadOnly);
    let err = s.write(Some(&item(2)), &[event(1, &a.id)]).unwrap_err();
    match err {
        StoreError::Forbidden(m) => {
            assert!(
                m.contains("the sandbox refused to write items.jsonl"),
                "{m}"
            )
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    assert!(matches!(
        s.write(None, &[event(1, &a.id)]),
        Err(StoreError::Forbidden(m)) if m.contains("events.jsonl")
    ));
    assert_eq!(
        fs::read_to_string(tmp.path().join(ITEMS_FILE)).unwrap(),
        items_text
    );
    assert!(!tmp.path().join(EVENTS_FILE).exists());
    assert!(warnings.borrow().is_empty());
}

#[cfg(unix)]
#[test]
fn os_permission_denied_maps_to_unavailable_not_forbidden() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(ITEMS_FILE);
    fs::write(&path, line(&item(1))).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    if fs::OpenOptions::new().append(true).open(&path).is_ok() {
        return; // running as root: permissions are not enforced (the e2e test covers it)
    }
    let mut s = rw(tmp.path());
    match s.write(Some(&item(2)), &[]) {
        Err(StoreError::Unavailable(m)) => {
            assert!(
                m.starts_with(
                    "cannot write items.jsonl in the store directory: permission denied (EACCES)"
                ),
                "{m}"
            )
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(s.get(&item(1).id).unwrap(), Some(item(1)));
}

/// `meta` nested `n` levels below the item's `meta` object, as text.
fn deep_meta_line(n: u64, levels: usize) -> String {
    let mut it = item(n);
    it.meta.insert("k".into(), serde_json::json!("MARK"));
    let text = serde_json::to_string(&it).unwrap();
    let deep = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    format!("{}\n", text.replace("\"MARK\"", &deep))
}

#[test]
fn items_over_the_limits_from_older_versions_are_read_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(ITEMS_FILE);
    // 125 levels parse (but would break the host's result parse), 300 do not parse at all.
    let mut text = deep_meta_line(1, 125) + &deep_meta_line(2, 300);
    let mut big = item(3);
    big.evidence_refs = BTreeMap::from([(
        "alerts".to_string(),
        (0..20_000).map(|i| format!("al_{i:08}")).collect(),
    )]);
    text += &line(&big);
    text += &line(&item(4));
    append(&path, &text);
    let (mut s, warnings) = store(tmp.path(), Access::ReadOnly);
    let page = s.list(&all(ListQuery::default()), "2026-03-02").unwrap();
    assert_eq!(page.total, 4);
    assert_eq!(page.items.len(), 4);
    for it in &page.items[..3] {
        backlog_core::validate::item(it).unwrap_or_else(|e| panic!("{}: {e}", it.id));
    }
    let deep = page.items.iter().find(|i| i.id == item(2).id).unwrap();
    let why = deep.meta["_truncated"].as_str().unwrap_or_default();
    assert!(why.contains("301 levels deep"), "{why}");
    let got = s.get(&big.id).unwrap().unwrap();
    assert_eq!(got.evidence_refs["alerts"].len(), 1000);
    assert_eq!(s.get(&item(4).id).unwrap(), Some(item(4)));
    // One warning per repaired item, naming it, however often it is read.
    s.list(&all(ListQuery::default()), "2026-03-02").unwrap();
    let w = warnings.borrow();
    for n in 1..=3 {
        let id = item(n).id;
        assert_eq!(
            w.iter().filter(|m| m.contains(&id)).count(),
            1,
            "{id}: {w:?}"
        );
    }
    assert!(w.iter().all(|m| !m.contains("corrupt")), "{w:?}");
    drop(w);
    // Cleanup keeps them (they are items, not corrupt lines).
    let mut s = rw(tmp.path());
    assert_eq!(s.cleanup("2026-03-10T00:00:00.000000Z", false).unwrap(), 0);
    assert_eq!(s.keys(None).unwrap().len(), 4);
}

#[test]
fn list_pages_stay_within_the_byte_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(ITEMS_FILE);
    let mut text = String::new();
    for n in 1..=25 {
        let mut it = item(n);
        // ~0.95 MB of evidence per item, as an older version accepted.
        it.evidence_refs = BTreeMap::from([(
            "alerts".to_string(),
            (0..79_000).map(|i| format!("a{i:08}")).collect(),
        )]);
        text += &line(&it);
    }
    append(&path, &text);
    let mut s = rw(tmp.path());
    let mut q = ListQuery::default();
    let mut seen = Vec::new();
    loop {
        let page = s.list(&q, "2026-03-02").unwrap();
        assert_eq!(page.total, 25);
        let line_bytes = fs::metadata(&path).unwrap().len() / 25;
        assert!(
            page.items.len() as u64 * line_bytes <= backlog_store::PAGE_MAX_BYTES,
            "{} items of {line_bytes} bytes",
            page.items.len()
        );
        assert!(!page.items.is_empty());
        seen.extend(page.items.iter().map(|i| i.id.clone()));
        match q.next_offset(page.items.len(), page.total) {
            Some(next) => q.offset = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.len() > 8, "paged");
}

#[test]
fn stale_cleanup_temp_files_are_removed_by_the_next_writer_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = rw(tmp.path());
    s.write(Some(&item(1)), &[]).unwrap();
    for name in backlog_store::CLEANUP_TMP_FILES {
        fs::write(tmp.path().join(name), "left by a killed cleanup\n").unwrap();
    }
    // A read-only store (no writer lock) never deletes.
    let (mut ro, _) = store(tmp.path(), Access::ReadOnly);
    ro.begin_call();
    ro.get(&item(1).id).unwrap();
    for name in backlog_store::CLEANUP_TMP_FILES {
        assert!(tmp.path().join(name).exists(), "{name}");
    }
    // The first write-capable call of a store removes them, with a warning.
    let (mut s, warnings) = store(tmp.path(), Access::ReadWrite);
    s.begin_call();
    for name in backlog_store::CLEANUP_TMP_FILES {
        assert!(!tmp.path().join(name).exists(), "{name}");
    }
    assert!(
        warnings
            .borrow()
            .iter()
            .any(|w| w.contains(".items.jsonl.cleanup.tmp")),
        "{warnings:?}"
    );
    assert_eq!(s.get(&item(1).id).unwrap(), Some(item(1)));
}

#[cfg(unix)]
#[test]
fn symlinked_store_files_are_refused_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target.jsonl");
    std::os::unix::fs::symlink(&target, tmp.path().join(ITEMS_FILE)).unwrap();
    let mut s = rw(tmp.path());
    for r in [
        s.write(Some(&item(1)), &[]).map(|_| ()),
        s.get(&item(1).id).map(|_| ()),
    ] {
        match r {
            Err(StoreError::Unavailable(m)) => {
                assert!(
                    m.contains("items.jsonl in the store directory is a symbolic link"),
                    "{m}"
                )
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(!target.exists(), "nothing created through the link");
    // A planted cleanup temp link is removed, not written through.
    fs::remove_file(tmp.path().join(ITEMS_FILE)).unwrap();
    s.write(Some(&item(1)), &[]).unwrap();
    s.write(
        Some(&Item {
            status: Status::Done,
            ..item(1)
        }),
        &[],
    )
    .unwrap();
    std::os::unix::fs::symlink(
        &target,
        tmp.path().join(backlog_store::CLEANUP_TMP_FILES[0]),
    )
    .unwrap();
    assert_eq!(s.cleanup("2026-03-10T00:00:00.000000Z", false).unwrap(), 1);
    assert!(!target.exists(), "cleanup did not write through the link");
}

/// A store file swapped for a link (to a copy, same length and mtime) after a warm look:
/// the next look, which only stats the path, still refuses it.
#[cfg(unix)]
#[test]
fn a_file_swapped_for_a_link_after_a_look_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let mut s = rw(tmp.path());
    let a = item(1);
    s.write(Some(&a), &[]).unwrap();
    s.begin_call();
    assert_eq!(s.get(&a.id).unwrap(), Some(a.clone()));
    let path = tmp.path().join(ITEMS_FILE);
    let copy = outside.path().join(ITEMS_FILE);
    fs::copy(&path, &copy).unwrap();
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&copy, &path).unwrap();
    s.begin_call();
    match s.get(&a.id) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("symbolic link"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn keys_lists_live_items_of_an_env() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = rw(tmp.path());
    let (mut a, mut b) = (item(1), item(2));
    b.env = "staging".into();
    s.write(Some(&a), &[]).unwrap();
    s.write(Some(&b), &[]).unwrap();
    a.owner = "cto".into();
    s.write(Some(&a), &[]).unwrap();
    let mut all = s.keys(None).unwrap();
    all.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(all, vec![ItemKeys::of(&a), ItemKeys::of(&b)]);
    assert_eq!(s.keys(Some("staging")).unwrap(), vec![ItemKeys::of(&b)]);
    assert!(s.keys(Some("nope")).unwrap().is_empty());
}

const CUTOFF: &str = "2026-03-01T00:00:00.000000Z";

/// Items 1..=6: 1 done and old (expired), 2 canceled and old in the legacy naive form
/// (expired), 3 done but recent, 4 open and old, 5 done and old but reopened by a later line,
/// 6 old and done but with an unparseable `updated_at` (never expired).
fn cleanup_fixture(dir: &Path) -> Vec<Item> {
    let mut s = rw(dir);
    let old = "2026-02-01T00:00:00.000000Z";
    let mut items = Vec::new();
    for n in 1..=6 {
        let mut it = item(n);
        it.status = Status::Done;
        it.updated_at = old.into();
        items.push(it);
    }
    items[1].status = Status::Canceled;
    items[1].updated_at = "2026-02-01T00:00:00.5".into();
    items[2].updated_at = "2026-03-02T00:00:00.000000Z".into();
    items[3].status = Status::Open;
    items[5].updated_at = "yesterday".into();
    for it in &items {
        s.write(Some(it), &[event(it.title.len() as u64 * 100 + 1, &it.id)])
            .unwrap();
    }
    // Item 5 reopened: its latest line is not terminal.
    items[4].status = Status::Open;
    items[4].updated_at = "2026-02-02T00:00:00.000000Z".into();
    s.write(Some(&items[4]), &[event(77, &items[4].id)])
        .unwrap();
    // An event of an item that never existed, a corrupt line in each file.
    s.write(None, &[event(99, "bl_00000000dead")]).unwrap();
    append(&dir.join(ITEMS_FILE), "garbage\n");
    append(&dir.join(EVENTS_FILE), "garbage\n");
    items
}

#[test]
fn cleanup_dry_run_counts_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    cleanup_fixture(tmp.path());
    let before_items = fs::read(tmp.path().join(ITEMS_FILE)).unwrap();
    let before_events = fs::read(tmp.path().join(EVENTS_FILE)).unwrap();
    let names = || {
        let mut names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before_names = names();
    for access in [Access::ReadOnly, Access::ReadWrite] {
        let (mut s, _) = store(tmp.path(), access);
        assert_eq!(s.cleanup(CUTOFF, true).unwrap(), 2);
    }
    assert_eq!(fs::read(tmp.path().join(ITEMS_FILE)).unwrap(), before_items);
    assert_eq!(
        fs::read(tmp.path().join(EVENTS_FILE)).unwrap(),
        before_events
    );
    assert_eq!(names(), before_names);
}

#[test]
fn cleanup_deletes_expired_items_and_compacts_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let items = cleanup_fixture(tmp.path());
    let (mut reader, _) = store(tmp.path(), Access::ReadOnly);
    assert_eq!(
        reader
            .list(&ListQuery::default(), "2026-01-01")
            .unwrap()
            .total,
        6
    );
    let (mut s, _) = store(tmp.path(), Access::ReadWrite);
    assert_eq!(s.cleanup(CUTOFF, false).unwrap(), 2);

    // Items: the latest line of each survivor, in file order; nothing else.
    let survivors = [&items[2], &items[3], &items[5], &items[4]];
    let want: String = survivors.iter().map(|it| line(*it)).collect();
    assert_eq!(
        fs::read_to_string(tmp.path().join(ITEMS_FILE)).unwrap(),
        want
    );
    // Events: only those of survivors (the orphan, the corrupt line and those of 1, 2 gone).
    let events_text = fs::read_to_string(tmp.path().join(EVENTS_FILE)).unwrap();
    assert_eq!(events_text.lines().count(), 5, "{events_text}");
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    // The two files and the index checkpoint cleanup writes of them.
    assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
    assert!(tmp.path().join(backlog_store::CHECKPOINT_FILE).exists());

    // The store that cleaned up indexed the new files; the reader opened the checkpoint and
    // answers even the listing from its bytes (still lazy).
    for (st, lazy) in [(&mut s, false), (&mut reader, true)] {
        assert_eq!(st.get(&items[0].id).unwrap(), None);
        assert_eq!(st.get(&items[1].id).unwrap(), None);
        assert!(st.events(&items[0].id, 10).unwrap().is_empty());
        assert_eq!(st.get(&items[4].id).unwrap(), Some(items[4].clone()));
        assert_eq!(st.events(&items[4].id, 10).unwrap().len(), 2);
        assert_eq!(
            st.list(&ListQuery::default(), "2026-01-01").unwrap().total,
            4
        );
        assert_eq!(
            st.stats(),
            IndexStats {
                items: 4,
                events: 5,
                lines: 9,
                corrupt: 0,
                lazy
            }
        );
    }
    // Writes go on as usual, and a second cleanup with nothing to do rewrites nothing.
    let seven = item(7);
    s.write(Some(&seven), &[event(7, &seven.id)]).unwrap();
    assert_eq!(reader.get(&seven.id).unwrap(), Some(seven));
    #[cfg(unix)]
    let inode = || {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(tmp.path().join(ITEMS_FILE)).unwrap().ino()
    };
    #[cfg(unix)]
    let before = inode();
    assert_eq!(s.cleanup(CUTOFF, false).unwrap(), 0);
    #[cfg(unix)]
    assert_eq!(inode(), before);
}

#[test]
fn cleanup_and_keys_agree_with_mem_store() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = rw(tmp.path());
    let mut mem = MemStore::new();
    let mut rng = Lcg(5);
    for round in 0..3 {
        for _ in 0..300 {
            let n = rng.next() % 200;
            let mut it = random_item(&mut rng, n);
            it.updated_at = format!("2026-0{}-15T00:00:00.000000Z", 1 + rng.next() % 4);
            let ev = event(rng.next(), &it.id);
            s.write(Some(&it), std::slice::from_ref(&ev)).unwrap();
            mem.write(Some(&it), &[ev]).unwrap();
        }
        let cutoff = format!("2026-0{}-01T00:00:00.000000Z", 2 + round);
        assert_eq!(
            s.cleanup(&cutoff, true).unwrap(),
            mem.cleanup(&cutoff, true).unwrap()
        );
        assert_eq!(
            s.cleanup(&cutoff, false).unwrap(),
            mem.cleanup(&cutoff, false).unwrap()
        );
        let sorted = |mut v: Vec<ItemKeys>| {
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        };
        assert_eq!(
            sorted(s.keys(None).unwrap()),
            sorted(mem.keys(None).unwrap())
        );
        assert_eq!(
            sorted(s.keys(Some("prod")).unwrap()),
            sorted(mem.keys(Some("prod")).unwrap())
        );
        for k in mem.keys(None).unwrap() {
            assert_eq!(
                s.events(&k.id, 1000).unwrap(),
                mem.events(&k.id, 1000).unwrap()
            );
        }
    }
}

#[test]
fn cleanup_under_read_only_is_forbidden_and_bad_cutoff_is_internal() {
    let tmp = tempfile::tempdir().unwrap();
    cleanup_fixture(tmp.path());
    let before = fs::read(tmp.path().join(ITEMS_FILE)).unwrap();
    let (mut s, _) = store(tmp.path(), Access::ReadOnly);
    assert!(matches!(
        s.cleanup(CUTOFF, false),
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        s.cleanup("last week", true),
        Err(StoreError::Internal(_))
    ));
    assert_eq!(fs::read(tmp.path().join(ITEMS_FILE)).unwrap(), before);
}

#[test]
fn null_store_reads_empty_and_refuses_writes() {
    let mut s = NullStore;
    assert_eq!(s.backend(), "null");
    assert_eq!(s.get("bl_000000000001").unwrap(), None);
    assert_eq!(s.find_by_dedupe_key("k").unwrap(), None);
    let page = s.list(&ListQuery::default(), "2026-01-01").unwrap();
    assert!(page.items.is_empty() && page.total == 0);
    assert!(s.events("bl_000000000001", 10).unwrap().is_empty());
    match s.write(Some(&item(1)), &[]) {
        Err(StoreError::Unavailable(m)) => {
            assert_eq!(m, "backlog storage is disabled (BACKLOG_BACKEND=null)")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(s.keys(None).unwrap().is_empty());
    assert_eq!(s.cleanup(CUTOFF, true).unwrap(), 0);
    assert!(matches!(
        s.cleanup(CUTOFF, false),
        Err(StoreError::Unavailable(_))
    ));
}

#[test]
fn list_via_index_equals_mem_store_and_a_full_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = rw(tmp.path());
    let mut mem = MemStore::new();
    let mut rng = Lcg(42);
    // 600 items, then 400 random updates of existing ones; a listing in between so that the
    // updates also go through the index's incremental reordering.
    for n in 0..600 {
        let it = random_item(&mut rng, n);
        s.write(Some(&it), &[]).unwrap();
        mem.write(Some(&it), &[]).unwrap();
    }
    s.list(&ListQuery::default(), "2026-06-15").unwrap();
    for _ in 0..400 {
        let n = rng.next() % 600;
        let it = random_item(&mut rng, n);
        s.write(Some(&it), &[]).unwrap();
        mem.write(Some(&it), &[]).unwrap();
    }
    let (mut reader, _) = store(tmp.path(), Access::ReadOnly);
    let today = "2026-06-15";
    let mut queries = vec![
        ListQuery::default(),
        all(ListQuery::default()),
        ListQuery {
            limit: 0,
            ..ListQuery::default()
        },
        ListQuery {
            offset: 590,
            limit: 50,
            ..ListQuery::default()
        },
        ListQuery {
            offset: 5000,
            ..ListQuery::default()
        },
    ];
    for env in ["prod", "staging", "nope"] {
        for status in [
            vec![],
            vec![Status::Open],
            vec![Status::Done, Status::Blocked],
        ] {
            for overdue in [None, Some(true), Some(false)] {
                queries.push(ListQuery {
                    env: Some(env.into()),
                    status: status.clone(),
                    overdue,
                    limit: 7,
                    offset: 3,
                    ..ListQuery::default()
                });
            }
        }
    }
    queries.push(ListQuery {
        priority: Some(Priority::P0),
        service: Some("db".into()),
        owner: Some("cto".into()),
        category: Some("security".into()),
        due_before: Some("2026-07-01".into()),
        ..all(ListQuery::default())
    });
    for q in &queries {
        let (want, want_total) = naive_list(tmp.path(), q, today);
        let reference = mem.list(q, today).unwrap();
        assert_eq!(
            (&reference.items, reference.total),
            (&want, want_total),
            "{q:?}"
        );
        for st in [&mut s, &mut reader] {
            let page = st.list(q, today).unwrap();
            assert_eq!(page.total, want_total, "{q:?}");
            assert_eq!(page.items, want, "{q:?}");
        }
    }
}

#[test]
fn ten_thousand_items_smoke() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Lcg(7);
    let mut items_text = String::new();
    let mut events_text = String::new();
    for n in 0..10_000u64 {
        let it = random_item(&mut rng, n);
        items_text.push_str(&line(&it));
        events_text.push_str(&line(&event(n, &it.id)));
    }
    fs::write(tmp.path().join(ITEMS_FILE), items_text).unwrap();
    fs::write(tmp.path().join(EVENTS_FILE), events_text).unwrap();
    let (mut s, warnings) = store(tmp.path(), Access::ReadOnly);
    s.refresh().unwrap();
    assert_eq!(
        s.stats(),
        IndexStats {
            items: 10_000,
            events: 10_000,
            lines: 20_000,
            corrupt: 0,
            lazy: false
        }
    );
    let id = format!("bl_{:012x}", 1234);
    assert_eq!(s.get(&id).unwrap().unwrap().id, id);
    assert_eq!(s.events(&id, 10).unwrap(), vec![event(1234, &id)]);
    let q = ListQuery {
        limit: 50,
        ..ListQuery::default()
    };
    let page = s.list(&q, "2026-06-15").unwrap();
    assert_eq!(page.total, 10_000);
    assert_eq!(page.items.len(), 50);
    let keys: Vec<ItemKeys> = page.items.iter().map(ItemKeys::of).collect();
    assert!(keys.windows(2).all(|w| list::compare(&w[0], &w[1]).is_lt()));
    assert!(warnings.borrow().is_empty());
}

#[test]
fn calls_check_the_files_once_and_see_other_writers_at_the_next_call() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = rw(tmp.path());
    let mut b = rw(tmp.path());
    // One call of `a` writes several items and reads its own writes back.
    a.begin_call();
    let (x, y) = (item(1), item(2));
    a.write(Some(&x), &[event(1, &x.id)]).unwrap();
    a.write(Some(&y), &[event(2, &y.id)]).unwrap();
    assert_eq!(a.get(&y.id).unwrap(), Some(y.clone()));
    assert_eq!(a.events(&x.id, 10).unwrap(), vec![event(1, &x.id)]);
    a.end_call().unwrap();

    // Another writer (the host serializes them: between calls of `a`) appends.
    b.begin_call();
    let z = item(3);
    b.write(Some(&z), &[event(3, &z.id)]).unwrap();
    let mut x2 = x.clone();
    x2.owner = "cto".into();
    b.write(Some(&x2), &[]).unwrap();
    b.end_call().unwrap();

    // `a`'s next call sees all of it, and appends after it (its kept handles and lengths
    // were dropped at begin_call).
    a.begin_call();
    assert_eq!(a.get(&z.id).unwrap(), Some(z.clone()));
    assert_eq!(a.get(&x.id).unwrap(), Some(x2.clone()));
    let w = item(4);
    a.write(Some(&w), &[event(4, &w.id)]).unwrap();
    a.end_call().unwrap();
    b.begin_call();
    assert_eq!(b.get(&w.id).unwrap(), Some(w));
    let text = std::fs::read_to_string(tmp.path().join(ITEMS_FILE)).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Item>(l).is_ok()),
        "{text}"
    );
}
