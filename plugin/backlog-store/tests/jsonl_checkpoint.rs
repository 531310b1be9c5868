//! The index checkpoint (`index.checkpoint`): a new store instance starts from it and reads
//! only the lines after it; a checkpoint that does not match the files — truncated or garbage
//! (a writer killed mid-write), from before a cleanup, with its covered tail changed, of
//! another format version — is ignored with a warning, and every case answers exactly what a
//! store without any checkpoint answers. A new instance answers lookups and writes without
//! decoding it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::rc::Rc;

use backlog_core::model::{Event, EventType, Item, Priority, Source, Status};
use backlog_core::policy::Policy;
use backlog_core::store::BacklogStore;
use backlog_store::{
    Access, CHECKPOINT_EVERY, CHECKPOINT_FILE, CHECKPOINT_TMP_FILE, EVENTS_FILE, INTENT_FILE,
    ITEMS_FILE, JsonlStore,
};

type Warnings = Rc<RefCell<Vec<String>>>;

/// Whether some warning contains `text`.
fn warned(warnings: &Warnings, text: &str) -> bool {
    warnings.borrow().iter().any(|w| w.contains(text))
}

fn open(dir: &Path, access: Access) -> (JsonlStore, Warnings) {
    let warnings: Warnings = Rc::default();
    let w = warnings.clone();
    let s = JsonlStore::open(
        dir.to_path_buf(),
        access,
        Box::new(move |m| w.borrow_mut().push(m.to_owned())),
    );
    (s, warnings)
}

fn item(n: u64, version: u64) -> Item {
    let id = format!("bl_{n:012x}");
    let ts = format!("2026-03-{:02}T06:20:01.123456Z", 1 + version % 9);
    Item {
        id: id.clone(),
        created_at: ts.clone(),
        updated_at: ts,
        env: ["prod", "staging"][(n % 2) as usize].into(),
        service: format!("svc-{}", n % 7),
        category: "refactor".into(),
        title: format!("item {n} v{version}"),
        description: String::new(),
        priority: [Priority::P0, Priority::P1, Priority::P2, Priority::P3][(n % 4) as usize],
        status: [Status::Open, Status::Blocked, Status::Done][((n + version) % 3) as usize],
        owner: "oncall".into(),
        due_date: format!("2026-03-{:02}", 1 + (n + version) % 9),
        source: Source::Manual,
        dedupe_key: format!("manual:{id}"),
        evidence_refs: BTreeMap::new(),
        tags: Vec::new(),
        meta: serde_json::Map::new(),
    }
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

/// `writes` writes (item + one event each) over 300 items, from write number `from`.
fn write(store: &mut JsonlStore, from: u64, writes: u64) {
    for w in from..from + writes {
        store.begin_call();
        let it = item(w % 300, w / 300);
        store.write(Some(&it), &[event(w, &it.id)]).expect("write");
        store.end_call().expect("end call");
    }
}

/// Everything a store answers about its items: the full listing, each item's events, the
/// dedupe lookups and both envs' dashboards.
fn answers(store: &mut JsonlStore) -> String {
    store.begin_call();
    let query = backlog_core::list::ListQuery {
        limit: 100_000,
        ..Default::default()
    };
    let page = store.list(&query, "2026-03-05").expect("list");
    let mut out = format!("{} items\n", page.total);
    for it in &page.items {
        let events = store.events(&it.id, 1000).expect("events");
        let found = store.find_by_dedupe_key(&it.dedupe_key).expect("find");
        out += &format!(
            "{}\n{}\n{}\n",
            serde_json::to_string(it).expect("json"),
            serde_json::to_string(&events).expect("json"),
            found.map(|f| f.id).unwrap_or_default()
        );
    }
    for env in ["prod", "staging"] {
        let d = store
            .dashboard(env, "2026-03-05", &Policy::default())
            .expect("dashboard");
        out += &format!("{d:?}\n");
    }
    out
}

/// What a store without any checkpoint answers over a copy of `dir`'s JSONL files.
fn reference(dir: &Path) -> String {
    let copy = tempfile::tempdir().expect("tempdir");
    for name in [ITEMS_FILE, EVENTS_FILE] {
        fs::copy(dir.join(name), copy.path().join(name)).expect("copy");
    }
    let (mut s, _) = open(copy.path(), Access::ReadOnly);
    let a = answers(&mut s);
    assert_eq!(s.checkpoint_lines(), None);
    a
}

/// A store of 3000 lines: a checkpoint was written at 2048, the rest is a tail after it.
fn populated() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(tmp.path(), Access::ReadWrite);
    write(&mut s, 0, 1500);
    assert!(tmp.path().join(CHECKPOINT_FILE).exists());
    assert_eq!(s.checkpoint_lines(), Some(CHECKPOINT_EVERY));
    tmp
}

#[test]
fn a_new_instance_starts_from_the_checkpoint_and_reads_the_tail() {
    let tmp = populated();
    let want = reference(tmp.path());
    let (mut s, warnings) = open(tmp.path(), Access::ReadOnly);
    assert_eq!(answers(&mut s), want);
    assert_eq!(s.checkpoint_lines(), Some(CHECKPOINT_EVERY));
    assert_eq!(s.stats().lines, 3000);
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());
    // Appends after the new instance indexed are read as a tail too.
    let (mut w, _) = open(tmp.path(), Access::ReadWrite);
    write(&mut w, 1500, 10);
    assert_eq!(answers(&mut s), reference(tmp.path()));
}

#[test]
fn a_read_only_store_never_writes_a_checkpoint() {
    let tmp = populated();
    fs::remove_file(tmp.path().join(CHECKPOINT_FILE)).expect("rm");
    let (mut s, _) = open(tmp.path(), Access::ReadOnly);
    answers(&mut s);
    assert!(!tmp.path().join(CHECKPOINT_FILE).exists());
    assert!(!tmp.path().join(CHECKPOINT_TMP_FILE).exists());
}

/// Checks that a store over `dir` with its (damaged) checkpoint answers like one without, and
/// warns that it ignored the checkpoint.
fn ignored_and_same(dir: &Path, case: &str) {
    let want = reference(dir);
    let (mut s, warnings) = open(dir, Access::ReadOnly);
    assert_eq!(answers(&mut s), want, "{case}");
    assert_eq!(s.checkpoint_lines(), None, "{case}");
    assert!(
        warned(&warnings, "ignoring index.checkpoint"),
        "{case}: {:?}",
        warnings.borrow()
    );
}

#[test]
fn a_truncated_or_garbage_checkpoint_is_ignored() {
    let tmp = populated();
    let path = tmp.path().join(CHECKPOINT_FILE);
    let good = fs::read(&path).expect("read");
    // A writer killed mid-write leaves a prefix (only ever in the temporary file, but a
    // damaged disk or a copy can leave one under the real name too).
    for cut in [0, 7, 8, 40, 100, good.len() / 2, good.len() - 1] {
        fs::write(&path, &good[..cut]).expect("write");
        ignored_and_same(tmp.path(), &format!("truncated at {cut}"));
    }
    for at in [3, 20, 60, 120, good.len() / 3, good.len() - 2] {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        fs::write(&path, &bad).expect("write");
        ignored_and_same(tmp.path(), &format!("byte {at} flipped"));
    }
    let mut longer = good.clone();
    longer.extend_from_slice(b"garbage");
    fs::write(&path, &longer).expect("write");
    ignored_and_same(tmp.path(), "bytes after the end");
    // A half-written temporary file next to a good checkpoint changes nothing.
    fs::write(&path, &good).expect("write");
    fs::write(
        tmp.path().join(CHECKPOINT_TMP_FILE),
        &good[..good.len() / 2],
    )
    .expect("write");
    let (mut s, warnings) = open(tmp.path(), Access::ReadOnly);
    assert_eq!(answers(&mut s), reference(tmp.path()));
    assert_eq!(s.checkpoint_lines(), Some(CHECKPOINT_EVERY));
    assert!(warnings.borrow().is_empty());
    // The next writer sweeps it away.
    let (mut w, _) = open(tmp.path(), Access::ReadWrite);
    write(&mut w, 1500, 1);
    assert!(!tmp.path().join(CHECKPOINT_TMP_FILE).exists());
}

#[test]
fn a_checkpoint_from_before_a_cleanup_is_ignored() {
    let tmp = populated();
    let path = tmp.path().join(CHECKPOINT_FILE);
    let old = fs::read(&path).expect("read");
    let (mut s, _) = open(tmp.path(), Access::ReadWrite);
    s.begin_call();
    let deleted = s
        .cleanup("2026-03-09T00:00:00.000000Z", false)
        .expect("cleanup");
    assert!(deleted > 0);
    // Cleanup wrote a checkpoint of the rewritten files, which a new instance uses.
    let (mut fresh, warnings) = open(tmp.path(), Access::ReadOnly);
    assert_eq!(answers(&mut fresh), reference(tmp.path()));
    assert!(fresh.checkpoint_lines().is_some());
    assert!(warnings.borrow().is_empty());
    // The old one put back (a cleanup killed after its rewrite, before its checkpoint):
    // ignored, also after appends that grow the files past what it covered.
    fs::write(&path, &old).expect("write");
    ignored_and_same(tmp.path(), "checkpoint from before the cleanup");
    write(&mut s, 3000, 1200);
    fs::write(&path, &old).expect("write");
    ignored_and_same(tmp.path(), "old checkpoint, files grown again");
}

#[test]
fn a_checkpoint_whose_covered_tail_changed_is_ignored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(tmp.path(), Access::ReadWrite);
    // Exactly at the checkpoint: the last covered line is the file's last line.
    write(&mut s, 0, CHECKPOINT_EVERY / 2);
    assert_eq!(s.checkpoint_lines(), Some(CHECKPOINT_EVERY));
    let items = tmp.path().join(ITEMS_FILE);
    let text = fs::read_to_string(&items).expect("read");
    // The last line changed in place, same length (its title).
    let last = text
        .trim_end()
        .rsplit('\n')
        .next()
        .expect("line")
        .to_owned();
    let changed = last.replace("\"title\":\"item ", "\"title\":\"itex ");
    assert_ne!(changed, last);
    fs::write(&items, text.replacen(&last, &changed, 1)).expect("write");
    ignored_and_same(tmp.path(), "last covered line changed");
    // And a file cut short of what the checkpoint covers.
    let (mut s, _) = open(tmp.path(), Access::ReadWrite);
    write(&mut s, 5000, 1100);
    let text = fs::read_to_string(&items).expect("read");
    let cut = text[..text.len() / 3].rfind('\n').expect("newline") + 1;
    fs::write(&items, &text[..cut]).expect("write");
    ignored_and_same(tmp.path(), "items.jsonl shorter than covered");
}

/// A line edited in place in the middle of the covered prefix, away from what the checkpoint
/// samples, is not seen by validation; the read that meets it re-indexes from the files, not
/// from the checkpoint again, and answers what a store without a checkpoint answers.
#[test]
fn an_edit_the_validation_cannot_see_is_caught_on_read_and_reindexed_from_the_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = open(tmp.path(), Access::ReadWrite);
    write(&mut s, 0, CHECKPOINT_EVERY / 2);
    assert_eq!(s.checkpoint_lines(), Some(CHECKPOINT_EVERY));
    let items = tmp.path().join(ITEMS_FILE);
    let text = fs::read_to_string(&items).expect("read");
    let end = text.len();
    // What the checkpoint samples: the first 4 KiB and eight 256-byte blocks.
    let sampled = |from: usize, to: usize| {
        from < 4096
            || (0..8).any(|i| {
                let at = (end - 256) / 7 * i;
                from < at + 256 && at < to
            })
    };
    // The latest line of some item, away from the samples (and not the last line).
    let mut offsets = Vec::new();
    let mut off = 0;
    for line in text.split_inclusive('\n') {
        offsets.push((off, line));
        off += line.len();
    }
    let (at, line) = offsets[..offsets.len() - 1]
        .iter()
        .rev()
        .find(|(at, line)| {
            let id = &line[7..22];
            !sampled(*at, at + line.len())
                && offsets
                    .iter()
                    .filter(|(o, l)| o > at && l.contains(id))
                    .count()
                    == 0
        })
        .map(|(at, line)| (*at, line.to_string()))
        .expect("a line to edit");
    let id = line[7..22].to_string();
    assert!(id.starts_with("bl_"), "{line}");
    let edited = line.replacen(&id, "bl_zzzzzzzzzzzz", 1);
    drop(offsets);
    let mut bytes = text.into_bytes();
    bytes[at..at + line.len()].copy_from_slice(edited.as_bytes());
    fs::write(&items, &bytes).expect("write");
    let want = reference(tmp.path());
    let (mut fresh, _) = open(tmp.path(), Access::ReadOnly);
    assert_eq!(answers(&mut fresh), want);
    assert!(want.contains("bl_zzzzzzzzzzzz"));
}

/// What lookups answer for `ids` (and an unknown id and key): item, events (all, and the
/// first two), the item found by its dedupe key.
fn lookups(store: &mut JsonlStore, ids: &[String], keys: &[&str]) -> String {
    store.begin_call();
    let mut out = String::new();
    for id in ids.iter().map(String::as_str).chain(["bl_nope"]) {
        let item = store.get(id).expect("get");
        let all = store.events(id, 1000).expect("events");
        let two = store.events(id, 2).expect("events");
        out += &format!("{item:?}\n{all:?}\n{two:?}\n");
    }
    for key in keys.iter().copied().chain(["manual:nope"]) {
        let found = store.find_by_dedupe_key(key).expect("find");
        out += &format!("{key} → {:?}\n", found.map(|f| f.id));
    }
    out
}

/// A new instance answers lookups and writes from the checkpoint without decoding it (a
/// cold `get` or `upsert` does not pay for the whole index), with exactly the answers of a
/// store without a checkpoint; the first listing decodes it and replays what came after.
#[test]
fn a_new_instance_looks_up_and_writes_without_decoding_the_checkpoint() {
    let tmp = populated();
    let ids: Vec<String> = (0..310).map(|n| format!("bl_{n:012x}")).collect();
    let keys: Vec<String> = ids.iter().map(|id| format!("manual:{id}")).collect();
    let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    keys.push("moved");
    let reference_lookups = |dir: &Path| {
        let copy = tempfile::tempdir().expect("tempdir");
        for name in [ITEMS_FILE, EVENTS_FILE] {
            fs::copy(dir.join(name), copy.path().join(name)).expect("copy");
        }
        let (mut s, _) = open(copy.path(), Access::ReadOnly);
        let a = lookups(&mut s, &ids, &keys);
        assert!(!s.stats().lazy);
        a
    };
    let (mut s, warnings) = open(tmp.path(), Access::ReadWrite);
    assert_eq!(lookups(&mut s, &ids, &keys), reference_lookups(tmp.path()));
    assert!(s.stats().lazy, "lookups decoded the checkpoint");
    assert_eq!(s.stats().lines, 3000);
    // Writes go to the overlay: new items, new versions, an item that moves to another
    // dedupe key (its old key no longer finds it), events of an item written later.
    write(&mut s, 1500, 20);
    for n in [300, 301] {
        s.begin_call();
        let it = item(n, 0);
        s.write(Some(&it), &[event(9000 + n, &it.id)])
            .expect("write");
        s.end_call().expect("end call");
    }
    s.begin_call();
    s.write(None, &[event(9500, "bl_000000000134")])
        .expect("write");
    s.write(Some(&item(0x134, 0)), &[]).expect("write");
    let mut moved = item(5, 9);
    moved.dedupe_key = "moved".into();
    s.write(Some(&moved), &[]).expect("write");
    s.end_call().expect("end call");
    assert_eq!(lookups(&mut s, &ids, &keys), reference_lookups(tmp.path()));
    assert!(s.stats().lazy);
    let stats = s.stats();
    // The first listing decodes and replays: the same answers as a store without any.
    assert_eq!(answers(&mut s), reference(tmp.path()));
    assert!(!s.stats().lazy);
    assert_eq!(
        (s.stats().items, s.stats().events),
        (stats.items, stats.events)
    );
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());
}

/// A checkpoint of another format version (an older bridge's) is ignored and says so; the
/// next writer replaces it.
#[test]
fn a_checkpoint_of_another_version_is_ignored_and_replaced() {
    let tmp = populated();
    let path = tmp.path().join(CHECKPOINT_FILE);
    let mut bytes = fs::read(&path).expect("read");
    bytes[6..8].copy_from_slice(b"01");
    fs::write(&path, &bytes).expect("write");
    ignored_and_same(tmp.path(), "format version 01");
    // The next writer says why and writes a checkpoint of its own, which a new store uses.
    let (mut writer, warnings) = open(tmp.path(), Access::ReadWrite);
    write(&mut writer, 2000, 1);
    assert!(
        warned(&warnings, "written by another version of the bridge"),
        "{:?}",
        warnings.borrow()
    );
    assert_eq!(writer.checkpoint_lines(), Some(3002));
    let (mut fresh, quiet) = open(tmp.path(), Access::ReadOnly);
    fresh.refresh().expect("refresh");
    assert!(fresh.stats().lazy, "the new checkpoint is used");
    assert!(quiet.borrow().is_empty(), "{:?}", quiet.borrow());
}

/// A checkpoint written at the end of a call whose end never reached the disk (the host syncs
/// the write intent with the files after the call: a crash in between) covers writes that did
/// not finish: it is ignored, and the call's writes do not show.
#[test]
fn a_checkpoint_covering_an_unfinished_call_is_ignored() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (s, _) = open(tmp.path(), Access::ReadWrite);
    let mut s = s.with_durability(backlog_store::Durability::Deferred);
    let first = item(1000, 0);
    s.begin_call();
    s.write(Some(&first), &[event(1, &first.id)])
        .expect("write");
    s.end_call().expect("end");
    // The next call (a generation run, say): its write intent says "in progress" from its
    // first write until it ends.
    s.begin_call();
    let mut in_progress = Vec::new();
    for w in 0..CHECKPOINT_EVERY {
        let it = item(w % 300, w / 300);
        s.write(Some(&it), &[event(w, &it.id)]).expect("write");
        if w == 0 {
            in_progress = fs::read(tmp.path().join(INTENT_FILE)).expect("intent");
        }
    }
    assert!(
        !tmp.path().join(CHECKPOINT_FILE).exists(),
        "a checkpoint inside a call"
    );
    s.end_call().expect("end");
    assert!(
        tmp.path().join(CHECKPOINT_FILE).exists(),
        "no checkpoint written"
    );
    // Crash: the call's end record is lost, the files and the checkpoint made it.
    fs::write(tmp.path().join(INTENT_FILE), &in_progress).expect("write intent");

    let (mut fresh, warnings) = open(tmp.path(), Access::ReadOnly);
    let page = fresh
        .list(&backlog_core::list::ListQuery::default(), "2026-03-05")
        .expect("list");
    assert_eq!(page.items, vec![first]);
    assert!(
        warned(&warnings, "it covers a write that did not finish"),
        "{:?}",
        warnings.borrow()
    );
}

#[test]
fn a_store_whose_items_file_went_away_does_not_answer_from_the_checkpoint() {
    let tmp = populated();
    let expected = reference(tmp.path());
    let (mut s, warnings) = open(tmp.path(), Access::ReadOnly);
    assert_eq!(answers(&mut s), expected);
    assert!(s.checkpoint_lines().is_some());
    // The items file moved away under the open store: the checkpoint still names its lines,
    // the file they were in is gone, so the store answers no items.
    let items = tmp.path().join(ITEMS_FILE);
    let aside = tmp.path().join("items.aside");
    fs::rename(&items, &aside).expect("rename");
    assert!(answers(&mut s).starts_with("0 items\n"));
    assert!(warned(&warnings, "the files changed since it was written"));
    // Back again: the same answers as a store without any checkpoint.
    fs::rename(&aside, &items).expect("rename");
    assert_eq!(answers(&mut s), expected);
}
