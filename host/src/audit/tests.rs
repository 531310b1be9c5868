use super::*;
use serde_json::json;

fn record(actor: &str) -> serde_json::Map<String, Value> {
    let record = CallRecord {
        request_id: "req_1",
        face: Face::Cli,
        actor,
        tool: "t",
        action: "a",
        grants: Some(crate::grants::Grants::default()),
        reason: None,
        outcome: "ok",
        duration_ms: 1,
        item_ids: vec![],
    };
    let line = record.line();
    match serde_json::to_value(line).unwrap() {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[test]
fn two_writers_keep_one_chain_and_verify_finds_each_kind_of_break() {
    let dir = tempfile::tempdir().unwrap();
    let a = AuditLog::open(dir.path()).unwrap();
    let b = AuditLog::open(dir.path()).unwrap();
    for i in 0..6 {
        let w = if i % 2 == 0 { &a } else { &b };
        w.append(record(&format!("agent{i}"))).unwrap();
    }
    assert_eq!(
        verify::verify(dir.path()).unwrap().unwrap(),
        verify::Intact { files: 1, lines: 6 }
    );
    let file = files(dir.path()).unwrap().remove(0);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let check = |new: Vec<String>, line: usize| {
        std::fs::write(&file, new.join("\n") + "\n").unwrap();
        let broken = verify::verify(dir.path()).unwrap().unwrap_err();
        assert_eq!(broken.line, line, "{broken}");
        std::fs::write(&file, &text).unwrap();
    };
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[2] = edited[2].replace("agent2", "agent9");
    check(edited, 4);
    let mut removed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    removed.remove(1);
    check(removed, 2);
    let mut swapped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    swapped.swap(3, 4);
    check(swapped, 4);
}

#[test]
fn a_new_day_chains_to_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("audit-2000-01-01.jsonl");
    let first = format!(r#"{{"seq":1,"prev":"{GENESIS}"}}"#);
    std::fs::write(&old, format!("{first}\n")).unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    log.append(record("x")).unwrap();
    let today = files(dir.path()).unwrap().pop().unwrap();
    let line: Value = serde_json::from_str(std::fs::read_to_string(today).unwrap().trim()).unwrap();
    assert_eq!(line["prev"], line_hash(first.as_bytes()));
    assert_eq!(line["seq"], 2);
    assert!(verify::verify(dir.path()).unwrap().is_ok());
}

#[test]
fn item_ids_come_from_the_answer_only() {
    assert_eq!(item_ids(&json!({"id": "BL-1", "title": "x"})), ["BL-1"]);
    assert_eq!(item_ids(&json!({"deleted": [{"id": "BL-2"}]})), ["BL-2"]);
    assert!(item_ids(&json!({"items": []})).is_empty());
}

#[test]
fn a_call_line_keeps_the_chain_fields_around_the_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let record = CallRecord {
        request_id: "req_2",
        face: Face::Http,
        actor: "a \"quoted\" agent",
        tool: "t",
        action: "a",
        grants: None,
        reason: Some("no"),
        outcome: "forbidden",
        duration_ms: 0,
        item_ids: vec![],
    };
    log.append_call(&record).unwrap();
    log.append(serde_json::Map::new()).unwrap();
    let text = std::fs::read_to_string(files(dir.path()).unwrap().remove(0)).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "ts",
            "seq",
            "host",
            "request_id",
            "event",
            "face",
            "actor",
            "tool",
            "action",
            "decision",
            "reason",
            "grants",
            "outcome",
            "duration_ms",
            "item_ids",
            "prev"
        ]
    );
    assert_eq!(lines[0]["actor"], "a \"quoted\" agent");
    assert_eq!(lines[0]["decision"], "deny");
    let empty: Vec<&str> = lines[1]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(empty, ["ts", "seq", "host", "prev"]);
    assert!(verify::verify(dir.path()).unwrap().is_ok());
}
