use super::*;
use std::fs;

#[test]
fn recovery_is_due_only_after_the_retry_time_and_with_something_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (before, after) = ("2026-11-27T10:04:00Z", "2026-11-27T10:06:00Z");
    // Nothing recorded: nothing to do.
    assert!(!auto_recovery_due(dir, after));
    fs::write(
        dir.join(DOWN_UNTIL_FILE),
        "2026-11-27T10:05:00.000000Z\nPostgres down\n",
    )
    .unwrap();
    append_entry(
        dir,
        JOURNAL_FILE,
        &Entry {
            item_id: "bl_000000000001".into(),
            events: vec!["ev_1".into()],
        },
    )
    .unwrap();
    assert!(!auto_recovery_due(dir, before), "still marked down");
    assert!(auto_recovery_due(dir, after));
    // A stale down_until alone, or an unconfirmed replay alone, is work too.
    fs::remove_file(dir.join(JOURNAL_FILE)).unwrap();
    assert!(auto_recovery_due(dir, after));
    fs::remove_file(dir.join(DOWN_UNTIL_FILE)).unwrap();
    assert!(!auto_recovery_due(dir, after));
    fs::write(dir.join(REPLAYED_FILE), "").unwrap();
    assert!(auto_recovery_due(dir, before));
    assert!(!auto_recovery_due(dir, "not a time"));
}
